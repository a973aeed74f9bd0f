"""The Qdrant server backend (`qdrant-client`): same payload, same filters as the Edge one.

Collections are versioned behind an alias: data lives in `<name>_v<N>` and `<name>` is an
alias for the live one, so a replay fills `<name>_v<N+1>` (`create_version`, then
`at(version)` to write it) while `<name>` serves, and `swap` moves the alias atomically.
A store opened on the alias follows the swap at once (the server resolves it per request).

`QdrantClient(":memory:")` or `path=` (local mode) runs the same code path in pure Python:
for tests and small data only.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from datetime import datetime
from types import TracebackType
from typing import Any
from uuid import UUID

import numpy as np
from qdrant_client import QdrantClient, models

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

UPSERT_BATCH = 512


# --- filters (the rules are in memstream.store.base) -------------------------------------------------


def _match(key: str, value: str) -> models.FieldCondition:
    return models.FieldCondition(key=key, match=models.MatchValue(value=value))


def _any(key: str, values: Iterable[str]) -> models.FieldCondition:
    return models.FieldCondition(key=key, match=models.MatchAny(any=sorted(set(values))))


def _has_ids(ids: Iterable[UUID | str]) -> models.HasIdCondition:
    return models.HasIdCondition(has_id=sorted({str(i) for i in ids}))


def tenant_filter(tenant: str) -> models.Filter:
    return models.Filter(must=[_match("tenant", tenant)])


class _ServerDialect:
    """Filter conditions in qdrant-client's spelling (see `FilterDialect`)."""

    match = staticmethod(_match)
    any = staticmethod(_any)

    def all(self, conditions: list[Any]) -> models.Filter:
        return models.Filter(must=conditions)

    def either(self, conditions: list[Any]) -> models.Filter:
        return models.Filter(should=conditions)

    def before(self, key: str, iso: str) -> models.FieldCondition:
        return models.FieldCondition(key=key, range=models.DatetimeRange(lte=iso))

    def after(self, key: str, iso: str) -> models.FieldCondition:
        return models.FieldCondition(key=key, range=models.DatetimeRange(gt=iso))

    def empty(self, key: str) -> models.IsEmptyCondition:
        return models.IsEmptyCondition(is_empty=models.PayloadField(key=key))


DIALECT = _ServerDialect()


def _sparse(vector: Sparse) -> models.SparseVector:
    return models.SparseVector(
        indices=list(vector.indices), values=[float(v) for v in vector.values]
    )


# --- the store ---------------------------------------------------------------------------


