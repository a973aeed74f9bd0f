"""The credit ledger: a function of the delivery and feedback events on the log."""

from __future__ import annotations

import random
from pathlib import Path

from memstream.models.ledger import Ledger, LedgerRules
from memstream.models.reputation import ReputationBook
from tests.unit.test_reputation import RING, economy_events


def _feed(ledger: Ledger, book: ReputationBook, events) -> None:  # type: ignore[no-untyped-def]
    for author, outcome, rater, event_id in events:
        ledger.feedback(event_id, "t", rater, author, outcome)
        book.record("t", author, outcome, rater=rater, event_id=event_id)


def test_reads_cost_helpful_contributions_earn_and_self_praise_is_nothing() -> None:
    ledger = Ledger(
        rules=LedgerRules(initial_credit=10, delivery_cost=1, use_cost=1, helped_reward=3)
    )
    assert ledger.delivery("d1", "t", "bob")
    assert not ledger.delivery("d1", "t", "bob")  # redelivered: once
    assert ledger.feedback("f1", "t", "bob", "ann", "helped")
    assert not ledger.feedback("f2", "t", "ann", "ann", "helped")  # her own memory
    assert not ledger.feedback("f3", "t", "bob", "ann", "ignored")  # moves nothing
    bob, ann = ledger.balance("t", "bob"), ledger.balance("t", "ann")
    assert (bob.balance, bob.spent, bob.entries) == (8.0, 2.0, 2)
    assert (ann.balance, ann.earned) == (13.0, 3.0)
    assert ledger.balance("t", "nobody").balance == 10.0
    assert [b.agent_id for b in ledger.tenant_balances("t")] == ["ann", "bob"]


def test_a_ring_earns_nothing_and_a_rebuild_in_any_order_is_equal(tmp_path: Path) -> None:
    events = economy_events(seed=4)
    book = ReputationBook(tmp_path / "rep.db", seeds={"t": {"h0", "h1"}})
    live = Ledger(tmp_path / "ledger.db", rater_weight=book.rater_weight)
    _feed(live, book, events)
    initial = live.rules.initial_credit
    for r in RING:  # its members praise each other: they pay for it and earn nothing
        assert live.balance("t", r).earned == 0.0 and live.balance("t", r).balance < initial
    assert live.balance("t", "h2").earned > 0
    shuffled = list(events)
    random.Random(1).shuffle(shuffled)
    book2 = ReputationBook(seeds={"t": {"h0", "h1"}})
    rebuilt = Ledger(rater_weight=book2.rater_weight)
    _feed(rebuilt, book2, shuffled + shuffled[:40])  # a replay that re-reads some
    assert rebuilt.to_dict() == live.to_dict()
    reopened = Ledger(tmp_path / "ledger.db", rater_weight=book.rater_weight)
    assert reopened.to_dict() == live.to_dict()
