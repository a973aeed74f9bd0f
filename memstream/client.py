"""The Python SDK: publish memories, observations and feedback to the bus.

    async with memstream.Client(tenant="acme", agent_id="planner") as client:
        event_id = await client.publish_memory("the staging DB moved to eu-west-2", tags=["infra"])

Without a bootstrap it connects to `MEMSTREAM_KAFKA_BOOTSTRAP`, else to the stack
`memstream up` runs (found through its state file, `memstream.services.stack.find_stack`).
It talks to Kafka directly and is trusted with the tenant and teams it is given: it is
the producer for services inside the cluster's trust boundary.

Events are validated here, before they leave the process, so a caller learns about a bad
field from a `ValidationError` instead of a dead letter. Produces use `acks=all`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any
from uuid import UUID

from aiokafka import AIOKafkaProducer

from memstream.broker.security import KafkaSecurity
from memstream.schemas.events import (
    Delivery,
    Event,
    Experience,
    ExperiencePayload,
    Feedback,
    FeedbackPayload,
    Memory,
    MemoryPayload,
    Observation,
    ObservationPayload,
    Subscription,
    SubscriptionFilters,
    SubscriptionPayload,
    new_event_id,
)
from memstream.schemas.topics import (
    EXPERIENCE,
    FEEDBACK,
    MAX_EVENT_BYTES,
    MEMORIES,
    OBSERVATIONS,
    SUBSCRIPTIONS,
)
from memstream.settings import Settings


class EventTooLarge(ValueError):
    """The encoded event is over the pipeline's size limit; it would only be dead-lettered."""


class NoBroker(RuntimeError):
    """No bootstrap was given, none is configured and no stack is running."""


def default_bootstrap() -> str:
    """`MEMSTREAM_KAFKA_BOOTSTRAP`, else the running stack's broker; NoBroker otherwise."""
    from memstream.services.stack import find_stack, where_to_look
    from memstream.settings import Settings

    settings = Settings()
    if settings.kafka_bootstrap:
        return settings.kafka_bootstrap
    state = find_stack(settings)
    if state is None:
        raise NoBroker(
            f"{where_to_look(settings)}: start one with `memstream up`, or pass a bootstrap"
        )
    return state.bootstrap


