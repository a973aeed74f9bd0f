"""Write `Indexed` records into the store: the pipeline's sink, and what a replay calls.

Idempotent by construction: a point's id is the memory id, provenance entries are keyed by
the duplicate's id, and superseding sets the same `valid_to` however often it runs. The
dense vector written is the one decoded from the record's 192-byte code, so a store rebuilt
from `memstream.indexed` is identical to the live one.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import numpy as np

from memstream.logging import get_logger
from memstream.models.compression import decode_vectors
from memstream.models.facts import fact_key
from memstream.schemas.events import Indexed
from memstream.store.base import Caller, MemoryStore, StoredMemory, may_supersede
from memstream.store.faults import StoreStatus, store_fault
from memstream.store.lexical import doc_sparse

log = get_logger("memstream.sink")

T = TypeVar("T")

STORE_RETRY_MAX_S = 30.0
"""Longest wait between two tries of a write while the store itself is failing."""


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
        supersedes=[str(i) for i in p.supersedes],
        expires_at=p.expires_at,
        verification=p.verification,
        fact=p.fact.model_dump() if p.fact else None,
        fact_key=fact_key(record.tenant, p.fact) if p.fact else None,
        auto_tags=[t.tag for t in p.auto_tags[:1]],
        links=[{"memory_id": str(link.memory_id), "score": link.score} for link in p.links],
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
        if record.payload.supersedes:
            result.superseded += _supersede(store, record)
    return result


def writer_of(record: Indexed) -> Caller:
    """The record's author as the event proves it: its agent, and the team it wrote into
    (the API lets only members write into a team)."""
    scope = record.scope
    return Caller(
        record.tenant,
        record.agent_id,
        frozenset({scope[5:]}) if scope.startswith("team:") else frozenset(),
    )


def _supersede(store: MemoryStore, record: Indexed) -> int:
    """Close the validity of the memories `record` supersedes that its writer may supersede
    (`may_supersede`); others are left alone and logged."""
    scope = record.scope
    writer = writer_of(record)
    visible = {m.memory_id: m for m in store.get(writer, list(record.payload.supersedes))}
    done = 0
    for old_id in record.payload.supersedes:
        old = visible.get(old_id)
        if old is None or not may_supersede(record.agent_id, scope, old):
            log.warning(
                "supersession refused",
                memory_id=str(record.event_id),
                superseded=str(old_id),
                reason="not visible to the writer" if old is None else "would hide it",
            )
            continue
        if store.supersede(record.tenant, old_id, record.payload.valid_from or record.ts):
            done += 1
    return done


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


def write_isolated(
    store: MemoryStore,
    records: list[Indexed],
    *,
    sleep: Callable[[float], None] = time.sleep,
    max_wait_s: float = STORE_RETRY_MAX_S,
    status: StoreStatus | None = None,
) -> list[Exception | None]:
    """`write_records` for a batch, with one outcome per record: None (stored) or the error
    the store raised for that record alone.

    A write that fails while the store is down (`store_down`: the error is the store's, see
    `store.faults.store_fault`, or the store fails its health check) is retried with
    backoff, for as long as it takes, so that no offset is committed past a record that was
    neither stored nor dead-lettered; `status` (for /healthz and /metrics) says so
    meanwhile. One record the store refuses while it is healthy must not take the batch
    with it, so such a batch is written record by record, and a record that fails on its
    own is that record's fault (its caller dead-letters it).
    """
    if not records:
        return []
    status = status or StoreStatus(metrics=False)
    if _write_retrying(store, records, status, sleep, max_wait_s) is None:
        return [None] * len(records)
    log.warning("store refused a batch; writing record by record", size=len(records))
    return [_write_retrying(store, [r], status, sleep, max_wait_s) for r in records]


def _write_retrying(
    store: MemoryStore,
    records: list[Indexed],
    status: StoreStatus,
    sleep: Callable[[float], None],
    max_wait_s: float,
) -> Exception | None:
    """Write `records` until they are stored (None) or fail while the store is up (the
    error)."""
    try:
        call_retrying(
            store, write_records, store, records, status=status, sleep=sleep, max_wait_s=max_wait_s
        )
    except Exception as exc:
        return exc
    return None


def call_retrying(
    store: MemoryStore,
    fn: Callable[..., T],
    *args: Any,
    status: StoreStatus | None = None,
    sleep: Callable[[float], None] = time.sleep,
    max_wait_s: float = STORE_RETRY_MAX_S,
) -> T:
    """`fn(*args)`, tried again with backoff while it fails because the store does
    (`store_down`); an error of its own is raised. For idempotent store work outside the
    sink (deletions, erasures), so that a store outage delays it instead of dead-lettering
    it."""
    status = status or StoreStatus(metrics=False)
    wait = 0.5
    while True:
        try:
            result = fn(*args)
        except Exception as exc:
            if not store_down(store, exc):
                raise
            if status.failed(exc):
                log.error("store unavailable; retrying until it returns", error=repr(exc)[:500])
            sleep(wait)
            status.retried()
            wait = min(max_wait_s, wait * 2)
            continue
        since = status.succeeded()
        if since is not None:
            log.warning("store available again", down_since=since.isoformat())
        return result


def open_when_available(
    open_fn: Callable[[], MemoryStore],
    *,
    sleep: Callable[[float], None] = time.sleep,
    max_wait_s: float = STORE_RETRY_MAX_S,
) -> MemoryStore:
    """`open_fn()`, tried again with backoff for as long as it fails because the store
    does (`store_fault`: a Qdrant server not up yet, a full disk under an Edge store); any
    other error is raised."""
    wait = 0.5
    while True:
        try:
            return open_fn()
        except Exception as exc:
            if not store_fault(exc):
                raise
            log.error("store unavailable at start; retrying", error=repr(exc)[:500], wait_s=wait)
            sleep(wait)
            wait = min(max_wait_s, wait * 2)


def store_down(store: MemoryStore, exc: BaseException) -> bool:
    """Whether a write that raised `exc` failed because the store did: the error says so,
    or the store fails its health check."""
    return not store_healthy(store) or store_fault(exc)


def store_healthy(store: MemoryStore) -> bool:
    """True when the store answers a cheap read and, where it can tell (an Edge store: its
    free space), could take a write."""
    try:
        store.count()
        writable = getattr(store, "check_writable", None)
        if writable is not None:
            writable()
        return True
    except Exception:
        return False
