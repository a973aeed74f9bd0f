"""Issue 11's reproductions, each on the real API, worker and broker: what hostile testing
found leaking, breaking the store, or answering 500, and what holds now."""

from __future__ import annotations

import asyncio
import json
import socket
import stat
import uuid

import httpx
import pytest
import zstandard

from memstream.broker import BrokerHandle
from memstream.client import Client
from memstream.privacy.keystore import KeyStore, subject_id
from memstream.privacy.record_seal import RecordSealer
from memstream.schemas.events import Erasure
from memstream.schemas.topics import DELIVERIES, ERASURES, INDEXED
from memstream.streams.privacy_stage import load_master_key
from tests.integration.conftest import Worker, read_topic
from tests.integration.test_api import _auth, _collect, _subscribe, _until, _wait_subscriptions

EMAIL = "jane.roe@example.org"
PHONE = "+1 415 555 0142"


async def _indexed(api: httpx.AsyncClient, token: str, n: int, timeout: float = 90) -> None:
    """Wait until the caller's tenant has at least `n` memories stored."""
    for _ in range(int(timeout / 0.25)):
        stats = (await api.get("/v1/stats", headers=_auth(token))).json()
        if stats["memories_indexed"] >= n:
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"never indexed {n} memories: {stats}")


async def _ids(api: httpx.AsyncClient, token: str, q: str) -> set[str]:
    r = await api.get("/v1/search", params={"q": q, "k": 50}, headers=_auth(token))
    assert r.status_code == 200, r.text
    return {hit["memory_id"] for hit in r.json()["results"]}


# --- leaks ---------------------------------------------------------------------------------


async def test_deliveries_never_cross_tenants_when_agents_share_an_id(worker: Worker) -> None:
    """globex/alice used to receive acme/alice's deliveries (keyed by agent id alone), and a
    cursor at offset -1 replayed the whole history of that key."""
    acme, globex = f"acme-{uuid.uuid4().hex[:6]}", f"globex-{uuid.uuid4().hex[:6]}"
    acme_alice = worker.token(acme, "alice", ["ops"], ["pii"])
    globex_alice = worker.token(globex, "alice", ["ops"])
    acme_bob = worker.token(acme, "bob", ["ops"])
    globex_bob = worker.token(globex, "bob", ["ops"])
    async with httpx.AsyncClient(base_url=worker.url, timeout=30) as api:
        for token in (acme_alice, globex_alice):
            await _subscribe(api, token, "customer contact details", min_score=-1.0)
        await _wait_subscriptions(api, acme_alice, 1)
        await _wait_subscriptions(api, globex_alice, 1)
        got: dict[str, list[dict]] = {"acme": [], "globex": []}
        cursors: list[str] = []
        tasks = [
            asyncio.create_task(_collect(worker.url, acme_alice, got["acme"], cursors=cursors)),
            asyncio.create_task(_collect(worker.url, globex_alice, got["globex"])),
        ]
        await asyncio.sleep(1.0)
        acme_ids, globex_ids = set(), set()
        for i, scope in enumerate(["tenant", "team:ops", "public"] * 3):
            r = await api.post(
                "/v1/memories",
                json={"text": f"call Jane Roe at {EMAIL} about order {i}", "scope": scope},
                headers=_auth(acme_bob),
            )
            assert r.status_code == 202, r.text
            acme_ids.add(r.json()["event_id"])
        r = await api.post(
            "/v1/memories", json={"text": "globex's own note on orders"}, headers=_auth(globex_bob)
        )
        globex_ids.add(r.json()["event_id"])
        try:
            assert await _until(
                lambda: (
                    acme_ids <= {x["payload"]["memory_id"] for x in got["acme"]}
                    and globex_ids <= {x["payload"]["memory_id"] for x in got["globex"]}
                ),
                90,
            )
            await asyncio.sleep(2.0)
        finally:
            for task in tasks:
                task.cancel()
        assert {x["payload"]["memory_id"] for x in got["globex"]} == globex_ids
        assert not any(EMAIL in json.dumps(x) for x in got["globex"])
        assert any(EMAIL in x["payload"]["text"] for x in got["acme"])  # cleared: in clear
        # the whole history of globex/alice's key, from offset -1 of its partition
        history: list[dict] = []
        partition = cursors[0].split(":")[0]
        task = asyncio.create_task(
            _collect(worker.url, globex_alice, history, cursor=f"{partition}:-1")
        )
        await asyncio.sleep(4.0)
        task.cancel()
        assert all(x["tenant"] == globex for x in history), history
        assert not acme_ids & {x["payload"]["memory_id"] for x in history}


