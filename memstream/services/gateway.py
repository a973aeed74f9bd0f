"""The push gateway: an identity's deliveries from `memstream.deliveries`, as SSE or WebSocket.

Deliveries are keyed by recipient identity, `<tenant>/<agent>` (`delivery_key`; ids cannot
contain `/`), so all of one identity's deliveries sit in one partition, in order, and two
tenants' agents that share an agent id never share a key. Each connection reads that
partition with its own consumer (no group), from the cursor it resumes at (`Last-Event-ID`
/ `?cursor=`, `<partition>:<offset>`) or from the partition's end when it has none, and
yields only records whose key is exactly the caller's and whose delivery the caller may
still see (tenant, agent, scope of the memory against its teams). Personal values are
sealed on the topic and revealed here only to a reader with the `pii` clearance, so
erasing a subject shreds its deliveries as well. So a cursor, even one made up, never reads another identity's deliveries. A slow
client only ever delays its own consumer, and a client that reconnects with its last cursor
misses nothing (it may see a delivery twice).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from pydantic import ValidationError

from memstream.broker.security import kafka_client_kwargs
from memstream.schemas.events import Delivery
from memstream.schemas.topics import DELIVERIES
from memstream.settings import FETCH_MAX_WAIT_MS
from memstream.store.base import Caller
from memstream.streams.admin import partition_count

HEARTBEAT_S = 15.0
CHECK_S = 0.5
"""How often an open stream asks whether its token still verifies (revoked, expired)."""
MAX_OFFSET = 2**62
"""Largest resumable offset: far beyond any real log, far below Kafka's int64 limit."""


class InvalidCursor(ValueError):
    """A cursor that is not `<partition>:<offset>` for the caller's own partition."""


def delivery_key(tenant: str, agent_id: str) -> bytes:
    """The key of every delivery to this identity on `memstream.deliveries`."""
    return f"{tenant}/{agent_id}".encode()


def partition_for(key: bytes, partitions: int) -> int:
    """The partition the producers' default partitioner puts this key in."""
    return DefaultPartitioner()(key, list(range(partitions)), list(range(partitions)))


def parse_cursor(cursor: str | None) -> tuple[int, int] | None:
    """`"2:41"` -> (2, 41); None for no cursor (then: from the end). InvalidCursor for
    anything else, so a typo is an error, not a silent restart from the end."""
    if not cursor:
        return None
    partition_text, sep, offset_text = cursor.partition(":")
    try:
        if not sep:
            raise ValueError
        partition, offset = int(partition_text), int(offset_text)
    except ValueError:
        raise InvalidCursor(f"cursor {cursor[:64]!r} is not <partition>:<offset>") from None
    if not 0 <= partition < 2**31 or not -1 <= offset <= MAX_OFFSET:
        raise InvalidCursor(
            f"cursor {cursor[:64]!r} is out of range (partition >= 0, -1 <= offset <= 2^62)"
        )
    return partition, offset


Reveal = Callable[[dict[str, Any], str, Caller], tuple[str, bool]]
"""(sealed record, tenant, reader) -> (text the reader may see, whether values were withheld)."""


def may_receive(caller: Caller, delivery: Delivery) -> bool:
    """Whether `caller` may read this delivery now: it is addressed to exactly this
    identity and the memory's scope is visible to it (a subscription made with other
    teams than the reader's token has must not widen what the reader sees)."""
    p = delivery.payload
    if delivery.tenant != caller.tenant or p.recipient != caller.agent_id:
        return False
    if p.expires_at is not None and p.expires_at <= datetime.now(UTC):
        return False  # the memory's time to live ended: it leaves deliveries too
    return caller.may_see(delivery.tenant, p.memory_scope, p.source_agent)


def delivery_view(delivery: Delivery, caller: Caller, reveal: Reveal | None) -> dict[str, Any]:
    """The delivery as the reader gets it: sealed values revealed when its token has the
    `pii` clearance (`reveal` decides), placeholders otherwise; the ciphertexts stay in."""
    data = delivery.model_dump(mode="json")
    sealed = data["payload"].pop("sealed", None)
    if sealed is not None and reveal is not None:
        data["payload"]["text"], data["payload"]["redacted"] = reveal(
            sealed, delivery.tenant, caller
        )
    return data


async def check_cursor(bootstrap: str, caller: Caller, cursor: str | None) -> None:
    """InvalidCursor unless `cursor` is absent or names the caller's own partition."""
    resume = parse_cursor(cursor)
    if resume is None:
        return
    partitions = await partition_count(bootstrap, DELIVERIES.name)
    own = partition_for(delivery_key(caller.tenant, caller.agent_id), partitions)
    if resume[0] != own:
        raise InvalidCursor(f"cursor partition {resume[0]} is not this identity's")


def _consumer(bootstrap: str) -> AIOKafkaConsumer:
    """A consumer outside any group, for the partition a caller's deliveries are on."""
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        **kafka_client_kwargs(),
    )


def _delivery_in(message: Any, key: bytes, caller: Caller) -> Delivery | None:
    """The delivery `message` carries if it is for `caller` (their key, a valid delivery
    they may receive); None otherwise."""
    if message.key != key or not message.value:
        return None
    try:
        delivery = Delivery.model_validate_json(message.value)
    except ValidationError:
        return None
    return delivery if may_receive(caller, delivery) else None


