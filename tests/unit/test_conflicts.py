"""Conflicting facts supersede older values bi-temporally (Qdrant Edge in-process)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from memstream.models.facts import extract_fact
from memstream.models.registry import HotSwapScorer, ModelRegistry
from memstream.models.static import StaticEmbedder
from memstream.schemas import Memory
from memstream.store.base import Caller
from memstream.store.conflicts import resolve_conflicts
from memstream.store.edge import EdgeStore
from memstream.store.sink import write_records
from memstream.streams.enrich import ModelStage

T0 = datetime(2026, 1, 1, tzinfo=UTC)
VALUES = ["9 EUR", "12 EUR", "15 EUR", "11 EUR"]


@pytest.mark.parametrize(
    ("text", "fact"),
    [
        ("The price of the basic plan is now 12 EUR.", ("basic plan", "price", "12 eur")),
        ("Acme's CEO is Jane Roe", ("acme", "ceo", "jane roe")),
        ("the staging DB moved to eu-west-2", ("staging db", "location", "eu-west-2")),
        (
            "Update: the owner of service-x was changed to team-b; thanks",
            ("service-x", "owner", "team-b"),
        ),
    ],
)
def test_facts_are_read_from_sentences(text: str, fact: tuple[str, str, str]) -> None:
    found = extract_fact(text)
    assert found is not None and (found.subject, found.attribute, found.value) == fact


@pytest.mark.parametrize(
    "text",
    [
        "It's downtown which is awesome",
        "We fixed the bug today",
        "I think it is fine",
        "Now that the user's id is stored in the session, it is kept.",
    ],
)
def test_ordinary_sentences_state_no_fact(text: str) -> None:
    assert extract_fact(text) is None


def _versions(stage: ModelStage, scope: str = "tenant") -> list:
    events = [
        Memory(
            tenant="t",
            agent_id="pricing",
            scope=scope,
            ts=T0 + timedelta(days=10 * i),
            payload={"text": f"The price of the basic plan is now {value}."},
        )
        for i, value in enumerate(VALUES)
    ]
    return stage.process(events, now=T0 + timedelta(days=40))


def _valid_at(store: EdgeStore, at: datetime) -> list[str]:
    caller = Caller("t", "reader")
    hits = store.search(
        caller, dense=StaticEmbedder().embed(["price of the basic plan"])[0], valid_at=at
    )
    return sorted((h.memory.fact or {}).get("value", "") for h in hits)


@pytest.mark.parametrize("order", list(itertools.permutations(range(4)))[::5])
def test_a_fact_changed_three_times_is_valid_as_of_each_time_in_any_arrival_order(
    tmp_path: Path, order: tuple[int, ...]
) -> None:
    stage = ModelStage(StaticEmbedder(), HotSwapScorer(ModelRegistry(tmp_path, "valuation")))
    records = _versions(stage)
    store = EdgeStore(tmp_path / "shard")
    conflicts = []
    for i in order:  # one by one, as separate batches may bring them
        write_records(store, [records[i]])
        conflicts += resolve_conflicts(store, [records[i]])
    for i, value in enumerate(VALUES):
        at = T0 + timedelta(days=10 * i, hours=1)
        assert _valid_at(store, at) == [value.lower()], f"as of day {10 * i}"
    assert _valid_at(store, T0 - timedelta(days=1)) == []
    pairs = {(c.payload.superseded_value, c.payload.superseding_value) for c in conflicts}
    expected = {(a.lower(), b.lower()) for a, b in itertools.pairwise(VALUES)}
    assert expected <= pairs
    # running it again changes nothing and finds the same pairs, with the same event ids
    again = resolve_conflicts(store, records)
    assert {c.event_id for c in again} <= {c.event_id for c in conflicts} | {
        c.event_id for c in again
    }
    for i, value in enumerate(VALUES):
        assert _valid_at(store, T0 + timedelta(days=10 * i, hours=1)) == [value.lower()]
    store.close()


def test_a_private_fact_never_hides_a_shared_one(tmp_path: Path) -> None:
    stage = ModelStage(StaticEmbedder(), HotSwapScorer(ModelRegistry(tmp_path, "valuation")))
    shared = _versions(stage)[0]
    private = Memory(
        tenant="t",
        agent_id="someone",
        scope="private",
        ts=T0 + timedelta(days=5),
        payload={"text": "The price of the basic plan is now 1 EUR."},
    )
    store = EdgeStore(tmp_path / "shard")
    (private_record,) = stage.process([private], now=T0 + timedelta(days=6))
    write_records(store, [shared, private_record])
    assert resolve_conflicts(store, [shared, private_record]) == []
    assert _valid_at(store, T0 + timedelta(days=20)) == ["9 eur"]
    store.close()