class Client:
    """An agent's connection to memstream. Use as `async with Client(...) as client:`."""

    def __init__(
        self,
        bootstrap: str | None = None,
        *,
        tenant: str,
        agent_id: str,
        max_event_bytes: int = MAX_EVENT_BYTES,
        security: KafkaSecurity | None = None,
        **producer_options: Any,
    ) -> None:
        """`security`: how to reach a locked-down cluster (default: the MEMSTREAM_KAFKA_*
        settings, PLAINTEXT when none are set)."""
        self.bootstrap = bootstrap or default_bootstrap()
        self.security = security if security is not None else Settings().kafka_security()
        self.tenant = tenant
        self.agent_id = agent_id
        self.max_event_bytes = max_event_bytes
        self._producer_options = {"acks": "all", "linger_ms": 5, **producer_options}
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            max_request_size=max(self.max_event_bytes * 2, 1_048_576),
            **self.security.aiokafka_kwargs(),
            **self._producer_options,
        )
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    async def __aenter__(self) -> Client:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def publish(self, topic: str, event: Event, key: str) -> UUID:
        """Send one already-built event and wait for the broker's acknowledgement."""
        value = event.to_json()
        if len(value) > self.max_event_bytes:
            raise EventTooLarge(f"event is {len(value)} bytes; the limit is {self.max_event_bytes}")
        if self._producer is None:
            raise RuntimeError("Client is not started: use `async with Client(...)`")
        await self._producer.send_and_wait(topic, value, key=key.encode())
        return event.event_id

    async def publish_memory(
        self,
        text: str,
        *,
        scope: str = "tenant",
        tags: list[str] | None = None,
        topic: str | None = None,
        metadata: dict[str, Any] | None = None,
        context: str | None = None,
        supersedes: list[UUID] | None = None,
        trace_id: str | None = None,
        parent_ids: list[UUID] | None = None,
    ) -> UUID:
        """Share a memory; returns its event id (which is also its memory id).

        `context` helps find it (indexed, not returned as the memory); `supersedes` lists
        older memory ids this one replaces (they stay stored, no longer valid)."""
        payload = MemoryPayload(
            text=text,
            tags=tags or [],
            topic=topic,
            metadata=metadata or {},
            context=context,
            supersedes=supersedes or [],
        )
        event = Memory(**self._envelope(scope, trace_id, parent_ids), payload=payload)
        return await self.publish(MEMORIES.name, event, key=self.agent_id)

    async def publish_observation(
        self,
        text: str,
        *,
        scope: str = "private",
        tags: list[str] | None = None,
        topic: str | None = None,
        metadata: dict[str, Any] | None = None,
        trace_id: str | None = None,
    ) -> UUID:
        """Record something the agent saw or did."""
        payload = ObservationPayload(
            text=text, tags=tags or [], topic=topic, metadata=metadata or {}
        )
        event = Observation(**self._envelope(scope, trace_id, None), payload=payload)
        return await self.publish(OBSERVATIONS.name, event, key=self.agent_id)

    async def publish_feedback(
        self,
        memory_id: UUID | str,
        outcome: str,
        *,
        score: float | None = None,
        note: str | None = None,
    ) -> UUID:
        """Tell the pool how useful a memory was (`used`, `helped`, `wrong`, `ignored`)."""
        payload = FeedbackPayload(
            memory_id=UUID(str(memory_id)), outcome=outcome, score=score, note=note
        )  # type: ignore[arg-type]
        event = Feedback(**self._envelope("tenant", None, None), payload=payload)
        return await self.publish(FEEDBACK.name, event, key=str(payload.memory_id))

    async def publish_experience(
        self,
        *,
        episode: int,
        step: int,
        observation: list[float],
        action: int,
        reward: float,
        distribution: list[float],
        done: bool = False,
        scope: str = "tenant",
    ) -> UUID:
        """One step of a learning agent, for the distillation processor: `scope`
        `team:<name>` shares it with that team's student (docs/distillation.md)."""
        payload = ExperiencePayload(
            episode=episode,
            step=step,
            observation=[float(v) for v in observation],
            action=action,
            reward=float(reward),
            done=done,
            distribution=[float(v) for v in distribution],
        )
        event = Experience(**self._envelope(scope, None, None), payload=payload)
        return await self.publish(EXPERIENCE.name, event, key=self.agent_id)

    async def subscribe(
        self,
        query: str,
        *,
        min_score: float = 0.5,
        filters: dict[str, Any] | None = None,
        include_own: bool = False,
        teams: list[str] | None = None,
        clearance: list[str] | None = None,
        cursor: str | None = None,
    ) -> AsyncIterator[Delivery]:
        """A standing query: yields each new memory that matches it, as it is indexed.

            async for delivery in client.subscribe("staging database", min_score=0.4):
                print(delivery.payload.text)

        Talks to the bus directly, like the rest of this client: `teams` and `clearance` are
        taken on trust here (the HTTP API takes them from the bearer token instead).
        Leaving the loop cancels the subscription.
        """
        from memstream.services.gateway import deliveries_for
        from memstream.store.base import Caller

        sub_id = f"sub-{new_event_id().hex}"

        def subscription(active: bool) -> Subscription:
            return Subscription(
                tenant=self.tenant,
                agent_id=self.agent_id,
                scope="private",
                payload=SubscriptionPayload(
                    subscription_id=sub_id,
                    query=query,
                    min_score=min_score,
                    filters=SubscriptionFilters(**(filters or {})),
                    include_own=include_own,
                    teams=teams or [],
                    clearance=clearance or [],
                    active=active,
                ),
            )

        # start reading before subscribing, so nothing indexed in between is missed
        me = Caller(self.tenant, self.agent_id, frozenset(teams or []), frozenset(clearance or []))
        stream = deliveries_for(self.bootstrap, me, cursor)
        first = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0)
        await self.publish(SUBSCRIPTIONS.name, subscription(True), key=sub_id)
        try:
            item = await first
            while True:
                if item is not None:
                    delivery = Delivery.model_validate(item[1])
                    if delivery.payload.subscription_id == sub_id:
                        yield delivery
                item = await anext(stream)
        finally:
            await stream.aclose()
            if self._producer is not None:
                await self.publish(SUBSCRIPTIONS.name, subscription(False), key=sub_id)

    def _envelope(
        self, scope: str, trace_id: str | None, parent_ids: list[UUID] | None
    ) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "agent_id": self.agent_id,
            "scope": scope,
            "trace_id": trace_id,
            "parent_ids": parent_ids or [],
        }
