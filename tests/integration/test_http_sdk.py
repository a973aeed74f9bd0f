"""The HTTP SDK against a running worker (issue 15): every method of `HttpClient` and
`AsyncHttpClient`, memory CRUD, history, subscriptions and deliveries, clear errors for
4xx, and deletions and times to live that stay in force after `memstream replay --swap`."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from memstream import AsyncHttpClient, HttpClient
from memstream.broker import BrokerHandle
from memstream.broker.base import free_port
from memstream.sdk.http import DeliveredMemory, Forbidden, InvalidRequest, NotFound, Unauthorized
from memstream.services.auth import TokenStore
from memstream.services.stack import stop_process
from memstream.store.tombstones import TOMBSTONES_FILE, Tombstones
from tests.integration.conftest import start_group_at_end
from tests.integration.test_erasure import _cli, _serve


@dataclass
class Stack:
    data_dir: Path
    url: str
    bootstrap: str
    started: str

    def token(self, tenant: str, agent: str, **kw: list[str]) -> str:
        return TokenStore(self.data_dir / "tokens.db").create(
            tenant, agent, kw.get("teams", []), kw.get("clearance", [])
        )


@pytest.fixture(scope="module")
def stack(topics: BrokerHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A worker of its own (its own data dir and group), so a `replay --swap` here swaps no
    other test's store."""
    data_dir = tmp_path_factory.mktemp("sdk")
    group = f"sdk-{uuid.uuid4().hex[:8]}"
    asyncio.run(start_group_at_end(topics.bootstrap, group))
    started = datetime.now(UTC).isoformat()
    port = free_port()
    proc = _serve(topics, data_dir, group, port)
    try:
        yield Stack(data_dir, f"http://127.0.0.1:{port}", topics.bootstrap, started)
    finally:
        assert stop_process(proc) == 0, (data_dir / "worker.log").read_text()[-3000:]


def _until(check, timeout: float = 30.0, every: float = 0.2):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition never held")
        time.sleep(every)


def test_every_method_of_the_sync_client(stack: Stack) -> None:
    tenant = f"sdk-{uuid.uuid4().hex[:6]}"
    ada = HttpClient(stack.url, stack.token(tenant, "ada"))
    bob = HttpClient(stack.url, stack.token(tenant, "bob"))
    admin = HttpClient(stack.url, stack.token(tenant, "ops", clearance=["admin"]))
    other = HttpClient(stack.url, stack.token(f"{tenant}-x", "eve"))

    first = ada.add(
        "The staging database moved to the eu-west-2 region last night.",
        tags=["infra"],
        topic="ops",
        metadata={"ticket": "OPS-12"},
    )
    record = ada.wait_for(first)
    assert record.text.startswith("The staging database") and record.tags == ["infra"]
    assert record.topic == "ops" and record.metadata == {"ticket": "OPS-12"}
    assert record.agent_id == "ada" and record.scope == "tenant"

    hits = bob.search("where is the staging database?", k=3)
    assert hits and hits[0].memory_id == first
    assert bob.search("staging database", topics=["elsewhere"]) == []

    # supersession and history
    second = ada.add(
        "The staging database moved back to us-east-1.", topic="ops", supersedes=[first]
    )
    ada.wait_for(second)
    versions = _until(lambda: (v := ada.history(first)) and len(v) == 2 and v[0].valid_to and v)
    assert [v.memory_id for v in versions] == [first, second]
    assert versions[0].valid_to is not None and versions[1].valid_to is None
    assert [v.memory_id for v in ada.history(second)] == [first, second]

    # list, with paging and filters
    for i in range(3):
        ada.wait_for(ada.add(f"Release note {i}: the build cache is shared now.", topic="notes"))
    page = bob.list(topic="notes", limit=2)
    assert len(page.memories) == 2 and page.next_cursor
    rest = bob.list(topic="notes", limit=2, cursor=page.next_cursor)
    assert len(rest.memories) == 1 and rest.next_cursor is None
    assert [m.text for m in bob.iterate(topic="notes")] == [
        f"Release note {i}: the build cache is shared now." for i in range(3)
    ]
    assert {m.memory_id for m in bob.list(agent="ada", topic="ops").memories} == {first, second}
    assert bob.topics() == {"ops": 2, "notes": 3}
    assert len(list(bob.export(topic="notes"))) == 3

    # feedback only on what the caller may see
    assert isinstance(bob.feedback(first, "helped", score=0.9), uuid.UUID)
    with pytest.raises(NotFound):
        other.feedback(first, "helped")

    # another tenant sees none of it, by any method
    with pytest.raises(NotFound):
        other.get(first)
    assert other.search("staging database") == [] and other.list().memories == []
    with pytest.raises(NotFound):
        other.history(first)
    with pytest.raises(NotFound):
        other.delete(first)

    # delete: the author or an admin, nobody else
    with pytest.raises(Forbidden):
        bob.delete(second)
    ada.delete(second)
    ada.wait_gone(second)
    note = next(iter(bob.iterate(topic="notes")))
    admin.delete(note.memory_id)
    ada.wait_gone(note.memory_id)
    assert len(bob.list(topic="notes").memories) == 2

    # clear errors
    with pytest.raises(Unauthorized):
        HttpClient(stack.url, "ms_nope_nope").search("x")
    with pytest.raises(InvalidRequest) as bad:
        ada.add("")
    assert bad.value.status == 422 and bad.value.fields
    with pytest.raises(NotFound):
        ada.get(uuid.uuid4())
    with pytest.raises(InvalidRequest):
        ada.list(cursor="not-a-cursor")