async def test_aggregates_count_only_memories_the_caller_may_see(worker: Worker) -> None:
    tenant = f"agg-{uuid.uuid4().hex[:6]}"
    insider = worker.token(tenant, "insider", ["payroll"])
    outsider = worker.token(tenant, "outsider")
    async with httpx.AsyncClient(base_url=worker.url, timeout=30) as api:
        for i in range(4):
            r = await api.post(
                "/v1/memories",
                json={
                    "text": f"salary band {i} agreed",
                    "scope": "team:payroll",
                    "topic": f"payroll-secret-{i}",
                    "tags": [f"band-{i}"],
                },
                headers=_auth(insider),
            )
            assert r.status_code == 202, r.text
        r = await api.post(
            "/v1/memories",
            json={"text": "the canteen opens at nine", "topic": "canteen", "tags": ["food"]},
            headers=_auth(insider),
        )
        await _indexed(api, insider, 5)
        for field, hidden in (("topic", "payroll-secret"), ("tags", "band-")):
            r = await api.get(
                f"/v1/aggregates/{field}", params={"epsilon": 0.01}, headers=_auth(outsider)
            )
            assert r.status_code == 200, r.text
            assert not [k for k in r.json()["counts"] if k.startswith(hidden)], r.json()
            r = await api.get(
                f"/v1/aggregates/{field}", params={"epsilon": 0.01}, headers=_auth(insider)
            )
            assert [k for k in r.json()["counts"] if k.startswith(hidden)]  # not vacuous


async def test_tags_topic_and_metadata_are_scanned_before_anything_is_kept(
    broker: BrokerHandle, worker: Worker
) -> None:
    """Raw e-mail addresses in tags used to reach every reader; topic and metadata were
    never scanned. Now they are kept only as typed placeholders (for cleared readers too:
    they are labels, not prose)."""
    tenant = f"fields-{uuid.uuid4().hex[:6]}"
    writer = worker.token(tenant, "writer")
    reader = worker.token(tenant, "reader")
    async with httpx.AsyncClient(base_url=worker.url, timeout=30) as api:
        await _subscribe(api, reader, "contact for the invoice", min_score=-1.0)
        await _wait_subscriptions(api, reader, 1)
        got: list[dict] = []
        task = asyncio.create_task(_collect(worker.url, reader, got))
        await asyncio.sleep(1.0)
        r = await api.post(
            "/v1/memories",
            json={
                "text": "the invoice contact changed",
                "tags": [EMAIL, "billing"],
                "topic": f"contact {EMAIL}",
                "metadata": {"owner": EMAIL, "nested": [{"phone": PHONE}], EMAIL: 1},
            },
            headers=_auth(writer),
        )
        assert r.status_code == 202, r.text
        memory_id = r.json()["event_id"]
        try:
            assert await _until(lambda: any(x["payload"]["memory_id"] == memory_id for x in got))
        finally:
            task.cancel()
        r = await api.get("/v1/search", params={"q": "invoice contact"}, headers=_auth(reader))
        hits = [h for h in r.json()["results"] if h["memory_id"] == memory_id]
        assert hits and "billing" in hits[0]["tags"]
        assert EMAIL not in json.dumps(hits) and EMAIL not in json.dumps(got)
    records = await read_topic(
        broker.bootstrap, INDEXED.name, lambda rs: any(r.key == memory_id.encode() for r in rs)
    )
    (record,) = [json.loads(r.value) for r in records if r.key == memory_id.encode()][:1]
    kept = json.dumps(record["payload"])
    assert EMAIL not in kept and PHONE not in kept
    assert "EMAIL_ADDRESS" in kept and "billing" in record["payload"]["tags"]


