"""Usefulness valuation of memories: features, a cold-start heuristic, an online model.

A memory's value is the probability that an agent that receives it finds it useful
(Memory-Sharing style valuation). Until feedback exists the pipeline scores with
`cold_start_score`, a hand-set heuristic; `OnlineValuationModel` learns from feedback
events (logistic regression, Adagrad, in numpy) and exports itself as a tiny ONNX graph so
the serving side runs exactly what was trained, and can swap versions without a restart
(see `memstream.models.registry`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from memstream.models.valuation_features import (
    AGE_HALF_LIFE_HOURS,
    EMBEDDING_DIM,
    FEATURE_NAMES,
    FEATURE_VERSION,
    MAX_TAGS,
    N_FEATURES,
    OBSERVATION_FACTOR,
    PROJECTION_DIM,
    SHORT_TEXT_CHARS,
    TEXT_FEATURES,
    cold_start_score,
    text_features,
    valuation_features,
    valuation_features_batch,
)

# --- feedback labels -----------------------------------------------------------------------

_OUTCOME_LABELS: dict[str, tuple[float, float, float, float]] = {
    # outcome: (target, weight, lowest soft target, highest soft target)
    "helped": (1.0, 1.0, 0.5, 1.0),
    "used": (1.0, 0.5, 0.5, 1.0),
    "wrong": (0.0, 1.0, 0.0, 0.5),
    "ignored": (0.0, 0.5, 0.0, 0.5),
}


def feedback_target(outcome: str, score: float | None) -> tuple[float, float]:
    """(target, weight) of one feedback event, for a weighted logistic loss.

    - `helped` -> 1, weight 1: the agent says the memory made a difference;
    - `used` -> 1, weight 0.5: it went into the agent's context, which is weaker evidence
      (retrieval put it there; nobody confirmed it helped);
    - `wrong` -> 0, weight 1: the memory misled the agent, the strongest negative;
    - `ignored` -> 0, weight 0.5: delivered but not used; it may just have been off-topic for
      that query, so it counts half.
    When the agent also sends `score` (how useful, in [0, 1]) it becomes a soft target, kept
    on the outcome's side of 0.5 (a "wrong" with score 0.9 stays a negative, at 0.5).
    """
    try:
        target, weight, low, high = _OUTCOME_LABELS[outcome]
    except KeyError:
        raise ValueError(f"unknown feedback outcome {outcome!r}") from None
    if score is not None and math.isfinite(score):
        target = min(max(float(score), low), high)
    return target, weight


# --- the online model ----------------------------------------------------------------------


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free


class OnlineValuationModel:
    """Logistic regression on standardised features, trained online with Adagrad.

    Standardisation uses running mean and variance (Welford, updated by every partial_fit
    before its gradient step), so no pass over past data is needed; the same constants are
    written into the ONNX graph. Adagrad's per-coordinate step sizes suit sparse, drifting
    feedback without tuning a schedule; L2 (not on the bias) keeps weights small while few
    labels exist.
    """

    def __init__(
        self,
        n_features: int = N_FEATURES,
        *,
        learning_rate: float = 0.05,
        l2: float = 1e-4,
        feature_names: Sequence[str] | None = None,
    ) -> None:
        if feature_names is None:
            feature_names = FEATURE_NAMES if n_features == N_FEATURES else ()
        if feature_names and len(feature_names) != n_features:
            raise ValueError("feature_names must have n_features entries")
        self.n_features = n_features
        self.feature_names = tuple(feature_names)
        self.learning_rate = float(learning_rate)
        self.l2 = float(l2)
        self.weights = np.zeros(n_features, dtype=np.float64)
        self.bias = 0.0
        self._grad_sq = np.zeros(n_features + 1, dtype=np.float64)
        self._count = 0.0  # Welford state (unweighted: it describes the inputs, not labels)
        self._mean = np.zeros(n_features, dtype=np.float64)
        self._m2 = np.zeros(n_features, dtype=np.float64)
        self.n_seen = 0

    # standardisation -----------------------------------------------------------------------

    @property
    def mean(self) -> np.ndarray:
        return self._mean.copy()

    @property
    def std(self) -> np.ndarray:
        """Running standard deviation; 1 where a feature has not varied yet (no blow-up)."""
        if self._count < 2:
            return np.ones(self.n_features)
        var = self._m2 / self._count
        return np.where(var > 1e-12, np.sqrt(np.maximum(var, 1e-12)), 1.0)

    def _update_stats(self, x: np.ndarray) -> None:
        """Chan et al.'s parallel form of Welford's update, one batch at a time."""
        n_b = x.shape[0]
        mean_b = x.mean(axis=0)
        m2_b = ((x - mean_b) ** 2).sum(axis=0)
        total = self._count + n_b
        delta = mean_b - self._mean
        self._mean += delta * (n_b / total)
        self._m2 += m2_b + delta**2 * (self._count * n_b / total)
        self._count = total

    # training and scoring ------------------------------------------------------------------

    def _check(self, X: np.ndarray) -> np.ndarray:
        x = np.asarray(X, dtype=np.float64)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"X must have shape (N, {self.n_features}), got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("X has non-finite values")  # one NaN would poison the stats
        return x

    def partial_fit(
        self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> OnlineValuationModel:
        """One Adagrad step on the weighted log-loss of a batch; targets may be soft."""
        x = self._check(X)
        n = x.shape[0]
        if n == 0:
            return self
        target = np.asarray(y, dtype=np.float64).reshape(-1)
        weight = (
            np.ones(n)
            if sample_weight is None
            else np.asarray(sample_weight, dtype=np.float64).reshape(-1)
        )
        if target.shape[0] != n or weight.shape[0] != n:
            raise ValueError("X, y and sample_weight must have the same length")
        if np.any((target < 0) | (target > 1)) or np.any(weight < 0):
            raise ValueError("y must lie in [0, 1] and sample_weight be >= 0")

        self._update_stats(x)
        z = (x - self._mean) / self.std
        p = _sigmoid(z @ self.weights + self.bias)
        residual = weight * (p - target)
        grad = np.empty(self.n_features + 1)
        grad[:-1] = z.T @ residual / n + self.l2 * self.weights
        grad[-1] = residual.sum() / n
        self._grad_sq += grad**2
        step = self.learning_rate * grad / (np.sqrt(self._grad_sq) + 1e-8)
        self.weights -= step[:-1]
        self.bias -= step[-1]
        self.n_seen += n
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Probability of usefulness in [0, 1], shape (N,), float32 (as the ONNX graph)."""
        x = self._check(X)
        z = (x - self._mean) / self.std
        return _sigmoid(z @ self.weights + self.bias).astype(np.float32)

    # persistence ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume training (JSON-friendly), e.g. after a restart."""
        return {
            "n_features": self.n_features,
            "feature_names": list(self.feature_names),
            "learning_rate": self.learning_rate,
            "l2": self.l2,
            "weights": self.weights.tolist(),
            "bias": self.bias,
            "grad_sq": self._grad_sq.tolist(),
            "count": self._count,
            "mean": self._mean.tolist(),
            "m2": self._m2.tolist(),
            "n_seen": self.n_seen,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> OnlineValuationModel:
        model = cls(
            int(state["n_features"]),
            learning_rate=state["learning_rate"],
            l2=state["l2"],
            feature_names=state.get("feature_names") or None,
        )
        model.weights = np.asarray(state["weights"], dtype=np.float64)
        model.bias = float(state["bias"])
        model._grad_sq = np.asarray(state["grad_sq"], dtype=np.float64)
        model._count = float(state["count"])
        model._mean = np.asarray(state["mean"], dtype=np.float64)
        model._m2 = np.asarray(state["m2"], dtype=np.float64)
        model.n_seen = int(state["n_seen"])
        shapes = {model.weights.shape, model._mean.shape, model._m2.shape}
        if shapes != {(model.n_features,)} or model._grad_sq.shape != (model.n_features + 1,):
            raise ValueError("model state has inconsistent shapes")
        return model

    def to_onnx(self) -> bytes:
        """The model as ONNX (opset 17): features float32 [N, F] -> score float32 [N].

        score = Sigmoid(((features - mean) * (1 / std)) @ W + b), the constants being this
        model's current running statistics and weights.
        """
        f = self.n_features
        inits = [
            numpy_helper.from_array(self._mean.astype(np.float32), "mean"),
            numpy_helper.from_array((1.0 / self.std).astype(np.float32), "inv_std"),
            numpy_helper.from_array(self.weights.astype(np.float32).reshape(f, 1), "weights"),
            numpy_helper.from_array(np.array([self.bias], dtype=np.float32), "bias"),
            numpy_helper.from_array(np.array([-1], dtype=np.int64), "flat"),
        ]
        nodes = [
            helper.make_node("Sub", ["features", "mean"], ["centred"]),
            helper.make_node("Mul", ["centred", "inv_std"], ["standardised"]),
            helper.make_node("MatMul", ["standardised", "weights"], ["dot"]),
            helper.make_node("Add", ["dot", "bias"], ["logit"]),
            helper.make_node("Sigmoid", ["logit"], ["prob"]),
            helper.make_node("Reshape", ["prob", "flat"], ["score"]),
        ]
        graph = helper.make_graph(
            nodes,
            "memstream_valuation",
            [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", f])],
            [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])],
            initializer=inits,
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", 17)],
            producer_name="memstream",
            doc_string="memstream usefulness valuation: logistic regression, learned online",
        )
        model.ir_version = 8  # the lowest IR for opset 17: loads in older onnxruntimes too
        helper.set_model_props(
            model,
            {
                "feature_names": ",".join(self.feature_names),
                "feature_version": str(FEATURE_VERSION),
                "n_seen": str(self.n_seen),
            },
        )
        onnx.checker.check_model(model)
        return model.SerializeToString()


__all__ = [
    "AGE_HALF_LIFE_HOURS",
    "EMBEDDING_DIM",
    "FEATURE_NAMES",
    "FEATURE_VERSION",
    "MAX_TAGS",
    "N_FEATURES",
    "OBSERVATION_FACTOR",
    "PROJECTION_DIM",
    "SHORT_TEXT_CHARS",
    "TEXT_FEATURES",
    "OnlineValuationModel",
    "cold_start_score",
    "feedback_target",
    "text_features",
    "valuation_features",
    "valuation_features_batch",
]
