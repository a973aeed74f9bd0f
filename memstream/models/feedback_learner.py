"""The background learner's core: feedback events in, new model versions out (no broker).

The worker calls `remember` for each indexed memory (its valuation features) and `learn`
for each feedback event; every `publish_every` labels the model is exported to ONNX and
published to the registry, where every `HotSwapScorer` picks it up. The full training
state travels in each version's metadata, so a restarted learner resumes from the current
version instead of starting over from a blank model.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from memstream.logging import get_logger
from memstream.models.registry import ModelRegistry
from memstream.models.valuation import (
    FEATURE_NAMES,
    FEATURE_VERSION,
    N_FEATURES,
    OnlineValuationModel,
    feedback_target,
)

REPUTATION_COLUMN = FEATURE_NAMES.index("reputation")

log = get_logger("memstream.models.feedback_learner")


class FeedbackLearner:
    """Trains an `OnlineValuationModel` from feedback and publishes it periodically.

    Nothing is published before the model has seen `min_labels` labels: on the simulated
    stream (memstream.eval.valuation) a model fitted on 200 noisy labels ranks worse than
    the cold-start heuristic, which keeps serving until then; from ~1000 labels on the
    learned model wins on every seed tried. `publish()` forces a version regardless.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        publish_every: int = 200,
        *,
        min_labels: int = 1000,
        model: OnlineValuationModel | None = None,
        cache_size: int = 100_000,
        dedupe_size: int = 100_000,
        resume: bool = True,
    ) -> None:
        if publish_every < 1 or cache_size < 1:
            raise ValueError("publish_every and cache_size must be >= 1")
        self.registry = registry
        self.publish_every = publish_every
        self.min_labels = min_labels
        self.cache_size = cache_size
        self.dedupe_size = dedupe_size
        self._features: OrderedDict[str, np.ndarray] = OrderedDict()
        self._seen_events: OrderedDict[str, None] = OrderedDict()
        self.model = model or (self._resume() if resume else None) or OnlineValuationModel()
        self.n_learned = 0
        self.n_unknown = 0
        self._pending = 0
        self.last_version: int | None = None

    def _resume(self) -> OnlineValuationModel | None:
        """The current version's training state, if it is one we can continue."""
        version = self.registry.current_version()
        if version is None:
            return None
        try:
            meta = self.registry.metadata(version)
            if meta.get("feature_version") != FEATURE_VERSION:
                log.warning("not resuming: other feature version", version=version)
                return None
            model = OnlineValuationModel.from_state(meta["state"])
        except Exception as exc:  # a broken file must not stop the learner
            log.warning("not resuming from registry", version=version, error=repr(exc))
            return None
        if model.n_features != N_FEATURES:
            return None
        log.info("resumed valuation model", version=version, n_seen=model.n_seen)
        return model

    def remember(self, memory_id: str, features: np.ndarray) -> None:
        """Keep a memory's features (LRU, `cache_size` entries) until its feedback arrives."""
        vec = np.array(features, dtype=np.float32).reshape(-1)  # a copy: callers reuse buffers
        if vec.shape[0] != self.model.n_features:
            raise ValueError(f"features must have {self.model.n_features} values")
        self._features[memory_id] = vec
        self._features.move_to_end(memory_id)
        while len(self._features) > self.cache_size:
            self._features.popitem(last=False)

    def learn(
        self,
        memory_id: str,
        outcome: str,
        score: float | None,
        *,
        event_id: str | None = None,
        rater_weight: float = 1.0,
        reputation: float | None = None,
    ) -> bool:
        """Train on one feedback event; False if the memory's features are unknown (or the
        event, by `event_id`, was already learned: at-least-once delivery redelivers).
        `rater_weight` (0-1): how far the rater is trusted (a ring's ratings teach nothing);
        `reputation`: the author's reputation now, put in place of the one it had when the
        memory was valued, so the model learns what a contributor's standing predicts."""
        target, weight = feedback_target(outcome, score)  # unknown outcome: ValueError
        weight *= min(max(float(rater_weight), 0.0), 1.0)
        features = self._features.get(memory_id)
        if features is None:
            self.n_unknown += 1
            return False
        if event_id is not None:
            if event_id in self._seen_events:
                return False
            self._seen_events[event_id] = None
            while len(self._seen_events) > self.dedupe_size:
                self._seen_events.popitem(last=False)
        self._features.move_to_end(memory_id)  # memories that get feedback stay cached
        if weight <= 0.0:
            return True  # counted as seen; nothing to learn from it
        x = features[None, :].copy()
        if reputation is not None:
            x[0, REPUTATION_COLUMN] = min(max(float(reputation), 0.0), 1.0)
        self.model.partial_fit(x, np.array([target]), np.array([weight]))
        self.n_learned += 1
        self._pending += 1
        if self._pending >= self.publish_every and self.model.n_seen >= self.min_labels:
            self.publish()
        return True

    def publish(self) -> int:
        """Export the model now and publish it as a new version; returns its number."""
        metadata: dict[str, Any] = {
            "model": "logistic-regression-adagrad",
            "feature_names": list(FEATURE_NAMES),
            "feature_version": FEATURE_VERSION,
            "n_seen": self.model.n_seen,
            "n_learned_since_start": self.n_learned,
            "state": self.model.state_dict(),
        }
        version = self.registry.publish(self.model.to_onnx(), metadata)
        self._pending = 0
        self.last_version = version
        return version

    def flush(self) -> int | None:
        """Publish if anything was learned since the last version (and the model has seen
        `min_labels`); the new version, else None."""
        if self._pending and self.model.n_seen >= self.min_labels:
            return self.publish()
        return None
