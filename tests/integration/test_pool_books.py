"""Reputation and the credit ledger on a running worker, and the same books rebuilt from the
log alone (`memstream.log.replay.rebuild_books`) equal to the live ones."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import httpx
import pytest

from memstream.broker import BrokerHandle
from memstream.log.replay import rebuild_books
from memstream.processors import RawMessage
from memstream.schemas.topics import DELIVERIES, FEEDBACK, INDEXED
from memstream.services.auth import TokenStore
from memstream.settings import Settings
from tests.integration.conftest import Worker, read_topic
from tests.integration.test_http_sdk import _until

TENANT = "pool-books"
WAIT_S = 60.0


def test_reputation_and_ledger_live_and_rebuilt_from_the_log(
    worker: Worker, topics: BrokerHandle
) -> None:
    store = TokenStore(worker.data_dir / "tokens.db")
    tok = {a: store.create(TENANT, a) for a in ("seed", "ann", "bob", "ring1", "ring2")}
    admin = store.create(TENANT, "ops", scopes=["read", "admin"])
    outsider = store.create("pool-books-other", "ann")

    def client(agent: str) -> httpx.Client:
        return httpx.Client(
            base_url=worker.url, headers={"Authorization": f"Bearer {tok[agent]}"}, timeout=30
        )

    texts = {
        "ann": "The staging database is backed up nightly at 02:00 to bucket backups-eu.",
        "bob": "The staging database is never backed up; backups were turned off in May.",
        "ring1": "Ring one says the deploy pipeline is great.",
        "ring2": "Ring two agrees the deploy pipeline is great.",
    }
    ids = {}
    for agent, text in texts.items():
        with client(agent) as c:
            ids[agent] = c.post("/v1/memories", json={"text": text}).json()["event_id"]
    with client("seed") as c:
        for agent in texts:
            _until(lambda a=agent: c.get(f"/v1/memories/{ids[a]}").status_code == 200, WAIT_S)
    ratings = [
        ("seed", "ann", "helped"),
        ("seed", "ann", "helped"),
        ("seed", "bob", "wrong"),
        ("ann", "ann", "helped"),  # her own: counts for nothing
        ("ring1", "ring2", "helped"),
        ("ring2", "ring1", "helped"),
        ("ring1", "ann", "wrong"),
        ("bob", "ann", "used"),
    ]
    for rater, author, outcome in ratings:
        with client(rater) as c:
            r = c.post("/v1/feedback", json={"memory_id": ids[author], "outcome": outcome})
            assert r.status_code == 202, r.text

    with client("seed") as c:

        def live(agent: str) -> dict:
            return c.get(f"/v1/agents/{agent}/reputation").json()

        _until(
            lambda: live("ann")["ratings_received"] == 4 and live("ring1")["ratings_received"] == 1,
            WAIT_S,
        )
        ann, bob, ring1, ring2 = live("ann"), live("bob"), live("ring1"), live("ring2")
    assert ann["reputation"] > 0.5 > bob["reputation"]
    assert ring1["trust"] == 0.0 and ring2["reputation"] == 0.5, "the ring earns nothing"
    with httpx.Client(base_url=worker.url, headers={"Authorization": f"Bearer {outsider}"}) as c:
        other = c.get("/v1/agents/ann/reputation").json()
        assert other["ratings_received"] == 0 and other["reputation"] == 0.5  # another tenant's
        assert c.get("/v1/ledger").status_code == 404  # that tenant keeps no ledger
    with httpx.Client(base_url=worker.url, headers={"Authorization": f"Bearer {admin}"}) as c:
        ledger = {b["agent_id"]: b for b in c.get("/v1/ledger/agents").json()["balances"]}
    with client("ann") as c:
        assert c.get("/v1/ledger/agents").status_code == 403  # admin scope only
        mine = c.get("/v1/ledger").json()["balances"]
        assert [b["agent_id"] for b in mine] == ["ann"] and mine[0] == ledger["ann"]
    assert ledger["ann"]["earned"] > 0 and ledger["seed"]["spent"] > 0
    assert "ring2" not in ledger or ledger["ring2"]["earned"] == 0.0

    # bob's memory proves wrong again and again: under the floor he is quarantined, his
    # memories leave search, and a new shared one of his is kept out of the pool
    with client("seed") as c:
        for _ in range(8):
            r = c.post("/v1/feedback", json={"memory_id": ids["bob"], "outcome": "wrong"})
            assert r.status_code == 202, r.text
        _until(lambda: c.get("/v1/agents/bob/reputation").json()["reputation"] < 0.1, WAIT_S)
        bob = c.get("/v1/agents/bob/reputation").json()
        hits = c.get("/v1/search", params={"q": "staging database backups", "k": 10}).json()
        assert ids["bob"] not in [h["memory_id"] for h in hits["results"]]
        assert ids["ann"] in [h["memory_id"] for h in hits["results"]]
    with client("bob") as c:
        late = c.post("/v1/memories", json={"text": "Backups now go to bucket junk-9."}).json()

    def kept_out() -> float:
        text = httpx.get(f"{worker.url}/metrics", timeout=10).text
        lines = [ln for ln in text.splitlines() if ln.startswith("memstream_pool_kept_out_total ")]
        return float(lines[0].split()[1]) if lines else 0.0

    _until(lambda: kept_out() >= 1.0, WAIT_S)  # only this tenant has seeds, so only bob's note
    with client("ann") as c:
        assert c.get(f"/v1/memories/{late['event_id']}").status_code == 404  # on the log only

    # the same books from the log alone
    messages = []
    for topic in (INDEXED.name, FEEDBACK.name, DELIVERIES.name):
        records = asyncio.run(read_topic(topics.bootstrap, topic, lambda rs: True, settle=1.0))
        messages += [
            RawMessage(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp) for r in records
        ]
    settings = Settings(
        ledger_tenants=[TENANT], reputation_seeds=[f"{TENANT}/seed"], data_dir=worker.data_dir
    )
    book, rebuilt = rebuild_books(settings, messages)
    for agent, seen in (("ann", ann), ("bob", bob), ("ring1", ring1), ("ring2", ring2)):
        assert vars(book.standing(TENANT, agent)) | {"tenant": TENANT} == seen | {"tenant": TENANT}
    assert {b.agent_id: b.balance for b in rebuilt.tenant_balances(TENANT)} == {
        a: b["balance"] for a, b in ledger.items()
    }
    # and by the command line, against the worker's own files
    env = {
        **os.environ,
        "MEMSTREAM_DATA_DIR": str(worker.data_dir),
        "MEMSTREAM_LEDGER_TENANTS": f'["{TENANT}"]',
        "MEMSTREAM_REPUTATION_SEEDS": f'["{TENANT}/seed"]',
        "MEMSTREAM_LOG_LEVEL": "WARNING",
    }
    done = subprocess.run(
        [sys.executable, "-m", "memstream", "replay", "--books", "--tenant", TENANT, "--json",
         "--bootstrap", topics.bootstrap],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["equal_to_live"] == {"reputation": True, "ledger": True}
    assert summary["rebuilt"]["reputation"][f"{TENANT}/ann"] == pytest.approx(ann["reputation"])
