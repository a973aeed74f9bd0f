"""Issue 17: worker roles that scale separately, on Apache Kafka.

Model workers (`--role model`: validate, privacy, embed -> `memstream.indexed`; no store)
run beside one store owner (`--role sink,match,api`: indexed -> store, subscriptions ->
deliveries, the HTTP API). A memory written through the API is stored and pushed; model
workers join and one is killed (`kill -9`) mid-stream; every memory ends stored once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from memstream.broker import BrokerHandle
from memstream.broker.base import free_port
from memstream.broker.kafka import start_kafka
from memstream.client import Client
from memstream.services.auth import TokenStore
from memstream.services.stack import spawn_worker, stop_process, wait_for_http
from memstream.streams.admin import ensure_topics
from tests.integration.test_api import _auth, _collect, _until, _wait_subscriptions

pytestmark = pytest.mark.integration

LIGHT = {  # the roles are the point here, not the models
    "MEMSTREAM_EMBEDDER": "static",
    "MEMSTREAM_PII_TIER": "fast",
    "MEMSTREAM_LEARNER_ENABLED": "false",
    "MEMSTREAM_LOG_LEVEL": "INFO",
}


@pytest.fixture(scope="module")
def kafka() -> Iterator[BrokerHandle]:
    """A broker of its own: a fresh consumer group on the session broker would first work
    through every other test's history."""
    handle = start_kafka(nodes=1, fast_start=True)
    asyncio.run(ensure_topics(handle.bootstrap, partitions=4))
    try:
        yield handle
    finally:
        handle.stop()


def _spawn(
    kafka: BrokerHandle, data_dir: Path, role: str, name: str
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = spawn_worker(
        kafka.bootstrap,
        log_path=data_dir / f"{name}.log",
        MEMSTREAM_DATA_DIR=str(data_dir),
        MEMSTREAM_ROLE=role,
        MEMSTREAM_WEB_PORT=str(port),
        MEMSTREAM_PARTITIONS="4",
        **LIGHT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}/healthz", 120)
    return proc, url


def _opened(pid: int, under: Path) -> list[str]:
    """Files under `under` that process `pid` holds open."""
    found = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(str(under)):
            found.append(target)
    return found


async def test_model_workers_apart_from_the_store_owner_lose_nothing(
    kafka: BrokerHandle, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    tenant = f"roles-{uuid.uuid4().hex[:6]}"
    owner, url = _spawn(kafka, data_dir, "sink,match,api", "owner")
    first, _ = _spawn(kafka, data_dir, "model", "model-1")
    procs = [owner, first]
    try:
        tokens = TokenStore(data_dir / "tokens.db")
        token, writer = tokens.create(tenant, "reader"), tokens.create(tenant, "writer")
        async with httpx.AsyncClient(base_url=url, timeout=30) as api:
            r = await api.post(
                "/v1/subscriptions",
                json={"query": "a numbered fact", "min_score": -1.0, "max_per_minute": 10**5},
                headers=_auth(token),
            )
            assert r.status_code == 200, r.text
            await _wait_subscriptions(api, token, 1)
            got: list[dict] = []
            stream = asyncio.create_task(_collect(url, token, got))
            await asyncio.sleep(1.0)

            # through the API process, stored by the owner after a model worker's pass
            r = await api.post(
                "/v1/memories", json={"text": "fact 0: the API path"}, headers=_auth(writer)
            )
            assert r.status_code == 202, r.text
            first_id = r.json()["event_id"]
            assert await _until(lambda: any(d["memory_id"] == first_id for d in _p(got)), 90)

            # model workers join and leave mid-stream; the owner keeps the store
            acknowledged = [first_id]
            async with Client(kafka.bootstrap, tenant=tenant, agent_id="writer") as client:
                joining = None
                for i in range(1, 101):
                    acknowledged.append(str(await client.publish_memory(f"fact {i}: measured")))
                    if i == 15:  # a second model worker joins while memories flow
                        joining = asyncio.create_task(
                            asyncio.to_thread(_spawn, kafka, data_dir, "model", "model-2")
                        )
                    if i == 60:
                        os.kill(first.pid, signal.SIGKILL)  # the first one dies mid-stream
                    await asyncio.sleep(0.05)
                assert joining is not None
                second, second_url = await joining
                procs.append(second)

            async def stored() -> int:
                stats = (await api.get("/v1/stats", headers=_auth(token))).json()
                return stats["memories_indexed"]

            for _ in range(600):
                if await stored() >= len(acknowledged):
                    break
                await asyncio.sleep(0.5)
            assert await stored() == len(acknowledged)  # each id once (ids are point ids)
            missing = []
            for memory_id in acknowledged:
                r = await api.get(f"/v1/memories/{memory_id}", headers=_auth(token))
                if r.status_code != 200:
                    missing.append(memory_id)
            assert not missing, f"{len(missing)} acknowledged memories never stored"
            assert await _until(lambda: set(acknowledged) <= {d["memory_id"] for d in _p(got)}, 60)
            stream.cancel()

        # the model workers never opened the store; their /metrics count what they handed on
        assert not _opened(second.pid, data_dir / "store")
        async with httpx.AsyncClient(timeout=10) as plain:
            metrics = (await plain.get(f"{second_url}/metrics")).text
        handed_on = [
            float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith("memstream_memories_indexed_total ")
        ]
        assert handed_on and handed_on[0] > 0, metrics[:2000]
    finally:
        for proc in procs:
            stop_process(proc)


def _p(deliveries: list[dict]) -> list[dict]:
    return [d["payload"] for d in deliveries]
