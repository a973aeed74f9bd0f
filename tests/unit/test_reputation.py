"""Contributor reputation: self-feedback and rings earn nothing, poisoners sink, and the book
is a function of the set of feedback events (so a replay rebuilds it exactly)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from memstream.models.reputation import ReputationBook

HONEST = [f"h{i}" for i in range(8)]
RING = [f"r{i}" for i in range(4)]
POISON = ["p0", "p1"]


def economy_events(seed: int = 0) -> list[tuple[str, str, str, str]]:
    """(author, outcome, rater, event id): honest agents rate each other's memories helped,
    poisoned ones wrong and the ring's ignored; the ring rates only itself helped and the
    honest wrong; poisoners rate each other and themselves helped."""
    rng = random.Random(seed)
    events: list[tuple[str, str, str]] = []
    for _ in range(15):
        for h in HONEST:
            events += [(a, "helped", h) for a in rng.sample(HONEST, 3) if a != h]
            events += [(rng.choice(POISON), "wrong", h), (rng.choice(RING), "ignored", h)]
        for r in RING:
            events += [(a, "helped", r) for a in RING if a != r]
            events.append((rng.choice(HONEST), "wrong", r))
        events += [("p1", "helped", "p0"), ("p0", "helped", "p1"), ("p0", "helped", "p0")]
    return [(a, o, r, f"e{i}") for i, (a, o, r) in enumerate(events)]


def book_of(events, path: Path | None = None, seeds=("h0", "h1")) -> ReputationBook:  # type: ignore[no-untyped-def]
    book = ReputationBook(path, seeds={"t": set(seeds)} if seeds else None)
    for author, outcome, rater, event_id in events:
        book.record("t", author, outcome, rater=rater, event_id=event_id)
    return book


def test_honest_rise_poisoners_sink_and_the_ring_earns_nothing() -> None:
    book = book_of(economy_events())
    assert all(book.get("t", h) > 0.9 for h in HONEST)
    assert all(book.get("t", p) < 0.1 for p in POISON)
    for r in RING:
        standing = book.standing("t", r)
        assert standing.trust == 0.0 and book.get("t", r) <= 0.5, "the ring's ratings weigh nothing"
    # the ring's "wrong" on honest memories and its "helped" among itself changed nothing
    honest_only = [e for e in economy_events() if e[2] not in RING]
    assert book_of(honest_only).to_dict() == book.to_dict()
    assert book.get("t", "nobody") == 0.5


def test_self_feedback_and_redelivered_events_do_not_count() -> None:
    book = ReputationBook()
    assert not book.record("t", "a", "helped", rater="a", event_id="1")
    assert book.self_feedback_ignored == 1 and book.get("t", "a") == 0.5
    assert book.record("t", "a", "helped", rater="b", event_id="2")
    once = book.to_dict()
    assert not book.record("t", "a", "helped", rater="b", event_id="2")  # at-least-once
    assert book.to_dict() == once
    with pytest.raises(ValueError):
        book.record("t", "a", "great", rater="b")
    assert ReputationBook().get("other-tenant", "a") == 0.5


def test_the_same_events_in_any_order_and_after_a_restart_give_the_same_book(
    tmp_path: Path,
) -> None:
    events = economy_events(seed=2)
    live = book_of(events, tmp_path / "live.db")
    shuffled = list(events)
    random.Random(7).shuffle(shuffled)
    replayed = book_of(shuffled + shuffled[:50])  # a replay that re-reads some events
    assert replayed.to_dict() == live.to_dict()
    reopened = ReputationBook(tmp_path / "live.db", seeds={"t": {"h0", "h1"}})
    assert reopened.to_dict() == live.to_dict()
    # another process's reader sees what the writer adds
    live.record("t", "h5", "wrong", rater="h0", event_id="late")
    assert reopened.to_dict() != live.to_dict()
    reopened.refresh()
    assert reopened.to_dict() == live.to_dict()


def test_without_seeds_every_agent_is_pre_trusted_and_rings_are_not_resisted() -> None:
    book = book_of(economy_events(), seeds=())
    assert max(book.get("t", p) for p in POISON) < min(book.get("t", h) for h in HONEST)
    # the documented limit: a ring (and the poisoners rating each other) carry weight
    assert all(book.standing("t", r).trust > 0.0 for r in RING + POISON)


def test_only_a_tenant_with_seeds_quarantines_an_author_that_sank() -> None:
    seeded = book_of(economy_events())
    assert all(seeded.quarantined("t", p) for p in POISON)
    assert not any(seeded.quarantined("t", a) for a in HONEST + RING + ["nobody"])
    unseeded = book_of(economy_events(), seeds=())
    assert not any(unseeded.quarantined("t", a) for a in HONEST + RING + POISON)
    lenient = ReputationBook(seeds={"t": {"h0", "h1"}}, floor=0.0)
    for author, outcome, rater, event_id in economy_events():
        lenient.record("t", author, outcome, rater=rater, event_id=event_id)
    assert not any(lenient.quarantined("t", p) for p in POISON)  # floor 0: never
