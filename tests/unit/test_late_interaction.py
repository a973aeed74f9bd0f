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
    try:
        stage = ModelStage(embedder, HotSwapScorer(ModelRegistry(tmp_path / "m", "valuation")))
        ingest(store, stage, memories)
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