class QdrantServerStore(HybridSearch):
    """`MemoryStore` on a Qdrant server collection (or alias) through `qdrant-client`.

    `collection` names an alias (created with `<collection>_v1` behind it when neither
    exists) or a concrete collection (e.g. `memories_v2` during a replay)."""

    def __init__(
        self,
        client: QdrantClient,
        collection: str = "memories",
        *,
        dim: int = 384,
        close_client: bool = False,
        shards: int = 1,
        replicas: int = 1,
    ) -> None:
        """`shards` and `replicas`: how a new collection is spread over a Qdrant cluster
        (`shard_number`, `replication_factor`; a single server or local mode ignores them)."""
        self.client = client
        self.collection = collection
        self.dim = dim
        self.close_client = close_client
        self.shards = shards
        self.replicas = replicas
        if collection not in self._aliases() and not client.collection_exists(collection):
            version = self.create_version()
            self.swap(version)

    # --- versions --------------------------------------------------------------------------

    def _aliases(self) -> dict[str, str]:
        return {
            alias.alias_name: alias.collection_name for alias in self.client.get_aliases().aliases
        }

    def version_name(self, version: int) -> str:
        return f"{self.collection}_v{version}"

    def versions(self) -> list[int]:
        pattern = re.compile(rf"^{re.escape(self.collection)}_v(\d+)$")
        found = []
        for description in self.client.get_collections().collections:
            match = pattern.match(description.name)
            if match:
                found.append(int(match.group(1)))
        return sorted(found)

    def live_version(self) -> int | None:
        target = self._aliases().get(self.collection)
        if target is None:
            return None
        match = re.fullmatch(rf"{re.escape(self.collection)}_v(\d+)", target)
        return int(match.group(1)) if match else None

    def create_version(self) -> int:
        """Create `<collection>_v<N+1>` (empty, with the schema and indexes); returns N+1."""
        versions = self.versions()
        version = (versions[-1] if versions else 0) + 1
        self._create_collection(self.version_name(version))
        return version

    def swap(self, version: int) -> None:
        """Point the alias at `<collection>_v<version>`, atomically (one alias request)."""
        operations: list[Any] = []
        if self.collection in self._aliases():
            operations.append(
                models.DeleteAliasOperation(
                    delete_alias=models.DeleteAlias(alias_name=self.collection)
                )
            )
        operations.append(
            models.CreateAliasOperation(
                create_alias=models.CreateAlias(
                    collection_name=self.version_name(version), alias_name=self.collection
                )
            )
        )
        self.client.update_collection_aliases(change_aliases_operations=operations)

    def at(self, version: int) -> QdrantServerStore:
        """A store writing to one version directly (shares this client)."""
        return QdrantServerStore(self.client, self.version_name(version), dim=self.dim)

    def _create_collection(self, name: str) -> None:
        self.client.create_collection(
            collection_name=name,
            shard_number=self.shards,
            replication_factor=self.replicas,
            # a write is acknowledged once a majority of the replicas applied it
            write_consistency_factor=max(1, self.replicas // 2 + 1),
            vectors_config={
                DENSE: models.VectorParams(
                    size=self.dim,
                    distance=models.Distance.COSINE,
                    datatype=models.Datatype.FLOAT16,
                    hnsw_config=models.HnswConfigDiff(m=16, ef_construct=100),
                    quantization_config=models.ScalarQuantization(
                        scalar=models.ScalarQuantizationConfig(
                            type=models.ScalarType.INT8, quantile=0.99, always_ram=True
                        )
                    ),
                )
            },
            sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
        )
        indexes: list[tuple[str, Any]] = [
            (
                "tenant",
                models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True),
            )
        ]
        indexes += [(f, models.PayloadSchemaType.KEYWORD) for f in KEYWORD_FIELDS if f != "tenant"]
        indexes += [(f, models.PayloadSchemaType.DATETIME) for f in DATETIME_FIELDS]
        with warnings.catch_warnings():  # local mode ignores them, and says so
            warnings.filterwarnings("ignore", message="Payload indexes have no effect")
            for field_name, schema in indexes:
                self.client.create_payload_index(name, field_name=field_name, field_schema=schema)

    # --- writes --------------------------------------------------------------------------

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
                points.append(
                    models.PointStruct(
                        id=str(memory.memory_id), vector=vectors, payload=memory_to_payload(memory)
                    )
                )
            self.client.upsert(self.collection, points=points, wait=True)

    def _tenant_points(self, tenant: str, ids: list[UUID]) -> models.Filter:
        return models.Filter(must=[_match("tenant", tenant), _has_ids(ids)])

    def _payload(self, tenant: str, memory_id: UUID) -> dict[str, Any] | None:
        records, _ = self.client.scroll(
            self.collection,
            scroll_filter=self._tenant_points(tenant, [memory_id]),
            limit=1,
            with_payload=True,
        )
        return records[0].payload if records else None

    def add_provenance(self, tenant: str, original: UUID, entry: dict[str, str]) -> bool:
        """Append `entry` to the original's provenance; idempotent (see EdgeStore)."""
        payload = self._payload(tenant, original)
        if payload is None or payload.get("expires_at"):
            return False  # gone, or going: a duplicate of it is kept on its own
        provenance = list(payload.get("provenance") or [])
        if dict(entry) not in provenance:
            provenance.append(dict(entry))
            self.client.set_payload(
                self.collection,
                payload={"provenance": provenance},
                points=[str(original)],
                wait=True,
            )
        return True

    def supersede(self, tenant: str, memory_id: UUID, valid_to: datetime) -> bool:
        if self._payload(tenant, memory_id) is None:
            return False
        self.client.set_payload(
            self.collection,
            payload={"valid_to": valid_to.isoformat()},
            points=[str(memory_id)],
            wait=True,
        )
        return True

    def delete(self, tenant: str, ids: list[UUID]) -> int:
        if not ids:
            return 0
        selected = self._tenant_points(tenant, ids)
        found = self.client.count(self.collection, count_filter=selected, exact=True).count
        if found:
            self.client.delete(
                self.collection, points_selector=models.FilterSelector(filter=selected), wait=True
            )
        return found

    def facet_counts(self, caller: Caller, key: str, limit: int = 1000) -> dict[str, int]:
        """Memories per value of a keyword field among those `caller` may see (counted over
        a scroll, which works in local mode too)."""
        counts: dict[str, int] = {}
        offset = None
        while True:
            records, offset = self.client.scroll(
                self.collection,
                scroll_filter=readable_filter(DIALECT, caller),
                limit=1000,
                offset=offset,
                with_payload=[key],
            )
            for record in records:
                value = (record.payload or {}).get(key)
                for item in value if isinstance(value, list) else [value]:
                    if item is not None:
                        counts[str(item)] = counts.get(str(item), 0) + 1
            if offset is None:
                break
        return dict(sorted(counts.items(), key=lambda kv: -kv[1])[:limit])

    def delete_subject(self, tenant: str, subject_id: str) -> list[UUID]:
        """Delete the tenant's memories holding a value of the subject; returns their ids."""
        selected = models.Filter(must=[_match("tenant", tenant), _match("subjects", subject_id)])
        ids: list[UUID] = []
        offset = None
        while True:
            records, offset = self.client.scroll(
                self.collection, scroll_filter=selected, limit=1000, offset=offset
            )
            ids += [UUID(str(r.id)) for r in records]
            if offset is None:
                break
        if ids:
            self.client.delete(
                self.collection, points_selector=models.FilterSelector(filter=selected), wait=True
            )
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
        idf = models.SearchParams(idf=models.IdfCorpusParams(corpus=tenant_filter(caller.tenant)))
        requests = [
            models.QueryRequest(
                query=dense if spec.using == DENSE else _sparse(sparse),  # type: ignore[arg-type]
                using=spec.using,
                filter=models.Filter(must=[_has_ids(spec.ids)]) if spec.ids is not None else flt,
                limit=spec.limit,
                with_payload=spec.with_payload,
                params=idf if spec.using == SPARSE else None,
            )
            for spec in specs
        ]
        responses = self.client.query_batch_points(self.collection, requests=requests)
        return [
            [
                (UUID(str(p.id)), p.payload if spec.with_payload else None, p.score)
                for p in response.points
            ]
            for spec, response in zip(specs, responses, strict=True)
        ]

    def get(self, caller: Caller, ids: list[UUID]) -> list[StoredMemory]:
        if not ids:
            return []
        records, _ = self.client.scroll(
            self.collection,
            scroll_filter=models.Filter(must=[readable_filter(DIALECT, caller), _has_ids(ids)]),
            limit=len(ids),
            with_payload=True,
        )
        found = {UUID(str(r.id)): memory_from_payload(r.payload or {}) for r in records}
        return [found[i] for i in dict.fromkeys(UUID(str(i)) for i in ids) if i in found]

    def page(
        self, caller: Caller, limit: int, start: UUID | None = None, **narrow: Any
    ) -> tuple[list[StoredMemory], UUID | None]:
        records, next_start = self.client.scroll(
            self.collection,
            scroll_filter=list_filter(DIALECT, caller, **narrow),
            limit=limit,
            offset=str(start) if start is not None else None,
            with_payload=True,
        )
        memories = [memory_from_payload(r.payload or {}) for r in records]
        return memories, (UUID(str(next_start)) if next_start is not None else None)

    def expired_ids(self, now: datetime, limit: int) -> list[tuple[str, UUID]]:
        flt = models.Filter(must=[DIALECT.before("expires_at", now.isoformat())])
        records, _ = self.client.scroll(
            self.collection, scroll_filter=flt, limit=limit, with_payload=["tenant"]
        )
        return [((r.payload or {})["tenant"], UUID(str(r.id))) for r in records]

    def count(self, tenant: str | None = None) -> int:
        flt = tenant_filter(tenant) if tenant is not None else None
        return self.client.count(self.collection, count_filter=flt, exact=True).count

    # --- lifecycle -----------------------------------------------------------------------

    def optimize(self) -> None:
        """Nothing to do: the server builds indexes in the background."""

    def close(self) -> None:
        if self.close_client:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.client.close()

    def __enter__(self) -> QdrantServerStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
