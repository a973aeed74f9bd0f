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


def _may_see(reader: dict, m: dict) -> bool:
    """The visibility rule, written here independently of memstream.store.base.Caller."""
    if m["tenant"] != reader["tenant"]:
        return False
    if m["scope"] in ("tenant", "public"):
        return True
    if m["scope"] == "private":
        return m["agent"] == reader["agent"]
    return m["scope"][5:] in reader["teams"]


async def _replay_history(url: str, token: str, cursor: str, into: list[dict]) -> None:
    """Read an identity's delivery history from `cursor` for a few seconds."""
    task = asyncio.create_task(_collect(url, token, into, cursor=cursor))
    await asyncio.sleep(4.0)
    task.cancel()


async def test_random_identities_sharing_agent_ids_never_see_what_they_may_not(
    worker: Worker,
) -> None:
    """Acceptance (issue 11): identities in three tenants drawn from one small pool of agent
    ids (so `alice` exists in several tenants, as in the reproduction), some with a second
    token of other teams and clearance. Over deliveries, delivery history (cursor replays),
    1,000+ searches and aggregates, nothing reaches a token that may not see it; checked
    against the visibility rule evaluated independently here."""
    rng = random.Random(11)
    tenants = [f"p{rng.randrange(10**6)}-{i}" for i in range(3)]
    teams = ["red", "blue", "green"]
    names = ["alice", "bob", "carol", "dave", "erin", "frank"]
    people = []
    for tenant in tenants:
        for name in rng.sample(names, 5):
            for _ in range(rng.choice((1, 1, 2))):  # some identities hold two tokens
                member = sorted(rng.sample(teams, rng.randint(0, 2)))
                clearance = ["pii"] if rng.random() < 0.4 else []
                people.append(
                    {
                        "tenant": tenant,
                        "agent": name,
                        "teams": member,
                        "pii": bool(clearance),
                        "token": worker.token(tenant, name, member, clearance),
                    }
                )
    assert len({p["agent"] for p in people}) < len({(p["tenant"], p["agent"]) for p in people})
    scopes = ["private", "tenant", "public", *[f"team:{t}" for t in teams]]
    words = ["database", "invoice", "deploy", "holiday", "kafka", "garden"]
    memories: dict[str, dict] = {}
    async with httpx.AsyncClient(base_url=worker.url, timeout=30) as api:
        subscribers = rng.sample(people, 10)
        for person in subscribers:
            await _subscribe(api, person["token"], "anything at all", min_score=-1.0)
        for person in subscribers:
            await _wait_subscriptions(
                api, person["token"], sum(1 for s in subscribers if s["tenant"] == person["tenant"])
            )
        # each subscriber's deliveries are read with a token of the same identity: its own,
        # or the identity's other token (other teams, other clearance)
        readers = {}
        for person in subscribers:
            same = [
                p
                for p in people
                if (p["tenant"], p["agent"]) == (person["tenant"], person["agent"])
            ]
            readers[person["token"]] = rng.choice(same)
        got: dict[str, list[dict]] = {p["token"]: [] for p in subscribers}
        cursors: dict[str, list[str]] = {p["token"]: [] for p in subscribers}
        tasks = [
            asyncio.create_task(
                _collect(
                    worker.url,
                    readers[p["token"]]["token"],
                    got[p["token"]],
                    cursors=cursors[p["token"]],
                )
            )
            for p in subscribers
        ]
        await asyncio.sleep(1.0)
        refused = 0
        for i in range(72):
            author, scope = rng.choice(people), rng.choice(scopes)
            text = f"note {i} about {rng.choice(words)} and {rng.choice(words)}"
            if i % 3 == 0:  # personal data: only receivers with the pii clearance may read it
                text += f", ask {SECRETS[i % len(SECRETS)]}"
            body = {"text": text, "scope": scope, "topic": f"topic-{i}", "tags": [f"tag-{i}"]}
            r = await api.post("/v1/memories", json=body, headers=_auth(author["token"]))
            if scope.startswith("team:") and scope[5:] not in author["teams"]:
                assert r.status_code == 403, r.text  # team writes only by members
                refused += 1
                continue
            assert r.status_code == 202, r.text
            memories[r.json()["event_id"]] = {
                "tenant": author["tenant"],
                "agent": author["agent"],
                "scope": scope,
                "topic": f"topic-{i}",
                "tag": f"tag-{i}",
            }
        assert refused > 0

        def allowed_for(sub: dict) -> set[str]:
            reader = readers[sub["token"]]
            return {
                i
                for i, m in memories.items()
                if _may_see(sub, m) and _may_see(reader, m) and m["agent"] != sub["agent"]
            }

        # deliveries are sealed on the topic and revealed per reading token, so a reader
        # without the clearance gets placeholders, not fewer deliveries
        allowed = {p["token"]: allowed_for(p) for p in subscribers}
        expected = allowed
        try:
            await _until(
                lambda: all(
                    expected[t] <= {x["payload"]["memory_id"] for x in got[t]} for t in got
                ),
                90,
            )
            await asyncio.sleep(2.0)
        finally:
            for task in tasks:
                task.cancel()
        seen_secret = 0
        delivered = 0
        for sub in subscribers:
            reader = readers[sub["token"]]
            for x in got[sub["token"]]:
                assert x["tenant"] == reader["tenant"], x
                assert x["payload"]["recipient"] == reader["agent"], x
                leaked = [v for v in SECRETS if v in x["payload"]["text"]]
                assert reader["pii"] or not leaked, (reader, x["payload"]["text"])
                seen_secret += bool(leaked)
            ids = {x["payload"]["memory_id"] for x in got[sub["token"]]} & set(memories)
            assert expected[sub["token"]] <= ids <= allowed[sub["token"]], sub["agent"]
            delivered += len(ids)
        assert delivered > 20

        # history: each reader replays its identity's whole delivery partition (offset -1)
        cases = 0
        for sub in subscribers:
            reader = readers[sub["token"]]
            if not cursors[sub["token"]]:
                continue
            partition = cursors[sub["token"]][0].split(":")[0]
            history: list[dict] = []
            await _replay_history(worker.url, reader["token"], f"{partition}:-1", history)
            for x in history:
                cases += 1
                assert (
                    x["tenant"] == reader["tenant"] and x["payload"]["recipient"] == reader["agent"]
                ), x
                m = memories.get(x["payload"]["memory_id"])
                assert m is None or _may_see(reader, m), (reader, x)
            other = (int(partition) + 1) % 3
            r = await api.get(
                "/v1/stream", params={"cursor": f"{other}:-1"}, headers=_auth(reader["token"])
            )
            assert r.status_code == 400, r.text  # another partition is never readable

        for _ in range(1000):
            person = rng.choice(people)
            if rng.random() < 0.1:
                field = rng.choice(["topic", "tags"])
                r = await api.get(
                    f"/v1/aggregates/{field}",
                    params={"epsilon": 0.001},
                    headers=_auth(person["token"]),
                )
                assert r.status_code in (200, 429), r.text
                if r.status_code == 200:
                    visible_keys = {
                        m["topic" if field == "topic" else "tag"]
                        for m in memories.values()
                        if _may_see(person, m)
                    }
                    mine = {k for k in r.json()["counts"] if k.startswith(("topic-", "tag-"))}
                    assert mine <= visible_keys, (person, mine - visible_keys)
                    cases += 1
                continue
            q = f"{rng.choice(words)} {rng.choice(words)}"
            r = await api.get(
                "/v1/search",
                params={"q": q, "k": rng.randint(1, 30)},
                headers=_auth(person["token"]),
            )
            assert r.status_code == 200, r.text
            cases += 1
            for hit in r.json()["results"]:
                m = memories.get(hit["memory_id"])
                assert m is not None and _may_see(person, m), (person, hit)
                leaked = [v for v in SECRETS if v in hit["text"]]
                assert person["pii"] or not leaked, (person["agent"], hit["text"])
                seen_secret += bool(leaked)
        assert cases >= 1000
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