async def test_the_archive_keeps_no_raw_personal_data_and_erasure_reaches_it(
    broker: BrokerHandle, worker: Worker
) -> None:
    """The archive used to hold raw memories and deliveries with names, emails and phones,
    in files of mode 0644 that erasure could not reach; keys.db was 0644 too."""
    tenant = f"arch-{uuid.uuid4().hex[:6]}"
    marker = f"Zelda Quux-{uuid.uuid4().hex[:6]}"
    writer = worker.token(tenant, "writer", clearance=["pii"])
    value = f"{marker.lower().replace(' ', '.')}@example.org"
    async with httpx.AsyncClient(base_url=worker.url, timeout=30) as api:
        r = await api.post(
            "/v1/memories", json={"text": f"write to {value} about it"}, headers=_auth(writer)
        )
        assert r.status_code == 202, r.text
        memory_id = r.json()["event_id"]
        await _indexed(api, writer, 1)
    archive = worker.data_dir / "archive"
    sealer = RecordSealer(KeyStore(worker.data_dir / "keys.db"))

    def archived_copy() -> tuple[str, bytes] | None:
        from memstream.log.archive import ArchiveReader

        for record in ArchiveReader(archive).read("memstream.memories"):
            if record.sealed_with == f"{tenant}/{memory_id}":
                return record.sealed_with, record.value or b""
        return None

    def opens() -> bool:
        copy = archived_copy()
        return copy is not None and value.encode() in (sealer.open(*copy) or b"")

    # the worker's key opens it (the copy and the key are read again on each try: the
    # archiver may rewrite a segment, and the key store is another process's file)
    if not await _until(opens, 40):
        copy = archived_copy()
        key = sealer.keystore.record_key(tenant, memory_id)
        pytest.fail(
            f"archived copy {'found' if copy else 'missing'}, key {'found' if key else 'missing'}"
        )
    kid, sealed = archived_copy()  # type: ignore[misc]
    raw = b"".join(
        zstandard.ZstdDecompressor().decompressobj().decompress(p.read_bytes())
        for p in archive.rglob("*.zst")
    )
    assert value.encode() not in raw  # nothing in clear, in any segment of any topic
    assert not (archive / DELIVERIES.name).exists()
    for path in [worker.data_dir, *worker.data_dir.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}"

    subject = subject_id(tenant, value, load_master_key(worker.data_dir))
    async with Client(broker.bootstrap, tenant=tenant, agent_id="ops") as client:
        await client.publish(
            ERASURES.name,
            Erasure(tenant=tenant, agent_id="ops", payload={"subject_id": subject}),
            key=subject,
        )
    keys = KeyStore(worker.data_dir / "keys.db")
    assert await _until(lambda: keys.record_key(tenant, memory_id) is None, 60)
    assert sealer.open(kid, sealed) is None  # the archived copy is noise now


async def test_supersedes_only_what_the_writer_may_see(worker: Worker) -> None:
    """An agent without team access used to supersede others' private and team memories,
    which then vanished from their owners' searches."""
    tenant = f"sup-{uuid.uuid4().hex[:6]}"
    owner = worker.token(tenant, "owner", ["core"])
    outsider = worker.token(tenant, "outsider")
    async with httpx.AsyncClient(base_url=worker.url, timeout=30) as api:
        targets = []
        for scope, what in [
            ("private", "the release train for the app leaves on friday"),
            ("team:core", "the release train for the api gateway leaves on friday"),
            ("private", "the release train for billing leaves friday at noon"),
            ("team:core", "the release train for search is cancelled this friday"),
        ]:
            r = await api.post(
                "/v1/memories", json={"text": what, "scope": scope}, headers=_auth(owner)
            )
            targets.append(r.json()["event_id"])
        await _indexed(api, owner, 4)
        r = await api.post(
            "/v1/memories",
            json={"text": "nothing to see here", "supersedes": targets},
            headers=_auth(outsider),
        )
        assert r.status_code == 202
        # the owner's own update of its private memory does supersede it
        r = await api.post(
            "/v1/memories",
            json={
                "text": "the release train leaves on monday",
                "scope": "private",
                "supersedes": [targets[0]],
            },
            headers=_auth(owner),
        )
        await _indexed(api, owner, 6)
        await asyncio.sleep(1.0)
        found = await _ids(api, owner, "release train friday")
        assert set(targets[1:]) <= found, "the outsider hid the owner's memories"
        assert targets[0] not in found  # superseded by its own author


async def test_team_writes_need_membership_and_feedback_a_visible_memory(
    worker: Worker,
) -> None:
    tenant, other = f"tw-{uuid.uuid4().hex[:6]}", f"tw2-{uuid.uuid4().hex[:6]}"
    member = worker.token(tenant, "member", ["core"])
    stranger = worker.token(tenant, "stranger")
    foreign = worker.token(other, "member", ["core"])
    async with httpx.AsyncClient(base_url=worker.url, timeout=30) as api:
        for path in ("/v1/memories", "/v1/observations"):
            r = await api.post(
                path,
                json={"text": "joining uninvited", "scope": "team:core"},
                headers=_auth(stranger),
            )
            assert r.status_code == 403 and "team" in r.json()["error"], r.text
        r = await api.post(
            "/v1/memories", json={"text": "core notes", "scope": "team:core"}, headers=_auth(member)
        )
        assert r.status_code == 202
        memory_id = r.json()["event_id"]
        await _indexed(api, member, 1)
        body = {"memory_id": memory_id, "outcome": "wrong"}
        assert (
            await api.post("/v1/feedback", json=body, headers=_auth(foreign))
        ).status_code == 404
        assert (
            await api.post("/v1/feedback", json=body, headers=_auth(stranger))
        ).status_code == 404
        assert (await api.post("/v1/feedback", json=body, headers=_auth(member))).status_code == 202


