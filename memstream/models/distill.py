"""Distillation after KnowSR: a student policy fitted to teachers' action distributions.

The replay buffer holds, per teacher, its latest `episodes_per_teacher` episodes of
(observation, action distribution) pairs. A cycle fits a fresh student (seeded) by full-batch
Adam on

    loss = mean_i KL(p_teacher_i || p_student(x_i)) - entropy_weight * mean_i H(p_student(x_i))

The KL term is KnowSR's distillation loss. KnowSR adds a contrastive term that keeps several
students' policies apart; here each team has one student, and the diversity term is the
entropy bonus, which keeps the student from collapsing onto the teachers' most confident
action where they disagree, so an agent that starts from it still explores. Where teachers
disagree the KL fit itself lands on their mean distribution.

A student is a pure function of the *set* of experience steps in the buffer, the teachers
chosen and the config: pairs are ordered by (teacher, episode, step) before fitting, and a
step delivered twice (at-least-once) counts once (the smallest event id wins). So a replay
of the same experience range with the same seed gives the same student, bit for bit on the
same machine and library versions (float64 training, float32 export).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from memstream.models.policy import Adam, SoftmaxPolicy

MAX_TEACHERS = 64
"""Teachers one team's buffer holds (the ones seen first keep their place)."""
MAX_STEPS_PER_EPISODE = 10_000


@dataclass(frozen=True)
class DistillConfig:
    """How a student is fitted; recorded in each version's lineage."""

    hidden: int = 16
    epochs: int = 300
    learning_rate: float = 0.01
    entropy_weight: float = 0.01
    temperature: float = 0.25
    episodes_per_teacher: int = 20
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Step:
    event_id: str
    observation: tuple[float, ...]
    distribution: tuple[float, ...]


@dataclass
class ExperienceBuffer:
    """One team's replay buffer: teacher -> episode -> step -> the step's pair."""

    episodes_per_teacher: int = 20
    teachers: dict[str, dict[int, dict[int, _Step]]] = field(default_factory=dict)

    def add(
        self,
        agent_id: str,
        episode: int,
        step: int,
        event_id: str,
        observation: Iterable[float],
        distribution: Iterable[float],
    ) -> bool:
        """Keep the step; False where it is left out (an episode older than the teacher's
        latest `episodes_per_teacher`, a full buffer, a duplicate that loses)."""
        episodes = self.teachers.get(agent_id)
        if episodes is None:
            if len(self.teachers) >= MAX_TEACHERS:
                return False
            episodes = self.teachers[agent_id] = {}
        if episode not in episodes and len(episodes) >= self.episodes_per_teacher:
            if episode < min(episodes):
                return False  # older than every kept episode: never selected
            del episodes[min(episodes)]
        steps = episodes.setdefault(episode, {})
        held = steps.get(step)
        if held is not None and held.event_id <= event_id:
            return False  # the same step again (redelivery): the smallest id stays
        if held is None and len(steps) >= MAX_STEPS_PER_EPISODE:
            return False
        steps[step] = _Step(event_id, tuple(observation), tuple(distribution))
        return True

    def pairs(self, teachers: Iterable[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(observations, distributions, event ids) of `teachers`' kept steps, ordered by
        (teacher, episode, step): the same set gives the same arrays."""
        observations: list[tuple[float, ...]] = []
        distributions: list[tuple[float, ...]] = []
        ids: list[str] = []
        for agent_id in sorted(set(teachers)):
            for episode in sorted(self.teachers.get(agent_id, {})):
                steps = self.teachers[agent_id][episode]
                for step in sorted(steps):
                    held = steps[step]
                    observations.append(held.observation)
                    distributions.append(held.distribution)
                    ids.append(held.event_id)
        return (
            np.asarray(observations, dtype=np.float64),
            np.asarray(distributions, dtype=np.float64),
            ids,
        )

    def __len__(self) -> int:
        return sum(len(s) for e in self.teachers.values() for s in e.values())


def pairs_digest(event_ids: Iterable[str]) -> str:
    """Digest of the ordered event ids a student was fitted on (its lineage's fingerprint)."""
    digest = hashlib.sha256()
    for event_id in event_ids:
        digest.update(event_id.encode() + b"\n")
    return digest.hexdigest()


@dataclass(frozen=True)
class DistillResult:
    policy: SoftmaxPolicy
    kl: float
    entropy: float
    pairs: int


def _loss_terms(
    policy: SoftmaxPolicy, x: np.ndarray, teacher: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float, float]:
    hidden, student = policy.forward(x)
    log_student = np.log(np.clip(student, 1e-12, 1.0))
    log_teacher = np.log(np.clip(teacher, 1e-12, 1.0))
    kl = float(np.mean(np.sum(teacher * (log_teacher - log_student), axis=1)))
    entropy_rows = -np.sum(student * log_student, axis=1)
    return hidden, student, kl, float(np.mean(entropy_rows))


def distil(
    observations: np.ndarray,
    distributions: np.ndarray,
    config: DistillConfig,
    *,
    initial: SoftmaxPolicy | None = None,
) -> DistillResult:
    """Fit a student to (observation, teacher distribution) pairs; deterministic."""
    x = np.asarray(observations, dtype=np.float64)
    teacher = np.asarray(distributions, dtype=np.float64)
    if x.ndim != 2 or teacher.ndim != 2 or len(x) != len(teacher) or len(x) == 0:
        raise ValueError("need N > 0 observations (N, d) and distributions (N, actions)")
    if config.temperature <= 0:
        raise ValueError("temperature must be > 0")
    teacher = np.clip(teacher, 1e-12, 1.0) ** (1.0 / config.temperature)
    teacher = teacher / teacher.sum(axis=1, keepdims=True)
    policy = (
        initial.copy()
        if initial is not None
        else SoftmaxPolicy.initial(x.shape[1], teacher.shape[1], config.hidden, seed=config.seed)
    )
    optimizer = Adam(policy, config.learning_rate)
    n = len(x)
    for _ in range(config.epochs):
        hidden, student, _, _ = _loss_terms(policy, x, teacher)
        log_student = np.log(np.clip(student, 1e-12, 1.0))
        entropy_rows = -np.sum(student * log_student, axis=1, keepdims=True)
        # d KL / d logits = p_s - p_t; d(-beta H) / d logits = beta p_s (log p_s + H)
        logit_grad = (student - teacher) + config.entropy_weight * student * (
            log_student + entropy_rows
        )
        optimizer.step(policy, policy.gradients(x, hidden, logit_grad / n))
    exported = policy.as_float32()
    _, _, kl, entropy = _loss_terms(exported, x, teacher)
    return DistillResult(exported, kl, entropy, n)
