"""Views of the cluster: partitions and ISR, the group's coordinator, topic configs."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from memstream.bench.faults.counts import CONSUMER_GROUP
from memstream.schemas.topics import INDEXED, MEMORIES


def _admin(bootstrap: str) -> Any:
    from aiokafka.admin import AIOKafkaAdminClient

    return AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=10_000, retry_backoff_ms=200
    )


async def describe(bootstrap: str, topics: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Partitions (leader, replicas, isr) of each topic."""
    admin = _admin(bootstrap)
    await admin.start()
    try:
        return {d["topic"]: d["partitions"] for d in await admin.describe_topics(topics)}
    finally:
        await admin.close()


async def roles(bootstrap: str, group: str = CONSUMER_GROUP) -> dict[str, Any]:
    """Who leads what now: input/output partition leaders and the group coordinator."""
    parts = await describe(bootstrap, [MEMORIES.name, INDEXED.name])
    admin = _admin(bootstrap)
    await admin.start()
    try:
        coordinator: int | None = await admin.find_coordinator(group)
    except Exception:  # a view for the report, never a reason to stop
        coordinator = None
    finally:
        await admin.close()
    return {
        "memories_leaders": {p["partition"]: p["leader"] for p in parts.get(MEMORIES.name, [])},
        "indexed_leaders": {p["partition"]: p["leader"] for p in parts.get(INDEXED.name, [])},
        "group_coordinator": coordinator,
    }


async def wait_full_isr(bootstrap: str, topics: list[str], timeout: float) -> float:
    """Seconds until every partition of `topics` has a leader and all replicas in its ISR."""
    start = time.monotonic()
    while True:
        try:
            parts = await describe(bootstrap, topics)
            if len(parts) == len(topics) and all(
                p["leader"] >= 0 and sorted(p["isr"]) == sorted(p["replicas"])
                for partitions in parts.values()
                for p in partitions
            ):
                return time.monotonic() - start
        except Exception:  # metadata may fail while a node is down
            pass
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"ISR of {topics} not whole within {timeout:.0f} s")
        await asyncio.sleep(0.5)


async def topic_config(
    bootstrap: str, topic: str, keys: tuple[str, ...], timeout_s: float = 15.0
) -> dict[str, str]:
    """Some configs of `topic` as the broker reports them. Right after the topic is created
    the node asked may not know it yet and answer with none: asked again until every key
    is there or `timeout_s` has passed (then what there is)."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    deadline = time.monotonic() + timeout_s
    while True:
        admin = _admin(bootstrap)
        await admin.start()
        try:
            [response] = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic)]
            )
        finally:
            await admin.close()
        out = {}
        for resource in response.resources:
            for entry in resource[4]:
                if entry[0] in keys:
                    out[entry[0]] = entry[1]
        if set(keys) <= set(out) or time.monotonic() > deadline:
            return out
        await asyncio.sleep(0.5)
