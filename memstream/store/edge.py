"""The Qdrant Edge backend: an in-process shard in one directory (`qdrant-edge-py`).

One writer process per directory (the WAL is locked). Upserts land in an appendable
segment searched by brute force; `optimize()` (blocking) builds the HNSW graph, the int8
quantised copy and the payload indexes' segments, so call it after bulk loads and from
time to time, off the hot path.

The shard's files are memory-mapped: a write on a full disk is a SIGBUS that kills the
process, not an error. So every write first checks that the file system keeps
`min_free_bytes` free and is not read-only, and raises `StoreFull` (an OSError, ENOSPC)
or `StoreReadOnly` (EROFS) otherwise (`memstream.store.faults`); `optimize()` also wants
room for the segments it rebuilds.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any
from uuid import UUID

import numpy as np
import qdrant_edge as qe

from memstream.store.base import (
    DATETIME_FIELDS,
    DENSE,
    KEYWORD_FIELDS,
    SPARSE,
    Caller,
    HybridSearch,
    QuerySpec,
    ScoredPoint,
    Sparse,
    StoredMemory,
    list_filter,
    memory_from_payload,
    memory_to_payload,
    readable_filter,
    search_filter,
)
from memstream.store.faults import DEFAULT_MIN_FREE_BYTES, disk_usage, ensure_writable

UPSERT_BATCH = 1024


def shard_config(dim: int) -> qe.EdgeConfig:
    """Dense fp16 cosine vectors with int8 scalar quantisation (kept in RAM) and HNSW;
    BM25 sparse vectors with the engine's IDF."""
    return qe.EdgeConfig(
        vectors={
            DENSE: qe.EdgeVectorParams(
                size=dim,
                distance=qe.Distance.Cosine,
                datatype=qe.VectorStorageDatatype.Float16,
                quantization_config=qe.ScalarQuantizationConfig(
                    type=qe.ScalarType.Int8, quantile=0.99, memory=qe.Memory.Pinned
                ),
                hnsw_config=qe.HnswIndexConfig(m=16, ef_construct=100, full_scan_threshold=10_000),
            )
        },
        sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
    )


def _index_ops() -> list[tuple[str, Any]]:
    ops: list[tuple[str, Any]] = [("tenant", qe.KeywordIndexParams(is_tenant=True))]
    ops += [(name, qe.PayloadSchemaType.Keyword) for name in KEYWORD_FIELDS if name != "tenant"]
    ops += [(name, qe.PayloadSchemaType.Datetime) for name in DATETIME_FIELDS]
    return ops


# --- filters -----------------------------------------------------------------------------


def _match(key: str, value: str) -> qe.FieldCondition:
    return qe.FieldCondition(key, match=qe.MatchValue(value))


def _any(key: str, values: Iterable[str]) -> qe.FieldCondition:
    return qe.FieldCondition(key, match=qe.MatchAny(sorted(set(values))))


def _has_ids(ids: Iterable[UUID | str]) -> qe.HasIdCondition:
    return qe.HasIdCondition({UUID(str(i)) for i in ids})


def tenant_filter(tenant: str) -> qe.Filter:
    return qe.Filter(must=[_match("tenant", tenant)])


class _EdgeDialect:
    """Filter conditions in qdrant_edge's spelling (see `FilterDialect`)."""

    match = staticmethod(_match)
    any = staticmethod(_any)

    def all(self, conditions: list[Any]) -> qe.Filter:
        return qe.Filter(must=conditions)

    def either(self, conditions: list[Any]) -> qe.Filter:
        return qe.Filter(should=conditions)

    def before(self, key: str, iso: str) -> qe.FieldCondition:
        return qe.FieldCondition(key, range=qe.RangeDateTime(lte=iso))

    def after(self, key: str, iso: str) -> qe.FieldCondition:
        return qe.FieldCondition(key, range=qe.RangeDateTime(gt=iso))

    def empty(self, key: str) -> qe.IsEmptyCondition:
        return qe.IsEmptyCondition(key)


DIALECT = _EdgeDialect()


def _sparse(vector: Sparse) -> qe.SparseVector:
    return qe.SparseVector(list(vector.indices), [float(v) for v in vector.values])


# --- the store ---------------------------------------------------------------------------