async def test_dp_aggregates_spend_and_enforce_the_budget_per_agent_and_tenant(
    worker: Worker,
) -> None:
    """The tenant's lifetime budget is 1.0 and one agent may spend a quarter of it: an agent
    that spends its share gets 429 while the tenant's other agents still get answers (the
    reproduction: one agent used to exhaust the tenant in 10 calls)."""
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
        first = await api.get("/v1/aggregates/topic", params={"epsilon": 0.2}, headers=_auth(token))
        assert first.status_code == 200, first.text
        counts = first.json()["counts"]
        assert set(counts) <= {"billing", "infra"} and counts  # noisy, but near 20 and 10
        assert abs(sum(counts.values()) - 30) < 30
        spent = [
            (await api.get("/v1/aggregates/tags", params={"epsilon": 0.1}, headers=_auth(token)))
            for _ in range(10)
        ]
        assert [r.status_code for r in spent] == [429] * 10  # 0.2 + 0.1 > its 0.25
        assert "budget" in spent[0].text.lower()
        for i in range(3):  # three more agents spend 0.2 each: 0.8 of the tenant's 1.0
            other = worker.token(tenant, f"analyst-{i}")
            r = await api.get("/v1/aggregates/topic", params={"epsilon": 0.2}, headers=_auth(other))
            assert r.status_code == 200, r.text
        last = worker.token(tenant, "analyst-last")
        r = await api.get("/v1/aggregates/topic", params={"epsilon": 0.25}, headers=_auth(last))
        assert r.status_code == 429 and "tenant" in r.text  # the tenant's own total holds
        r = await api.get("/v1/aggregates/topic", params={"epsilon": 0.2}, headers=_auth(last))
        assert r.status_code == 200, r.text