def test_subscribe_stream_and_poll(stack: Stack) -> None:
    tenant = f"sdk-{uuid.uuid4().hex[:6]}"
    ada = HttpClient(stack.url, stack.token(tenant, "ada"))
    bob = HttpClient(stack.url, stack.token(tenant, "bob"))
    sub = bob.subscribe("incidents with the payment gateway", min_score=0.3)
    _until(lambda: [s.subscription_id for s in bob.subscriptions()] == [sub])
    assert bob.subscriptions()[0].query == "incidents with the payment gateway"
    _, cursor = bob.deliveries(wait_ms=0)

    streamed: list[DeliveredMemory] = []

    def follow() -> None:
        for delivery in bob.stream():
            streamed.append(delivery)
            return

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    time.sleep(1.0)  # the stream starts at its end: let it connect first
    published = ada.add("The payment gateway returned 502 errors for ten minutes.")
    polled, cursor2 = _until(lambda: (r := bob.deliveries(cursor, wait_ms=2000))[0] and r)
    assert [d.memory_id for d in polled] == [published] and polled[0].source_agent == "ada"
    reader.join(30)
    assert [d.memory_id for d in streamed] == [published]
    # from its cursor a poll never repeats a record (a re-delivery of the same memory, which
    # at-least-once allows after a rebalance, is a later record)
    again = bob.deliveries(cursor2, wait_ms=200)[0]
    assert all(int(d.cursor.split(":")[1]) > int(cursor2.split(":")[1]) for d in again)

    bob.unsubscribe(sub)
    _until(lambda: bob.subscriptions() == [])
    with pytest.raises(NotFound):
        ada.unsubscribe(sub)


def test_the_async_client(stack: Stack) -> None:
    tenant = f"sdk-{uuid.uuid4().hex[:6]}"
    token = stack.token(tenant, "ada")

    async def run() -> None:
        async with AsyncHttpClient(stack.url, token) as ms:
            memory_id = await ms.add("Deploys freeze on Fridays after 3pm.", tags=["process"])
            record = await ms.wait_for(memory_id)
            assert record.tags == ["process"]
            assert (await ms.search("when do deploys freeze?", k=1))[0].memory_id == memory_id
            assert [m.memory_id async for m in ms.iterate()] == [memory_id]
            assert [m.memory_id for m in await ms.history(memory_id)] == [memory_id]
            await ms.feedback(memory_id, "used")
            sub = await ms.subscribe("deploy freezes")
            assert sub.startswith("sub-")
            await ms.delete(memory_id)
            for _ in range(150):
                try:
                    await ms.get(memory_id)
                except NotFound:
                    return
                await asyncio.sleep(0.2)
            raise AssertionError("deleted memory still readable")

    asyncio.run(run())


def test_deletes_and_expiry_stay_in_force_after_replay_swap(stack: Stack) -> None:
    """Acceptance 3 and 6: a delete, and a memory with a 5-second time to live, stay gone
    after `memstream replay --swap` of the memories topic."""
    tenant = f"sdk-{uuid.uuid4().hex[:6]}"
    ms = HttpClient(stack.url, stack.token(tenant, "ada"))
    deleted = ms.add("The old VPN endpoint is vpn1.internal.example.")
    expiring = ms.add("The door code this week is 4417.", ttl=5)
    expires = time.monotonic() + 5.0
    kept = ms.add("The on-call rotation changes every Monday at 9am.")
    for memory_id in (deleted, expiring, kept):
        ms.wait_for(memory_id)
    assert ms.get(expiring).expires_at is not None
    assert any(h.memory_id == expiring for h in ms.search("door code", k=5))
    ms.delete(deleted)
    ms.wait_gone(deleted)

    time.sleep(max(0.0, expires + 0.5 - time.monotonic()))
    with pytest.raises(NotFound):
        ms.get(expiring)
    assert not any(h.memory_id == expiring for h in ms.search("door code", k=5))
    tombstones = Tombstones(stack.data_dir / TOMBSTONES_FILE)
    _until(lambda: tombstones.deleted(tenant, [deleted, expiring]) == {str(deleted), str(expiring)})

    summary = _cli(
        stack.data_dir,
        "replay",
        "--topic",
        "memstream.memories",
        "--from",
        stack.started,
        "--bootstrap",
        stack.bootstrap,
        "--into",
        "new",
        "--swap",
        "--json",
    )
    assert '"swapped": true' in summary and '"skipped_deleted": ' in summary, summary
    time.sleep(2.0)  # the live worker follows the alias
    assert ms.wait_for(kept).memory_id == kept  # the replayed version serves
    for gone in (deleted, expiring):
        with pytest.raises(NotFound):
            ms.get(gone)
    found = {h.memory_id for h in ms.search("VPN endpoint door code", k=10)}
    assert deleted not in found and expiring not in found


