"""The semantic result cache: near-duplicate tasks hit, tasks with another value never do."""

from __future__ import annotations

from pathlib import Path

import pytest

from memstream.eval.cache import run_cache_eval, task_stream
from memstream.models.embedding import OnnxEmbedder
from memstream.retrieval.result_cache import ResultCache, substituted_words, task_values
from memstream.store.base import Caller

ALICE = Caller("acme", "alice", teams=frozenset({"ops"}))
BOB = Caller("acme", "bob")


@pytest.fixture(scope="module")
def embedder() -> OnnxEmbedder:
    return OnnxEmbedder()


def test_values_are_hosts_regions_numbers_dates_ids_and_names() -> None:
    assert task_values("Restart web-3 in eu-west-2") == {"web-3", "eu-west-2"}
    assert task_values("Deploy version 2.4.1 to production") == task_values("deploy v2.4.1 on prod")
    assert task_values("Scale the api to ten replicas") == {"10"}
    assert task_values("Weather in Paris on Monday?") == {"paris", "monday"}
    assert task_values("Summarise db01.example.com since 2026-05-01") == {
        "db01.example.com",
        "2026-05-01",
    }


def test_a_word_swapped_in_place_is_another_task_a_rewording_is_not() -> None:
    assert substituted_words(
        "Restart the payments service on web-3", "Restart the checkout service on web-3"
    ) == [("payments", "checkout")]
    assert (
        substituted_words("Restart the payments service on web-3", "restart payments on host web-3")
        == []
    )
    assert substituted_words("Deploy auth to prod", "Deploy auth to production") == []


def test_paraphrase_hits_and_each_kind_of_other_value_is_refused(embedder: OnnxEmbedder) -> None:
    cache = ResultCache(embedder)
    done = cache.publish(ALICE, "Restart the payments service on web-3 in eu-west-2", "ok")
    assert cache.lookup(ALICE, "Restart the payments service on web-3 in eu-west-2").result == done
    para = cache.lookup(ALICE, "restart payments on host web-3 in eu-west-2")
    assert para.outcome == "hit" and para.result == done
    for other in (
        "Restart the payments service on web-4 in eu-west-2",  # host
        "Restart the payments service on web-3 in eu-west-1",  # region
        "Restart the payments service on web-3 in eu-west-2 at 2026-05-01",  # a date more
    ):
        found = cache.lookup(ALICE, other)
        assert found.outcome == "rejected" and found.result is None, other
        assert found.reason and "other values" in found.reason
    # a lower-case name: refused by the value test if the meaning test lets it through
    assert cache.lookup(ALICE, "Restart the checkout service on web-3 in eu-west-2").result is None
    assert cache.lookup(ALICE, "What is the capital of France?").outcome == "miss"


def test_visibility_and_failed_results(embedder: OnnxEmbedder, tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    cache = ResultCache(embedder, path=path)
    cache.publish(ALICE, "Rotate the auth database credentials in staging", "done", scope="private")
    cache.publish(ALICE, "Back up /srv/data/export.csv on db-2", "done", scope="team:ops")
    cache.publish(ALICE, "Check the free disk space on web-1", "boom", verification="failed")
    assert cache.lookup(BOB, "Rotate the auth database credentials in staging").outcome == "miss"
    assert cache.lookup(ALICE, "Rotate the auth database credentials in staging").outcome == "hit"
    assert cache.lookup(BOB, "Back up /srv/data/export.csv on db-2").outcome == "miss"
    assert cache.lookup(ALICE, "Back up /srv/data/export.csv on db-2").outcome == "hit"
    assert cache.lookup(ALICE, "Check the free disk space on web-1").outcome == "miss"
    assert (
        cache.lookup(Caller("other", "alice"), "Back up /srv/data/export.csv on db-2").outcome
        == "miss"
    )
    reopened = ResultCache(embedder, path=path)  # persisted
    assert reopened.count() == 3
    assert reopened.lookup(ALICE, "Back up /srv/data/export.csv on db-2").outcome == "hit"
    with pytest.raises(ValueError):
        cache.publish(ALICE, "  ", "x")


def test_the_generated_stream_has_each_kind_and_the_eval_counts_them(
    embedder: OnnxEmbedder,
) -> None:
    stream = task_stream(300, seed=3)
    assert {k for k, _ in stream} == {"new", "repeat", "paraphrase", "near_miss"}
    near = [(k, t) for k, t in stream if k == "near_miss"]
    assert all(t.text for _, t in near)
    result = run_cache_eval(n=300, seed=3, bars=(0.9,), embedder=embedder, progress=lambda _: None)
    assert 0.0 < result["work_avoided"] <= 1.0
    assert result["false_hit_rate"] <= 0.05
    # meaning alone would hand near-misses their neighbour's result
    assert result["without_value_test"]["false_hit_rate"] > result["false_hit_rate"]
    counts = result["counts"]
    assert counts["duplicate"] + counts["not_duplicate"] == 300
