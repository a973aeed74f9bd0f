"""A worker process on the session broker, and helpers to read what it wrote."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from memstream.broker import BrokerHandle
from memstream.stack import spawn_worker, stop_process
from memstream.streams.admin import ensure_topics
from memstream.streams.probe import probe_pipeline

pytestmark = pytest.mark.integration


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.path):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def topics(broker: BrokerHandle) -> BrokerHandle:
    asyncio.run(ensure_topics(broker.bootstrap, partitions=3))
    return broker


@pytest.fixture(scope="session")
def worker(topics: BrokerHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One `memstream worker` process; yields its data dir (its log is `worker.log` there)."""
    data_dir = tmp_path_factory.mktemp("worker")
    log = data_dir / "worker.log"
    proc = spawn_worker(
        topics.bootstrap,
        log_path=log,
        MEMSTREAM_LOG_LEVEL="WARNING",
        MEMSTREAM_DATA_DIR=str(data_dir),
        # small numbers so a test sees the learner publish and the worker swap models
        MEMSTREAM_LEARNER_MIN_LABELS="8",
        MEMSTREAM_LEARNER_PUBLISH_EVERY="8",
        MEMSTREAM_VALUATION_CHECK_S="0.5",
    )
    try:
        asyncio.run(probe_pipeline(topics.bootstrap, timeout=90))
    except TimeoutError:
        stop_process(proc)
        pytest.fail(f"worker never indexed the probe; log:\n{log.read_text()[-4000:]}")
    yield data_dir
    assert proc.poll() is None, f"worker died during the tests; log:\n{log.read_text()[-4000:]}"
    stop_process(proc)


async def read_topic(
    bootstrap: str,
    topic: str,
    until: Callable[[list], bool],
    timeout: float = 60,
    settle: float = 1.0,
) -> list:
    """Every record of `topic` from the beginning, read until `until(records)` holds, then
    `settle` seconds more (so a late duplicate would still be seen)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=16 * 1_048_576,
        fetch_max_bytes=64 * 1_048_576,
    )
    await consumer.start()
    records: list = []
    try:
        deadline = time.monotonic() + timeout
        settled_at: float | None = None
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for messages in batches.values():
                records.extend(messages)
            if settled_at is None and until(records):
                settled_at = time.monotonic() + settle
            if settled_at is not None and time.monotonic() >= settled_at:
                break
        return records
    finally:
        await consumer.stop()