async def test_websocket_deliveries_in_the_default_install(worker: Worker) -> None:
    """`/v1/ws` used to be a 404: no WebSocket library was installed."""
    import websockets

    tenant = f"ws-{uuid.uuid4().hex[:6]}"
    writer, reader = (
        worker.token(tenant, "writer"),
        worker.token(tenant, "reader", clearance=["pii"]),
    )
    async with httpx.AsyncClient(base_url=worker.url, timeout=30) as api:
        await _subscribe(api, reader, "the deploy window", min_score=-1.0)
        await _wait_subscriptions(api, reader, 1)
        ws_url = worker.url.replace("http://", "ws://") + f"/v1/ws?token={reader}"
        async with websockets.connect(ws_url) as ws:
            await asyncio.sleep(1.0)
            r = await api.post(
                "/v1/memories",
                json={"text": "The deploy window moved; ask Jane Roe at jane.roe@example.org"},
                headers=_auth(writer),
            )
            memory_id = r.json()["event_id"]
            message = json.loads(await asyncio.wait_for(ws.recv(), 60))
        assert message["delivery"]["payload"]["memory_id"] == memory_id
        assert "jane.roe@example.org" in message["delivery"]["payload"]["text"]  # cleared
        assert ":" in message["cursor"]
        with pytest.raises(websockets.exceptions.InvalidStatus):
            async with websockets.connect(
                worker.url.replace("http://", "ws://") + "/v1/ws?token=ms_bad_token"
            ) as ws:
                await ws.recv()


async def test_admin_tokens_erase_subjects_of_their_tenant_over_http(worker: Worker) -> None:
    from memstream.privacy.keystore import KeyStore, subject_id
    from memstream.streams.privacy_stage import load_master_key

    tenant = f"adm-{uuid.uuid4().hex[:6]}"
    admin = worker.token(tenant, "dpo", clearance=["admin"])
    plain = worker.token(tenant, "agent")
    async with httpx.AsyncClient(base_url=worker.url, timeout=30) as api:
        body = {"values": ["Jane Roe", "jane.roe@example.org"]}
        r = await api.post("/v1/erasures", json=body, headers=_auth(plain))
        assert r.status_code == 403 and "admin" in r.json()["error"]
        r = await api.post("/v1/erasures", json={"values": []}, headers=_auth(admin))
        assert r.status_code == 422
        r = await api.post("/v1/erasures", json=body, headers=_auth(admin))
        assert r.status_code == 202, r.text
    master = load_master_key(worker.data_dir, create=False)
    wanted = [subject_id(tenant, v, master) for v in body["values"]]
    assert [e["subject_id"] for e in r.json()["erasures"]] == wanted
    keys = KeyStore(worker.data_dir / "keys.db")
    assert await _until(lambda: all(keys.erased(tenant, s) for s in wanted), 60)
