"""Does learning from feedback beat the cold-start heuristic? A simulated feedback stream.

Generator (all draws from one seeded numpy Generator, so a seed reproduces a run):

- 20 topic centroids uniform on the 384-d unit sphere; each memory is its topic's centroid
  plus isotropic Gaussian noise (norm ~0.7), renormalised (cosine to centroid ~0.8);
- 50 contributors, each with a hidden reliability r ~ N(0, 0.8); the reputation the
  pipeline observes is a noisy proxy, sigmoid(0.9 r + N(0, 0.6));
- per memory: novelty ~ Beta(1.5, 1.5), 30% observations, age ~ Exponential(mean 14 days),
  length ~ LogNormal(median 250 chars, sigma 1), tags ~ Poisson(2);
- hidden probability of being useful, sigmoid of
  -0.2 + topic_value[topic] (N(0, 1) per topic: some topics are useful, others not)
  + r[contributor] + 2 (novelty - 0.5) - 0.3 observation - 0.25 log1p(age / 1 week)
  - 0.8 [text < 60 chars] + N(0, 0.3) (what no feature explains);
- a feedback event picks a memory uniformly, draws success ~ Bernoulli(p), flips it with
  probability `noise` (agents misreport), and reports a success as `helped` (60%) or `used`
  and a failure as `wrong` (40%) or `ignored`, without a score.

What the heuristic misses, and a model can learn: topic value (visible only through the
embedding projection), the real weights of novelty, reputation, age and length, and that
tags do not matter. Memories are split 75/25; the learner sees feedback on the training
memories only, through the real registry (temp dir) and `HotSwapScorer`; each held-out
memory gets 5 fresh noisy outcomes, and ROC AUC of each scorer is taken over those events.
The learner keeps its default `min_labels`, so with fewer than 1000 feedback events nothing
is published and "learned" is the cold-start heuristic, as it would be in production.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from memstream.models.feedback_learner import FeedbackLearner
from memstream.models.registry import HotSwapScorer, ModelRegistry
from memstream.models.valuation import EMBEDDING_DIM, cold_start_score, valuation_features_batch

GENERATOR = (
    "20 clustered topics with hidden value, 50 contributors with hidden reliability behind "
    "noisy reputation, novelty/kind/age/length effects; Bernoulli outcomes flipped with p=noise"
)

N_TOPICS = 20
N_CONTRIBUTORS = 50
HELDOUT_FRACTION = 0.25
HELDOUT_DRAWS = 5


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC by the Mann-Whitney rank statistic; tied scores share their average rank."""
    y = np.asarray(labels, dtype=bool).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs both positive and negative labels")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    # average 1-based rank of each group of equal scores
    ends = np.cumsum(counts)
    avg_rank = ends - (counts - 1) / 2.0
    ranks = avg_rank[inverse]
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _simulate_memories(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    dim = EMBEDDING_DIM
    centroids = rng.standard_normal((N_TOPICS, dim))
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    topic = rng.integers(N_TOPICS, size=n)
    emb = centroids[topic] + 0.7 * rng.standard_normal((n, dim)) / np.sqrt(dim)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)

    topic_value = rng.normal(0.0, 1.0, N_TOPICS)
    reliability = rng.normal(0.0, 0.8, N_CONTRIBUTORS)
    reputation_of = _sigmoid(0.9 * reliability + rng.normal(0.0, 0.6, N_CONTRIBUTORS))
    contributor = rng.integers(N_CONTRIBUTORS, size=n)

    novelty = rng.beta(1.5, 1.5, n)
    is_obs = rng.random(n) < 0.3
    age_hours = rng.exponential(24.0 * 14, n)
    chars = np.clip(np.round(np.exp(rng.normal(np.log(250.0), 1.0, n))), 3, 20_000)
    n_tags = rng.poisson(2.0, n)

    logit = (
        -0.2
        + topic_value[topic]
        + reliability[contributor]
        + 2.0 * (novelty - 0.5)
        - 0.3 * is_obs
        - 0.25 * np.log1p(age_hours / 168.0)
        - 0.8 * (chars < 60)
        + rng.normal(0.0, 0.3, n)
    )
    features = valuation_features_batch(
        embeddings=emb.astype(np.float32),
        novelty=novelty,
        reputation=reputation_of[contributor],
        kind=np.where(is_obs, "observation", "memory"),
        age_hours=age_hours,
        text_chars=chars,
        n_tags=n_tags,
    )
    return {"features": features, "p_useful": _sigmoid(logit)}


