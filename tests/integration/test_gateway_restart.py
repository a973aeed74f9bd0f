"""Gateway restart mid-stream: the client reconnects with its last id and ends with every
delivery (duplicates allowed, losses not)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx

from memstream.broker import BrokerHandle
from memstream.broker.base import free_port
from memstream.services.auth import TokenStore
from memstream.services.stack import spawn_worker, stop_process, wait_for_http
from tests.integration.test_api import _auth, _collect, _subscribe, _until, _wait_subscriptions


def _serve(broker: BrokerHandle, data_dir: Path, port: int, group: str):
    proc = spawn_worker(
        broker.bootstrap,
        log_path=data_dir / "gateway.log",
        MEMSTREAM_DATA_DIR=str(data_dir),
        MEMSTREAM_SERVE="true",
        MEMSTREAM_WEB_PORT=str(port),
        MEMSTREAM_CONSUMER_GROUP=group,
        MEMSTREAM_LEARNER_ENABLED="false",
        MEMSTREAM_LOG_LEVEL="WARNING",
        # reconnection is the point here, not the models: the distilled embedder and the
        # pattern-only PII tier start and index faster
        MEMSTREAM_EMBEDDER="static",
        MEMSTREAM_PII_TIER="fast",
    )
    wait_for_http(f"http://127.0.0.1:{port}/healthz", 90)
    return proc


async def test_reconnect_with_last_event_id_loses_nothing(
    topics: BrokerHandle, tmp_path: Path
) -> None:
    tenant = f"gw-{uuid.uuid4().hex[:6]}"
    port, group = free_port(), f"gw-{tenant}"
    url = f"http://127.0.0.1:{port}"
    tokens = TokenStore(tmp_path / "tokens.db")
    writer, reader = tokens.create(tenant, "writer"), tokens.create(tenant, "reader")
    proc = _serve(topics, tmp_path, port, group)
    received: list[dict] = []
    cursors: list[str] = []
    published: list[str] = []
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as api:
            await _subscribe(api, reader, "a numbered note about the gateway", min_score=0.2)
            await _wait_subscriptions(api, reader, 1)
            stream = asyncio.create_task(_collect(url, reader, received, cursors=cursors))
            await asyncio.sleep(1.0)
            for i in range(10):
                r = await api.post(
                    "/v1/memories",
                    json={"text": f"numbered note {i} about the gateway"},
                    headers=_auth(writer),
                )
                published.append(r.json()["event_id"])
            assert await _until(lambda: len(received) >= 3)
        # the gateway goes away mid-stream
        assert stop_process(proc) == 0
        await asyncio.wait([stream], timeout=30)  # the connection drops with the server
        assert stream.done()
        last_cursor = cursors[-1]
        # writes go on while it is down (through another worker's pipeline: the session's)
        proc = _serve(topics, tmp_path, port, group)
        async with httpx.AsyncClient(base_url=url, timeout=30) as api:
            for i in range(10, 20):
                r = await api.post(
                    "/v1/memories",
                    json={"text": f"numbered note {i} about the gateway"},
                    headers=_auth(writer),
                )
                published.append(r.json()["event_id"])
        resumed = asyncio.create_task(_collect(url, reader, received, cursor=last_cursor))
        try:
            done = await _until(
                lambda: set(published) <= {x["payload"]["memory_id"] for x in received}, 90
            )
        finally:
            resumed.cancel()
        missing = set(published) - {x["payload"]["memory_id"] for x in received}
        assert done and not missing, f"{len(missing)} deliveries lost"
    finally:
        stop_process(proc)
