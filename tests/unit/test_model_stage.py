"""The model stage on the fast static embedder (unit tests only; integration uses MiniLM)."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest

from memstream.models.compression import decode_vector
from memstream.models.registry import HotSwapScorer, ModelRegistry
from memstream.models.static import StaticEmbedder
from memstream.models.valuation import N_FEATURES
from memstream.schemas import Memory, Observation
from memstream.streams.app import enrich_or_reject
from memstream.streams.enrich import ModelStage
from memstream.streams.validate import InvalidEvent


@pytest.fixture(scope="module")
def embedder() -> StaticEmbedder:
    return StaticEmbedder()


@pytest.fixture
def stage(embedder: StaticEmbedder, tmp_path: Path) -> ModelStage:
    return ModelStage(embedder, HotSwapScorer(ModelRegistry(tmp_path, "valuation")))


def _memory(text: str, tenant: str = "t", scope: str = "tenant") -> Memory:
    return Memory(tenant=tenant, agent_id="a", scope=scope, payload={"text": text, "tags": ["x"]})


def test_records_keep_the_source_identity_and_carry_models(
    stage: ModelStage, embedder: StaticEmbedder
) -> None:
    event = _memory("the deploy key rotates every 90 days")
    [record] = stage.process([event])
    assert record.event_id == event.event_id and record.kind == "indexed"
    assert (record.tenant, record.agent_id, record.scope) == ("t", "a", "tenant")
    code = base64.b64decode(record.payload.vector_b64)
    assert len(code) == 192
    assert float(decode_vector(code) @ embedder.embed([event.payload.text])[0]) > 0.97
    assert record.payload.models == {
        "embedding": embedder.version,
        "valuation": "valuation:cold-start",
        "codec": "rlm4-384-v1",
    }
    assert record.payload.novelty == 1.0  # empty pool
    assert len(record.payload.features) == N_FEATURES


def test_duplicates_merge_within_tenant_and_scope_only(stage: ModelStage) -> None:
    text = "invoice exports fail above 65k rows"
    first, same, other_scope, other_tenant = stage.process(
        [
            _memory(text),
            _memory(text.upper()),
            _memory(text, scope="private"),
            _memory(text, tenant="u"),
        ]
    )
    assert first.payload.duplicate_of is None
    assert same.payload.duplicate_of == first.event_id
    assert other_scope.payload.duplicate_of is None
    assert other_tenant.payload.duplicate_of is None and other_tenant.payload.novelty == 1.0
    assert same.payload.novelty < 0.01
    # a later batch finds the original in the pool, and never points at a duplicate
    [again] = stage.process([_memory(f"  {text} ")])
    assert again.payload.duplicate_of == first.event_id


def test_novel_memories_score_higher_than_repeats(stage: ModelStage) -> None:
    base = stage.process([_memory("the cluster uses three brokers in two zones")])[0]
    repeat = stage.process([_memory("the cluster uses three brokers in two zones")])[0]
    assert repeat.payload.usefulness < base.payload.usefulness


def test_observations_are_processed_too(stage: ModelStage) -> None:
    obs = Observation(tenant="t", agent_id="a", payload={"text": "saw a 500 from /api"})
    [record] = stage.process([obs])
    assert record.payload.source_kind == "observation"


class _PoisonEmbedder:
    """Fault injection around the real static embedder: fails on texts containing POISON."""

    def __init__(self, inner: StaticEmbedder) -> None:
        self.inner, self.dim, self.version = inner, inner.dim, inner.version

    def embed(self, texts: list[str]) -> np.ndarray:
        if any("POISON" in t for t in texts):
            raise RuntimeError("tokenizer exploded")
        return self.inner.embed(texts)


def test_one_failing_event_is_rejected_and_the_rest_flow(
    embedder: StaticEmbedder, tmp_path: Path
) -> None:
    stage = ModelStage(
        _PoisonEmbedder(embedder), HotSwapScorer(ModelRegistry(tmp_path, "valuation"))
    )
    results = enrich_or_reject(
        stage, [_memory("fine one"), _memory("POISON here"), _memory("fine two")]
    )
    assert [type(r).__name__ for r in results] == ["Indexed", "InvalidEvent", "Indexed"]
    assert isinstance(results[1], InvalidEvent) and results[1].reason == "processor_error"
    assert "tokenizer exploded" in results[1].detail
