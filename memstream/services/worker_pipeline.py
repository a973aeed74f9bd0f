"""The worker's pipeline hooks: counts, matching new memories to subscriptions, following
the subscriptions topic, sending deliveries."""

from __future__ import annotations

import asyncio
import base64
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import faust
import numpy as np
from aiokafka import AIOKafkaConsumer
from prometheus_client import Counter

from memstream.broker.security import kafka_client_kwargs
from memstream.logging import get_logger
from memstream.models.compression import decode_vectors
from memstream.models.embedding import Embedder
from memstream.schemas.events import Delivery, Indexed, Subscription
from memstream.schemas.topics import DELIVERIES, SUBSCRIPTIONS
from memstream.services.gateway import delivery_key
from memstream.services.matcher import SubscriptionIndex
from memstream.settings import FETCH_MAX_WAIT_MS

log = get_logger("memstream.services")

INDEXED_TOTAL = Counter("memstream_memories_indexed_total", "memories written to the store")
DEAD_LETTERS = Counter("memstream_dead_letters_total", "events sent to the dead-letter topic")
DELIVERED = Counter("memstream_deliveries_total", "deliveries produced")
KEPT_OUT = Counter(
    "memstream_pool_kept_out_total",
    "shared memories under the admission bar: kept on the log, not stored",
)


class PipelineHooks:
    """What the pipeline calls on `WorkerServices` (mixed into it; its state lives there)."""

    app: faust.App
    bootstrap: str
    embedder: Embedder
    model_executor: ThreadPoolExecutor
    subscriptions: SubscriptionIndex
    counts: dict[str, int]
    dead_by_tenant: dict[str, int]
    _owners: dict[str, tuple[str, str]]
    _subscription_views: dict[str, dict[str, Any]]

    def note_indexed(self, count: int) -> None:
        """Records handed on to `indexed` by a model worker that neither stores nor matches
        them (where it does, `match` counts them)."""
        self.counts["indexed"] += count
        INDEXED_TOTAL.inc(count)

    def note_conflicts(self, count: int) -> None:
        """Conflicting facts found by the sink (each superseded an older value)."""
        if count:
            self.counts["conflicts"] = self.counts.get("conflicts", 0) + count

    def note_kept_out(self, count: int) -> None:
        """Memories the admission bar kept out of the pool (on the log, not stored)."""
        self.counts["kept_out"] = self.counts.get("kept_out", 0) + count
        KEPT_OUT.inc(count)

    def note_dead_letter(self, tenant: str) -> None:
        self.counts["dead_letter"] += 1
        self.dead_by_tenant[tenant] = self.dead_by_tenant.get(tenant, 0) + 1
        DEAD_LETTERS.inc()

    def match(self, records: list[Indexed]) -> list[Delivery]:
        """Deliveries for newly stored memories (runs in the model/store thread). A memory
        that cannot be matched is logged and gets no deliveries; it stays stored and
        searchable, and the rest of the batch is matched."""
        self.counts["indexed"] += len(records)
        INDEXED_TOTAL.inc(len(records))
        if not records or not len(self.subscriptions):
            return []
        now = datetime.now(UTC)
        live: list[Indexed] = []
        vectors: list[np.ndarray] = []
        for record in records:
            expires = record.payload.expires_at
            if expires is not None and expires <= now:
                continue  # expired already: it leaves deliveries at once
            try:
                code = np.frombuffer(base64.b64decode(record.payload.vector_b64), dtype=np.uint8)
                vectors.append(decode_vectors(code.reshape(1, -1))[0])
                live.append(record)
            except Exception:
                log.exception("matching failed for a memory", memory_id=str(record.event_id))
        deliveries: list[Delivery] = []
        try:  # one pass over each tenant's subscriptions for the whole batch
            for found in self.subscriptions.match_many(live, vectors, now, self._delivery_text):
                deliveries.extend(found)
        except Exception:
            log.exception("batch matching failed; matching one by one", memories=len(live))
            deliveries = []
            for record, vector in zip(live, vectors, strict=True):
                try:
                    deliveries.extend(
                        self.subscriptions.match(record, vector, now, self._delivery_text)
                    )
                except Exception:
                    log.exception("matching failed for a memory", memory_id=str(record.event_id))
        self.counts["deliveries"] += len(deliveries)
        DELIVERED.inc(len(deliveries))
        return deliveries

    def apply_subscription(self, subscription: Subscription) -> None:
        """Add, replace or cancel one subscription (runs in the model/store thread). A query
        vector of the wrong size is refused (ValueError): it would break the matrix its
        whole tenant's subscriptions are matched with. A subscription id belongs to the
        identity that made it: an event from anyone else for that id is refused too."""
        sub_id = subscription.payload.subscription_id
        owner = self._owners.get(sub_id)
        if owner is not None and owner != (subscription.tenant, subscription.agent_id):
            raise ValueError(f"subscription {sub_id} belongs to another identity")
        query = subscription.payload.query
        if isinstance(query, str):
            vector = (
                self.embedder.embed([query])[0]
                if subscription.payload.active
                else np.zeros(self.embedder.dim)
            )
        else:
            vector = np.asarray(query, dtype=np.float32)
            if vector.shape != (self.embedder.dim,):
                raise ValueError(
                    f"query vector has {vector.size} dimensions; the embedding has "
                    f"{self.embedder.dim}"
                )
            vector = vector / max(float(np.linalg.norm(vector)), 1e-12)
        self.subscriptions.upsert(subscription, vector)
        if subscription.payload.active:
            self._owners[sub_id] = (subscription.tenant, subscription.agent_id)
            p = subscription.payload
            self._subscription_views[sub_id] = {
                "subscription_id": sub_id,
                "query": p.query if isinstance(p.query, str) else None,
                "min_score": p.min_score,
                "filters": p.filters.model_dump(),
                "max_per_minute": p.max_per_minute,
                "expires_at": p.expires_at.isoformat() if p.expires_at else None,
                "include_own": p.include_own,
                "created_at": subscription.ts.isoformat(),
            }
        else:
            self._owners.pop(sub_id, None)
            self._subscription_views.pop(sub_id, None)

    async def follow_subscriptions(self) -> None:
        """Read every partition of `memstream.subscriptions` from the start, forever: each
        worker holds all subscriptions, since any worker may index a matching memory."""
        # no group: every partition is assigned to this consumer, read from the start
        consumer = AIOKafkaConsumer(
            SUBSCRIPTIONS.name,
            bootstrap_servers=self.bootstrap,
            **kafka_client_kwargs(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )
        await consumer.start()
        loop = asyncio.get_running_loop()
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=500)
                for messages in batches.values():
                    for message in messages:
                        try:
                            subscription = Subscription.model_validate_json(message.value or b"")
                            await loop.run_in_executor(
                                self.model_executor, self.apply_subscription, subscription
                            )
                        except Exception as err:  # one bad subscription never stops the rest
                            log.warning(
                                "bad subscription event skipped",
                                offset=message.offset,
                                error=str(err)[:500],
                            )
        finally:
            await consumer.stop()

    async def send_deliveries(self, deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            await self.app.producer.send(
                DELIVERIES.name,
                delivery_key(delivery.tenant, delivery.payload.recipient),
                delivery.to_json(),
                None,
                None,
                None,
            )