def _outcomes(
    rng: np.random.Generator, p: np.ndarray, noise: float
) -> tuple[np.ndarray, np.ndarray]:
    """(success flags as reported, outcome names) for one event per entry of `p`."""
    success = (rng.random(p.shape) < p) ^ (rng.random(p.shape) < noise)
    positive = np.where(rng.random(p.shape) < 0.6, "helped", "used")
    negative = np.where(rng.random(p.shape) < 0.4, "wrong", "ignored")
    return success, np.where(success, positive, negative)


def run_valuation_eval(
    seed: int = 0, n_memories: int = 4000, n_feedback: int = 20000, noise: float = 0.2
) -> dict[str, Any]:
    """Stream simulated feedback through learner, registry and hot-swap scorer; compare AUCs."""
    if not 0.0 <= noise < 0.5:
        raise ValueError("noise must be in [0, 0.5): at 0.5 feedback carries no information")
    rng = np.random.default_rng(seed)
    sim = _simulate_memories(rng, n_memories)
    features, p_useful = sim["features"], sim["p_useful"]
    order = rng.permutation(n_memories)
    n_heldout = max(1, round(n_memories * HELDOUT_FRACTION))
    heldout, train = order[:n_heldout], order[n_heldout:]

    # held-out events: each held-out memory gets HELDOUT_DRAWS fresh noisy outcomes
    held_idx = np.repeat(heldout, HELDOUT_DRAWS)
    held_success, _ = _outcomes(rng, p_useful[held_idx], noise)
    held_x = features[heldout]

    fb_idx = rng.choice(train, size=n_feedback)
    _, fb_outcome = _outcomes(rng, p_useful[fb_idx], noise)

    labels_seen: list[str] = []
    with tempfile.TemporaryDirectory(prefix="memstream-valuation-eval-") as tmp:
        registry = ModelRegistry(Path(tmp), "valuation")
        scorer = HotSwapScorer(registry, check_every_s=0.0)  # check CURRENT on every call
        learner = FeedbackLearner(registry, publish_every=200)
        for i in train:
            learner.remember(str(i), features[i])
        checkpoint = max(1, n_feedback // 10)
        for k, (i, outcome) in enumerate(zip(fb_idx, fb_outcome, strict=True), start=1):
            learner.learn(str(i), str(outcome), None)
            if k % checkpoint == 0:  # the serving side follows the learner as it publishes
                labels_seen.append(scorer.score(held_x)[1])
        learner.flush()
        learned, label = scorer.score(held_x)
        current = registry.current_version()
        expected = "valuation:cold-start" if current is None else f"valuation:v{current}"
        if label != expected:  # the serving side must follow the registry
            raise RuntimeError(f"scorer serves {label}, registry is at {expected}")

    per_memory = {
        "cold_start": cold_start_score(held_x),
        "learned": learned,
        "oracle": p_useful[heldout],  # the hidden truth: the ceiling under this noise
    }
    auc = {
        name: roc_auc(held_success, np.repeat(s, HELDOUT_DRAWS)) for name, s in per_memory.items()
    }
    return {
        "auc": auc,
        "learned_beats_cold_start": bool(auc["learned"] > auc["cold_start"]),
        "model_version": label,
        "versions_served_during_stream": sorted(set(labels_seen), key=labels_seen.index),
        "n_train_feedback": int(n_feedback),
        "n_heldout": int(n_heldout),
        "n_heldout_events": int(held_idx.size),
        "noise": noise,
        "seed": seed,
        "generator": GENERATOR,
    }
