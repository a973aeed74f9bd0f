"""The store algorithm both backends share, written once over a small backend interface.

`PointStore` holds the writes, reads, deletes and the hybrid (dense + sparse) search over a
backend's point operations (scroll, count, upsert, set payload, delete by filter, query
batch) and its `SpelledDialect` of filter conditions; a backend (`EdgeStore`,
`QdrantServerStore`) supplies only those calls.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self
from uuid import UUID

import numpy as np

from memstream.store.base import (
    DENSE,
    SPARSE,
    Caller,
    Hit,
    Sparse,
    StoredMemory,
    list_filter,
    memory_from_payload,
    memory_to_payload,
    readable_filter,
    search_filter,
)

# --- filter conditions from a backend's constructors --------------------------------------------


class SpelledDialect:
    """A `FilterDialect` (see `memstream.store.base`) built from one backend's constructors:
    `filter(must=..., should=...)`, `field(key, match=... | range=...)`, `value(v)`,
    `any_of(values)`, `date_range(lte=... | gt=...)`, `is_empty(key)`, `has_ids(ids)`."""

    def __init__(
        self,
        *,
        filter: Callable[..., Any],
        field: Callable[..., Any],
        value: Callable[[str], Any],
        any_of: Callable[[list[str]], Any],
        date_range: Callable[..., Any],
        is_empty: Callable[[str], Any],
        has_ids: Callable[[Iterable[UUID | str]], Any],
    ) -> None:
        self.filter = filter
        self.field = field
        self.value = value
        self.any_of = any_of
        self.date_range = date_range
        self.is_empty = is_empty
        self.has_ids = has_ids

    def match(self, key: str, value: str) -> Any:
        return self.field(key, match=self.value(value))

    def any(self, key: str, values: Iterable[str]) -> Any:
        return self.field(key, match=self.any_of(sorted(set(values))))

    def all(self, conditions: list[Any]) -> Any:
        return self.filter(must=conditions)

    def either(self, conditions: list[Any]) -> Any:
        return self.filter(should=conditions)

    def before(self, key: str, iso: str) -> Any:
        """key <= iso (datetime)."""
        return self.field(key, range=self.date_range(lte=iso))

    def after(self, key: str, iso: str) -> Any:
        """key > iso (datetime)."""
        return self.field(key, range=self.date_range(gt=iso))

    def empty(self, key: str) -> Any:
        return self.is_empty(key)

    def tenant(self, tenant: str) -> Any:
        """The tenant's points."""
        return self.all([self.match("tenant", tenant)])

    def tenant_points(self, tenant: str, ids: list[UUID]) -> Any:
        """The tenant's points among `ids`."""
        return self.all([self.match("tenant", tenant), self.has_ids(ids)])


# --- the store over a backend's point operations -------------------------------------------------

ScoredPoint = tuple[UUID, dict[str, Any] | None, float]
"""(point id, payload or None, score), whatever the backend's own point type."""


@dataclass(frozen=True)
class QuerySpec:
    """One nearest-neighbour query of a search: which vector, how many, and optionally only
    among `ids` (to score a candidate the other query missed)."""

    using: str  # DENSE or SPARSE
    limit: int
    ids: list[UUID] | None = None
    with_payload: bool = True


Record = tuple[UUID, dict[str, Any] | None]
"""(point id, payload or None) of a scrolled point, whatever the backend's record type."""


