"""Acceptance (issue 12): the embedded stack of `memstream up` is durable by default.

1,000 memories are published while subscribers listen; the whole stack is stopped mid-
stream twice (SIGTERM, then `kill -9` of every process: `up`, the worker and the broker's
JVM) and started again from the same data dir each time. Every acknowledged memory ends up
indexed exactly once, the subscriptions still deliver (to the same readers, resuming from
their cursors), the worker's consumer offsets resume instead of starting over, and the
archive counts every record on the input topic. Commands and the SDK find the stack from
its state file alone."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from memstream.broker.base import free_port
from memstream.client import Client
from memstream.schemas.topics import INDEXED, MEMORIES
from memstream.services.auth import TokenStore
from memstream.services.stack import StackState
from tests.integration.test_api import _auth, _collect, _until, _wait_subscriptions

TOTAL = 1000
STOP_AT = 400  # then SIGTERM
KILL_AT = 700  # then kill -9 of every process


def _up(data_dir: Path, port: int) -> tuple[subprocess.Popen[str], list[str]]:
    env = {
        **os.environ,
        "MEMSTREAM_DATA_DIR": str(data_dir),
        "MEMSTREAM_WEB_PORT": str(port),
        "MEMSTREAM_LOG_LEVEL": "WARNING",
        # durability is the point here, not the models: the distilled embedder and the
        # pattern-only PII tier keep three stack starts and 1,000 memories in the suite's time
        "MEMSTREAM_EMBEDDER": "static",
        "MEMSTREAM_PII_TIER": "fast",
    }
    env.pop("MEMSTREAM_KAFKA_BOOTSTRAP", None)
    env.pop("MEMSTREAM_BROKER_KIND", None)  # the default broker
    proc = subprocess.Popen(
        [sys.executable, "-m", "memstream", "up"],
        env=env,
        cwd=data_dir.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    deadline = time.monotonic() + 240
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("ready "):
            return proc, lines
    proc.kill()
    raise AssertionError("memstream up never got ready:\n" + "".join(lines[-40:]))


async def _group_offsets(bootstrap: str, group: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        parts = [TopicPartition(MEMORIES.name, p) for p in range(3)]
        return {tp: (await consumer.committed(tp)) or 0 for tp in parts}
    finally:
        await consumer.stop()


async def _topic_records(bootstrap: str, topic: str) -> list:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    records: list = []
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(3)])
        while sum(await _positions(consumer, ends)) < sum(ends.values()):
            batch = await consumer.getmany(timeout_ms=500)
            records += [r for rs in batch.values() for r in rs]
        return records
    finally:
        await consumer.stop()


def _last(cursors: list[str]) -> str | None:
    return cursors[-1] if cursors else None


async def _positions(consumer: AIOKafkaConsumer, ends: dict) -> list[int]:
    return [await consumer.position(tp) for tp in ends]


async def _publish(tenant: str, start: int, stop: int, acknowledged: list[str], **kw) -> None:
    async with Client(tenant=tenant, agent_id="writer", **kw) as client:
        for i in range(start, stop):
            memory_id = await client.publish_memory(
                f"fact {i}: {uuid.uuid4().hex[:12]} was measured"
            )
            acknowledged.append(str(memory_id))


async def test_a_stopped_stack_comes_back_with_everything(tmp_path: Path) -> None:
    """One stack, stopped twice mid-stream: by SIGTERM, then by `kill -9` of every process."""
    data_dir = tmp_path / "data"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    tenant = f"durable-{uuid.uuid4().hex[:6]}"
    up, _ = _up(data_dir, port)
    state = StackState.read(data_dir)
    assert state is not None and state.persistent and state.api_url == url
    tokens = TokenStore(data_dir / "tokens.db")
    readers = [tokens.create(tenant, f"reader-{i}") for i in range(2)]
    got: dict[str, list[dict]] = {t: [] for t in readers}
    cursors: dict[str, list[str]] = {t: [] for t in readers}
    acknowledged: list[str] = []
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as api:
            for token in readers:
                r = await api.post(
                    "/v1/subscriptions",
                    json={"query": "a numbered fact", "min_score": -1.0, "max_per_minute": 10**5},
                    headers=_auth(token),
                )
                assert r.status_code == 200, r.text
            await _wait_subscriptions(api, readers[0], 2)
        streams = [
            asyncio.create_task(_collect(url, t, got[t], cursors=cursors[t])) for t in readers
        ]
        await asyncio.sleep(1.0)
        # the SDK finds the broker through the stack's state file (no bootstrap given)
        os.environ["MEMSTREAM_DATA_DIR"] = str(data_dir)
        try:
            await _publish(tenant, 0, STOP_AT, acknowledged)
        finally:
            del os.environ["MEMSTREAM_DATA_DIR"]
        for how, (start, stop) in (("sigterm", (STOP_AT, KILL_AT)), ("kill-9", (KILL_AT, TOTAL))):
            await asyncio.sleep(2.0)  # mid-stream: some indexed, some not yet
            if how == "sigterm":
                up.send_signal(signal.SIGTERM)
                rest, _ = up.communicate(timeout=90)
                assert up.returncode == 0, rest
            else:
                live = StackState.read(data_dir)
                assert live is not None
                for pid in [live.up_pid, live.worker_pid, *live.broker_pids]:
                    os.kill(pid, signal.SIGKILL)  # type: ignore[arg-type]
                up.wait(timeout=30)
            for stream in streams:
                stream.cancel()

            up, _ = _up(data_dir, port)
            state = StackState.read(data_dir)
            assert state is not None and state.bootstrap.split(":")[0] == "127.0.0.1"
            offsets = await _group_offsets(state.bootstrap, "memstream-worker")
            assert sum(offsets.values()) > 0, how  # committed before the stop, kept
            streams = [
                asyncio.create_task(
                    _collect(url, t, got[t], cursors=cursors[t], cursor=_last(cursors[t]))
                )
                for t in readers
            ]
            await asyncio.sleep(1.0)
            await _publish(tenant, start, stop, acknowledged, bootstrap=state.bootstrap)
        assert len(set(acknowledged)) == TOTAL
        async with httpx.AsyncClient(base_url=url, timeout=30) as api:
            for _ in range(600):
                stats = (await api.get("/v1/stats", headers=_auth(readers[0]))).json()
                if stats["memories_indexed"] >= TOTAL:
                    break
                await asyncio.sleep(0.5)
            assert stats["memories_indexed"] == TOTAL, stats  # each id once, none lost
            assert stats["subscriptions"] == 2  # the subscriptions survived the restart
        after = set(acknowledged[STOP_AT:])  # everything published after the first stop
        assert await _until(
            lambda: all(after <= {x["payload"]["memory_id"] for x in got[t]} for t in readers),
            120,
        )
        for stream in streams:
            stream.cancel()
        # offsets resumed: memories indexed before the stop were not all processed again
        indexed = [r for r in await _topic_records(state.bootstrap, INDEXED.name)]
        mine = [r for r in indexed if r.key.decode() in set(acknowledged)]
        assert {r.key.decode() for r in mine} == set(acknowledged)
        assert len(mine) - TOTAL < KILL_AT, f"{len(mine) - TOTAL} re-processed"
        # the archive holds every record of the input topic
        await asyncio.sleep(3.0)  # the archive flushes every second
        on_topic = len(await _topic_records(state.bootstrap, MEMORIES.name))
        env = {**os.environ, "MEMSTREAM_DATA_DIR": str(data_dir)}
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "memstream", "archive", "stats", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        stats_out = done.stdout
        archived = json.loads(stats_out)["topics"][MEMORIES.name]["records"]
        assert archived == on_topic, (archived, on_topic)
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            up.communicate(timeout=90)
    assert StackState.read(data_dir) is None  # a clean stop removes the state file
