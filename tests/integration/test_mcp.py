"""The MCP server against a running worker, through the official SDK's own clients: over
streamable HTTP at /mcp on the API port and over stdio (`memstream mcp`). The same tools on
both doors, the token deciding what each session sees, subscriptions delivered by polling
and pushed as resource-updated notifications, and /mcp closed to requests without a token."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import mcp.types as types
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from memstream.sdk.http import AsyncHttpClient
from tests.integration.conftest import Worker

pytestmark = pytest.mark.integration

TOOLS = {
    "add_memory",
    "search_memory",
    "get_memory",
    "list_memories",
    "delete_memory",
    "give_feedback",
    "subscribe",
    "unsubscribe",
    "poll_deliveries",
    "lookup_result",
    "cache_result",
    "team_state",
    "get_model",
}
DELIVERIES = "memstream://deliveries"

Handler = Callable[[Any], Awaitable[None]]
Opener = Callable[..., AbstractAsyncContextManager[ClientSession]]


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def _http_session(
    worker: Worker, token: str, on_message: Handler | None = None
) -> AsyncIterator[ClientSession]:
    timeout = httpx2.Timeout(30.0, read=300.0)
    async with (
        httpx2.AsyncClient(headers=_auth(token), timeout=timeout) as http,
        streamable_http_client(f"{worker.url}/mcp", http_client=http) as (read, write),
        ClientSession(read, write, message_handler=on_message) as session,
    ):
        await session.initialize()
        yield session


@asynccontextmanager
async def _stdio_session(
    worker: Worker, token: str, on_message: Handler | None = None, *, errlog: Path
) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "memstream", "mcp"],
        env={
            "MEMSTREAM_TOKEN": token,
            "MEMSTREAM_API_URL": worker.url,
            "MEMSTREAM_LOG_LEVEL": "WARNING",
            "MEMSTREAM_PROCESSORS_ENABLED": "false",
        },
    )
    with errlog.open("a") as err:
        async with (
            stdio_client(params, errlog=err) as (read, write),
            ClientSession(read, write, message_handler=on_message) as session,
        ):
            await session.initialize()
            yield session


@dataclass(frozen=True)
class Door:
    """One transport: `open(token, on_message=None)` is a client session over it."""

    kind: str
    open: Opener


@pytest.fixture(params=["http", "stdio"])
def door(request: pytest.FixtureRequest, worker: Worker, tmp_path: Path) -> Door:
    if request.param == "http":
        return Door("http", lambda token, on_message=None: _http_session(worker, token, on_message))
    errlog = tmp_path / "mcp-stderr.log"
    return Door(
        "stdio",
        lambda token, on_message=None: _stdio_session(worker, token, on_message, errlog=errlog),
    )


async def _call(session: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await session.call_tool(tool, arguments)
    text = " ".join(getattr(c, "text", "") for c in result.content)
    assert not result.is_error, f"{tool} failed: {text}"
    assert isinstance(result.structured_content, dict), result
    assert json.loads(text) == result.structured_content  # the same JSON for text-only hosts
    return result.structured_content


async def _error(session: ClientSession, tool: str, **arguments: Any) -> str:
    result = await session.call_tool(tool, arguments)
    text = " ".join(getattr(c, "text", "") for c in result.content)
    assert result.is_error, f"{tool} should have failed, returned {text}"
    return text


async def _until(check: Callable[[], Awaitable[Any]], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition never held in {timeout} s")
        await anyio.sleep(0.3)


async def test_tools_add_search_get_delete_and_tenant_isolation(worker: Worker, door: Door) -> None:
    tenant = f"mcp-{uuid.uuid4().hex[:8]}"
    marker = "".join(random.choices("bcdfghjklmnpqrstvwxz", k=8))  # no digits: no PII look
    text = f"The nightly backups of the {marker} cluster run at three in the morning."
    async with (
        door.open(worker.token(tenant, "ada")) as ada,
        door.open(worker.token(f"{tenant}-other", "eve")) as eve,
    ):
        listed = await ada.list_tools()
        assert {t.name for t in listed.tools} == TOOLS
        assert all(t.description and len(t.description) > 60 for t in listed.tools)

        added = await _call(ada, "add_memory", text=text, tags=["backups"], topic="ops")
        memory_id = added["memory_id"]
        assert uuid.UUID(memory_id)

        async def found() -> list[dict[str, Any]]:
            hits = (await _call(ada, "search_memory", query="when do backups run?", k=5))["results"]
            return [h for h in hits if h["memory_id"] == memory_id]

        hit = (await _until(found))[0]
        assert hit["text"] == text and hit["agent_id"] == "ada" and hit["tags"] == ["backups"]

        record = await _call(ada, "get_memory", memory_id=memory_id)
        assert record["text"] == text and record["topic"] == "ops" and record["scope"] == "tenant"
        page = await _call(ada, "list_memories", agent="ada", limit=10)
        assert [m["memory_id"] for m in page["memories"]] == [memory_id]
        assert page["next_cursor"] is None
        assert (await _call(ada, "list_memories", topic="nothing-here"))["memories"] == []
        assert uuid.UUID(
            (await _call(ada, "give_feedback", memory_id=memory_id, outcome="helped"))["event_id"]
        )

        # another tenant's token sees none of it, and cannot delete it
        strange = await _call(eve, "search_memory", query="when do backups run?", k=10)
        assert memory_id not in [h["memory_id"] for h in strange["results"]]
        assert not any(marker in h["text"] for h in strange["results"])
        assert "not found" in await _error(eve, "get_memory", memory_id=memory_id)
        assert "not found" in (await _error(eve, "delete_memory", memory_id=memory_id)).lower()
        assert (await _call(eve, "list_memories", agent="ada"))["memories"] == []

        # API refusals are tool errors with the reason, not crashes
        assert "invalid" in await _error(ada, "get_memory", memory_id="not-a-uuid")
        assert "scope" in await _error(ada, "add_memory", text="x", scope="everyone")

        deleted = await _call(ada, "delete_memory", memory_id=memory_id)
        assert deleted["deleted"] == memory_id

        async def gone() -> bool:
            result = await ada.call_tool("get_memory", {"memory_id": memory_id})
            return bool(result.is_error)

        await _until(gone)
        assert "not found" in await _error(ada, "get_memory", memory_id=memory_id)
        assert await found() == []

        # the result cache: a paraphrase hits, another host does not, another tenant sees none
        task = f"Rebuild the search index of the {marker} cluster on web-3"
        stored = await _call(ada, "cache_result", task=task, result="rebuilt in 4 min")
        assert stored["task"] == task and stored["agent_id"] == "ada"
        hit = await _call(
            ada, "lookup_result", task=f"rebuild the {marker} cluster search index on web-3"
        )
        assert hit["outcome"] == "hit" and hit["result"]["result"] == "rebuilt in 4 min"
        near = await _call(ada, "lookup_result", task=task.replace("web-3", "web-4"))
        assert near["outcome"] == "rejected" and near["result"] is None
        assert (await _call(eve, "lookup_result", task=task))["outcome"] == "miss"
        assert "verification" in await _error(
            ada, "cache_result", task=task, result="x", verification="maybe"
        )


async def _watchers(worker: Worker) -> float:
    """The worker's count of MCP sessions with a delivery watcher (its /metrics)."""
    async with httpx.AsyncClient(base_url=worker.url, timeout=10) as http:
        text = (await http.get("/metrics")).text
    lines = [ln for ln in text.splitlines() if ln.startswith("memstream_mcp_delivery_watchers ")]
    assert lines, "the worker exports no memstream_mcp_delivery_watchers"
    return float(lines[0].split()[1])


