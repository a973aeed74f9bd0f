"""Prove the pipeline works end to end: publish a probe memory, wait until it is indexed."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer

from memstream.broker.security import kafka_client_kwargs
from memstream.client import Client
from memstream.schemas.topics import INDEXED

PROBE_TENANT = "memstream-system"


async def probe_pipeline(bootstrap: str, timeout: float = 60.0) -> float:
    """Seconds from publishing a probe memory to seeing it in `indexed`; TimeoutError if never.

    Reads `indexed` from the beginning (Tansu's `end_offsets` is wrong, so `latest` is not
    reliable) and matches the probe by its key, the event id.
    """
    start = time.monotonic()
    async with Client(bootstrap, tenant=PROBE_TENANT, agent_id="memstream-probe") as client:
        event_id = await client.publish_memory("memstream pipeline probe", tags=["probe"])
    wanted = str(event_id).encode()
    consumer = AIOKafkaConsumer(
        INDEXED.name,
        bootstrap_servers=bootstrap,
        **kafka_client_kwargs(),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        while time.monotonic() - start < timeout:
            batches = await consumer.getmany(timeout_ms=200)
            for messages in batches.values():
                if any(message.key == wanted for message in messages):
                    return time.monotonic() - start
        raise TimeoutError(f"probe memory {event_id} not indexed within {timeout}s")
    finally:
        await consumer.stop()


def wait_until_ready(bootstrap: str, timeout: float = 60.0) -> float:
    return asyncio.run(probe_pipeline(bootstrap, timeout))
