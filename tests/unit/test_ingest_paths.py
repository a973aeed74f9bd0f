"""Issue 14: token vectors paid at ingest, kept compactly; the model stage split so that the
PII scan and the embedding can overlap, each with its own per-event fallback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from memstream.models.embedding import OnnxEmbedder
from memstream.models.registry import HotSwapScorer, ModelRegistry
from memstream.retrieval.late import LateInteraction
from memstream.schemas.events import Indexed, Memory
from memstream.store.token_vectors import CONTEXT, TEXT, TokenVectorStore, dequantise, quantise
from memstream.streams.app import embed_protected, enrich_or_reject, protect
from memstream.streams.enrich import ModelStage
from memstream.streams.validate import InvalidEvent


class CountingEmbedder:
    """The real embedder, counting the texts it is asked to run the model on."""

    def __init__(self, inner: OnnxEmbedder) -> None:
        self.inner = inner
        self.dim = inner.dim
        self.version = inner.version
        self.token_texts = 0

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.inner.embed(texts)

    def embed_tokens(self, texts: list[str]):  # type: ignore[no-untyped-def]
        self.token_texts += len(texts)
        return self.inner.embed_tokens(texts)

    def embed_with_tokens(self, texts: list[str]):  # type: ignore[no-untyped-def]
        return self.inner.embed_with_tokens(texts)


@pytest.fixture(scope="module")
def embedder() -> OnnxEmbedder:
    return OnnxEmbedder(prefer="cpu")


def test_one_forward_pass_gives_both_the_pooled_and_the_token_vectors(
    embedder: OnnxEmbedder,
) -> None:
    texts = ["the staging DB moved to eu-west-2", "", "a much longer text " * 20]
    pooled, tokens = embedder.embed_with_tokens(texts)
    assert np.allclose(pooled, embedder.embed(texts), atol=1e-5)
    for got, want in zip(tokens, embedder.embed_tokens(texts), strict=True):
        assert got.tokens == want.tokens
        assert np.allclose(got.vectors.astype(np.float32), want.vectors.astype(np.float32))


def test_int8_token_vectors_keep_their_dot_products() -> None:
    rng = np.random.default_rng(0)
    v = rng.standard_normal((40, 384)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    back = dequantise(*quantise(v)).astype(np.float32)
    assert np.abs(back @ v.T - v @ v.T).max() < 0.01
    codes, scales = quantise(v)
    assert codes.nbytes + scales.nbytes == 40 * (384 + 2)  # a quarter of float32


def test_kept_vectors_are_per_tenant_and_go_with_their_memories(
    tmp_path: Path, embedder: OnnxEmbedder
) -> None:
    kept = TokenVectorStore(tmp_path / "tv.db")
    (tv,) = embedder.embed_tokens(["we moved the broker to three nodes"])
    kept.put([("acme", "m1", TEXT, tv)])
    got = kept.get("acme", [("m1", TEXT), ("m1", CONTEXT), ("m2", TEXT)])
    assert list(got) == [("m1", TEXT)] and got[("m1", TEXT)].tokens == tv.tokens
    assert kept.get("globex", [("m1", TEXT)]) == {}
    assert kept.delete_memories(["m1"]) == 1 and kept.count() == 0


def test_the_rerank_runs_the_model_only_on_the_query_once_ingest_kept_the_vectors(
    tmp_path: Path, embedder: OnnxEmbedder
) -> None:
    counting = CountingEmbedder(embedder)
    kept = TokenVectorStore(tmp_path / "tv.db")
    stage = ModelStage(
        counting, HotSwapScorer(ModelRegistry(tmp_path, "valuation")), token_store=kept
    )
    texts = [f"memory number {i} about the {w} cluster" for i, w in enumerate("abcdef")]
    events = [
        Memory(tenant="acme", agent_id="a", payload={"text": t, "context": f"before {t}"})
        for t in texts
    ]
    records = stage.process(events)
    assert kept.count() == 2 * len(texts)  # texts and contexts
    counting.token_texts = 0
    cold = LateInteraction(counting)
    warm = LateInteraction(counting, kept=kept)
    memories: list[tuple[str, str | None]] = [(t, f"before {t}") for t in texts]
    ids = [str(e.event_id) for e in events]
    scores_warm = warm.scores("which cluster", memories, "acme", ids)
    assert counting.token_texts == 1  # the query only
    scores_cold = cold.scores("which cluster", memories, "acme")
    assert counting.token_texts == 1 + 1 + 2 * len(texts)
    assert np.allclose(scores_warm, scores_cold, atol=0.01)
    # another tenant's ids find nothing kept: the model runs on its texts
    LateInteraction(counting, kept=kept).scores("which cluster", memories, "globex", ids)
    assert counting.token_texts == 2 * (1 + 2 * len(texts)) + 1
    assert [r.payload.text for r in records] == texts


def test_a_bad_event_fails_alone_in_each_half_of_the_model_stage(
    tmp_path: Path, embedder: OnnxEmbedder
) -> None:
    class Fragile(ModelStage):
        def process(self, events, now=None, protected=None):  # type: ignore[no-untyped-def]
            if any("boom" in e.payload.text for e in events):
                raise RuntimeError("boom")
            return super().process(events, now, protected)

    stage = Fragile(embedder, HotSwapScorer(ModelRegistry(tmp_path, "valuation")))
    events = [
        Memory(tenant="acme", agent_id="a", payload={"text": t})
        for t in ["fine one", "boom here", "fine two"]
    ]
    scrubbed, screened = protect(None, events)
    out = embed_protected(stage, scrubbed, screened)
    assert isinstance(out[0], Indexed) and isinstance(out[2], Indexed)
    assert isinstance(out[1], InvalidEvent) and out[1].reason == "processor_error"
    assert [type(r) for r in enrich_or_reject(stage, events)] == [type(r) for r in out]


def test_the_novelty_pool_stays_bounded_over_tenants_and_keeps_the_newest() -> None:
    from memstream.models.pool import VectorPool

    pool = VectorPool(dim=4, capacity=5, max_total=8)
    rng = np.random.default_rng(1)
    for t in range(4):
        for i in range(3):
            v = rng.standard_normal((2, 4)).astype(np.float32)
            pool.add(f"t{t}", v, [f"t{t}-{i}-a", f"t{t}-{i}-b"], ["tenant"] * 2, [frozenset()] * 2)
    assert len(pool) <= 8
    vectors, ids, scopes, words = pool.get("t3")
    assert ids == ["t3-0-b", "t3-1-a", "t3-1-b", "t3-2-a", "t3-2-b"]  # the newest 5
    assert vectors.shape == (5, 4) and len(scopes) == len(words) == 5
    assert pool.get("t0")[1] == []  # the tenant added to least recently went first


def test_what_the_privacy_process_returns_crosses_a_process_boundary() -> None:
    import pickle

    from memstream.streams.privacy_stage import ErasedSubject, Protected

    err = pickle.loads(pickle.dumps(InvalidEvent("drop_policy", "personal data", "model")))
    assert (err.reason, err.detail, err.stage) == ("drop_policy", "personal data", "model")
    erased = pickle.loads(pickle.dumps(ErasedSubject(["s1"])))
    assert erased.subjects == ["s1"]
    event = Memory(tenant="acme", agent_id="a", payload={"text": "hello", "tags": ["x"]})
    back = pickle.loads(pickle.dumps(([event], [Protected.unscanned(event)])))
    assert back[0][0] == event and back[1][0].tags == ["x"]


def test_the_pii_scan_runs_in_as_many_processes_as_set(tmp_path: Path) -> None:
    """Chunks of one batch are scanned side by side in two processes, with the same
    answers as the scan in this process (the serial part of the worker, issue 14)."""
    import asyncio
    import os

    from memstream.settings import Settings
    from memstream.streams.app.privacy import (
        build_privacy_stage,
        privacy_executor,
        privacy_process_count,
        protect_in_child,
    )

    cores = len(os.sched_getaffinity(0))  # the cores this process may use
    assert privacy_process_count(Settings(data_dir=tmp_path)) == 1
    assert privacy_process_count(Settings(data_dir=tmp_path, privacy_processes=64)) == cores
    if cores < 2:
        pytest.skip("two scan processes need two cores")
    settings = Settings(data_dir=tmp_path, privacy_processes=2)
    texts = [
        "Call Maria Schmidt on +49 30 1234567 tomorrow.",
        "The build on main is green again after the cache fix.",
        "Mail jonas.berg@example.org the quarterly figures.",
        "Deploy the canary to eu-west-1 before noon.",
    ]
    chunks = [[Memory(tenant="acme", agent_id="a", payload={"text": t})] for t in texts]
    executor = privacy_executor(settings)
    try:
        assert executor._max_workers == 2  # type: ignore[attr-defined]

        async def scan_all() -> list:
            loop = asyncio.get_running_loop()
            futures = [loop.run_in_executor(executor, protect_in_child, c) for c in chunks]
            return await asyncio.gather(*futures)

        scanned = asyncio.run(scan_all())
    finally:
        executor.shutdown()
    here = build_privacy_stage(settings)
    for chunk, (_events, protected, _seconds) in zip(chunks, scanned, strict=True):
        assert [p.text for p in protected] == [p.text for p in protect(here, chunk)[1]]
    assert "Maria Schmidt" not in scanned[0][1][0].text
    assert scanned[1][1][0].text == texts[1]
