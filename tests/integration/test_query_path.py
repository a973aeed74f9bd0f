"""Issue 14: a search never queues behind ingest. Searches used to run on the model stage's
single thread, so during a batch of 500 (seconds of PII scan and embedding) a search waited
for the whole batch. With the batch in one sub-batch (`MEMSTREAM_MODEL_CHUNK_SIZE=500`), no
memory of a burst is indexed before the whole batch has been through the model, so every
search that answers before this worker's store holds a memory of the burst answered while
the model thread was busy; before the change only those between batches could (2 or 3)."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer

from memstream.bench.push import memory_texts
from memstream.broker import BrokerHandle
from memstream.broker.base import free_port
from memstream.schemas.events import Memory
from memstream.schemas.topics import MEMORIES
from memstream.services.auth import TokenStore
from memstream.services.stack import spawn_worker, stop_process, wait_for_http
from tests.integration.conftest import start_group_at_end

BURST = 500


async def _publish(bootstrap: str, memories: list[Memory]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(MEMORIES.name, m.to_json(), key=b"k") for m in memories]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def test_searches_answer_while_the_model_stage_holds_a_batch(
    topics: BrokerHandle, tmp_path: Path
) -> None:
    tenant = f"query-{uuid.uuid4().hex[:6]}"
    group = f"query-{tenant}"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    await start_group_at_end(topics.bootstrap, group)
    proc = spawn_worker(
        topics.bootstrap,
        log_path=tmp_path / "worker.log",
        MEMSTREAM_DATA_DIR=str(tmp_path),
        MEMSTREAM_SERVE="true",
        MEMSTREAM_WEB_PORT=str(port),
        MEMSTREAM_CONSUMER_GROUP=group,
        MEMSTREAM_ARCHIVE_ENABLED="false",
        MEMSTREAM_PROCESSORS_ENABLED="false",
        MEMSTREAM_LEARNER_ENABLED="false",
        MEMSTREAM_BATCH_SIZE=str(BURST),
        MEMSTREAM_BATCH_WINDOW_MS="3000",  # the whole burst in one batch
        MEMSTREAM_MODEL_CHUNK_SIZE=str(BURST),
        MEMSTREAM_RATE_LIMIT_PER_S="0",
        MEMSTREAM_LOG_LEVEL="WARNING",
    )
    try:
        wait_for_http(f"{url}/healthz", 90)
        token = TokenStore(tmp_path / "tokens.db").create(tenant, "reader")
        texts = [t for _, t in memory_texts(BURST + 20)]
        memories = [Memory(tenant=tenant, agent_id="w", payload={"text": t}) for t in texts]
        async with httpx.AsyncClient(base_url=url, timeout=120) as api:
            auth = {"Authorization": f"Bearer {token}"}

            async def stored() -> int:
                # this worker's own store (the session's worker indexes the same events too)
                r = await api.get("/v1/stats", headers=auth)
                assert r.status_code == 200, r.text
                return int(r.json()["memories_indexed"])

            await _publish(topics.bootstrap, memories[:20])  # a store to search
            for _ in range(600):
                if await stored() >= 20:
                    break
                await asyncio.sleep(0.2)
            r = await api.get("/v1/search", params={"q": "postgres failover"}, headers=auth)
            assert r.status_code == 200 and r.json()["results"], r.text

            await _publish(topics.bootstrap, memories[20:])
            answered = 0
            deadline = time.monotonic() + 300
            while await stored() == 20 and time.monotonic() < deadline:
                r = await api.get("/v1/search", params={"q": "schema migrations"}, headers=auth)
                assert r.status_code == 200, r.text
                answered += 1
            assert await stored() > 20, "the burst was never indexed"
        # measured: 2-3 before (a search answered only between batches), 330 after
        assert answered >= 20, f"only {answered} searches answered while the batch was embedded"
    finally:
        stop_process(proc)
