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
from pathlib import Path
from typing import Any
from uuid import UUID

import qdrant_edge as qe

from memstream.store.base import DENSE, SPARSE, Caller, Sparse, payload_indexes, readable_filter
from memstream.store.faults import DEFAULT_MIN_FREE_BYTES, disk_usage, ensure_writable
from memstream.store.points import PointStore, QuerySpec, SpelledDialect

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


# --- filters -----------------------------------------------------------------------------


def _has_ids(ids: Iterable[UUID | str]) -> qe.HasIdCondition:
    return qe.HasIdCondition({UUID(str(i)) for i in ids})


DIALECT = SpelledDialect(
    filter=qe.Filter,
    field=qe.FieldCondition,
    value=qe.MatchValue,
    any_of=qe.MatchAny,
    date_range=qe.RangeDateTime,
    is_empty=qe.IsEmptyCondition,
    has_ids=_has_ids,
)
"""Filter conditions in qdrant_edge's spelling (see `FilterDialect`)."""


def tenant_filter(tenant: str) -> qe.Filter:
    return DIALECT.tenant(tenant)


# --- the store ---------------------------------------------------------------------------


class EdgeStore(PointStore):
    """`MemoryStore` on one `qdrant_edge.EdgeShard` directory (created on first open)."""

    dialect = DIALECT
    upsert_batch = UPSERT_BATCH

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
        for name, schema in payload_indexes(
            qe.KeywordIndexParams(is_tenant=True),
            qe.PayloadSchemaType.Keyword,
            qe.PayloadSchemaType.Datetime,
        ):
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

    def _point(self, point_id: UUID, vectors: dict[str, Any], payload: dict[str, Any]) -> qe.Point:
        return qe.Point(point_id, vectors, payload)

    def _sparse(self, vector: Sparse) -> qe.SparseVector:
        return qe.SparseVector(list(vector.indices), [float(v) for v in vector.values])

    def _write_points(self, points: list[qe.Point]) -> None:
        self._update(qe.UpdateOperation.upsert_points(points))

    def _set_payload(self, point_id: UUID, payload: dict[str, Any]) -> None:
        self._update(qe.UpdateOperation.set_payload([point_id], payload))

    def _delete_where(self, selected: qe.Filter) -> None:
        self._update(qe.UpdateOperation.delete_points_by_filter(selected))

    def facet_counts(self, caller: Caller, key: str, limit: int = 1000) -> dict[str, int]:
        """Memories per value of a keyword field (`topic`, `tags`) among those `caller` may
        see, exact: values of memories it cannot see are neither counted nor listed."""
        response = self.shard.facet(
            qe.FacetRequest(key, limit=limit, exact=True, filter=readable_filter(DIALECT, caller))
        )
        return {str(hit.value): int(hit.count) for hit in response.hits}

    # --- reads ---------------------------------------------------------------------------

    def _count(self, selected: qe.Filter | None) -> int:
        return self.shard.count(qe.CountRequest(exact=True, filter=selected))

    def _scroll_page(
        self, selected: qe.Filter, limit: int, offset: UUID | None, with_payload: Any
    ) -> tuple[list[Any], Any]:
        return self.shard.scroll(
            qe.ScrollRequest(
                limit=limit, offset=offset, filter=selected, with_payload=bool(with_payload)
            )
        )

    def _nearest(
        self, spec: QuerySpec, vector: Any, selected: qe.Filter, params: Any
    ) -> qe.QueryRequest:
        return qe.QueryRequest(
            limit=spec.limit,
            query=qe.Query.Nearest(vector, using=spec.using),
            filter=selected,
            with_payload=spec.with_payload,
            params=params,
        )

    def _idf_params(self, corpus: qe.Filter) -> qe.SearchParams:
        return qe.SearchParams(idf=qe.IdfParams(corpus=corpus))

    def _run_queries(self, requests: list[qe.QueryRequest]) -> list[list[Any]]:
        return self.shard.query_batch(qe.QueryBatchRequest(requests))

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
