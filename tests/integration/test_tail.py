"""`memstream tail TOPIC`: the last records of each partition, then new ones; `--json` prints
one JSON object per line and nothing else."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from memstream.broker import BrokerHandle

pytestmark = pytest.mark.integration


async def _topic_with(bootstrap: str, topic: str, values: list[bytes]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()


def _tail(bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMSTREAM_")}
    env["MEMSTREAM_KAFKA_BOOTSTRAP"] = bootstrap
    return subprocess.run(
        [sys.executable, "-m", "memstream", "tail", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_tail_shows_the_last_records_as_lines_or_json(topics: BrokerHandle) -> None:
    topic = f"tail-test-{uuid.uuid4().hex[:8]}"
    events = [
        {"kind": "memory", "tenant": "acme", "agent_id": f"a{i}", "payload": {"text": f"fact {i}"}}
        for i in range(5)
    ]
    values = [json.dumps(e).encode() for e in events] + [b"not json at all"]
    asyncio.run(_topic_with(topics.bootstrap, topic, values))

    out = _tail(topics.bootstrap, topic, "--last", "3", "--idle", "3", "--json")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]  # JSON lines only
    assert [r["offset"] for r in rows] == [3, 4, 5]
    assert rows[0]["value"]["payload"]["text"] == "fact 3" and rows[2]["value"] == "not json at all"

    pretty = _tail(topics.bootstrap, topic, "--last", "2", "--idle", "3")
    lines = pretty.stdout.splitlines()
    assert (
        len(lines) == 2 and "memory" in lines[0] and "acme/a4" in lines[0] and "fact 4" in lines[0]
    )
    assert lines[1].endswith("not json at all")

    missing = _tail(topics.bootstrap, f"no-such-{uuid.uuid4().hex[:6]}", "--idle", "1")
    assert missing.returncode != 0 and "no topic" in missing.stderr
