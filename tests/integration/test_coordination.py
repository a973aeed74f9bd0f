"""Verification and conflicts through the real broker and the session worker (issue 19)."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from datetime import UTC, datetime

from memstream.eval.verification import generate_claims
from memstream.schemas.events import Conflict, Links, PooledState, VerificationReport
from memstream.schemas.topics import CONFLICTS, LINKS, POOLED, VERDICTS
from memstream.sdk import HttpClient
from tests.integration.conftest import Worker, read_topic
from tests.integration.test_http_sdk import _until


def test_false_claims_are_refuted_reported_and_never_delivered(worker: Worker, broker) -> None:  # type: ignore[no-untyped-def]
    tenant = f"verify-{uuid.uuid4().hex[:6]}"
    author = HttpClient(worker.url, worker.token(tenant, "author"))
    reader = HttpClient(worker.url, worker.token(tenant, "reader"))
    reader.subscribe("numbers and calculations", min_score=-1.0, max_per_minute=100_000)
    _until(lambda: len(reader.subscriptions()) == 1)
    _, cursor = reader.deliveries(wait_ms=0)
    claims = generate_claims(240, seed=11)
    ids = {author.add(c["text"]): c for c in claims}
    true_ids = {i for i, c in ids.items() if c["true"]}
    delivered: set[uuid.UUID] = set()
    deadline = time.monotonic() + 120
    while not true_ids <= delivered and time.monotonic() < deadline:
        got, cursor = reader.deliveries(cursor, wait_ms=1000)
        delivered |= {d.memory_id for d in got}
    reports = asyncio.run(
        read_topic(
            broker.bootstrap,
            VERDICTS.name,
            lambda rs: (
                len({r.key for r in rs if r.key and uuid.UUID(r.key.decode()) in ids}) >= len(ids)
            ),
            timeout=60,
        )
    )
    verdicts = {}
    for record in reports:
        report = VerificationReport.model_validate_json(record.value)
        if report.payload.memory_id in ids:
            verdicts[report.payload.memory_id] = report.payload.status
    right = sum(verdicts.get(i) == ("verified" if c["true"] else "refuted") for i, c in ids.items())
    print(f"verification accuracy through the pipeline: {right / len(ids):.3f} of {len(ids)}")
    assert right / len(ids) >= 0.95
    refuted = {i for i, s in verdicts.items() if s == "refuted"}
    assert {i for i, c in ids.items() if not c["true"]} <= refuted  # every false one reported
    assert true_ids <= delivered, "a verified memory was not delivered"
    assert not (delivered & refuted), "a refuted memory was delivered"
    # stored and marked for readers who search
    hit = reader.search(claims[1]["text"], k=3)
    assert any(h.verification == "refuted" for h in hit)


def test_a_fact_changed_three_times_reads_as_of_each_time(worker: Worker, broker) -> None:  # type: ignore[no-untyped-def]
    tenant = f"facts-{uuid.uuid4().hex[:6]}"
    agent = HttpClient(worker.url, worker.token(tenant, "pricing"))
    values = ["9 EUR", "12 EUR", "15 EUR", "11 EUR"]
    ids, times = [], []
    for value in values:
        memory_id = agent.add(f"The price of the basic plan is now {value}.")
        agent.wait_for(memory_id, timeout=60)
        ids.append(memory_id)
        time.sleep(0.05)
        times.append(datetime.now(UTC))  # this value holds from here until the next
        time.sleep(0.05)

    def valid_as_of(at: datetime) -> list[str]:
        return [h.text for h in agent.search("price of the basic plan", k=10, as_of=at)]

    for value, at in zip(values, times, strict=True):
        found = _until(lambda at=at: valid_as_of(at) or None, timeout=30)
        assert found == [f"The price of the basic plan is now {value}."], at
    assert valid_as_of(datetime.now(UTC)) == [f"The price of the basic plan is now {values[-1]}."]
    history = agent.history(ids[-1])
    assert [v.memory_id for v in history][-1] == ids[-1]
    records = asyncio.run(
        read_topic(
            broker.bootstrap,
            CONFLICTS.name,
            lambda rs: sum(Conflict.model_validate_json(r.value).tenant == tenant for r in rs) >= 3,
            timeout=60,
        )
    )
    conflicts = [Conflict.model_validate_json(r.value) for r in records]
    pairs = {
        (c.payload.superseded_id, c.payload.superseding_id) for c in conflicts if c.tenant == tenant
    }
    assert pairs == set(itertools.pairwise(ids))


def test_knowledge_mode_returns_facts_with_provenance_the_reader_may_see(worker: Worker) -> None:
    tenant = f"knowledge-{uuid.uuid4().hex[:6]}"
    ops = HttpClient(worker.url, worker.token(tenant, "ops", teams=["infra"]))
    outsider = HttpClient(worker.url, worker.token(tenant, "outsider"))
    shared = [
        ops.add("The payment gateway timed out for EU customers after the deploy."),
        ops.add("We rolled back the payment gateway deploy at 14:10."),
    ]
    secret = ops.add(
        "The payment gateway outage was caused by the new TLS config.", scope="team:infra"
    )
    for memory_id in [*shared, secret]:
        ops.wait_for(memory_id, timeout=60)
    facts = ops.search("what happened to the payment gateway", k=2, mode="knowledge")
    assert facts and facts[0].kind == "fact"
    assert set(facts[0].provenance) == {*shared, secret}  # one episode, one fact
    assert len(facts) <= 1
    seen = outsider.search("what happened to the payment gateway", k=2, mode="knowledge")
    assert seen and secret not in {i for f in seen for i in f.provenance}
    assert "TLS" not in " ".join(f.text for f in seen)
    episodic = ops.search("what happened to the payment gateway", k=2)
    assert all(h.kind == "memory" and h.provenance == [] for h in episodic)


def test_team_memories_update_a_pooled_state_only_members_read(worker: Worker, broker) -> None:  # type: ignore[no-untyped-def]
    import httpx

    tenant = f"pool-{uuid.uuid4().hex[:6]}"
    tokens = {a: worker.token(tenant, a, teams=["infra"]) for a in ("ada", "bob")}
    outsider = worker.token(tenant, "eve")
    written = []
    for agent, text in [
        ("ada", "Kafka lag alerts fire at 10k messages."),
        ("bob", "The Redis cluster runs in eu-west-1."),
    ]:
        client = HttpClient(worker.url, tokens[agent])
        written.append(client.add(text, scope="team:infra"))
        client.wait_for(written[-1], timeout=60)

    def read(token: str) -> httpx.Response:
        return httpx.get(
            f"{worker.url}/v1/teams/infra/pooled", headers={"Authorization": f"Bearer {token}"}
        )

    found = _until(
        lambda: (
            (r := read(tokens["ada"])).status_code == 200 and len(r.json()["members"]) == 2 and r
        )
    )
    state = found.json()
    assert state["members"] == ["ada", "bob"] and abs(sum(state["influence"]) - 1) < 1e-4
    assert read(outsider).status_code == 403
    records = asyncio.run(
        read_topic(
            broker.bootstrap,
            POOLED.name,
            lambda rs: any(
                PooledState.model_validate_json(r.value).tenant == tenant
                and len(PooledState.model_validate_json(r.value).payload.members) == 2
                for r in rs
            ),
            timeout=60,
        )
    )
    assert {
        PooledState.model_validate_json(r.value).payload.updated_by
        for r in records
        if PooledState.model_validate_json(r.value).tenant == tenant
    } == set(written)


def test_a_tenant_taxonomy_tags_new_memories_and_links_are_on_the_topic(
    worker: Worker, broker
) -> None:  # type: ignore[no-untyped-def]
    import httpx

    tenant = f"tags-{uuid.uuid4().hex[:6]}"
    admin = worker.token(tenant, "ops", clearance=["admin"])
    plain = worker.token(tenant, "ada")
    taxonomy = {
        "billing": [
            "invoice totals were wrong",
            "refund the customer payment",
            "card charged twice",
        ],
        "infra": [
            "the kafka broker ran out of disk",
            "redis cluster failover",
            "deploy the node pool",
        ],
    }
    url = f"{worker.url}/v1/taxonomy"
    assert (
        httpx.put(
            url, json={"tags": taxonomy}, headers={"Authorization": f"Bearer {plain}"}
        ).status_code
        == 403
    )
    bad = httpx.put(url, json={"tags": {"x": []}}, headers={"Authorization": f"Bearer {admin}"})
    assert bad.status_code == 422
    assert (
        httpx.put(
            url, json={"tags": taxonomy}, headers={"Authorization": f"Bearer {admin}"}
        ).json()["tags"]
        == taxonomy
    )
    agent = HttpClient(worker.url, plain)
    first = agent.add("A customer's card was charged twice for one invoice.")
    second = agent.add("The customer card charged twice again on the invoice, refund needed.")
    assert agent.wait_for(first, timeout=60).auto_tags == ["billing"]
    assert agent.wait_for(second, timeout=60).auto_tags == ["billing"]
    records = asyncio.run(
        read_topic(
            broker.bootstrap,
            LINKS.name,
            lambda rs: any(r.key == str(second).encode() for r in rs),
            timeout=60,
        )
    )
    events = [Links.model_validate_json(r.value) for r in records if r.key == str(second).encode()]
    assert events and events[0].payload.auto_tags[0].tag == "billing"
