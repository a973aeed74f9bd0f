"""The HTTP API and push gateway on a real broker and worker (acceptance of the
subscription-service issue): delivery over SSE to the right agents only, random identities
never see what they may not, malformed requests never reach the bus."""

from __future__ import annotations

import asyncio
import json
import random
import uuid

import httpx
import pytest

from memstream.broker import BrokerHandle
from memstream.schemas.topics import MEMORIES
from tests.integration.conftest import Worker, read_topic

SECRETS = ["Jane Roe at jane.roe@example.org", "Omar Haddad on +1 415 555 0142", "Dr. Lena Fischer"]
"""Personal data in some memories: per-person values that must reach only cleared readers."""


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _subscribe(api: httpx.AsyncClient, token: str, query: str, min_score: float = 0.3) -> str:
    response = await api.post(
        "/v1/subscriptions", json={"query": query, "min_score": min_score}, headers=_auth(token)
    )
    assert response.status_code == 200, response.text
    return response.json()["subscription_id"]


async def _wait_subscriptions(api: httpx.AsyncClient, token: str, n: int) -> None:
    """The worker follows the subscriptions topic asynchronously: wait until it has them."""
    for _ in range(120):
        stats = (await api.get("/v1/stats", headers=_auth(token))).json()
        if stats["subscriptions"] >= n:
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"worker never applied {n} subscriptions: {stats}")


async def _collect(
    url: str,
    token: str,
    into: list[dict],
    cursor: str | None = None,
    cursors: list[str] | None = None,
) -> None:
    """Read SSE deliveries into `into` until cancelled or the server goes away; like a
    browser's EventSource, remember each event's id (in `cursors`) to resume from."""
    headers = _auth(token) | ({"Last-Event-ID": cursor} if cursor else {})
    async with httpx.AsyncClient(base_url=url, timeout=None) as client:
        async with client.stream("GET", "/v1/stream", headers=headers) as response:
            assert response.status_code == 200
            event_id = None
            async for line in response.aiter_lines():
                if line.startswith("id: "):
                    event_id = line[4:]
                elif line.startswith("data: "):
                    into.append(json.loads(line[6:]))
                    if cursors is not None and event_id is not None:
                        cursors.append(event_id)


async def _until(predicate, timeout: float = 60.0) -> bool:
    for _ in range(int(timeout / 0.2)):
        if predicate():
            return True
        await asyncio.sleep(0.2)
    return predicate()


async def test_subscribed_team_member_gets_it_over_sse_and_outsiders_never(worker: Worker) -> None:
    tenant, other = f"t-{uuid.uuid4().hex[:6]}", f"o-{uuid.uuid4().hex[:6]}"
    a = worker.token(tenant, "agent-a", ["ops"])
    b = worker.token(tenant, "agent-b", ["ops"])
    c = worker.token(other, "agent-c", ["ops"])  # another tenant, same team name
    d = worker.token(tenant, "agent-d", ["hr"])  # same tenant, not in the team
    async with httpx.AsyncClient(base_url=worker.url, timeout=30) as api:
        for token in (b, c, d):
            await _subscribe(api, token, "where is the staging database")
        await _wait_subscriptions(api, b, 2)
        await _wait_subscriptions(api, c, 1)
        got: dict[str, list[dict]] = {"b": [], "c": [], "d": []}
        readers = [
            asyncio.create_task(_collect(worker.url, t, got[n]))
            for n, t in (("b", b), ("c", c), ("d", d))
        ]
        await asyncio.sleep(1.0)  # streams connected
        team = await api.post(
            "/v1/memories",
            json={"text": "The staging database moved to eu-west-2.", "scope": "team:ops"},
            headers=_auth(a),
        )
        assert team.status_code == 202, team.text
        team_id = team.json()["event_id"]
        everyone = await api.post(
            "/v1/memories",
            json={"text": "The staging database is read-only on Sundays.", "scope": "tenant"},
            headers=_auth(a),
        )
        everyone_id = everyone.json()["event_id"]
        try:
            assert await _until(
                lambda: {team_id, everyone_id} <= {x["payload"]["memory_id"] for x in got["b"]}
            )
            assert await _until(
                lambda: everyone_id in {x["payload"]["memory_id"] for x in got["d"]}
            )
            await asyncio.sleep(2.0)  # time for a wrong delivery to show up
        finally:
            for reader in readers:
                reader.cancel()
        assert team_id not in {x["payload"]["memory_id"] for x in got["d"]}
        assert got["c"] == []
        assert all(x["payload"]["recipient"] == "agent-b" for x in got["b"])

        results = (
            await api.get("/v1/search", params={"q": "staging database", "k": 10}, headers=_auth(d))
        ).json()["results"]
        assert [r["memory_id"] for r in results] == [everyone_id]
        results = (
            await api.get("/v1/search", params={"q": "staging database", "k": 10}, headers=_auth(c))
        ).json()["results"]
        assert results == []