def test_docs_page_works_offline_and_openapi_lists_every_endpoint(stack: Stack) -> None:
    import httpx

    page = httpx.get(f"{stack.url}/docs")
    assert page.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower()
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert httpx.get(f"{stack.url}/docs-assets/{asset}").status_code == 200
    paths = httpx.get(f"{stack.url}/openapi.json").json()["paths"]
    for path in (
        "/v1/memories/{memory_id}",
        "/v1/memories",
        "/v1/memories/{memory_id}/history",
        "/v1/subscriptions",
        "/v1/deliveries",
        "/v1/tokens",
        "/v1/tokens/{token_id}",
        "/v1/import",
        "/v1/export",
        "/v1/cache",
        "/v1/cache/lookup",
    ):
        assert path in paths, path
    assert {"get", "delete"} <= set(paths["/v1/memories/{memory_id}"])


def test_tokens_are_listed_and_revoked_by_admins_and_by_themselves(stack: Stack) -> None:
    import httpx

    tenant = f"sdk-{uuid.uuid4().hex[:6]}"
    admin_token = stack.token(tenant, "ops", clearance=["admin"])
    agent_token = stack.token(tenant, "ada")
    stranger = stack.token(f"{tenant}-x", "ops", clearance=["admin"])

    def call(method: str, path: str, token: str) -> httpx.Response:
        return httpx.request(method, stack.url + path, headers={"Authorization": f"Bearer {token}"})

    assert call("GET", "/v1/tokens", agent_token).status_code == 403
    listed = call("GET", "/v1/tokens", admin_token).json()
    assert {t["agent_id"] for t in listed} == {"ops", "ada"}
    assert all("secret" not in json.dumps(t) and tenant == t["tenant"] for t in listed)
    ada_id = agent_token.split("_")[1]
    assert call("DELETE", f"/v1/tokens/{ada_id}", stranger).status_code == 404  # other tenant
    assert call("DELETE", f"/v1/tokens/{ada_id}", admin_token).status_code == 204
    with pytest.raises(Unauthorized):
        HttpClient(stack.url, agent_token).search("anything")
    own = admin_token.split("_")[1]
    assert call("DELETE", f"/v1/tokens/{own}", admin_token).status_code == 204
    assert call("GET", "/v1/tokens", admin_token).status_code == 401
    # the CLI lists and revokes the same store
    listed_cli = json.loads(_cli(stack.data_dir, "token", "list", "--tenant", tenant, "--json"))
    assert all(t["revoked"] for t in listed_cli["tokens"])


def test_the_result_cache_over_http(stack: Stack) -> None:
    """Publish a task's result, look it up by a paraphrase; another host, another tenant,
    another agent's private entry and a failed result give nothing; bad input is a 422."""
    tenant = f"sdk-{uuid.uuid4().hex[:6]}"
    with (
        HttpClient(stack.url, stack.token(tenant, "ada", teams=["ops"])) as ada,
        HttpClient(stack.url, stack.token(tenant, "bob")) as bob,
        HttpClient(stack.url, stack.token(f"{tenant}-other", "ada")) as stranger,
    ):
        entry = ada.cache_result(
            "Restart the payments service on web-3 in eu-west-2",
            "restarted",
            verification="verified",
        )
        assert entry.verification == "verified" and entry.agent_id == "ada"
        found = bob.lookup("restart payments on host web-3 in eu-west-2")
        assert found.outcome == "hit" and found.result and found.result.result == "restarted"
        other = bob.lookup("Restart the payments service on web-4 in eu-west-2")
        assert other.outcome == "rejected" and other.result is None and other.reason
        assert (
            stranger.lookup("Restart the payments service on web-3 in eu-west-2").outcome == "miss"
        )
        ada.cache_result("Rotate the auth DB credentials in staging", "rotated", scope="private")
        assert bob.lookup("Rotate the auth DB credentials in staging").outcome == "miss"
        assert ada.lookup("Rotate the auth DB credentials in staging").outcome == "hit"
        ada.cache_result("Check disk space on db-9", "boom", verification="failed")
        assert ada.lookup("Check disk space on db-9").outcome == "miss"
        with pytest.raises(Forbidden):
            bob.cache_result("Back up db-2", "done", scope="team:ops")  # bob is not in ops
        with pytest.raises(InvalidRequest):
            ada.cache_result("", "x")
        with pytest.raises(InvalidRequest):
            ada.cache_result("Back up db-2", "x", verification="maybe")  # type: ignore[arg-type]

    async def run() -> None:
        async with AsyncHttpClient(stack.url, stack.token(tenant, "cy")) as cy:
            assert (await cy.lookup("Restart payments on web-3 in eu-west-2")).outcome == "hit"
            stored = await cy.cache_result("Scale search to 4 replicas in us-east-1", "scaled")
            assert (
                await cy.lookup("Scale the search service to 4 replicas in us-east-1")
            ).result == stored

    asyncio.run(run())