class EdgeStore(HybridSearch):
    """`MemoryStore` on one `qdrant_edge.EdgeShard` directory (created on first open)."""

    def __init__(
        self, path: Path | str, *, dim: int = 384, min_free_bytes: int = DEFAULT_MIN_FREE_BYTES
    ) -> None:
        """`min_free_bytes`: free space under `path` below which writes raise `StoreFull`
        (0: never checked)."""
        self.path = Path(path)
        self.dim = dim
        self.min_free_bytes = min_free_bytes
        self.path.mkdir(parents=True, exist_ok=True)
        self.check_writable()  # opening writes too (WAL, payload indexes)
        if (self.path / "edge_config.json").exists():
            # with a config, load checks it against the stored vectors (dim, names)
            self.shard = qe.EdgeShard.load(str(self.path), shard_config(dim))
        else:
            self.shard = qe.EdgeShard.create(str(self.path), shard_config(dim))
        existing = set(self.shard.info().payload_schema)
        for name, schema in _index_ops():
            if name not in existing:
                self._update(qe.UpdateOperation.create_field_index(name, schema))
        self._closed = False

    # --- writes --------------------------------------------------------------------------

    def check_writable(self) -> None:
        """StoreFull while the file system has less than `min_free_bytes` free, StoreReadOnly
        while it is mounted read-only."""
        ensure_writable(self.path, self.min_free_bytes)

    def _update(self, operation: qe.UpdateOperation) -> None:
        self.check_writable()
        self.shard.update(operation)

    def upsert(self, memories: list[StoredMemory], dense: np.ndarray, sparse: list[Sparse]) -> None:
        dense = np.asarray(dense, dtype=np.float32)
        if len(memories) != len(dense) or len(memories) != len(sparse):
            raise ValueError(
                f"{len(memories)} memories, {len(dense)} dense and {len(sparse)} sparse vectors"
            )
        if len(memories) and dense.shape[1] != self.dim:
            raise ValueError(f"expected ({len(memories)}, {self.dim}) vectors, got {dense.shape}")
        for start in range(0, len(memories), UPSERT_BATCH):
            end = start + UPSERT_BATCH
            points = []
            for memory, vector, lexical in zip(
                memories[start:end], dense[start:end].tolist(), sparse[start:end], strict=True
            ):
                vectors: dict[str, Any] = {DENSE: vector}
                if lexical.indices:
                    vectors[SPARSE] = _sparse(lexical)
                points.append(qe.Point(memory.memory_id, vectors, memory_to_payload(memory)))
            self._update(qe.UpdateOperation.upsert_points(points))

    def _tenant_points(self, tenant: str, ids: list[UUID]) -> qe.Filter:
        return qe.Filter(must=[_match("tenant", tenant), _has_ids(ids)])

    def _payload(self, tenant: str, memory_id: UUID) -> dict[str, Any] | None:
        records, _ = self.shard.scroll(
            qe.ScrollRequest(
                limit=1, filter=self._tenant_points(tenant, [memory_id]), with_payload=True
            )
        )
        return records[0].payload if records else None

    def add_provenance(self, tenant: str, original: UUID, entry: dict[str, str]) -> bool:
        """Append `entry` to the original's provenance; idempotent (an entry already there
        is not added twice, so a re-processed duplicate leaves one record)."""
        payload = self._payload(tenant, original)
        if payload is None or payload.get("expires_at"):
            return False  # gone, or going: a duplicate of it is kept on its own
        provenance = list(payload.get("provenance") or [])
        if dict(entry) not in provenance:
            provenance.append(dict(entry))
            self._update(qe.UpdateOperation.set_payload([original], {"provenance": provenance}))
        return True

    def supersede(self, tenant: str, memory_id: UUID, valid_to: datetime) -> bool:
        if self._payload(tenant, memory_id) is None:
            return False
        self._update(
            qe.UpdateOperation.set_payload([memory_id], {"valid_to": valid_to.isoformat()})
        )
        return True

    def delete(self, tenant: str, ids: list[UUID]) -> int:
        if not ids:
            return 0
        selected = self._tenant_points(tenant, ids)
        found = self.shard.count(qe.CountRequest(exact=True, filter=selected))
        if found:
            self._update(qe.UpdateOperation.delete_points_by_filter(selected))
        return found

    def facet_counts(self, caller: Caller, key: str, limit: int = 1000) -> dict[str, int]:
        """Memories per value of a keyword field (`topic`, `tags`) among those `caller` may
        see, exact: values of memories it cannot see are neither counted nor listed."""
        response = self.shard.facet(
            qe.FacetRequest(key, limit=limit, exact=True, filter=readable_filter(DIALECT, caller))
        )
        return {str(hit.value): int(hit.count) for hit in response.hits}

    def delete_subject(self, tenant: str, subject_id: str) -> list[UUID]:
        """Delete the tenant's memories holding a value of the subject; returns their ids."""
        selected = qe.Filter(must=[_match("tenant", tenant), _match("subjects", subject_id)])
        ids: list[UUID] = []
        offset = None
        while True:
            records, offset = self.shard.scroll(
                qe.ScrollRequest(limit=1000, offset=offset, filter=selected, with_payload=False)
            )
            ids += [UUID(str(r.id)) for r in records]
            if offset is None:
                break
        if ids:
            self._update(qe.UpdateOperation.delete_points_by_filter(selected))
        return ids

    # --- reads ---------------------------------------------------------------------------

    def _query_batch(
        self,
        specs: list[QuerySpec],
        caller: Caller,
        dense: list[float] | None,
        sparse: Sparse | None,
        filters: dict[str, Any],
    ) -> list[list[ScoredPoint]]:
        flt = search_filter(DIALECT, caller, **filters)
        idf = qe.SearchParams(idf=qe.IdfParams(corpus=tenant_filter(caller.tenant)))
        requests = [
            qe.QueryRequest(
                limit=spec.limit,
                query=qe.Query.Nearest(
                    dense if spec.using == DENSE else _sparse(sparse), using=spec.using
                ),  # type: ignore[arg-type]
                filter=qe.Filter(must=[_has_ids(spec.ids)]) if spec.ids is not None else flt,
                with_payload=spec.with_payload,
                params=idf if spec.using == SPARSE else None,
            )
            for spec in specs
        ]
        return [
            [(UUID(str(p.id)), p.payload if spec.with_payload else None, p.score) for p in points]
            for spec, points in zip(
                specs, self.shard.query_batch(qe.QueryBatchRequest(requests)), strict=True
            )
        ]

    def get(self, caller: Caller, ids: list[UUID]) -> list[StoredMemory]:
        if not ids:
            return []
        records, _ = self.shard.scroll(
            qe.ScrollRequest(
                limit=len(ids),
                filter=qe.Filter(must=[readable_filter(DIALECT, caller), _has_ids(ids)]),
                with_payload=True,
            )
        )
        found = {record.id: memory_from_payload(record.payload) for record in records}
        return [found[i] for i in dict.fromkeys(UUID(str(i)) for i in ids) if i in found]

    def page(
        self, caller: Caller, limit: int, start: UUID | None = None, **narrow: Any
    ) -> tuple[list[StoredMemory], UUID | None]:
        records, next_start = self.shard.scroll(
            qe.ScrollRequest(
                limit=limit,
                offset=start,
                filter=list_filter(DIALECT, caller, **narrow),
                with_payload=True,
            )
        )
        memories = [memory_from_payload(r.payload) for r in records]
        return memories, (UUID(str(next_start)) if next_start is not None else None)

    def expired_ids(self, now: datetime, limit: int) -> list[tuple[str, UUID]]:
        flt = qe.Filter(must=[DIALECT.before("expires_at", now.isoformat())])
        records, _ = self.shard.scroll(qe.ScrollRequest(limit=limit, filter=flt, with_payload=True))
        return [(r.payload["tenant"], UUID(str(r.id))) for r in records]

    def count(self, tenant: str | None = None) -> int:
        flt = tenant_filter(tenant) if tenant is not None else None
        return self.shard.count(qe.CountRequest(exact=True, filter=flt))

    # --- lifecycle -----------------------------------------------------------------------

    def optimize(self) -> None:
        """Build the indexes; StoreFull unless the disk has room for a copy of the shard
        (the optimizer writes new segments before it drops the old ones)."""
        if self.min_free_bytes > 0:
            ensure_writable(self.path, self.min_free_bytes, need=disk_usage(self.path))
        self.shard.optimize()

    def flush(self) -> None:
        self.shard.flush()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.shard.close()

    def __enter__(self) -> EdgeStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