async def test_random_identities_never_see_what_they_may_not(worker: Worker) -> None:
    """1,000 random (caller, query) cases through the real API, and deliveries to random
    subscribers, against the visibility rule evaluated independently here."""
    rng = random.Random(11)
    tenants = [f"p{rng.randrange(10**6)}-{i}" for i in range(3)]
    teams = ["red", "blue", "green"]
    people = []
    for i in range(24):
        tenant = rng.choice(tenants)
        member = sorted(rng.sample(teams, rng.randint(0, 2)))
        clearance = ["pii"] if rng.random() < 0.4 else []
        people.append(
            {
                "tenant": tenant,
                "agent": f"agent-{i}",
                "teams": member,
                "pii": bool(clearance),
                "token": worker.token(tenant, f"agent-{i}", member, clearance),
            }
        )
    scopes = ["private", "tenant", "public", *[f"team:{t}" for t in teams]]
    words = ["database", "invoice", "deploy", "holiday", "kafka", "garden"]
    memories: dict[str, dict] = {}
    async with httpx.AsyncClient(base_url=worker.url, timeout=30) as api:
        subscribers = rng.sample(people, 8)
        for person in subscribers:
            await _subscribe(api, person["token"], "anything at all", min_score=-1.0)
        for person in subscribers:
            await _wait_subscriptions(
                api, person["token"], sum(1 for s in subscribers if s["tenant"] == person["tenant"])
            )
        got: dict[str, list[dict]] = {p["agent"]: [] for p in subscribers}
        readers = [
            asyncio.create_task(_collect(worker.url, p["token"], got[p["agent"]]))
            for p in subscribers
        ]
        await asyncio.sleep(1.0)
        for i in range(60):
            author, scope = rng.choice(people), rng.choice(scopes)
            text = f"note {i} about {rng.choice(words)} and {rng.choice(words)}"
            if i % 3 == 0:  # personal data: only receivers with the pii clearance may read it
                text += f", ask {SECRETS[i % len(SECRETS)]}"
            r = await api.post(
                "/v1/memories", json={"text": text, "scope": scope}, headers=_auth(author["token"])
            )
            assert r.status_code == 202, r.text
            memories[r.json()["event_id"]] = {
                "tenant": author["tenant"],
                "agent": author["agent"],
                "scope": scope,
            }

        def may_see(person: dict, m: dict) -> bool:
            if m["tenant"] != person["tenant"]:
                return False
            if m["scope"] in ("tenant", "public"):
                return True
            if m["scope"] == "private":
                return m["agent"] == person["agent"]
            return m["scope"][5:] in person["teams"]

        expected = {
            p["agent"]: {
                i for i, m in memories.items() if may_see(p, m) and m["agent"] != p["agent"]
            }
            for p in subscribers
        }
        try:
            await _until(
                lambda: all(
                    expected[a] <= {x["payload"]["memory_id"] for x in got[a]} for a in got
                ),
                90,
            )
            await asyncio.sleep(2.0)
        finally:
            for reader in readers:
                reader.cancel()
        cleared = {p["agent"]: p["pii"] for p in people}
        seen_secret = 0
        for agent, items in got.items():
            for x in items:
                leaked = [v for v in SECRETS if v in x["payload"]["text"]]
                assert cleared[agent] or not leaked, (agent, x["payload"]["text"])
                seen_secret += bool(leaked)
        delivered = 0
        for agent, items in got.items():
            ids = {
                x["payload"]["memory_id"] for x in items if x["payload"]["memory_id"] in memories
            }
            assert ids == expected[agent], agent  # nothing invisible, nothing missing
            delivered += len(ids)
        assert delivered > 20

        returned = 0
        for _case in range(1000):
            person = rng.choice(people)
            q = f"{rng.choice(words)} {rng.choice(words)}"
            r = await api.get(
                "/v1/search",
                params={"q": q, "k": rng.randint(1, 30)},
                headers=_auth(person["token"]),
            )
            assert r.status_code == 200
            for hit in r.json()["results"]:
                m = memories.get(hit["memory_id"])
                assert m is not None and may_see(person, m), (person, hit)
                leaked = [v for v in SECRETS if v in hit["text"]]
                assert person["pii"] or not leaked, (person["agent"], hit["text"])
                seen_secret += bool(leaked)
                returned += 1
        assert returned > 1000
        assert seen_secret > 0  # cleared receivers do get the values: the check is not vacuous


