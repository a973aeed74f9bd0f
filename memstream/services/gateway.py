"""The push gateway: an agent's deliveries from `memstream.deliveries`, as SSE or WebSocket.

Deliveries are keyed by recipient, so all of one agent's deliveries sit in one partition,
in order. Each connection reads that partition with its own consumer (no group), from the
cursor it resumes at (`Last-Event-ID` / `?cursor=`, `<partition>:<offset>`) or from the
partition's end when it has none. A slow client only ever delays its own consumer, and a
client that reconnects with its last cursor misses nothing (it may see a delivery twice).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from memstream.schemas.topics import DELIVERIES
from memstream.streams.admin import partition_count

HEARTBEAT_S = 15.0


def partition_for(agent_id: str, partitions: int) -> int:
    """The partition the producers' default partitioner puts this agent's key in."""
    return DefaultPartitioner()(agent_id.encode(), list(range(partitions)), list(range(partitions)))


def parse_cursor(cursor: str | None) -> tuple[int, int] | None:
    """`"2:41"` -> (2, 41); None for absent or malformed cursors (then: from the end)."""
    if not cursor:
        return None
    try:
        partition, offset = cursor.split(":", 1)
        return int(partition), int(offset)
    except ValueError:
        return None


async def deliveries_for(
    bootstrap: str, agent_id: str, cursor: str | None = None, *, idle_s: float = HEARTBEAT_S
) -> AsyncIterator[tuple[str, dict] | None]:
    """Yields (cursor, delivery JSON) for `agent_id` forever, and None every `idle_s`
    without one (a chance to send a heartbeat and notice a closed connection)."""
    partitions = await partition_count(bootstrap, DELIVERIES.name)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(DELIVERIES.name, partition_for(agent_id, partitions))
        consumer.assign([tp])
        resume = parse_cursor(cursor)
        if resume is not None and resume[0] == tp.partition:
            consumer.seek(tp, resume[1] + 1)
        else:
            await consumer.seek_to_end(tp)
        key = agent_id.encode()
        while True:
            batch = await consumer.getmany(tp, timeout_ms=int(idle_s * 1000))
            messages = batch.get(tp, [])
            if not messages:
                yield None
                continue
            for message in messages:
                if message.key == key and message.value:
                    yield f"{message.partition}:{message.offset}", json.loads(message.value)
    finally:
        await consumer.stop()


async def sse_stream(bootstrap: str, agent_id: str, cursor: str | None) -> AsyncIterator[bytes]:
    """Server-sent events: `id:` is the cursor to resume from."""
    yield b": connected\n\n"
    async for item in deliveries_for(bootstrap, agent_id, cursor):
        if item is None:
            yield b": heartbeat\n\n"
            continue
        event_cursor, delivery = item
        data = json.dumps(delivery, separators=(",", ":"))
        yield f"id: {event_cursor}\nevent: delivery\ndata: {data}\n\n".encode()
        await asyncio.sleep(0)
