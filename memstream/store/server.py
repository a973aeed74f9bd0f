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
from typing import Any
from uuid import UUID

from qdrant_client import QdrantClient, models

from memstream.store.base import DENSE, SPARSE, Caller, Sparse, payload_indexes, readable_filter
from memstream.store.points import PointStore, QuerySpec, SpelledDialect

UPSERT_BATCH = 512


# --- filters (the rules are in memstream.store.base) -------------------------------------------------


def _field(key: str, **condition: Any) -> models.FieldCondition:
    return models.FieldCondition(key=key, **condition)


def _has_ids(ids: Iterable[UUID | str]) -> models.HasIdCondition:
    return models.HasIdCondition(has_id=sorted({str(i) for i in ids}))


DIALECT = SpelledDialect(
    filter=models.Filter,
    field=_field,
    value=lambda value: models.MatchValue(value=value),
    any_of=lambda values: models.MatchAny(any=values),
    date_range=models.DatetimeRange,
    is_empty=lambda key: models.IsEmptyCondition(is_empty=models.PayloadField(key=key)),
    has_ids=_has_ids,
)
"""Filter conditions in qdrant-client's spelling (see `FilterDialect`)."""


def tenant_filter(tenant: str) -> models.Filter:
    return DIALECT.tenant(tenant)


# --- the store ---------------------------------------------------------------------------


class QdrantServerStore(PointStore):
    """`MemoryStore` on a Qdrant server collection (or alias) through `qdrant-client`.

    `collection` names an alias (created with `<collection>_v1` behind it when neither
    exists) or a concrete collection (e.g. `memories_v2` during a replay)."""

    dialect = DIALECT
    upsert_batch = UPSERT_BATCH

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
        indexes = payload_indexes(
            models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True),
            models.PayloadSchemaType.KEYWORD,
            models.PayloadSchemaType.DATETIME,
        )
        with warnings.catch_warnings():  # local mode ignores them, and says so
            warnings.filterwarnings("ignore", message="Payload indexes have no effect")
            for field_name, schema in indexes:
                self.client.create_payload_index(name, field_name=field_name, field_schema=schema)

    # --- writes --------------------------------------------------------------------------

    def _point(
        self, point_id: UUID, vectors: dict[str, Any], payload: dict[str, Any]
    ) -> models.PointStruct:
        return models.PointStruct(id=str(point_id), vector=vectors, payload=payload)

    def _sparse(self, vector: Sparse) -> models.SparseVector:
        return models.SparseVector(
            indices=list(vector.indices), values=[float(v) for v in vector.values]
        )

    def _write_points(self, points: list[models.PointStruct]) -> None:
        self.client.upsert(self.collection, points=points, wait=True)

    def _set_payload(self, point_id: UUID, payload: dict[str, Any]) -> None:
        self.client.set_payload(self.collection, payload=payload, points=[str(point_id)], wait=True)

    def _delete_where(self, selected: models.Filter) -> None:
        self.client.delete(
            self.collection, points_selector=models.FilterSelector(filter=selected), wait=True
        )

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

    # --- reads ---------------------------------------------------------------------------

    def _count(self, selected: models.Filter | None) -> int:
        return self.client.count(self.collection, count_filter=selected, exact=True).count

    def _scroll_page(
        self,
        selected: models.Filter,
        limit: int,
        offset: UUID | None,
        with_payload: Any,
    ) -> tuple[list[Any], Any]:
        return self.client.scroll(
            self.collection,
            scroll_filter=selected,
            limit=limit,
            offset=str(offset) if offset is not None else None,
            with_payload=with_payload,
        )

    def _nearest(
        self, spec: QuerySpec, vector: Any, selected: models.Filter, params: Any
    ) -> models.QueryRequest:
        return models.QueryRequest(
            query=vector,
            using=spec.using,
            filter=selected,
            limit=spec.limit,
            with_payload=spec.with_payload,
            params=params,
        )

    def _idf_params(self, corpus: models.Filter) -> models.SearchParams:
        return models.SearchParams(idf=models.IdfCorpusParams(corpus=corpus))

    def _run_queries(self, requests: list[models.QueryRequest]) -> list[list[Any]]:
        responses = self.client.query_batch_points(self.collection, requests=requests)
        return [response.points for response in responses]

    # --- lifecycle -----------------------------------------------------------------------

    def optimize(self) -> None:
        """Nothing to do: the server builds indexes in the background."""

    def close(self) -> None:
        if self.close_client:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.client.close()