# --- loss and denial of service ------------------------------------------------------------


async def test_nested_metadata_is_refused_and_never_poisons_a_tenant(worker: Worker) -> None:
    """Metadata nested 127-199 levels deep used to be accepted and indexed, after which every
    search of the tenant answered 500 and the store could not reopen its WAL; depth 300 was
    a 500 from the API."""
    tenant = f"deep-{uuid.uuid4().hex[:6]}"
    token = worker.token(tenant, "agent")
    async with httpx.AsyncClient(base_url=worker.url, timeout=30) as api:
        for depth in (17, 127, 150, 199, 200, 250, 300, 5000):
            body = '{"text":"deep","metadata":' + '{"a":' * depth + "1" + "}" * depth + "}"
            r = await api.post(
                "/v1/memories",
                content=body,
                headers=_auth(token) | {"Content-Type": "application/json"},
            )
            assert r.status_code == 422, (depth, r.status_code, r.text[:200])
            assert r.json()["error"]
        ok = '{"text":"shallow is fine","metadata":' + '{"a":' * 15 + "1" + "}" * 15 + "}"
        r = await api.post(
            "/v1/memories", content=ok, headers=_auth(token) | {"Content-Type": "application/json"}
        )
        assert r.status_code == 202, r.text
        await _indexed(api, token, 1)
        assert (
            await api.get("/v1/search", params={"q": "shallow"}, headers=_auth(token))
        ).status_code == 200


async def test_input_that_used_to_answer_500_gets_a_4xx_with_a_reason(worker: Worker) -> None:
    token = worker.token(f"in-{uuid.uuid4().hex[:6]}", "agent")
    json_headers = _auth(token) | {"Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=worker.url, timeout=30) as api:
        cases = [
            api.post(
                "/v1/memories",
                content='{"text":"x","metadata":{"s":"\\ud800"}}',
                headers=json_headers,
            ),
            api.post(
                "/v1/memories", content='{"text":"x","metadata":{"n":NaN}}', headers=json_headers
            ),
            api.post(
                "/v1/memories",
                content='{"text":"x","metadata":{"n":Infinity}}',
                headers=json_headers,
            ),
            api.get("/v1/aggregates/topic", params={"epsilon": "1e-300"}, headers=_auth(token)),
            api.get("/v1/stream", params={"cursor": f"0:{2**63 - 1}"}, headers=_auth(token)),
            api.get("/v1/stream", headers=_auth(token) | {"Last-Event-ID": "not-a-cursor"}),
        ]
        for response in await asyncio.gather(*cases):
            assert 400 <= response.status_code < 500, (response.request.url, response.text)
            assert response.json()["error"], response.text

        async def chunked():  # no Content-Length: the limit is found by counting
            yield b'{"text":"'
            for _ in range(40):
                yield b"x" * 65536
            yield b'"}'

        r = await api.post("/v1/memories", content=chunked(), headers=json_headers)
        assert r.status_code == 413 and "limit" in r.json()["error"] + json.dumps(r.json())


def test_a_rejected_request_keeps_the_connection_open(worker: Worker) -> None:
    """After every 500 the keep-alive connection used to be dropped: two requests on one
    socket, the first one that used to fail, both answered."""
    token = worker.token(f"ka-{uuid.uuid4().hex[:6]}", "agent")
    host, port = worker.url.removeprefix("http://").split(":")
    body = b'{"text":"x","metadata":{"s":"\\ud800"}}'
    first = (
        f"POST /v1/memories HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    second = f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        reader = sock.makefile("rb")
        sock.sendall(first)
        assert _response(reader).startswith(b"HTTP/1.1 422")
        sock.sendall(second)
        assert _response(reader).startswith(b"HTTP/1.1 200")


def _response(reader) -> bytes:  # type: ignore[no-untyped-def]
    """One HTTP/1.1 response with a Content-Length, read whole from a socket file."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = reader.readline()
        assert line, f"connection closed after {head!r}"
        head += line
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head + reader.read(length)


async def test_rate_limits_answer_429_with_retry_after_per_token(worker: Worker) -> None:
    tenant = f"rl-{uuid.uuid4().hex[:6]}"
    busy, calm = worker.token(tenant, "busy"), worker.token(tenant, "calm")
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=worker.url, timeout=60, limits=limits) as api:
        responses = await asyncio.gather(
            *(api.get("/v1/stats", headers=_auth(busy)) for _ in range(800))
        )
        limited = [r for r in responses if r.status_code == 429]
        assert limited and all(r.status_code in (200, 429) for r in responses)
        assert int(limited[0].headers["Retry-After"]) >= 1 and limited[0].json()["error"]
        assert (await api.get("/v1/stats", headers=_auth(calm))).status_code == 200
