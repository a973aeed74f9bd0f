"""Late-interaction reranking on the real MiniLM token vectors, and the retriever around it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from memstream.eval.retrieval import ingest
from memstream.models.embedding import OnnxEmbedder
from memstream.models.registry import HotSwapScorer, ModelRegistry
from memstream.retrieval import RankingWeights, Retriever
from memstream.retrieval.late import LateInteraction, _weights
from memstream.schemas.events import Memory
from memstream.store.base import Caller
from memstream.store.edge import EdgeStore
from memstream.streams.enrich import ModelStage


@pytest.fixture(scope="module")
def embedder() -> OnnxEmbedder:
    return OnnxEmbedder(prefer="cpu")


def test_token_vectors_are_unit_length_pieces(embedder: OnnxEmbedder) -> None:
    (tokens, empty) = embedder.embed_tokens(["The violinist practised.", ""])
    assert tokens.tokens[0] == "the" and "[CLS]" not in tokens.tokens
    assert tokens.vectors.shape == (len(tokens.tokens), embedder.dim)
    assert np.allclose(np.linalg.norm(tokens.vectors.astype(np.float32), axis=1), 1, atol=1e-2)
    assert empty.tokens == () and empty.vectors.shape == (0, embedder.dim)


def test_query_weights_skip_function_words_and_favour_rare_pieces() -> None:
    docs = [{"violin", "play"}, {"play", "hike"}, {"play"}]
    w = _weights(("what", "does", "she", "play", "?", "violin"), docs)
    assert list(w[:3]) == [0, 0, 0] and w[4] == 0  # function words, punctuation
    assert w[5] > w[3] > 0  # "violin" is in one memory, "play" in all
    assert _weights(("what", "is", "it"), docs).tolist() == [1.0, 1.0, 1.0]


def test_maxsim_prefers_the_memory_with_the_detail(embedder: OnnxEmbedder) -> None:
    late = LateInteraction(embedder)
    query = "which instrument does she practise in the evening"
    memories: list[tuple[str, str | None]] = [
        ("We went hiking in the mountains last weekend.", None),
        ("I have been practising the violin every evening after work.", None),
        ("Yes, every single evening!", "Do you still practise the violin?"),
        ("Yes, every single evening!", None),
    ]
    scores = late.scores(query, memories)
    assert int(np.argmax(scores)) == 1
    assert scores[2] > scores[3]  # the previous turn (context) counts
    assert scores[1] > scores[2]  # but less than a match in the memory itself
    again = late.scores(query, memories)  # from the cache now
    assert np.allclose(scores, again)
    assert late.scores(query, []).shape == (0,)


def _store_of(
    said: list[tuple[str, str]], now: datetime, embedder: OnnxEmbedder, tmp_path: Path
) -> EdgeStore:
    """A store with `(agent, text)` memories of tenant t1, a day apart, ingested as the
    worker does."""
    memories = [
        Memory(
            tenant="t1",
            agent_id=agent,
            scope="tenant",
            ts=now - timedelta(days=10 - i),
            payload={"text": text},
        )
        for i, (agent, text) in enumerate(said)
    ]
    store = EdgeStore(tmp_path / "store")
    stage = ModelStage(embedder, HotSwapScorer(ModelRegistry(tmp_path / "m", "valuation")))
    ingest(store, stage, memories)
    return store


def test_retriever_reranks_and_strips_the_named_agent(
    embedder: OnnxEmbedder, tmp_path: Path
) -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    said = [
        ("melanie", "We got another cat named Bailey, and the dog loves her."),
        ("caroline", "Melanie, you look so happy in that photo with your family!"),
        ("caroline", "I adopted a turtle last spring, his name is Oscar."),
        ("melanie", "I ran a charity race for mental health on Saturday."),
    ]
    store = _store_of(said, now, embedder, tmp_path)
    try:
        caller = Caller("t1", "reader")
        retriever = Retriever(store, embedder)
        results = retriever.search(caller, "What pets does Melanie have?", 3, now=now)
        assert results[0].memory.text == said[0][1]
        assert all(r.late is not None for r in results)  # the rerank stage ran
        plain = Retriever(store, embedder, RankingWeights(rerank_window=0))
        assert all(r.late is None for r in plain.search(caller, "pets", 3, now=now))
        assert not Retriever(store, embedder).search(Caller("t2", "x"), "pets", 3, now=now)
    finally:
        store.close()


def test_maxsim_of_all_memories_at_once_equals_one_at_a_time(embedder: OnnxEmbedder) -> None:
    """The rerank scores every candidate in one matrix product; each score is still the
    documented per-memory MaxSim (a memory's context counts at CONTEXT_WEIGHT)."""
    from memstream.retrieval.late import CONTEXT_WEIGHT

    late = LateInteraction(embedder)
    query = "which instrument does she practise in the evening"
    memories: list[tuple[str, str | None]] = [
        ("I have been practising the violin every evening after work.", None),
        ("Yes, every single evening!", "Do you still practise the violin?"),
        ("", "an empty memory still has its context"),
        ("We went hiking.", ""),
    ]
    scores = late.scores(query, memories)
    q = embedder.embed_tokens([query])[0]
    texts = [t for t, _ in memories]
    contexts = [c or "" for _, c in memories]
    docs = embedder.embed_tokens(texts)
    ctxs = embedder.embed_tokens(contexts)
    weights = _weights(
        q.tokens, [set(d.tokens) | set(c.tokens) for d, c in zip(docs, ctxs, strict=True)]
    )
    qv = q.vectors.astype(np.float32)
    for j, (doc, ctx) in enumerate(zip(docs, ctxs, strict=True)):
        best = np.full(len(q.tokens), -1.0, dtype=np.float32)
        if doc.tokens:
            best = np.maximum(best, (qv @ doc.vectors.astype(np.float32).T).max(1))
        if ctx.tokens:
            best = np.maximum(best, CONTEXT_WEIGHT * (qv @ ctx.vectors.astype(np.float32).T).max(1))
        assert scores[j] == pytest.approx(float((best * weights).sum() / weights.sum()), abs=1e-5)


def test_a_known_author_named_in_the_query_costs_one_embedding_and_one_search(
    embedder: OnnxEmbedder, tmp_path: Path
) -> None:
    """The first query naming an author learns who writes in the tenant (two store
    searches: with and without the name); the next ones embed the name-free query once and
    search once, and rank exactly as a retriever that searched twice."""
    now = datetime(2026, 6, 1, tzinfo=UTC)
    said = [
        ("melanie", "We got another cat named Bailey, and the dog loves her."),
        ("caroline", "Melanie, you look so happy in that photo with your family!"),
        ("melanie", "I ran a charity race for mental health on Saturday."),
        ("caroline", "I went to a pottery class with my sister."),
    ]
    store = _store_of(said, now, embedder, tmp_path)
    try:
        searches: list[int] = []
        search = store.search

        def counted(*args, **kwargs):  # the real store search, counted
            searches.append(1)
            return search(*args, **kwargs)

        store.search = counted  # type: ignore[method-assign]
        caller = Caller("t1", "reader")
        retriever = Retriever(store, embedder)
        retriever.search(caller, "What pets does Melanie have?", 3, now=now)
        assert len(searches) == 2  # nobody known yet: with the name, then without
        searches.clear()
        second = retriever.search(caller, "What race did Melanie run?", 3, now=now)
        assert len(searches) == 1
        fresh = Retriever(store, embedder).search(caller, "What race did Melanie run?", 3, now=now)
        assert [r.memory.memory_id for r in second] == [r.memory.memory_id for r in fresh]
        assert [r.score for r in second] == pytest.approx([r.score for r in fresh])
        searches.clear()
        retriever.search(caller, "Who went to a pottery class?", 3, now=now)
        assert len(searches) == 1  # names nobody: one search, as always
    finally:
        store.close()
