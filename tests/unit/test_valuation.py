"""Valuation: features, cold-start heuristic, online model + ONNX export, registry, hot swap,
feedback learner, and the simulated evaluation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from memstream.eval.valuation import roc_auc, run_valuation_eval
from memstream.models import registry as registry_module
from memstream.models.feedback_learner import FeedbackLearner
from memstream.models.registry import HotSwapScorer, ModelRegistry
from memstream.models.valuation import (
    FEATURE_NAMES,
    N_FEATURES,
    OnlineValuationModel,
    cold_start_score,
    feedback_target,
    valuation_features,
    valuation_features_batch,
)


def _unit(rng: np.random.Generator, n: int | None = None, dim: int = 384) -> np.ndarray:
    v = rng.standard_normal((n or 1, dim)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v if n else v[0]


def _one(**overrides: object) -> np.ndarray:
    args: dict = dict(
        embedding=_unit(np.random.default_rng(1)),
        novelty=0.5,
        reputation=0.5,
        kind="memory",
        age_hours=24.0,
        text_chars=300,
        n_tags=2,
    )
    args.update(overrides)
    return valuation_features(**args)


def _batch(rng: np.random.Generator, n: int) -> np.ndarray:
    return valuation_features_batch(
        embeddings=_unit(rng, n),
        novelty=rng.random(n),
        reputation=rng.random(n),
        kind=rng.choice(["memory", "observation"], n),
        age_hours=rng.exponential(100.0, n),
        text_chars=rng.integers(1, 5000, n),
        n_tags=rng.integers(0, 10, n),
    )


def _trained(seed: int, n: int = 500) -> OnlineValuationModel:
    rng = np.random.default_rng(seed)
    x = _batch(rng, n)
    y = (rng.random(n) < 0.2 + 0.6 * x[:, 0]).astype(float)
    model = OnlineValuationModel()
    for i in range(0, n, 10):
        model.partial_fit(x[i : i + 10], y[i : i + 10], np.full(len(y[i : i + 10]), 0.7))
    return model


# --- features ---------------------------------------------------------------------------------


def test_features_have_fixed_length_dtype_and_are_deterministic() -> None:
    a, b = _one(), _one()
    assert a.shape == (len(FEATURE_NAMES),) == (N_FEATURES,)
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert len(set(FEATURE_NAMES)) == N_FEATURES
    assert _one(kind="observation")[FEATURE_NAMES.index("is_observation")] == 1.0


def test_single_and_batch_features_agree() -> None:
    rng = np.random.default_rng(3)
    emb = _unit(rng, 3)
    batch = valuation_features_batch(
        embeddings=emb,
        novelty=[0.1, 0.5, 1.0],
        reputation=[0.5, 0.2, 0.9],
        kind=["memory", "observation", "memory"],
        age_hours=[0, 10, 1000],
        text_chars=[5, 500, 50_000],
        n_tags=[0, 3, 100],
    )
    one = valuation_features(
        embedding=emb[1],
        novelty=0.5,
        reputation=0.2,
        kind="observation",
        age_hours=10,
        text_chars=500,
        n_tags=3,
    )
    np.testing.assert_array_equal(batch[1], one)
    assert batch.shape == (3, N_FEATURES)


def test_embedding_projection_is_the_same_in_a_fresh_process() -> None:
    code = (
        "from memstream.models.valuation import valuation_features as f; import numpy as np;"
        "e = np.ones(384, np.float32) / np.sqrt(384);"
        "print(repr(f(embedding=e, novelty=1, reputation=.5, kind='memory', age_hours=0,"
        " text_chars=10, n_tags=0).tolist()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    e = np.ones(384, np.float32) / np.sqrt(384)
    here = valuation_features(
        embedding=e, novelty=1, reputation=0.5, kind="memory", age_hours=0, text_chars=10, n_tags=0
    )
    np.testing.assert_array_equal(np.array(eval(out.stdout), dtype=np.float32), here)


def test_features_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="shape"):
        _one(embedding=np.zeros(128, np.float32))
    with pytest.raises(ValueError, match="kind"):
        _one(kind="delivery")
    with pytest.raises(ValueError, match="non-finite"):
        _one(novelty=float("nan"))
    small = valuation_features(
        embedding=np.eye(8, dtype=np.float32)[0],
        novelty=1,
        reputation=0.5,
        kind="memory",
        age_hours=1,
        text_chars=10,
        n_tags=0,
        dim=8,
    )
    assert small.shape == (N_FEATURES,)


# --- cold start -------------------------------------------------------------------------------


def test_cold_start_scores_lie_in_unit_interval() -> None:
    scores = cold_start_score(_batch(np.random.default_rng(0), 2000))
    assert scores.shape == (2000,)
    assert scores.min() >= 0.0 and scores.max() <= 1.0
    assert cold_start_score(_one()).shape == (1,)


@pytest.mark.parametrize("field", ["novelty", "reputation"])
def test_cold_start_is_strictly_increasing_in_novelty_and_reputation(field: str) -> None:
    grid = np.linspace(0.0, 1.0, 11)
    for kind, age in (("memory", 0.0), ("observation", 5000.0)):
        scores = np.concatenate(
            [cold_start_score(_one(**{field: v}, kind=kind, age_hours=age)) for v in grid]
        )
        assert np.all(np.diff(scores) > 0), scores


def test_cold_start_prefers_memories_fresh_and_longer_texts() -> None:
    base = cold_start_score(_one())[0]
    assert cold_start_score(_one(kind="observation"))[0] < base
    assert cold_start_score(_one(age_hours=24 * 60))[0] < base
    assert cold_start_score(_one(text_chars=3))[0] < base


# --- labels and the online model --------------------------------------------------------------


def test_feedback_targets() -> None:
    assert feedback_target("helped", None) == (1.0, 1.0)
    assert feedback_target("used", None) == (1.0, 0.5)
    assert feedback_target("wrong", None) == (0.0, 1.0)
    assert feedback_target("ignored", None) == (0.0, 0.5)
    assert feedback_target("helped", 0.8) == (0.8, 1.0)
    assert feedback_target("wrong", 0.9) == (0.5, 1.0)  # stays on the negative side
    with pytest.raises(ValueError):
        feedback_target("loved", None)


def test_untrained_model_predicts_half() -> None:
    model = OnlineValuationModel()
    np.testing.assert_allclose(model.predict(_batch(np.random.default_rng(0), 4)), 0.5)


def test_online_model_learns_a_separable_signal() -> None:
    rng = np.random.default_rng(5)
    model = OnlineValuationModel()
    for _ in range(300):
        x = _batch(rng, 20)
        model.partial_fit(x, (x[:, 1] > 0.5).astype(float))
    x = _batch(rng, 1000)
    assert roc_auc(x[:, 1] > 0.5, model.predict(x)) > 0.95
    assert model.n_seen == 6000
    np.testing.assert_allclose(model.mean[1], 0.5, atol=0.03)  # running stats converge


def test_welford_batches_match_full_data_statistics() -> None:
    rng = np.random.default_rng(2)
    x = _batch(rng, 300)
    model = OnlineValuationModel()
    for part in np.array_split(x, 7):
        model.partial_fit(part, np.zeros(len(part)))
    np.testing.assert_allclose(model.mean, x.mean(axis=0), rtol=1e-6, atol=1e-6)
    std = x.astype(np.float64).std(axis=0)
    np.testing.assert_allclose(model.std, np.where(std > 1e-6, std, 1.0), rtol=1e-5)


def test_onnx_export_matches_numpy_predict() -> None:
    model = _trained(seed=7)
    session = ort.InferenceSession(model.to_onnx(), providers=["CPUExecutionProvider"])
    x = _batch(np.random.default_rng(8), 257)
    (onnx_scores,) = session.run(["score"], {"features": x})
    assert onnx_scores.shape == (257,) and onnx_scores.dtype == np.float32
    np.testing.assert_allclose(onnx_scores, model.predict(x), atol=1e-5, rtol=0)
    assert np.ptp(onnx_scores) > 0.05  # a real model, not a constant


def test_state_round_trip_resumes_training_identically() -> None:
    model = _trained(seed=9)
    copy = OnlineValuationModel.from_state(model.state_dict())
    x = _batch(np.random.default_rng(10), 50)
    for m in (model, copy):
        m.partial_fit(x, np.ones(50))
    np.testing.assert_array_equal(model.predict(x), copy.predict(x))


# --- registry and hot swap --------------------------------------------------------------------


def test_registry_publish_current_load(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path, "valuation")
    assert reg.current_version() is None
    assert reg.publish(b"one", {"note": "first"}) == 1
    assert reg.publish(b"two", {"note": "second"}) == 2
    assert reg.current_version() == 2
    assert reg.load(1) == b"one" and reg.load(2) == b"two"
    assert reg.metadata(2)["note"] == "second" and reg.metadata(2)["version"] == 2
    assert (tmp_path / "valuation" / "CURRENT").read_text() == "2\n"
    assert reg.versions() == [1, 2]
    assert not [p for p in (tmp_path / "valuation").iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(FileNotFoundError):
        reg.load(3)
    # a second registry object (another process) sees the same state
    assert ModelRegistry(tmp_path, "valuation").current_version() == 2


def test_current_is_replaced_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reg = ModelRegistry(tmp_path, "valuation")
    reg.publish(b"one", {})
    real_replace = os.replace

    def failing_replace(src: str, dst: str | Path) -> None:
        if Path(dst).name == "CURRENT":
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(registry_module.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        reg.publish(b"two", {})
    monkeypatch.undo()
    assert (tmp_path / "valuation" / "CURRENT").read_text() == "1\n"  # old content, whole
    assert not [p for p in (tmp_path / "valuation").iterdir() if p.name.endswith(".tmp")]
    assert reg.publish(b"three", {}) == 3  # numbers never reused


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_hot_swap_follows_current_without_a_new_scorer(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path, "valuation")
    clock = FakeClock()
    scorer = HotSwapScorer(reg, check_every_s=5.0, clock=clock)
    x = _batch(np.random.default_rng(11), 64)

    scores, label = scorer.score(x)
    assert label == "valuation:cold-start"
    np.testing.assert_array_equal(scores, cold_start_score(x))

    first, second = _trained(seed=1), _trained(seed=2, n=1500)
    reg.publish(first.to_onnx(), {})
    clock.now += 5.0
    s1, label = scorer.score(x)
    assert label == "valuation:v1"
    np.testing.assert_allclose(s1, first.predict(x), atol=1e-5)

    reg.publish(second.to_onnx(), {})
    clock.now += 1.0  # within check_every_s: CURRENT is not read yet
    assert scorer.score(x)[1] == "valuation:v1"
    clock.now += 5.0
    s2, label = scorer.score(x)
    assert label == "valuation:v2" and scorer.version == 2
    np.testing.assert_allclose(s2, second.predict(x), atol=1e-5)
    assert np.abs(s2 - s1).max() > 1e-3


def test_corrupt_version_keeps_the_old_model(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path, "valuation")
    scorer = HotSwapScorer(reg, check_every_s=0.0)
    x = _batch(np.random.default_rng(12), 8)
    reg.publish(b"this is not onnx", {})
    assert scorer.score(x)[1] == "valuation:cold-start"  # nothing good yet: heuristic serves

    model = _trained(seed=3)
    reg.publish(model.to_onnx(), {})
    good, label = scorer.score(x)
    assert label == "valuation:v2"

    reg.publish(b"\x08\x07garbage", {})
    scores, label = scorer.score(x)
    assert label == "valuation:v2"
    np.testing.assert_array_equal(scores, good)
    # a valid ONNX model, but for another feature layout: refused on the dry run
    reg.publish(OnlineValuationModel(n_features=5).to_onnx(), {})
    assert scorer.score(x)[1] == "valuation:v2"
    assert scorer.refresh() is False  # the rejected version is not retried on every call


# --- the learner ------------------------------------------------------------------------------


def test_learner_unknown_memory_and_periodic_publish(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path, "valuation")
    learner = FeedbackLearner(reg, publish_every=3, min_labels=0)
    assert learner.learn("nope", "helped", None) is False
    assert learner.flush() is None  # nothing learned, nothing published
    x = _batch(np.random.default_rng(13), 4)
    for i, row in enumerate(x):
        learner.remember(f"m{i}", row)
    assert learner.learn("m0", "helped", None) is True
    assert learner.learn("m1", "wrong", None) is True
    assert reg.current_version() is None
    assert learner.learn("m2", "used", 0.9) is True
    assert reg.current_version() == 1
    assert learner.learn("m3", "ignored", None, event_id="e1") is True
    assert learner.learn("m3", "ignored", None, event_id="e1") is False  # redelivered
    assert learner.flush() == 2
    assert reg.metadata(2)["n_seen"] == 4
    with pytest.raises(ValueError):
        learner.learn("m0", "loved", None)


def test_learner_publishes_nothing_before_min_labels(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path, "valuation")
    learner = FeedbackLearner(reg, publish_every=2, min_labels=5)
    x = _batch(np.random.default_rng(17), 6)
    for i, row in enumerate(x[:4]):
        learner.remember(str(i), row)
        assert learner.learn(str(i), "helped", None)
    assert reg.current_version() is None and learner.flush() is None
    learner.remember("4", x[4])
    learner.learn("4", "wrong", None)
    assert reg.current_version() == 1  # 5 labels seen, 5 pending >= publish_every


def test_learner_cache_is_bounded_lru(tmp_path: Path) -> None:
    learner = FeedbackLearner(ModelRegistry(tmp_path, "valuation"), cache_size=2)
    x = _batch(np.random.default_rng(14), 3)
    learner.remember("a", x[0])
    learner.remember("b", x[1])
    assert learner.learn("a", "helped", None)  # touches a: b is now the oldest
    learner.remember("c", x[2])
    assert learner.learn("b", "helped", None) is False
    assert learner.learn("a", "helped", None) and learner.learn("c", "helped", None)


def test_learner_resumes_from_the_current_version(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path, "valuation")
    learner = FeedbackLearner(reg, publish_every=1000, min_labels=0)
    x = _batch(np.random.default_rng(15), 20)
    for i, row in enumerate(x):
        learner.remember(str(i), row)
        learner.learn(str(i), "helped" if i % 2 else "wrong", None)
    learner.flush()
    restarted = FeedbackLearner(reg)
    assert restarted.model.n_seen == 20
    np.testing.assert_array_equal(restarted.model.predict(x), learner.model.predict(x))


# --- evaluation -------------------------------------------------------------------------------


def test_roc_auc_handles_ties_like_pairwise_counting() -> None:
    rng = np.random.default_rng(16)
    y = rng.random(200) < 0.4
    s = rng.integers(0, 5, 200).astype(float)  # many ties
    pos, neg = s[y], s[~y]
    diff = pos[:, None] - neg[None, :]
    expected = ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size
    assert roc_auc(y, s) == pytest.approx(expected)
    assert roc_auc([0, 1], [0.3, 0.3]) == 0.5
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0


def test_learned_model_beats_cold_start_on_simulated_feedback() -> None:
    result = run_valuation_eval(seed=0, n_memories=4000, n_feedback=3000)
    auc = result["auc"]
    assert result["learned_beats_cold_start"] is True
    assert auc["learned"] > auc["cold_start"] + 0.01, auc
    assert auc["oracle"] > auc["learned"]  # sanity: nothing beats the hidden truth
    assert result["model_version"].startswith("valuation:v")
    assert result["n_train_feedback"] == 3000 and result["n_heldout"] == 1000
    assert len(result["versions_served_during_stream"]) > 1  # hot swaps happened
