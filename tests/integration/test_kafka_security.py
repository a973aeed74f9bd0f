"""The pipeline on an Apache Kafka that takes only SCRAM over TLS, with ACLs enforced.

Issue 16: memstream had no Kafka security settings, so anyone who reached the broker read
raw personal data and published as any tenant. Here the worker runs as principal `worker`,
an agent publishes as `agent` through the SDK, and the broker refuses wrong passwords,
plaintext clients and an agent reading topics or claiming subscriptions.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError

from memstream.broker import BrokerHandle
from memstream.broker.kafka import start_kafka
from memstream.broker.security import kafka_client_kwargs
from memstream.client import Client
from memstream.schemas.topics import INDEXED, MEMORIES, SUBSCRIPTIONS
from memstream.services.stack import spawn_worker, stop_process
from memstream.streams.admin import ensure_topics

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def secure_kafka() -> Iterator[BrokerHandle]:
    handle = start_kafka(nodes=1, secure=True, fast_start=True, timeout=120)
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def as_admin(secure_kafka: BrokerHandle, monkeypatch: pytest.MonkeyPatch) -> BrokerHandle:
    """This process's memstream clients connect as the super user `admin`."""
    assert secure_kafka.secure is not None
    for key, value in secure_kafka.secure.client("admin").env().items():
        monkeypatch.setenv(key, value)
    return secure_kafka


async def _find_indexed(bootstrap: str, wanted: bytes, timeout: float) -> bool:
    consumer = AIOKafkaConsumer(
        INDEXED.name,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **kafka_client_kwargs(),
    )
    await consumer.start()
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            batches = await consumer.getmany(timeout_ms=1000)
            if any(m.key == wanted for batch in batches.values() for m in batch):
                return True
        return False
    finally:
        await consumer.stop()


def test_pipeline_runs_over_scram_tls(as_admin: BrokerHandle, tmp_path: Path) -> None:
    setup = as_admin.secure
    assert setup is not None
    asyncio.run(ensure_topics(as_admin.bootstrap, partitions=1))
    log = tmp_path / "worker.log"
    proc = spawn_worker(
        as_admin.bootstrap,
        log_path=log,
        MEMSTREAM_DATA_DIR=str(tmp_path / "worker"),
        MEMSTREAM_EMBEDDER="static",
        MEMSTREAM_PII_TIER="fast",
        MEMSTREAM_LEARNER_ENABLED="false",
        MEMSTREAM_LOG_LEVEL="WARNING",
        **setup.client("worker").env(),
    )
    try:

        async def publish_and_find() -> bool:
            agent = setup.client("agent")
            async with Client(
                as_admin.bootstrap, tenant="acme", agent_id="a1", security=agent
            ) as client:
                event_id = await client.publish_memory("the staging DB moved to eu-west-2")
            return await _find_indexed(as_admin.bootstrap, str(event_id).encode(), 120)

        found = asyncio.run(publish_and_find())
        assert found, f"never indexed over SCRAM/TLS; worker log:\n{log.read_text()[-4000:]}"
        assert proc.poll() is None, log.read_text()[-4000:]
        assert "Authorization" not in log.read_text()
    finally:
        stop_process(proc)


def test_wrong_credentials_and_plaintext_are_refused(secure_kafka: BrokerHandle) -> None:
    setup = secure_kafka.secure
    assert setup is not None

    async def attempt(**kwargs: object) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=secure_kafka.bootstrap, request_timeout_ms=10_000, **kwargs
        )
        try:
            await asyncio.wait_for(producer.start(), 30)
        finally:
            await producer.stop()

    wrong = setup.client("agent", password="not-the-password").aiokafka_kwargs()
    with pytest.raises(KafkaConnectionError):
        asyncio.run(attempt(**wrong))
    with pytest.raises((KafkaConnectionError, asyncio.TimeoutError)):
        asyncio.run(attempt())  # PLAINTEXT against the TLS listener

    # the SDK says the same through its own settings
    async def sdk() -> None:
        async with Client(
            secure_kafka.bootstrap,
            tenant="acme",
            agent_id="a1",
            security=setup.client("agent", password="nope"),
        ):
            pass

    with pytest.raises(KafkaConnectionError):
        asyncio.run(sdk())


def test_an_agent_may_publish_but_not_read_or_subscribe(as_admin: BrokerHandle) -> None:
    setup = as_admin.secure
    assert setup is not None
    asyncio.run(ensure_topics(as_admin.bootstrap, partitions=1))
    agent = setup.client("agent").aiokafka_kwargs()

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=as_admin.bootstrap, acks="all", **agent)
        await producer.start()
        try:
            await producer.send_and_wait(MEMORIES.name, b"{}")  # allowed (and dead-lettered)
            with pytest.raises(TopicAuthorizationFailedError):
                await asyncio.wait_for(producer.send_and_wait(SUBSCRIPTIONS.name, b"{}"), 30)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=as_admin.bootstrap, **agent)
        await consumer.start()
        try:
            # the topic it wrote to: it may see it, not read it
            consumer.assign([TopicPartition(MEMORIES.name, 0)])
            await consumer.seek_to_beginning()
            with pytest.raises(TopicAuthorizationFailedError):
                await asyncio.wait_for(consumer.getmany(timeout_ms=5000), 30)
            # the stored memories: not even visible to it
            assert INDEXED.name not in await consumer.topics()
        finally:
            await consumer.stop()

    asyncio.run(run())


def test_secure_settings_reach_child_processes(secure_kafka: BrokerHandle) -> None:
    """The env a child gets from `SecureSetup.client().env()` reads back as the same security."""
    from memstream.settings import Settings

    setup = secure_kafka.secure
    assert setup is not None
    env = setup.client("worker").env()
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        security = Settings().kafka_security()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    assert security == setup.client("worker")