@pytest.mark.filterwarnings("ignore::mcp.MCPDeprecationWarning")  # resources/subscribe: pre-2026
async def test_subscription_delivers_by_poll_and_by_notification(
    worker: Worker, door: Door
) -> None:
    tenant = f"mcp-{uuid.uuid4().hex[:8]}"
    bob_token = worker.token(tenant, "bob")
    updates: list[str] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            updates.append(str(message.params.uri))

    async def watchers_are(n: float) -> None:
        if door.kind == "http":  # a stdio server's watchers live in its own process
            await _until(lambda: _is(_watchers(worker), n))

    baseline = await _watchers(worker)
    async with (
        door.open(bob_token, on_message) as bob,
        door.open(worker.token(tenant, "ada")) as ada,
        door.open(worker.token(f"{tenant}-x", "eve")) as eve,
        AsyncHttpClient(worker.url, bob_token) as bob_http,
    ):
        assert bob.server_capabilities is not None
        assert bob.server_capabilities.resources is not None
        assert bob.server_capabilities.resources.subscribe is True
        resources = await bob.list_resources()
        assert [str(r.uri) for r in resources.resources] == [DELIVERIES]
        await bob.subscribe_resource(DELIVERIES)
        await watchers_are(baseline + 1)

        subscribed = await _call(
            bob, "subscribe", query="outages of the payment gateway", min_score=0.3
        )
        sub_id, cursor = subscribed["subscription_id"], subscribed["cursor"]
        assert sub_id.startswith("sub-") and cursor

        async def active() -> bool:
            return [s.subscription_id for s in await bob_http.subscriptions()] == [sub_id]

        await _until(active)
        assert "not found" in (await _error(eve, "unsubscribe", subscription_id=sub_id)).lower()
        ada_cursor = (await _call(ada, "poll_deliveries", wait_seconds=0))["cursor"]

        published = await _call(
            ada, "add_memory", text="The payment gateway returned 502 errors for ten minutes."
        )

        async def polled() -> dict[str, Any] | None:
            got = await _call(bob, "poll_deliveries", since=cursor, wait_seconds=2)
            return got if got["deliveries"] else None

        got = await _until(polled)
        assert [d["memory_id"] for d in got["deliveries"]] == [published["memory_id"]]
        delivery = got["deliveries"][0]
        assert delivery["source_agent"] == "ada" and delivery["subscription_id"] == sub_id
        assert "502" in delivery["text"]
        again = await _call(bob, "poll_deliveries", since=got["cursor"], wait_seconds=0.5)
        assert again["deliveries"] == []  # nothing twice from its cursor
        # the delivery was bob's: the author's own agent has none
        theirs = await _call(ada, "poll_deliveries", since=ada_cursor, wait_seconds=0.5)
        assert theirs["deliveries"] == []

        # the same delivery was pushed: a resource-updated notification, then a read
        async def notified() -> bool:
            return DELIVERIES in updates

        await _until(notified)
        read = await bob.read_resource(DELIVERIES)
        pushed = json.loads(read.contents[0].text)  # type: ignore[union-attr]
        assert [d["memory_id"] for d in pushed["deliveries"]] == [published["memory_id"]]
        read = await bob.read_resource(DELIVERIES)
        assert json.loads(read.contents[0].text)["deliveries"] == []  # type: ignore[union-attr]

        await bob.unsubscribe_resource(DELIVERIES)
        await watchers_are(baseline)
        await bob.subscribe_resource(DELIVERIES)  # again, then end the session with it on
        await watchers_are(baseline + 1)

        assert (await _call(bob, "unsubscribe", subscription_id=sub_id)) == {"unsubscribed": sub_id}

        async def cancelled() -> bool:
            return await bob_http.subscriptions() == []

        await _until(cancelled)
    await watchers_are(baseline)  # a closed session's watcher stops


