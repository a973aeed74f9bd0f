"""Acceptance (issue 22, point 2): /metrics shows consumer lag per group and partition, read
from Apache Kafka: with the model worker stopped, memories published to
`memstream.memories` show as its group's lag on another worker's /metrics, and the lag goes
back to zero once a model worker runs again."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from memstream.broker import BrokerHandle
from memstream.broker.kafka import start_kafka
from memstream.client import Client
from memstream.schemas.topics import MEMORIES
from memstream.services.stack import stop_process
from memstream.streams.admin import ensure_topics
from tests.integration import test_roles

pytestmark = pytest.mark.integration
PARTITIONS = 4


@pytest.fixture(scope="module")
def kafka() -> Iterator[BrokerHandle]:
    handle = start_kafka(nodes=1, fast_start=True)
    asyncio.run(ensure_topics(handle.bootstrap, partitions=PARTITIONS))
    try:
        yield handle
    finally:
        handle.stop()


def _lag(url: str) -> dict[tuple[str, str, str], float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        (s.labels["group"], s.labels["topic"], s.labels["partition"]): s.value
        for family in text_string_to_metric_families(text)
        if family.name == "memstream_consumer_lag_records"
        for s in family.samples
    }


def _memories_lag(url: str) -> dict[str, float]:
    """Group -> its lag summed over the partitions of memstream.memories."""
    out: dict[str, float] = {}
    for (group, topic, _), value in _lag(url).items():
        if topic == MEMORIES.name:
            out[group] = out.get(group, 0.0) + value
    return out


def _wait(condition, seconds: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"{what} within {seconds} s; last: {last}")


async def _publish(kafka: BrokerHandle, tenant: str, n: int) -> None:
    async with Client(kafka.bootstrap, tenant=tenant, agent_id="writer") as client:
        for i in range(n):
            await client.publish_memory(f"lag fact {i}")


def test_lag_rises_while_the_model_worker_is_stopped_and_falls_after(
    kafka: BrokerHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(test_roles.LIGHT, "MEMSTREAM_LAG_INTERVAL_S", "1")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    tenant = f"lag-{uuid.uuid4().hex[:6]}"
    owner, url = test_roles._spawn(kafka, data_dir, "sink,match,api", "owner")
    model, _ = test_roles._spawn(kafka, data_dir, "model", "model-1")
    procs = [owner, model]
    try:
        asyncio.run(_publish(kafka, tenant, 8))
        # the model stage's group (the worker's base group, streams/roles.py) has committed
        # what it read: lag 0 on memstream.memories
        group = "memstream-worker"
        _wait(
            lambda: _memories_lag(url).get(group) == 0,
            90,
            f"{group} committed on memstream.memories with no lag",
        )
        partitions = {p for (g, t, p) in _lag(url) if g == group and t == MEMORIES.name}
        assert partitions == {str(p) for p in range(PARTITIONS)}  # every partition, read or not
        assert "memstream-archive" in _memories_lag(url)  # the owner's own groups too

        stop_process(model)  # the model stage stops consuming
        asyncio.run(_publish(kafka, tenant, 40))
        _wait(
            lambda: _memories_lag(url).get(group, 0) >= 40,
            60,
            f"{group}'s lag to reach the 40 memories published while it was stopped",
        )
        assert _memories_lag(url)[group] == 40

        again, _ = test_roles._spawn(kafka, data_dir, "model", "model-2")
        procs.append(again)
        _wait(lambda: _memories_lag(url).get(group) == 0, 120, f"{group}'s lag to fall to 0")
    finally:
        for proc in procs:
            stop_process(proc)