async def test_malformed_requests_get_4xx_naming_the_field_and_never_reach_the_bus(
    broker: BrokerHandle, worker: Worker
) -> None:
    marker = f"MARKER{uuid.uuid4().hex}"
    token = worker.token("strict", "agent-x")
    async with httpx.AsyncClient(base_url=worker.url, timeout=30) as api:
        cases = [
            ({"text": marker, "scope": "the world"}, "body.scope"),
            ({"text": marker, "tags": "not-a-list"}, "body.tags"),
            ({"scope": "tenant"}, "body.text"),
            ({"text": marker, "tenant": "someone-else"}, "body.tenant"),  # identity is the token's
        ]
        for body, field in cases:
            r = await api.post("/v1/memories", json=body, headers=_auth(token))
            assert r.status_code == 422, r.text
            assert field in [f["field"] for f in r.json()["fields"]], r.json()
        r = await api.post(
            "/v1/memories",
            content=b"{not json" + marker.encode(),
            headers=_auth(token) | {"Content-Type": "application/json"},
        )
        assert r.status_code == 422
        r = await api.post(
            "/v1/memories", json={"text": marker + "x" * 2_000_000}, headers=_auth(token)
        )
        assert r.status_code == 413 and "limit" in r.json()["error"] + json.dumps(r.json())
        r = await api.post("/v1/memories", json={"text": marker})  # no token
        assert r.status_code == 401
        r = await api.post("/v1/memories", json={"text": marker}, headers=_auth(token + "x"))
        assert r.status_code == 401
        r = await api.get("/v1/search", params={"q": "", "k": 5}, headers=_auth(token))
        assert r.status_code == 422 and r.json()["fields"][0]["field"] == "query.q"
        ok = await api.post("/v1/memories", json={"text": f"fine {marker}"}, headers=_auth(token))
        assert ok.status_code == 202
    records = await read_topic(
        broker.bootstrap,
        MEMORIES.name,
        lambda rs: any(f"fine {marker}".encode() in (r.value or b"") for r in rs),
    )
    carrying = [r for r in records if marker.encode() in (r.value or b"")]
    assert len(carrying) == 1 and b"fine " in carrying[0].value  # only the valid one


@pytest.mark.parametrize("path", ["/healthz", "/metrics", "/docs", "/openapi.json"])
async def test_operational_endpoints(worker: Worker, path: str) -> None:
    async with httpx.AsyncClient(base_url=worker.url, timeout=30) as api:
        r = await api.get(path)
        assert r.status_code == 200
        if path == "/metrics":
            assert "memstream_http_requests_total" in r.text


async def test_dp_aggregates_spend_and_enforce_the_tenant_budget(worker: Worker) -> None:
    tenant = f"dp-{uuid.uuid4().hex[:6]}"
    token = worker.token(tenant, "analyst")
    async with httpx.AsyncClient(base_url=worker.url, timeout=30) as api:
        for i in range(30):
            topic = "billing" if i % 3 else "infra"
            r = await api.post(
                "/v1/memories",
                json={
                    "text": f"case {i} closed for the {topic} queue",
                    "topic": topic,
                    "tags": [topic],
                },
                headers=_auth(token),
            )
            assert r.status_code == 202
        for _ in range(120):  # indexed?
            if (await api.get("/v1/stats", headers=_auth(token))).json()["memories_indexed"] >= 30:
                break
            await asyncio.sleep(0.5)
        first = await api.get("/v1/aggregates/topic", params={"epsilon": 0.5}, headers=_auth(token))
        assert first.status_code == 200, first.text
        counts = first.json()["counts"]
        assert set(counts) <= {"billing", "infra"} and counts  # noisy, but near 20 and 10
        assert abs(sum(counts.values()) - 30) < 30
        assert (
            await api.get("/v1/aggregates/tags", params={"epsilon": 0.5}, headers=_auth(token))
        ).status_code == 200
        spent = await api.get("/v1/aggregates/topic", params={"epsilon": 0.5}, headers=_auth(token))
        assert spent.status_code == 429 and "budget" in spent.text.lower()