class PointStore:
    """`MemoryStore` over the point operations below, which each backend implements.

    The dense and the sparse query each return up to `limit` candidates visible to the
    caller; a candidate found by only one is then scored by the other, restricted to those
    ids (a has-id filter this small makes the engine score them exactly), and a sparse
    vector sharing no term with the query scores 0.
    """

    dim: int
    dialect: SpelledDialect
    upsert_batch: int

    # --- the backend interface -----------------------------------------------------------

    def _point(self, point_id: UUID, vectors: dict[str, Any], payload: dict[str, Any]) -> Any:
        """The backend's point for one memory."""
        raise NotImplementedError

    def _sparse(self, vector: Sparse) -> Any:
        """The backend's sparse vector."""
        raise NotImplementedError

    def _write_points(self, points: list[Any]) -> None:
        raise NotImplementedError

    def _set_payload(self, point_id: UUID, payload: dict[str, Any]) -> None:
        raise NotImplementedError

    def _delete_where(self, selected: Any) -> None:
        """Delete the points matching a filter."""
        raise NotImplementedError

    def _count(self, selected: Any) -> int:
        """Exact number of points matching a filter (None: all)."""
        raise NotImplementedError

    def _scroll_page(
        self, selected: Any, limit: int, offset: UUID | None, with_payload: Any
    ) -> tuple[list[Any], Any]:
        """Up to `limit` of the backend's records matching a filter from `offset`, and the
        next offset (None: no more)."""
        raise NotImplementedError

    def _scroll(
        self, selected: Any, limit: int, offset: UUID | None = None, with_payload: Any = True
    ) -> tuple[list[Record], UUID | None]:
        """`_scroll_page` as (id, payload) pairs and the next id."""
        records, next_offset = self._scroll_page(selected, limit, offset, with_payload)
        found = [(UUID(str(r.id)), r.payload if with_payload else None) for r in records]
        return found, (UUID(str(next_offset)) if next_offset is not None else None)

    def _nearest(self, spec: QuerySpec, vector: Any, selected: Any, params: Any) -> Any:
        """The backend's nearest-neighbour request for one spec."""
        raise NotImplementedError

    def _idf_params(self, corpus: Any) -> Any:
        """Search parameters taking the sparse query's IDF over `corpus` (a filter)."""
        raise NotImplementedError

    def _run_queries(self, requests: list[Any]) -> list[list[Any]]:
        """Run a batch of requests; the scored points (id, payload, score) of each."""
        raise NotImplementedError

    # --- writes --------------------------------------------------------------------------

    def upsert(self, memories: list[StoredMemory], dense: np.ndarray, sparse: list[Sparse]) -> None:
        dense = np.asarray(dense, dtype=np.float32)
        if len(memories) != len(dense) or len(memories) != len(sparse):
            raise ValueError(
                f"{len(memories)} memories, {len(dense)} dense and {len(sparse)} sparse vectors"
            )
        if len(memories) and dense.shape[1] != self.dim:
            raise ValueError(f"expected ({len(memories)}, {self.dim}) vectors, got {dense.shape}")
        for start in range(0, len(memories), self.upsert_batch):
            end = start + self.upsert_batch
            points = []
            for memory, vector, lexical in zip(
                memories[start:end], dense[start:end].tolist(), sparse[start:end], strict=True
            ):
                vectors: dict[str, Any] = {DENSE: vector}
                if lexical.indices:
                    vectors[SPARSE] = self._sparse(lexical)
                points.append(self._point(memory.memory_id, vectors, memory_to_payload(memory)))
            self._write_points(points)

    def _payload(self, tenant: str, memory_id: UUID) -> dict[str, Any] | None:
        records, _ = self._scroll(self.dialect.tenant_points(tenant, [memory_id]), limit=1)
        return records[0][1] if records else None

    def add_provenance(self, tenant: str, original: UUID, entry: dict[str, str]) -> bool:
        """Append `entry` to the original's provenance; idempotent (an entry already there
        is not added twice, so a re-processed duplicate leaves one record)."""
        payload = self._payload(tenant, original)
        if payload is None or payload.get("expires_at"):
            return False  # gone, or going: a duplicate of it is kept on its own
        provenance = list(payload.get("provenance") or [])
        if dict(entry) not in provenance:
            provenance.append(dict(entry))
            self._set_payload(original, {"provenance": provenance})
        return True

    def supersede(self, tenant: str, memory_id: UUID, valid_to: datetime) -> bool:
        if self._payload(tenant, memory_id) is None:
            return False
        self._set_payload(memory_id, {"valid_to": valid_to.isoformat()})
        return True

    def delete(self, tenant: str, ids: list[UUID]) -> int:
        if not ids:
            return 0
        selected = self.dialect.tenant_points(tenant, ids)
        found = self._count(selected)
        if found:
            self._delete_where(selected)
        return found

    def delete_subject(self, tenant: str, subject_id: str) -> list[UUID]:
        """Delete the tenant's memories holding a value of the subject; returns their ids."""
        d = self.dialect
        selected = d.all([d.match("tenant", tenant), d.match("subjects", subject_id)])
        ids: list[UUID] = []
        offset = None
        while True:
            records, offset = self._scroll(selected, 1000, offset, with_payload=False)
            ids += [point_id for point_id, _ in records]
            if offset is None:
                break
        if ids:
            self._delete_where(selected)
        return ids

    # --- reads ---------------------------------------------------------------------------

    def search(
        self,
        caller: Caller,
        *,
        dense: np.ndarray | None = None,
        sparse: Sparse | None = None,
        limit: int = 50,
        valid_at: datetime | None = None,
        topics: list[str] | None = None,
        tags: list[str] | None = None,
        agents: list[str] | None = None,
    ) -> list[Hit]:
        if limit <= 0:
            return []
        dense_query = self._dense_query(dense)
        sparse_query = sparse if sparse is not None and sparse.indices else None
        filters = {"valid_at": valid_at, "topics": topics, "tags": tags, "agents": agents}
        specs = [QuerySpec(DENSE, limit)] if dense_query is not None else []
        specs += [QuerySpec(SPARSE, limit)] if sparse_query is not None else []
        if not specs:
            return []
        hits: dict[UUID, Hit] = {}
        for spec, points in zip(
            specs, self._query_batch(specs, caller, dense_query, sparse_query, filters), strict=True
        ):
            for point_id, payload, score in points:
                hit = hits.setdefault(point_id, Hit(memory_from_payload(payload or {})))
                if spec.using == DENSE:
                    hit.dense_score = score
                else:
                    hit.sparse_score = score
        follow_up = []
        if dense_query is not None:
            missing = [i for i, h in hits.items() if h.dense_score is None]
            follow_up += [QuerySpec(DENSE, len(missing), missing, False)] if missing else []
        if sparse_query is not None:
            missing = [i for i, h in hits.items() if h.sparse_score is None]
            follow_up += [QuerySpec(SPARSE, len(missing), missing, False)] if missing else []
        if follow_up:
            for spec, points in zip(
                follow_up,
                self._query_batch(follow_up, caller, dense_query, sparse_query, filters),
                strict=True,
            ):
                for point_id, _, score in points:
                    if spec.using == DENSE:
                        hits[point_id].dense_score = score
                    else:
                        hits[point_id].sparse_score = score
            for hit in hits.values():
                if sparse_query is not None and hit.sparse_score is None:
                    hit.sparse_score = 0.0  # no shared term: BM25 scores it 0
        return list(hits.values())

    def _dense_query(self, dense: np.ndarray | None) -> list[float] | None:
        if dense is None:
            return None
        vector = np.asarray(dense, dtype=np.float32).reshape(-1)
        if vector.shape[0] != self.dim:
            raise ValueError(f"expected a {self.dim}-dim query vector, got {vector.shape[0]}")
        return vector.tolist()

    def _query_batch(
        self,
        specs: list[QuerySpec],
        caller: Caller,
        dense: list[float] | None,
        sparse: Sparse | None,
        filters: dict[str, Any],
    ) -> list[list[ScoredPoint]]:
        d = self.dialect
        flt = search_filter(d, caller, **filters)
        idf = self._idf_params(d.tenant(caller.tenant))
        requests = [
            self._nearest(
                spec,
                dense if spec.using == DENSE else self._sparse(sparse),  # type: ignore[arg-type]
                d.all([d.has_ids(spec.ids)]) if spec.ids is not None else flt,
                idf if spec.using == SPARSE else None,
            )
            for spec in specs
        ]
        return [
            [(UUID(str(p.id)), p.payload if spec.with_payload else None, p.score) for p in points]
            for spec, points in zip(specs, self._run_queries(requests), strict=True)
        ]

    def get(self, caller: Caller, ids: list[UUID]) -> list[StoredMemory]:
        if not ids:
            return []
        d = self.dialect
        records, _ = self._scroll(d.all([readable_filter(d, caller), d.has_ids(ids)]), len(ids))
        found = {point_id: memory_from_payload(payload or {}) for point_id, payload in records}
        return [found[i] for i in dict.fromkeys(UUID(str(i)) for i in ids) if i in found]

    def page(
        self, caller: Caller, limit: int, start: UUID | None = None, **narrow: Any
    ) -> tuple[list[StoredMemory], UUID | None]:
        records, next_start = self._scroll(
            list_filter(self.dialect, caller, **narrow), limit, start
        )
        return [memory_from_payload(payload or {}) for _, payload in records], next_start

    def expired_ids(self, now: datetime, limit: int) -> list[tuple[str, UUID]]:
        d = self.dialect
        flt = d.all([d.before("expires_at", now.isoformat())])
        records, _ = self._scroll(flt, limit, with_payload=["tenant"])
        return [((payload or {})["tenant"], point_id) for point_id, payload in records]

    def count(self, tenant: str | None = None) -> int:
        return self._count(self.dialect.tenant(tenant) if tenant is not None else None)

    # --- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