async def _is(value: Awaitable[float], n: float) -> bool:
    return await value == n


def _initialize(version: str = "2025-06-18") -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": version,
            "capabilities": {},
            "clientInfo": {"name": "raw-test", "version": "0"},
        },
    }


async def test_mcp_needs_a_valid_token_and_a_session_answers_only_its_own(worker: Worker) -> None:
    headers = {"Accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient(base_url=worker.url, timeout=30) as http:
        for path in ("/mcp", "/mcp/"):
            refused = await http.post(path, json=_initialize(), headers=headers)
            assert refused.status_code == 401, refused.text
            assert "Bearer" in refused.json()["error"]
            assert refused.headers["www-authenticate"] == "Bearer"
        assert (await http.get("/mcp", headers=headers)).status_code == 401
        forged = {**headers, **_auth("ms_nosuchid_nosuchsecret")}
        assert (await http.post("/mcp", json=_initialize(), headers=forged)).status_code == 401

        tenant = f"mcp-{uuid.uuid4().hex[:8]}"
        mine = {**headers, **_auth(worker.token(tenant, "ada"))}
        opened = await http.post("/mcp", json=_initialize(), headers=mine)
        assert opened.status_code == 200, opened.text
        assert opened.json()["result"]["serverInfo"]["name"] == "memstream"
        session = opened.headers["mcp-session-id"]
        mine |= {"mcp-session-id": session, "mcp-protocol-version": "2025-06-18"}
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (await http.post("/mcp", json=note, headers=mine)).status_code == 202
        list_tools = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}

        theirs = {**mine, **_auth(worker.token(tenant, "bob"))}
        hijack = await http.post("/mcp", json=list_tools, headers=theirs)
        assert hijack.status_code == 404, hijack.text  # bob may not use ada's session

        listed = await http.post("/mcp/", json=list_tools, headers=mine)
        assert listed.status_code == 200, listed.text
        assert {t["name"] for t in listed.json()["result"]["tools"]} == TOOLS
        assert (await http.delete("/mcp", headers=mine)).status_code in (200, 204)


def test_stdio_refuses_to_start_with_a_token_the_api_refuses(worker: Worker) -> None:
    env = {
        **os.environ,
        "MEMSTREAM_TOKEN": "ms_nosuchid_nosuchsecret",
        "MEMSTREAM_API_URL": worker.url,
    }
    done = subprocess.run(
        [sys.executable, "-m", "memstream", "mcp"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "refused the token" in done.stderr
    assert done.stdout == ""  # stdout belongs to the protocol


async def test_team_state_and_knowledge_search_over_mcp_follow_the_callers_identity(
    worker: Worker,
) -> None:
    tenant = f"mcp-team-{uuid.uuid4().hex[:8]}"
    door = Door("http", lambda token, on_message=None: _http_session(worker, token, on_message))
    async with (
        door.open(worker.token(tenant, "ada", teams=["infra"])) as ada,
        door.open(worker.token(tenant, "eve")) as eve,
    ):
        added = await _call(
            ada,
            "add_memory",
            text="The infra team rotates the TLS keys monthly.",
            scope="team:infra",
        )

        async def pooled() -> dict[str, Any] | None:
            result = await ada.call_tool("team_state", {"team": "infra"})
            return None if result.is_error else result.structured_content

        state = await _until(pooled, timeout=60)
        assert state["members"] == ["ada"] and state["updated_by"] == added["memory_id"]
        assert "not in team" in await _error(eve, "team_state", team="infra")
        facts = await _call(ada, "search_memory", query="TLS key rotation", k=2, mode="knowledge")
        assert facts["results"] and facts["results"][0]["kind"] == "fact"
        assert added["memory_id"] in facts["results"][0]["provenance"]
        hidden = await _call(eve, "search_memory", query="TLS key rotation", k=2, mode="knowledge")
        assert all(added["memory_id"] not in r["provenance"] for r in hidden["results"])
