"""The services inside a worker process: subscriptions, matching, the HTTP API server.

In the embedded stack the worker owns the Qdrant Edge shard (one writer per directory), so
search, matching and the API live in the same process. Queries (search, reads) run on their
own thread with their own small ONNX session, so they never queue behind ingest; matching and
changes to the subscription index run on the model/store thread. With a Qdrant server the same code runs in any number
of processes.
"""

from __future__ import annotations

import asyncio
import base64
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import faust

from memstream.models.embedding import Embedder
from memstream.retrieval import RankingWeights, Retriever
from memstream.retrieval.ranking import ScoredMemory
from memstream.schemas.answers import ModelVersion
from memstream.schemas.events import Event, Indexed
from memstream.services.embedded import EmbeddedServer, attach_api, attach_health
from memstream.services.matcher import SubscriptionIndex
from memstream.services.worker_pipeline import PipelineHooks
from memstream.store.base import Caller, MemoryStore, StoredMemory
from memstream.store.faults import StoreStatus
from memstream.store.token_vectors import TokenVectorStore
from memstream.streams.privacy_stage import PrivacyStage

__all__ = ["EmbeddedServer", "WorkerServices", "attach_api", "attach_health"]


class WorkerServices(PipelineHooks):
    """The `Backend` of the HTTP API, backed by this worker's store, models and producer."""

    def __init__(
        self,
        app: faust.App,
        bootstrap: str,
        store: MemoryStore,
        embedder: Embedder,
        executor: ThreadPoolExecutor,
        weights: RankingWeights,
        privacy: PrivacyStage | None = None,
        *,
        model_executor: ThreadPoolExecutor | None = None,
        kept_tokens: TokenVectorStore | None = None,
        store_status: StoreStatus | None = None,
    ) -> None:
        """`executor` runs queries (search, reads); `model_executor` (default: the same)
        the changes to the subscription index, so they never race the pipeline's matching,
        which runs there. `kept_tokens`: token vectors kept at ingest, for the rerank.
        `store_status`: whether the store takes writes, as the sink finds it (/healthz)."""
        self.app = app
        self.bootstrap = bootstrap
        self.store = store
        self.embedder = embedder
        self.executor = executor
        self.model_executor = model_executor or executor
        self.retriever = Retriever(
            store,
            embedder,
            weights,
            kept_tokens=kept_tokens,
            reputation=self._reputation_of,
            excluded_author=self._quarantined,
        )
        self.privacy = privacy
        self.budget: Any = None  # a memstream.privacy.dp.PrivacyBudget, set by attach_api
        self.results: Any = None  # a memstream.retrieval.result_cache.ResultCache, same
        self.reputation: Any = None  # the worker's memstream.models.reputation.ReputationBook
        self.ledger: Any = None  # its memstream.models.ledger.Ledger
        self.ledger_tenants: frozenset[str] = frozenset()
        self.taxonomies: Any = None  # the data dir's memstream.models.taxonomy.TaxonomyBook
        self.team_pool: Any = None  # the sink's memstream.streams.team_pool.TeamPoolStage
        self.distiller: Any = None  # the sink's memstream.streams.distill.DistillationStage
        self.students: dict[tuple[str, str], Any] = {}  # (tenant, model) -> its TeamSpec
        self.models_dir: Path | None = None  # where the students' registries are
        self.subscriptions = SubscriptionIndex(dim=embedder.dim)
        self._owners: dict[str, tuple[str, str]] = {}
        self._subscription_views: dict[str, dict[str, Any]] = {}
        self.counts = {"indexed": 0, "dead_letter": 0, "deliveries": 0}
        self.dead_by_tenant: dict[str, int] = {}
        self.store_status = store_status or StoreStatus(metrics=False)

    def _quarantined(self, tenant: str, agent_id: str) -> bool:
        return self.reputation is not None and self.reputation.quarantined(tenant, agent_id)

    def _reputation_of(self, tenant: str, agent_id: str) -> float:
        return 0.5 if self.reputation is None else self.reputation.get(tenant, agent_id)

    # --- Backend --------------------------------------------------------------------------
    async def publish(self, topic: str, event: Event, key: str) -> None:
        future = await self.app.producer.send(
            topic, key.encode(), event.to_json(), None, None, None
        )
        await future  # acks=all: the event is on the log before we answer 202

    async def search(
        self,
        caller: Caller,
        query: str,
        k: int,
        topics: list[str] | None = None,
        tags: list[str] | None = None,
        as_of: datetime | None = None,
    ) -> list[ScoredMemory]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.executor,
            lambda: self.retriever.search(caller, query, k, topics=topics, tags=tags, as_of=as_of),
        )

    async def page(
        self, caller: Caller, limit: int, start: UUID | None, **narrow: Any
    ) -> tuple[list[StoredMemory], UUID | None]:
        """A page of the memories `caller` may read (see `MemoryStore.page`)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.executor, lambda: self.store.page(caller, limit, start, **narrow)
        )

    async def history(self, caller: Caller, memory_id: UUID) -> list[StoredMemory]:
        """The supersession chain through `memory_id` that `caller` may read, oldest first:
        the memories it replaced (transitively) and those that replaced it."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self._history, caller, memory_id)

    def _history(self, caller: Caller, memory_id: UUID, depth: int = 64) -> list[StoredMemory]:
        found = self.store.get(caller, [memory_id])
        if not found:
            return []
        chain = {found[0].memory_id: found[0]}
        frontier = [found[0]]
        for _ in range(depth):  # back: what each one replaced
            older = [UUID(i) for m in frontier for i in m.supersedes if UUID(i) not in chain]
            frontier = self.store.get(caller, older) if older else []
            if not frontier:
                break
            chain.update((m.memory_id, m) for m in frontier)
        frontier = [found[0]]
        for _ in range(depth):  # forward: what replaced each one
            newer = []
            for memory in frontier:
                page, _ = self.store.page(caller, 64, None, supersedes=str(memory.memory_id))
                newer += [m for m in page if m.memory_id not in chain]
            if not newer:
                break
            chain.update((m.memory_id, m) for m in newer)
            frontier = newer
        return sorted(chain.values(), key=lambda m: (m.valid_from or m.ts, str(m.memory_id)))

    async def topics(self, caller: Caller) -> dict[str, int]:
        """Memories per topic among those `caller` may read, exact (its own view)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.store.facet_counts, caller, "topic")

    async def delete(self, tenant: str, agent_id: str, ids: list[UUID], reason: str) -> UUID:
        """Publish a deletion of these memories of `tenant` (the caller checked the right
        to delete them); the worker applies it and records tombstones, so a replay agrees."""
        from memstream.schemas.events import Deletion, DeletionPayload
        from memstream.schemas.topics import ERASURES

        event = Deletion(
            tenant=tenant,
            agent_id=agent_id,
            scope="private",
            payload=DeletionPayload(memory_ids=ids, reason=reason),  # type: ignore[arg-type]
        )
        await self.publish(ERASURES.name, event, str(ids[0]))
        return event.event_id

    async def dead_letter_row(
        self, caller: Caller, source: str, line: int, data: str, reason: str, detail: str
    ) -> None:
        """Dead-letter one import row of `caller`'s tenant, naming its line."""
        from memstream.schemas.topics import DEAD_LETTER
        from memstream.streams.validate import dead_letter

        letter = dead_letter(
            reason=reason,
            detail=f"line {line}: {detail}",
            stage="import",
            topic=f"import:{source}"[:256],
            partition=0,
            offset=line,
            key=caller.agent_id.encode(),
            value=data.encode(),
        )
        # the row's own `tenant` field (if any) says nothing: the importer's token does
        letter = letter.model_copy(update={"tenant": caller.tenant, "parent_ids": []})
        await self.publish(DEAD_LETTER.name, letter, caller.agent_id)
        self.note_dead_letter(caller.tenant)

    def subscriptions_of(self, caller: Caller) -> list[dict[str, Any]]:
        """The active subscriptions `caller` made, as the API lists them."""
        return [
            dict(view)
            for sub_id, view in self._subscription_views.items()
            if self._owners.get(sub_id) == (caller.tenant, caller.agent_id)
        ]

    async def stats(self, caller: Caller) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        count = await loop.run_in_executor(self.executor, self.store.count, caller.tenant)
        return {
            "tenant": caller.tenant,
            "memories_indexed": count,
            "dead_letter": self.dead_by_tenant.get(caller.tenant, 0),
            "subscriptions": sum(1 for t, _ in self._owners.values() if t == caller.tenant),
            "worker": dict(self.counts),
        }

    async def private_counts(self, caller: Caller, field: str, epsilon: float) -> dict[str, int]:
        """Memories per topic or tag among those the caller may see, with epsilon-DP noise,
        paid from the caller's share of its tenant's privacy budget (BudgetExceeded when
        spent). A memory has at most one topic but up to 32 tags, so tag counts need 32
        times the noise for the same epsilon."""
        from memstream.privacy.dp import dp_counts
        from memstream.schemas.events import MemoryPayload

        loop = asyncio.get_running_loop()
        counts = await loop.run_in_executor(self.executor, self.store.facet_counts, caller, field)
        sensitivity = (
            1 if field == "topic" else MemoryPayload.model_fields["tags"].metadata[0].max_length
        )
        return dp_counts(
            caller.tenant,
            counts,
            epsilon,
            self.budget,
            sensitivity=sensitivity,
            agent_id=caller.agent_id,
        )

    async def cache_publish(
        self, caller: Caller, task: str, result: str, verification: str, scope: str
    ) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.executor,
            lambda: self.results.publish(caller, task, result, verification, scope),  # type: ignore[arg-type]
        )

    async def taxonomy(self, caller: Caller, taxonomy: dict[str, list[str]] | None) -> Any:
        """The caller's tenant's taxonomy; with `taxonomy`, replace it first."""
        loop = asyncio.get_running_loop()

        def run() -> dict[str, list[str]]:
            if taxonomy is not None:
                self.taxonomies.set(caller.tenant, taxonomy)
            return self.taxonomies.taxonomy(caller.tenant)

        return await loop.run_in_executor(self.executor, run)

    def pooled_state(self, caller: Caller, team: str) -> Any:
        """The team's latest pooled state in the caller's tenant (None: none yet here)."""
        stage = self.team_pool
        return None if stage is None else stage.latest.get((caller.tenant, team))

    def student(
        self, caller: Caller, name: str, version: int | None, include_model: bool
    ) -> ModelVersion | None:
        """A student policy of the caller's tenant: None where it has no such model (or no
        version yet); PermissionError unless the caller is in the model's team (or holds
        the admin scope)."""
        spec = self.students.get((caller.tenant, name))
        if spec is None or self.models_dir is None:
            return None
        if spec.team not in caller.teams and "admin" not in caller.scopes:
            raise PermissionError(f"agent {caller.agent_id!r} is not in team {spec.team!r}")
        from memstream.streams.distill import student_registry

        registry = student_registry(self.models_dir, spec.tenant, spec.model)
        versions = registry.versions()
        chosen = registry.current_version() if version is None else version
        if chosen is None or chosen not in versions:
            return None
        meta = registry.metadata(chosen)
        onnx_bytes = registry.load(chosen) if include_model else None
        return ModelVersion(
            name=name,
            version=chosen,
            versions=versions,
            team=spec.team,
            observation_dim=meta["observation_dim"],
            actions=meta["actions"],
            weights_sha256=meta["weights_sha256"],
            published_at=meta["published_at"],
            lineage=meta["lineage"],
            onnx_b64=base64.b64encode(onnx_bytes).decode() if onnx_bytes is not None else None,
        )

    async def standing(self, caller: Caller, agent_id: str) -> Any:
        """Reputation of `agent_id` in the caller's tenant (never another tenant's)."""
        loop = asyncio.get_running_loop()

        def read() -> Any:
            self.reputation.refresh()
            return self.reputation.standing(caller.tenant, agent_id)

        return await loop.run_in_executor(self.executor, read)

    async def balances(self, caller: Caller, everyone: bool) -> list[Any] | None:
        """The caller's ledger balance, or (`everyone`) every agent's of its tenant; None
        where its tenant keeps no ledger."""
        if self.ledger is None or caller.tenant not in self.ledger_tenants:
            return None
        loop = asyncio.get_running_loop()

        def read() -> list[Any]:
            self.ledger.refresh()
            self.reputation.refresh()
            if everyone:
                return self.ledger.tenant_balances(caller.tenant)
            return [self.ledger.balance(caller.tenant, caller.agent_id)]

        return await loop.run_in_executor(self.executor, read)

    async def cache_lookup(self, caller: Caller, task: str) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.results.lookup, caller, task)

    async def erase(self, tenant: str, values: list[str]) -> list[dict[str, str]]:
        """Publish an erasure per value (its subject id under this worker's master key);
        LookupError where the worker keeps no key store (privacy stage off)."""
        from memstream.privacy.keystore import subject_id
        from memstream.schemas.events import Erasure, ErasurePayload
        from memstream.schemas.topics import ERASURES

        if self.privacy is None:
            raise LookupError("this worker runs no privacy stage, so it keeps no key store")
        out = []
        for value in values:
            subject = subject_id(tenant, value, self.privacy.master_key)
            event = Erasure(
                tenant=tenant,
                agent_id="memstream-api",
                payload=ErasurePayload(subject_id=subject),
            )
            await self.publish(ERASURES.name, event, subject)
            out.append({"subject_id": subject, "event_id": str(event.event_id)})
        return out

    async def visible(self, caller: Caller, memory_id: UUID) -> StoredMemory | None:
        """The memory if it is stored and the caller may see it, else None."""
        loop = asyncio.get_running_loop()
        found = await loop.run_in_executor(self.executor, self.store.get, caller, [memory_id])
        return found[0] if found else None

    def subscription_owner(self, subscription_id: str) -> tuple[str, str] | None:
        return self._owners.get(subscription_id)

    def visible_text(self, memory: StoredMemory, caller: Caller) -> str:
        """Sealed personal values only for callers with the `pii` clearance."""
        if self.privacy is None:
            return memory.text
        return self.privacy.visible_text(memory.text, memory.sealed, memory.tenant, caller)[0]

    def _delivery_text(self, record: Indexed, caller: Caller) -> tuple[str, bool]:
        """The text a delivery carries on the topic: typed placeholders for sealed values
        (the ciphertexts travel alongside, for the gateway to reveal to cleared readers)."""
        if record.payload.sealed is None:
            return record.payload.text, False
        from memstream.privacy.shred import Sealed, redacted

        return redacted(Sealed.model_validate(record.payload.sealed)), True

    def reveal(self, sealed: dict[str, Any], tenant: str, caller: Caller) -> tuple[str, bool]:
        """(the text `caller` may read, whether values were withheld) of a sealed record."""
        if self.privacy is None:
            from memstream.privacy.shred import Sealed, redacted

            return redacted(Sealed.model_validate(sealed)), True
        return self.privacy.visible_text("", sealed, tenant, caller)
