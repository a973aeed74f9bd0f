"""Acceptance (issue 11): poison on the real broker. Bursts of valid events with every bad
kind mixed in (deep nesting, NaN, infinities, surrogates, huge, non-JSON, and more) reach a
worker in the same batches: every valid event is indexed, every bad one dead-lettered with
its reason, the worker and the store keep serving, and the store reopens after `kill -9`.

It used to be that one bad record made the batch path raise (`dead_letter()` recursing on
a deep value, the store refusing NaN outside the batch's `try`), Faust acked the batch, and
the valid events around it were neither indexed nor dead-lettered."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer

from memstream.broker import BrokerHandle
from memstream.broker.base import free_port
from memstream.schemas.events import Memory, Subscription
from memstream.schemas.topics import (
    DEAD_LETTER,
    MEMORIES,
    SUBSCRIPTIONS,
)
from memstream.services.auth import TokenStore
from memstream.services.stack import spawn_worker, stop_process, wait_for_http
from memstream.store import open_store
from memstream.store.base import Caller
from tests.integration.conftest import read_topic, start_group_at_end
from tests.integration.test_api import _auth, _collect, _until, _wait_subscriptions

BURSTS = 2
VALID_PER_SIDE = 10


def _envelope(tenant: str, payload: str, event_id: str | None = None) -> bytes:
    """A memory event whose payload JSON is given as text (so it can hold what Python's
    json cannot write: NaN literals, lone surrogate escapes, absurd nesting)."""
    event_id = event_id or str(Memory(tenant=tenant, agent_id="x", payload={"text": "x"}).event_id)
    return (
        f'{{"schema_version":"1.0","event_id":"{event_id}","tenant":"{tenant}",'
        f'"agent_id":"poisoner","scope":"tenant","kind":"memory","payload":{payload}}}'
    ).encode()


def _bad_kinds(tenant: str) -> dict[str, tuple[bytes | None, set[str]]]:
    """name -> (value, dead-letter reasons it may get)."""
    deep = "[" * 100_000 + "]" * 100_000
    return {
        "deep_100k": (_envelope(tenant, f'{{"text":"x","metadata":{{"m":{deep}}}}}'), {"not_json"}),
        "deep_130": (
            _envelope(tenant, '{"text":"x","metadata":' + '{"a":' * 130 + "1" + "}" * 131),
            {"invalid_fields"},
        ),
        "nan": (_envelope(tenant, '{"text":"x","metadata":{"n":NaN}}'), {"invalid_fields"}),
        "infinity": (
            _envelope(tenant, '{"text":"x","metadata":{"n":-Infinity}}'),
            {"invalid_fields"},
        ),
        "big_int": (
            _envelope(tenant, '{"text":"x","metadata":{"n":' + "9" * 40 + "}}"),
            {"invalid_fields"},
        ),
        "surrogate_escape": (_envelope(tenant, '{"text":"a \\ud800 b"}'), {"not_json"}),
        "surrogate_bytes": (
            _envelope(tenant, '{"text":"a SURR b"}').replace(b"SURR", b"\xed\xa0\x80"),
            {"invalid_utf8"},
        ),
        "huge": (
            _envelope(
                tenant, json.dumps({"text": "x" * 200_000, "metadata": {"p": "y" * 2_000_000}})
            ),
            {"oversize"},
        ),
        "garbage": (b"\x00\x01not json at all{{{", {"not_json", "invalid_utf8"}),
        "not_object": (b"[1, 2, 3]", {"not_object"}),
        "empty": (b"", {"empty"}),
        "wrong_types": (_envelope(tenant, '{"text":42,"tags":"x"}'), {"invalid_fields"}),
    }


def _spawn(broker: BrokerHandle, data_dir: Path, port: int, group: str):  # type: ignore[no-untyped-def]
    proc = spawn_worker(
        broker.bootstrap,
        log_path=data_dir / "worker.log",
        MEMSTREAM_DATA_DIR=str(data_dir),
        MEMSTREAM_SERVE="true",
        MEMSTREAM_WEB_PORT=str(port),
        MEMSTREAM_CONSUMER_GROUP=group,
        MEMSTREAM_ARCHIVE_ENABLED="false",  # the archive's group is the session worker's
        MEMSTREAM_PROCESSORS_ENABLED="false",
        MEMSTREAM_LOG_LEVEL="WARNING",
        # bad input is the point here, not the models (the stages still run on every event)
        MEMSTREAM_EMBEDDER="static",
        MEMSTREAM_PII_TIER="fast",
    )
    wait_for_http(f"http://127.0.0.1:{port}/healthz", 90)
    return proc


async def test_poison_in_every_burst_loses_no_valid_event_and_the_store_survives_kill_9(
    topics: BrokerHandle, tmp_path: Path
) -> None:
    tenant = f"poison-{uuid.uuid4().hex[:6]}"
    group = f"poison-{tenant}"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    await start_group_at_end(topics.bootstrap, group)
    proc = _spawn(topics, tmp_path, port, group)
    tokens = TokenStore(tmp_path / "tokens.db")
    reader = tokens.create(tenant, "reader")
    valid_ids: list[str] = []
    bad: dict[tuple[int, int], tuple[str, set[str]]] = {}
    producer = AIOKafkaProducer(
        bootstrap_servers=topics.bootstrap, max_request_size=16 * 1_048_576, linger_ms=20
    )
    await producer.start()
    try:
        # a subscription whose vector has the wrong size, for the tenant the reader is in
        poison_sub = Subscription(
            tenant=tenant,
            agent_id="poisoner",
            scope="private",
            payload={"subscription_id": f"sub-{uuid.uuid4().hex}", "query": [0.1, 0.2, 0.3]},
        )
        await producer.send_and_wait(SUBSCRIPTIONS.name, poison_sub.to_json(), key=b"p")
        async with httpx.AsyncClient(base_url=url, timeout=30) as api:
            r = await api.post(
                "/v1/subscriptions",
                json={
                    "query": "a fact that was noted",
                    "min_score": -1.0,
                    "max_per_minute": 10_000,
                },
                headers=_auth(reader),
            )
            assert r.status_code == 200, r.text
            await _wait_subscriptions(api, reader, 1)
            delivered: list[dict] = []
            stream = asyncio.create_task(_collect(url, reader, delivered))
            await asyncio.sleep(1.0)
            kinds = _bad_kinds(tenant)
            for burst in range(BURSTS):
                for name, (value, reasons) in kinds.items():
                    sends = []
                    for side in ("before", "after"):
                        for i in range(VALID_PER_SIDE):
                            event = Memory(
                                tenant=tenant,
                                agent_id="writer",
                                payload={
                                    # words of its own, so no two are near-duplicates
                                    "text": f"fact {uuid.uuid4().hex[:10]} was noted {side} "
                                    f"the bad one, {uuid.uuid4().hex[:8]}",
                                    "metadata": {"burst": burst, "i": i, "ok": [1.5, None]},
                                },
                            )
                            valid_ids.append(str(event.event_id))
                            sends.append(producer.send(MEMORIES.name, event.to_json(), key=b"k"))
                        if side == "before":  # the bad one in the middle of its burst
                            bad_send = await producer.send(MEMORIES.name, value, key=b"k")
                    results = await asyncio.gather(*sends)
                    await asyncio.gather(*results)
                    meta = await bad_send
                    bad[(meta.partition, meta.offset)] = (name, reasons)
            # every valid event indexed (the worker's own count of this tenant)
            for _ in range(600):
                stats = (await api.get("/v1/stats", headers=_auth(reader))).json()
                if stats["memories_indexed"] >= len(valid_ids):
                    break
                await asyncio.sleep(0.5)
            assert stats["memories_indexed"] == len(valid_ids), stats
            assert await _until(
                lambda: set(valid_ids) <= {x["payload"]["memory_id"] for x in delivered}, 60
            )
            stream.cancel()
            r = await api.get("/v1/search", params={"q": "fact noted"}, headers=_auth(reader))
            assert r.status_code == 200 and r.json()["results"]

        # every bad one dead-lettered, with a reason it may have
        def lettered(records: list) -> dict[tuple[int, int], str]:
            found = {}
            for record in records:
                p = json.loads(record.value)["payload"]
                if p["origin_topic"] == MEMORIES.name:
                    found[(p["origin_partition"], p["origin_offset"])] = p["reason"]
            return found

        letters = lettered(
            await read_topic(
                topics.bootstrap, DEAD_LETTER.name, lambda rs: set(bad) <= set(lettered(rs)), 120
            )
        )
        for place, (name, reasons) in bad.items():
            assert letters.get(place) in reasons, (name, letters.get(place))

        # kill -9 mid-life; the store reopens from its WAL with everything in it
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc = _spawn(topics, tmp_path, port, group)
        async with httpx.AsyncClient(base_url=url, timeout=30) as api:
            stats = (await api.get("/v1/stats", headers=_auth(reader))).json()
            r = await api.get("/v1/search", params={"q": "fact noted"}, headers=_auth(reader))
            assert r.status_code == 200 and r.json()["results"]
        assert stats["memories_indexed"] == len(valid_ids), stats
    finally:
        await producer.stop()
        assert stop_process(proc) == 0, (tmp_path / "worker.log").read_text()[-3000:]
    with open_store(str(tmp_path / "store")) as store:  # type: ignore[attr-defined]
        got = store.get(Caller(tenant, "reader"), [uuid.UUID(i) for i in valid_ids])
        assert len(got) == len(valid_ids)
