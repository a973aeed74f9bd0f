"""The push benchmark's broker-free parts: its corpus, its summaries, the matcher timing."""

from __future__ import annotations

from memstream.bench.push import (
    MAX_MEMORIES,
    SUBSCRIBER_AGENTS,
    matcher_throughput,
    memory_texts,
    subscription_queries,
    summary_ms,
)


def test_memory_texts_are_distinct_across_calls_and_deterministic() -> None:
    first, second = memory_texts(300), memory_texts(300, start=300)
    texts = [t for _, t in first + second]
    assert len(set(texts)) == 600
    assert memory_texts(5, start=10) == (first[10:15])
    assert len(memory_texts(1, start=MAX_MEMORIES - 1)) == 1


def test_subscriptions_spread_over_the_subscriber_agents() -> None:
    pairs = subscription_queries(100)
    assert {agent for agent, _ in pairs} == set(range(SUBSCRIBER_AGENTS))


def test_summary_ms() -> None:
    s = summary_ms([0.001, 0.002, 0.003])
    assert s["n"] == 3 and s["p50"] == 2.0 and s["max"] == 3.0
    assert summary_ms([])["p50"] is None


def test_matcher_throughput_small() -> None:
    row = matcher_throughput(200, memories=50, match_share=0.05)
    assert row["subscriptions"] == 200 and row["memories"] == 50
    assert 3 <= row["deliveries_per_memory"] <= 20  # about 5% of 200
    assert row["memories_per_s"] > 0 and row["scan_only_memories_per_s"] > 0
