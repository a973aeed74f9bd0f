"""What the bench reads from Kafka: offsets, committed positions, group members, records."""

from __future__ import annotations

import json
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from memstream.bench.store_faults.disk import WORKER_TOPICS


async def _partitions(bootstrap: str, topic: str) -> list[TopicPartition]:
    from memstream.streams.admin import partition_count

    return [TopicPartition(topic, p) for p in range(await partition_count(bootstrap, topic))]


async def _end_offsets(bootstrap: str, parts: list[TopicPartition]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        return dict(await consumer.end_offsets(parts))
    finally:
        await consumer.stop()


async def start_group_at_end(bootstrap: str, group: str) -> None:
    """Commit the end of every topic the worker reads, so a worker of `group` on a shared
    broker starts with this run's events, not the broker's history."""
    parts: list[TopicPartition] = []
    for topic in WORKER_TOPICS:
        parts += await _partitions(bootstrap, topic)
    ends = await _end_offsets(bootstrap, parts)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        consumer.assign(parts)
        await consumer.commit(ends)
    finally:
        await consumer.stop()


async def _committed(bootstrap: str, group: str, parts: list[TopicPartition]) -> dict:
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await probe.start()
    try:
        return {tp: await probe.committed(tp) for tp in parts}
    finally:
        await probe.stop()


async def _members(bootstrap: str, group: str) -> list[str]:
    """The member ids of `group` now (a member the group evicted and took back has a new
    one); empty if the broker cannot say."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        responses = await admin.describe_consumer_groups([group])
        members: list[str] = []
        for response in responses:
            for described in response.to_object()["groups"]:
                members += [m["member_id"] for m in described["members"]]
        return sorted(members)
    except Exception:
        return []
    finally:
        await admin.close()


async def _read_from(
    bootstrap: str, starts: dict[TopicPartition, int], timeout: float = 120
) -> list[Any]:
    """Every record from `starts` to the partitions' current ends."""
    parts = list(starts)
    ends = await _end_offsets(bootstrap, parts)
    todo = {tp for tp in parts if ends[tp] > starts[tp]}
    if not todo:  # (stopping a consumer right after assign() trips aiokafka up)
        return []
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=16 * 1_048_576,
        fetch_max_bytes=64 * 1_048_576,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        consumer.assign(parts)
        for tp, offset in starts.items():
            consumer.seek(tp, offset)
        deadline = time.monotonic() + timeout
        while todo and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for tp, messages in batches.items():
                records += [m for m in messages if m.offset < ends[tp]]
            todo = {tp for tp in todo if await consumer.position(tp) < ends[tp]}
        return records
    finally:
        await consumer.stop()


async def _json_values(bootstrap: str, starts: dict[TopicPartition, int]) -> list[Any]:
    """The JSON values of every record from `starts` on (`_read_from`); undecodable ones
    are skipped."""
    values: list[Any] = []
    for record in await _read_from(bootstrap, starts):
        try:
            values.append(json.loads(record.value or b""))
        except ValueError:
            continue
    return values
