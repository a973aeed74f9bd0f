"""Write `Indexed` records into the store: the pipeline's sink, and what a replay calls.

Idempotent by construction: a point's id is the memory id, provenance entries are keyed by
the duplicate's id, and superseding sets the same `valid_to` however often it runs. The
dense vector written is the one decoded from the record's 192-byte code, so a store rebuilt
from `memstream.indexed` is identical to the live one.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from memstream.models.compression import decode_vectors
from memstream.schemas.events import Indexed
from memstream.store.base import MemoryStore, StoredMemory
from memstream.store.lexical import doc_sparse


@dataclass
class SinkResult:
    written: int = 0
    merged: int = 0
    superseded: int = 0


def to_stored(record: Indexed, recorded_at: datetime) -> StoredMemory:
    p = record.payload
    return StoredMemory(
        memory_id=record.event_id,
        tenant=record.tenant,
        agent_id=record.agent_id,
        scope=record.scope,
        text=p.text,
        ts=record.ts,
        recorded_at=recorded_at,
        source_kind=p.source_kind,
        topic=p.topic,
        tags=list(p.tags),
        metadata=dict(p.metadata) | ({"context": p.context} if p.context else {}),
        valid_from=p.valid_from or record.ts,
        valid_to=p.valid_to,
        usefulness=p.usefulness,
        vector_code=base64.b64decode(p.vector_b64),
        codec=p.vector_codec,
        models=dict(p.models),
        sealed=p.sealed,
        subjects=list(p.subjects),
    )


def lexical_text(record: Indexed) -> str:
    """What the lexical index sees: the context, then the memory."""
    context = record.payload.context
    return f"{context}\n{record.payload.text}" if context else record.payload.text


def write_records(
    store: MemoryStore, records: list[Indexed], now: datetime | None = None
) -> SinkResult:
    """Store a batch: duplicates merge into their original's provenance (or are stored on
    their own if the original is not there), supersessions close older validity."""
    now = now or datetime.now(UTC)
    result = SinkResult()
    originals = [r for r in records if r.payload.duplicate_of is None]
    _upsert(store, originals, now)  # first, so a duplicate in the same batch finds its original
    orphans = []
    for record in records:
        original = record.payload.duplicate_of
        if original is None:
            continue
        entry = {
            "memory_id": str(record.event_id),
            "agent_id": record.agent_id,
            "ts": record.ts.isoformat(),
        }
        if store.add_provenance(record.tenant, original, entry):
            result.merged += 1
        else:
            orphans.append(record)  # the original is gone (erased, other store): keep this one
    _upsert(store, orphans, now)
    result.written = len(originals) + len(orphans)
    for record in records:
        for old in record.payload.supersedes:
            if store.supersede(record.tenant, old, record.payload.valid_from or record.ts):
                result.superseded += 1
    return result


def _upsert(store: MemoryStore, records: list[Indexed], now: datetime) -> None:
    if not records:
        return
    codes = np.frombuffer(
        b"".join(base64.b64decode(r.payload.vector_b64) for r in records), dtype=np.uint8
    ).reshape(len(records), -1)
    store.upsert(
        [to_stored(r, now) for r in records],
        decode_vectors(codes),
        [doc_sparse(lexical_text(r)) for r in records],
    )
