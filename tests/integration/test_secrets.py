"""Acceptance (issue 13): secrets are never stored. 500+ generated secrets of 15 kinds,
inside ordinary memories, half through the HTTP API and half straight onto the topic with
the Kafka SDK; none of them appears in the store, the archive, `memstream.indexed`, the
deliveries or search results, for any reader, cleared or not; the rest of every memory
is intact."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter

import httpx
import zstandard

from memstream.broker import BrokerHandle
from memstream.client import Client
from memstream.eval.secret_samples import KINDS, secret_samples
from memstream.log.archive import ArchiveReader
from memstream.privacy.keystore import KeyStore
from memstream.privacy.record_seal import RecordSealer
from memstream.schemas.topics import INDEXED, MEMORIES
from tests.integration.conftest import Worker, read_topic
from tests.integration.test_api import _auth, _collect, _until, _wait_subscriptions

N = 510


def _pieces(secret: str) -> list[str]:
    """Fragments that would show a secret survived in part (a private key: each line)."""
    lines = [line for line in secret.splitlines() if "PRIVATE KEY" not in line]
    return [line[i : i + 12] for line in lines for i in range(0, max(1, len(line) - 12), 6)]


async def test_no_secret_is_stored_archived_indexed_or_delivered(
    broker: BrokerHandle, worker: Worker
) -> None:
    tenant = f"sec-{uuid.uuid4().hex[:6]}"
    writer = worker.token(tenant, "writer")
    cleared = worker.token(tenant, "auditor", clearance=["pii"])
    plain = worker.token(tenant, "reader")
    samples = secret_samples(N, seed=uuid.uuid4().int % 1000)
    assert len(Counter(s.kind for s in samples)) == len(KINDS) >= 10
    ids: dict[str, int] = {}
    async with httpx.AsyncClient(base_url=worker.url, timeout=30) as api:
        r = await api.post(
            "/v1/subscriptions",
            json={"query": "credentials", "min_score": -1.0, "max_per_minute": 100_000},
            headers=_auth(cleared),
        )
        assert r.status_code == 200, r.text
        await _wait_subscriptions(api, cleared, 1)
        delivered: list[dict] = []
        stream = asyncio.create_task(_collect(worker.url, cleared, delivered))
        await asyncio.sleep(1.0)
        for i, sample in enumerate(samples[: N // 2]):  # through the API
            r = await api.post(
                "/v1/memories",
                json={"text": f"note {i}: {sample.text}", "tags": ["ops"]},
                headers=_auth(writer),
            )
            assert r.status_code == 202, r.text
            ids[r.json()["event_id"]] = i
        async with Client(broker.bootstrap, tenant=tenant, agent_id="writer") as client:
            for i, sample in enumerate(samples[N // 2 :], start=N // 2):  # straight to Kafka
                memory_id = await client.publish_memory(f"note {i}: {sample.text}", tags=["ops"])
                ids[str(memory_id)] = i
        try:
            assert await _until(
                lambda: set(ids) <= {x["payload"]["memory_id"] for x in delivered}, 180
            ), "not every memory was delivered"
        finally:
            stream.cancel()
        searched = []
        for token in (cleared, plain):
            for q in ("key token password", "deploy release bucket", "API login console"):
                r = await api.get("/v1/search", params={"q": q, "k": 100}, headers=_auth(token))
                assert r.status_code == 200
                searched += r.json()["results"]
        assert searched

    records = await read_topic(
        broker.bootstrap,
        INDEXED.name,
        lambda rs: set(ids) <= {r.key.decode() for r in rs if r.key},
        timeout=120,
    )
    indexed = {
        r.key.decode(): json.loads(r.value) for r in records if r.key and r.key.decode() in ids
    }
    assert set(indexed) == set(ids)
    api_side = {i for i, n in ids.items() if n < N // 2}
    raw_log = [
        r.value.decode(errors="replace")
        for r in await read_topic(broker.bootstrap, MEMORIES.name, lambda rs: True, timeout=20)
        if r.value and tenant.encode() in r.value
    ]
    await asyncio.sleep(2.0)  # the archive flushes every second
    archive = worker.data_dir / "archive"
    sealer = RecordSealer(KeyStore(worker.data_dir / "keys.db"))
    archived = [
        (sealer.open(rec.sealed_with, rec.value) if rec.sealed_with else rec.value) or b""
        for topic in ArchiveReader(archive).topics()
        for rec in ArchiveReader(archive).read(topic)
    ]
    archived_text = "\n".join(v.decode(errors="replace") for v in archived if tenant.encode() in v)
    raw_archive = b"".join(
        zstandard.ZstdDecompressor().decompressobj().decompress(p.read_bytes())
        for p in archive.rglob("*.zst")
    ).decode(errors="replace")
    places = {
        "indexed": json.dumps(list(indexed.values())),
        "deliveries": json.dumps(delivered),
        "search": json.dumps(searched),
        "archive": archived_text + raw_archive,
        "log (API path)": "\n".join(line for line in raw_log if any(i in line for i in api_side)),
    }
    assert tenant in places["archive"]  # the archive was read, decrypted
    leaks = Counter()
    for sample in samples:
        for place, text in places.items():
            if any(piece in text for piece in _pieces(sample.secret)):
                leaks[(place, sample.kind)] += 1
    assert not leaks, leaks
    damaged = []
    for memory_id, i in ids.items():
        stored = indexed[memory_id]["payload"]["text"]
        if not all(word in stored for word in samples[i].rest) or "<SECRET_" not in stored:
            damaged.append(stored)
    assert not damaged, damaged[:5]


async def test_the_readme_memory_reads_back_unchanged_and_only_pii_and_keys_are_sealed(
    worker: Worker,
) -> None:
    """It used to read back as `staging <PROPER_NOUN> moved to <ORGANIZATION>` for every
    reader without the clearance."""
    tenant = f"readme-{uuid.uuid4().hex[:6]}"
    writer = worker.token(tenant, "planner", ["infra"])
    reader = worker.token(tenant, "reader", ["infra"])
    key = "sk_live_" + uuid.uuid4().hex[:24]
    texts = {
        "readme": "staging DB moved to eu-west-2",
        "mixed": f"Call Jane Roe on +1 415 555 0142 about the Kafka upgrade; the key is {key}",
    }
    async with httpx.AsyncClient(base_url=worker.url, timeout=30) as api:
        ids = {}
        for name, text in texts.items():
            r = await api.post(
                "/v1/memories",
                json={"text": text, "scope": "team:infra"},
                headers=_auth(writer),
            )
            assert r.status_code == 202
            ids[r.json()["event_id"]] = name
        seen: dict[str, str] = {}
        for _ in range(240):
            for q in ("where is staging", "Kafka upgrade call"):
                r = await api.get("/v1/search", params={"q": q, "k": 10}, headers=_auth(reader))
                seen |= {
                    h["memory_id"]: h["text"] for h in r.json()["results"] if h["memory_id"] in ids
                }
            if len(seen) == 2:
                break
            await asyncio.sleep(0.5)
    by_name = {ids[i]: text for i, text in seen.items()}
    assert by_name["readme"] == "staging DB moved to eu-west-2"
    assert by_name["mixed"] == (
        "Call <PERSON> on <PHONE_NUMBER> about the Kafka upgrade; the key is <SECRET_STRIPE_KEY>"
    )
