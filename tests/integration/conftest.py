"""A worker process on the session broker, and helpers to read what it wrote."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from memstream.broker import BrokerHandle
from memstream.broker.base import free_port
from memstream.schemas.topics import ERASURES, FEEDBACK, INDEXED, MEMORIES, OBSERVATIONS
from memstream.services.auth import TokenStore
from memstream.services.stack import spawn_worker, stop_process, wait_for_http
from memstream.streams.admin import ensure_topics, partition_count
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


@dataclass(frozen=True)
class Worker:
    """The session's `memstream worker --serve`: its data dir and HTTP API."""

    data_dir: Path
    url: str

    def token(
        self,
        tenant: str,
        agent: str,
        teams: list[str] | None = None,
        clearance: list[str] | None = None,
    ) -> str:
        return TokenStore(self.data_dir / "tokens.db").create(
            tenant, agent, teams or [], clearance or []
        )


DISTILL_TEAMS = (
    '{"distill-test/pilots": {"observation_dim": 4, "actions": 2, "every": 100000, "epochs": 60}}'
)


@pytest.fixture(scope="session")
def worker(topics: BrokerHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """One `memstream worker` process serving the API; its log is `worker.log` in data_dir."""
    data_dir = tmp_path_factory.mktemp("worker")
    log = data_dir / "worker.log"
    port = free_port()
    proc = spawn_worker(
        topics.bootstrap,
        log_path=log,
        MEMSTREAM_SERVE="true",
        MEMSTREAM_WEB_PORT=str(port),
        MEMSTREAM_LOG_LEVEL="WARNING",
        MEMSTREAM_DATA_DIR=str(data_dir),
        # small numbers so a test sees the learner publish and the worker swap models
        MEMSTREAM_LEARNER_MIN_LABELS="8",
        MEMSTREAM_LEARNER_PUBLISH_EVERY="8",
        MEMSTREAM_VALUATION_CHECK_S="0.5",
        # one tenant of its own keeps a ledger and has a seed rater (test_pool_books.py)
        MEMSTREAM_LEDGER_TENANTS='["pool-books"]',
        MEMSTREAM_REPUTATION_SEEDS='["pool-books/seed"]',
        # one team distils its agents' experience (test_distill.py); few epochs: a test
        MEMSTREAM_DISTILL_TEAMS=DISTILL_TEAMS,
        MEMSTREAM_DISTILL_IDLE_S="2",
    )
    try:
        asyncio.run(probe_pipeline(topics.bootstrap, timeout=90))
    except TimeoutError:
        stop_process(proc)
        pytest.fail(f"worker never indexed the probe; log:\n{log.read_text()[-4000:]}")
    wait_for_http(f"http://127.0.0.1:{port}/healthz", 60)
    yield Worker(data_dir, f"http://127.0.0.1:{port}")
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


WORKER_TOPICS = (MEMORIES.name, OBSERVATIONS.name, ERASURES.name, INDEXED.name, FEEDBACK.name)


async def start_group_at_end(
    bootstrap: str, group: str, topics: tuple[str, ...] | list[str] = WORKER_TOPICS
) -> None:
    """Commit the end of every topic the group reads (default: the worker's), so a new
    worker starts with this test's events instead of the whole session's history."""
    parts = []
    for topic in topics:
        parts += [TopicPartition(topic, p) for p in range(await partition_count(bootstrap, topic))]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(parts)
        consumer.assign(parts)
        await consumer.commit(ends)
    finally:
        await consumer.stop()
