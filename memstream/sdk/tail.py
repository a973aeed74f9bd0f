"""Follow a topic from its last records on (`memstream tail`): each record as a short line
or as its JSON, for people watching the bus.

No consumer group (nothing is committed, no member joins a group the pipeline uses): every
partition is assigned and read from `last` records before its end, then followed.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from memstream.broker.security import kafka_client_kwargs


async def follow(
    bootstrap: str, topic: str, last: int = 10, idle_s: float | None = None
) -> AsyncIterator[dict[str, Any]]:
    """Records of `topic` as dicts (partition, offset, timestamp, key, value: parsed JSON
    when it is JSON, else text), the `last` of each partition first; stops after `idle_s`
    seconds without a record (None: never)."""
    from memstream.streams.admin import topic_partitions

    partitions = await topic_partitions(bootstrap, topic)
    if not partitions:
        raise LookupError(f"no topic {topic!r} on {bootstrap}")
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, **kafka_client_kwargs()
    )
    await consumer.start()
    try:
        assigned = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(assigned)
        firsts = await consumer.beginning_offsets(assigned)
        ends = await consumer.end_offsets(assigned)
        for tp in assigned:
            consumer.seek(tp, max(firsts[tp], ends[tp] - max(0, last)))
        while True:
            timeout_ms = int((idle_s if idle_s is not None else 1.0) * 1000)
            batches = await consumer.getmany(timeout_ms=timeout_ms)
            if not batches and idle_s is not None:
                return
            for records in batches.values():
                for record in records:
                    yield _as_dict(record)
    finally:
        await consumer.stop()


def _as_dict(record: Any) -> dict[str, Any]:
    value: Any = None
    if record.value is not None:
        text = record.value.decode("utf-8", "replace")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": datetime.fromtimestamp(record.timestamp / 1000, UTC).isoformat(),
        "key": record.key.decode("utf-8", "replace") if record.key is not None else None,
        "value": value,
    }


def one_line(row: dict[str, Any], width: int = 100) -> str:
    """`time partition:offset kind tenant/agent what` for an event; the raw text for
    anything else."""
    value = row["value"]
    when = row["timestamp"][11:19]
    where = f"{row['partition']}:{row['offset']}"
    if isinstance(value, dict) and "kind" in value:
        payload = value.get("payload") if isinstance(value.get("payload"), dict) else {}
        what = (
            payload.get("text")
            or payload.get("reason")
            or payload.get("query")
            or json.dumps(payload, separators=(",", ":"))
        )
        who = f"{value.get('tenant', '-')}/{value.get('agent_id', '-')}"
        text = f"{when} {where:<9} {value['kind']:<12} {who:<28} {what}"
    else:
        text = f"{when} {where:<9} {json.dumps(value) if not isinstance(value, str) else value}"
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "\u2026"