def first_time(seen: set[tuple[str, str]], delivery: Delivery) -> bool:
    """Whether this poll has not returned this memory for this subscription yet (adding it
    to `seen`): delivery is at least once, so the topic may hold a record twice (a batch
    matched again after a rebalance), and one answer need not repeat it."""
    key = (str(delivery.payload.subscription_id), str(delivery.payload.memory_id))
    if key in seen:
        return False
    seen.add(key)
    return True


async def deliveries_for(
    bootstrap: str,
    caller: Caller,
    cursor: str | None = None,
    *,
    idle_s: float = HEARTBEAT_S,
    reveal: Reveal | None = None,
) -> AsyncIterator[tuple[str, dict] | None]:
    """Yields (cursor, delivery JSON as `delivery_view` makes it) for `caller` forever, and
    None every `idle_s` without one (a chance to send a heartbeat and notice a closed
    connection). Without `reveal` (the SDK, outside the API), sealed values stay
    placeholders and the ciphertexts are dropped."""
    resume = parse_cursor(cursor)
    key = delivery_key(caller.tenant, caller.agent_id)
    partitions = await partition_count(bootstrap, DELIVERIES.name)
    consumer = _consumer(bootstrap)
    await consumer.start()
    try:
        tp = TopicPartition(DELIVERIES.name, partition_for(key, partitions))
        consumer.assign([tp])
        if resume is not None and resume[0] == tp.partition:
            start = resume[1] + 1
            beginning = (await consumer.beginning_offsets([tp]))[tp]
            end = (await consumer.end_offsets([tp]))[tp]
            consumer.seek(tp, min(max(start, beginning), end))
        else:
            await consumer.seek_to_end(tp)
        while True:
            batch = await consumer.getmany(tp, timeout_ms=int(idle_s * 1000))
            messages = batch.get(tp, [])
            if not messages:
                yield None
                continue
            for message in messages:
                delivery = _delivery_in(message, key, caller)
                if delivery is not None:
                    yield (
                        f"{message.partition}:{message.offset}",
                        delivery_view(delivery, caller, reveal),
                    )
    finally:
        await consumer.stop()


async def poll_deliveries(
    bootstrap: str,
    caller: Caller,
    cursor: str | None,
    *,
    wait_s: float = 1.0,
    limit: int = 100,
    reveal: Reveal | None = None,
) -> tuple[list[dict[str, Any]], str]:
    """One poll: the caller's deliveries after `cursor` (up to `limit`, waiting at most
    `wait_s` for the first), and the cursor to poll from next. Without a cursor it starts at
    the end, so the returned cursor marks "now" (MCP's `poll_deliveries`, the SDKs)."""
    resume = parse_cursor(cursor)
    key = delivery_key(caller.tenant, caller.agent_id)
    partitions = await partition_count(bootstrap, DELIVERIES.name)
    tp = TopicPartition(DELIVERIES.name, partition_for(key, partitions))
    consumer = _consumer(bootstrap)
    await consumer.start()
    try:
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        if resume is not None and resume[0] == tp.partition:
            beginning = (await consumer.beginning_offsets([tp]))[tp]
            position = min(max(resume[1] + 1, beginning), end)
        else:
            position = end
        consumer.seek(tp, position)
        last = position - 1
        out: list[dict[str, Any]] = []
        seen: set[tuple[str, str]] = set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while len(out) < limit:
            remaining = deadline - loop.time()
            batch = await consumer.getmany(
                tp, timeout_ms=max(0, int(remaining * 1000)), max_records=500
            )
            messages = batch.get(tp, [])
            for message in messages:
                if len(out) >= limit:
                    break
                last = message.offset
                delivery = _delivery_in(message, key, caller)
                if delivery is not None and first_time(seen, delivery):
                    view = delivery_view(delivery, caller, reveal)
                    out.append({"cursor": f"{tp.partition}:{message.offset}", **view})
            if remaining <= 0 or out:
                break
        return out, f"{tp.partition}:{last}"
    finally:
        await consumer.stop()


async def sse_stream(
    bootstrap: str,
    caller: Caller,
    cursor: str | None,
    reveal: Reveal | None = None,
    still_valid: Callable[[], bool] | None = None,
) -> AsyncIterator[bytes]:
    """Server-sent events: `id:` is the cursor to resume from. With `still_valid`, asked
    every CHECK_S, the stream ends as soon as it answers False (a revoked or expired
    token); a heartbeat comment goes out every HEARTBEAT_S."""
    yield b": connected\n\n"
    loop = asyncio.get_running_loop()
    checked = beat = loop.time()
    async for item in deliveries_for(
        bootstrap, caller, cursor, idle_s=CHECK_S if still_valid else HEARTBEAT_S, reveal=reveal
    ):
        now = loop.time()
        if still_valid is not None and now - checked >= CHECK_S:
            checked = now
            if not still_valid():
                return
        if item is None:
            if still_valid is None or now - beat >= HEARTBEAT_S:
                beat = now
                yield b": heartbeat\n\n"
            continue
        event_cursor, delivery = item
        data = json.dumps(delivery, separators=(",", ":"))
        yield f"id: {event_cursor}\nevent: delivery\ndata: {data}\n\n".encode()
        await asyncio.sleep(0)
