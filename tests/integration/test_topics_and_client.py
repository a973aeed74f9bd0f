from __future__ import annotations

import asyncio
import json
import uuid

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from memstream import Client
from memstream.broker import BrokerHandle
from memstream.schemas.topics import CATALOGUE, FEEDBACK, INDEXED, OBSERVATIONS, SUBSCRIPTIONS
from memstream.streams.admin import ensure_topics
from tests.integration.conftest import Worker, read_topic


async def test_topics_are_created_once_and_compacted_where_supported(topics: BrokerHandle) -> None:
    assert await ensure_topics(topics.bootstrap) == []  # the fixture already made them
    admin = AIOKafkaAdminClient(bootstrap_servers=topics.bootstrap)
    await admin.start()
    try:
        names = set(await admin.list_topics())
        assert {spec.name for spec in CATALOGUE} <= names
        if topics.supports_compaction:
            [response] = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, SUBSCRIPTIONS.name)]
            )
            entries = {e[0]: e[1] for e in response.resources[0][4]}
            assert entries["cleanup.policy"] == "compact"
    finally:
        await admin.close()


async def test_client_publishes_each_kind_to_its_topic_keyed_as_catalogued(
    broker: BrokerHandle, worker: Worker
) -> None:
    agent = f"agent-{uuid.uuid4().hex[:8]}"
    async with Client(broker.bootstrap, tenant="sdk", agent_id=agent) as client:
        memory_id = await client.publish_memory("the build cache lives on /mnt/cache", tags=["ci"])
        observation_id = await client.publish_observation("ran the tests", topic="ci")
        feedback_id = await client.publish_feedback(memory_id, "helped", score=0.9)

    indexed = await read_topic(
        broker.bootstrap,
        INDEXED.name,
        lambda rs: {str(memory_id), str(observation_id)} <= {r.key.decode() for r in rs},
    )
    by_key = {r.key.decode(): json.loads(r.value) for r in indexed}
    assert by_key[str(memory_id)]["payload"]["tags"] == ["ci"]
    assert by_key[str(observation_id)]["payload"]["source_kind"] == "observation"

    feedback = await read_topic(
        broker.bootstrap,
        FEEDBACK.name,
        lambda rs: any(json.loads(r.value)["event_id"] == str(feedback_id) for r in rs),
    )
    [record] = [r for r in feedback if json.loads(r.value)["event_id"] == str(feedback_id)]
    assert record.key.decode() == str(memory_id)
    observations = await read_topic(
        broker.bootstrap,
        OBSERVATIONS.name,
        lambda rs: any(r.key.decode() == agent for r in rs),
        settle=0,
    )
    assert any(r.key.decode() == agent for r in observations)


async def test_sdk_subscribe_yields_matching_memories(broker: BrokerHandle, worker: Worker) -> None:
    tenant = f"sdk-sub-{uuid.uuid4().hex[:6]}"
    async with (
        Client(broker.bootstrap, tenant=tenant, agent_id="listener") as listener,
        Client(broker.bootstrap, tenant=tenant, agent_id="talker") as talker,
    ):
        received: list = []

        async def listen() -> None:
            async for delivery in listener.subscribe("where do the backups go", min_score=0.3):
                received.append(delivery)
                return

        task = asyncio.create_task(listen())
        memory_id = None
        for _ in range(60):  # until the worker has applied the subscription
            memory_id = await talker.publish_memory(
                f"Nightly backups go to the cold bucket {uuid.uuid4().hex[:4]}."
            )
            done, _ = await asyncio.wait([task], timeout=1.0)
            if done:
                break
        assert task.done(), "no delivery reached the SDK subscriber"
        assert received[0].payload.recipient == "listener"
        assert received[0].payload.source_agent == "talker"
        assert memory_id is not None
