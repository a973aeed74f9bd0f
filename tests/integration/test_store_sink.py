"""The worker's sink: every valid memory lands in the store once; a second worker that
re-reads the whole log into the same store changes nothing (idempotent)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from memstream.broker import BrokerHandle
from memstream.schemas import Memory
from memstream.schemas.topics import MEMORIES
from memstream.services.stack import spawn_worker, stop_process
from memstream.store import Caller, open_store
from tests.integration.conftest import start_group_at_end


def _start(broker: BrokerHandle, data_dir: Path, group: str):
    return spawn_worker(
        broker.bootstrap,
        log_path=data_dir / f"{group}.log",
        MEMSTREAM_DATA_DIR=str(data_dir),
        MEMSTREAM_CONSUMER_GROUP=group,
        MEMSTREAM_LEARNER_ENABLED="false",
        MEMSTREAM_LOG_LEVEL="WARNING",
    )


async def _wait_consumed(bootstrap: str, group: str, last: dict[TopicPartition, int]) -> None:
    """Until `group` has committed past `last` offsets: the worker processed our events.

    The shared `indexed` topic cannot tell which worker wrote a record (the session's
    worker indexes the same events), so progress is read from the group's own offsets,
    through a consumer of that group that never joins it (works on Kafka and Tansu)."""
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await probe.start()
    try:
        for _ in range(360):
            try:
                committed = {tp: await probe.committed(tp) for tp in last}
            except Exception:  # the coordinator may not know the group yet: ask again
                committed = {}
            if committed and all(c is not None and c > last[tp] for tp, c in committed.items()):
                return
            await asyncio.sleep(0.5)
        raise AssertionError(f"group {group} did not get past {last}: {committed}")
    finally:
        await probe.stop()


async def _publish(bootstrap: str, events: list[Memory]) -> dict[TopicPartition, int]:
    """Send with a plain producer to learn each event's partition and offset."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    last: dict[TopicPartition, int] = {}
    try:
        for event in events:
            meta = await producer.send_and_wait(
                MEMORIES.name, event.to_json(), key=event.agent_id.encode()
            )
            tp = TopicPartition(meta.topic, meta.partition)
            last[tp] = max(last.get(tp, -1), meta.offset)
    finally:
        await producer.stop()
    return last


async def test_sink_is_complete_and_idempotent_across_a_full_replay(
    topics: BrokerHandle, tmp_path: Path
) -> None:
    tenant = f"sink-{uuid.uuid4().hex[:6]}"

    def memory(text: str, supersedes: list[uuid.UUID] | None = None) -> Memory:
        return Memory(
            tenant=tenant, agent_id="writer", payload={"text": text, "supersedes": supersedes or []}
        )

    groups = (f"sink-a-{tenant}", f"sink-b-{tenant}")
    for group in groups:  # both start where this test's events begin, not at the session's
        await start_group_at_end(topics.bootstrap, group)
    facts = [memory(f"fact {i}: the cache node {i} has {i * 8} GB") for i in range(20)]
    dup = memory("fact 3: the cache node 3 has 24 GB")  # shared again, word for word
    newer = memory("fact 0: the cache node 0 was retired", [facts[0].event_id])
    last = await _publish(topics.bootstrap, [*facts, dup, newer])
    ids = [str(f.event_id) for f in facts]

    for group in groups:  # b: a second group re-reads all of it into the same store
        worker = _start(topics, tmp_path, group)
        try:
            await _wait_consumed(topics.bootstrap, group, last)
        finally:
            assert stop_process(worker) == 0, (tmp_path / f"{group}.log").read_text()[-3000:]

    store = open_store(str(tmp_path / "store"))
    try:
        assert store.count(tenant) == 21  # 20 facts + the newer one; the duplicate merged
        caller = Caller(tenant, "reader")
        [original] = store.get(caller, [uuid.UUID(ids[3])])
        assert [p["memory_id"] for p in original.provenance] == [str(dup.event_id)]  # once
        [old] = store.get(caller, [uuid.UUID(ids[0])])
        assert old.valid_to is not None  # superseded, still stored
        assert store.get(caller, [dup.event_id]) == []
        [latest] = store.get(caller, [newer.event_id])
        assert latest.valid_to is None
        stored = store.get(caller, [uuid.UUID(i) for i in ids[1:]])
        assert len(stored) == 19 and all(len(m.vector_code) == 192 for m in stored)
        assert all(m.models["embedding"].startswith("minilm-l6-v2@") for m in stored)
        assert Caller("someone-else", "reader").tenant != tenant
        assert store.get(Caller("someone-else", "reader"), [uuid.UUID(ids[1])]) == []
    finally:
        store.close()
