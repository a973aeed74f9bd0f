"""`memstream eval distill`: do agents that start from the distilled student learn faster?

The example of docs/distillation.md, run end to end for each seed, with no broker: the
events are the ones the bus carries and go through the same validation and the same
`DistillationStage` the worker runs.

1. Teachers (`teachers` per seed) learn CartPole-v1 (gymnasium's classic control) from
   scratch with REINFORCE (`Learner`): each step they take becomes an `experience` event
   (observation, action, reward, done and the policy's action distribution), serialized to
   JSON and validated as the worker does. A share (`bad_share`) of malformed events (NaN
   observations, distributions that do not sum to 1, wrong shapes) is mixed in; they must
   be rejected with their reason and change nothing.
2. The stage distils the teachers' latest episodes into a student, published to a model
   registry; the new agent loads the student from the registry's ONNX bytes, exactly what
   `GET /v1/models/{name}` serves.
3. Two new agents with the same learning algorithm, hyperparameters and environment seed
   learn until the threshold: one starting from the student's weights, one from scratch.

Threshold: the mean return of the last `window` (10) training episodes reaches the
environment's own `reward_threshold` (475 for CartPole-v1, out of 500). Steps are training
steps of the new agent only; what the teachers spent is reported apart (`teacher_steps`).
A run that does not reach the threshold within `max_steps` counts as `max_steps`
(`censored` says how many did not).
"""

from __future__ import annotations

import json
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from memstream.models.policy import Adam, SoftmaxPolicy
from memstream.schemas.events import Experience, ExperiencePayload, new_event_id
from memstream.schemas.topics import MAX_EVENT_BYTES
from memstream.settings import DistillTeam
from memstream.streams.distill import DistillationStage, TeamSpec, fit_and_publish, take

ENVIRONMENT = "CartPole-v1"
WINDOW = 10
MAX_STEPS = 200_000
HIDDEN = 16
LEARNING_RATE = 0.01
GAMMA = 0.99


class Learner:
    """REINFORCE with an Adam step per episode and a running baseline of the returns.

    Advantages are the discounted returns-to-go less an exponential moving average of
    earlier episodes' mean return, over a moving average of their spread: unlike
    per-episode normalisation, a run of perfect episodes then teaches little, so a good
    policy is not pushed off by noise."""

    def __init__(self, policy: SoftmaxPolicy, *, seed: int, lr: float = LEARNING_RATE) -> None:
        self.policy = policy
        self.lr = lr
        self.rng = np.random.default_rng(seed)
        self.optimizer = Adam(policy, lr)
        self.baseline: tuple[float, float] | None = None

    def act(self, observation: np.ndarray) -> tuple[int, np.ndarray]:
        distribution = self.policy.probabilities(observation)[0]
        return int(self.rng.choice(len(distribution), p=distribution)), distribution

    def update(
        self,
        observations: list[np.ndarray],
        actions: list[int],
        rewards: list[float],
        truncated: bool = False,
    ) -> None:
        """One step on an episode. An episode cut by the time limit did not end: its
        returns are bootstrapped with the baseline's mean return instead of 0 (Pardo et al.,
        "Time Limits in Reinforcement Learning", 2018), else the last steps of a perfect
        episode look like failures and a good policy is pushed off."""
        returns = np.zeros(len(rewards))
        running = self.baseline[0] if truncated and self.baseline is not None else 0.0
        for i in range(len(rewards) - 1, -1, -1):
            running = rewards[i] + GAMMA * running
            returns[i] = running
        mean, spread = float(returns.mean()), float(returns.std()) + 1e-8
        base_mean, base_spread = self.baseline or (mean, spread)
        advantage = (returns - base_mean) / base_spread
        self.baseline = (0.9 * base_mean + 0.1 * mean, 0.9 * base_spread + 0.1 * spread)
        x = np.asarray(observations, dtype=np.float64)
        hidden, probabilities = self.policy.forward(x)
        taken = np.eye(probabilities.shape[1])[actions]
        logit_grad = (probabilities - taken) * advantage[:, None] / len(rewards)
        self.optimizer.step(self.policy, self.policy.gradients(x, hidden, logit_grad))


Step = Callable[[int, int, np.ndarray, int, float, bool, np.ndarray], None]


def learn(
    policy: SoftmaxPolicy,
    seed: int,
    *,
    threshold: float,
    window: int = WINDOW,
    max_steps: int = MAX_STEPS,
    on_step: Step | None = None,
) -> dict[str, Any]:
    """Train until the mean of the last `window` returns reaches `threshold`: the steps
    it took (None if `max_steps` ran out), the episodes and their returns."""
    import gymnasium as gym

    env = gym.make(ENVIRONMENT)
    learner = Learner(policy, seed=seed)
    observation, _ = env.reset(seed=seed)
    steps, returns = 0, []
    while steps < max_steps:
        observations, actions, rewards = [], [], []
        done = False
        while not done:
            action, distribution = learner.act(observation)
            nxt, reward, terminated, truncated, _ = env.step(action)
            done = bool(terminated or truncated)
            if on_step is not None:
                on_step(
                    len(returns), len(observations), observation, action, reward, done, distribution
                )
            observations.append(observation)
            actions.append(action)
            rewards.append(float(reward))
            observation = nxt
            steps += 1
        learner.update(observations, actions, rewards, truncated=bool(truncated and not terminated))
        returns.append(sum(rewards))
        observation, _ = env.reset()
        if len(returns) >= window and float(np.mean(returns[-window:])) >= threshold:
            return {"steps": steps, "episodes": len(returns), "returns": returns}
    return {"steps": None, "episodes": len(returns), "returns": returns}


def reward_threshold() -> float:
    import gymnasium as gym

    return float(gym.spec(ENVIRONMENT).reward_threshold)


def bad_variants(event: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """A malformed copy of a valid event: one of the faults the processor must reject."""
    bad = json.loads(json.dumps(event))
    bad["event_id"] = str(new_event_id())  # valid, so the fault below is what is wrong
    fault = int(rng.integers(4))
    if fault == 0:
        bad["payload"]["observation"][0] = float("nan")
    elif fault == 1:
        bad["payload"]["distribution"] = [0.7, 0.7]
    elif fault == 2:
        bad["payload"]["observation"] = bad["payload"]["observation"][:3]
    else:
        bad["payload"]["distribution"] = [*bad["payload"]["distribution"], 0.0]
    return bad


@dataclass(eq=False)
class _Recorder:
    """A teacher's steps as raw experience messages on its partition, as the SDK sends
    them, with malformed copies mixed in at `bad_share`."""

    messages: list[tuple[int, int, bytes]]
    next_offset: dict[int, int]
    partition: int
    envelope: dict[str, str]
    bad_share: float
    rng: np.random.Generator

    def _append(self, value: bytes) -> None:
        offset = self.next_offset.get(self.partition, 0)
        self.next_offset[self.partition] = offset + 1
        self.messages.append((self.partition, offset, value))

    def __call__(
        self,
        episode: int,
        step: int,
        observation: np.ndarray,
        action: int,
        reward: float,
        done: bool,
        distribution: np.ndarray,
    ) -> None:
        payload = ExperiencePayload(
            episode=episode,
            step=step,
            observation=[float(v) for v in observation],
            action=action,
            reward=reward,
            done=done,
            distribution=[float(v) for v in distribution],
        )
        raw = json.loads(Experience(**self.envelope, payload=payload).to_json())
        if self.bad_share and self.rng.random() < self.bad_share:
            self._append(json.dumps(bad_variants(raw, self.rng)).encode())
        self._append(json.dumps(raw).encode())


def teach(
    seed: int,
    teachers: int,
    threshold: float,
    *,
    tenant: str = "eval",
    team: str = "pilots",
    bad_share: float = 0.0,
    max_steps: int = MAX_STEPS,
) -> tuple[list[tuple[int, int, bytes]], dict[str, Any]]:
    """Teachers learn from scratch; their steps as raw experience messages
    (partition, offset, JSON bytes), with `bad_share` malformed ones mixed in."""
    rng = np.random.default_rng(10_000 + seed)
    messages: list[tuple[int, int, bytes]] = []
    spent: list[int] = []
    next_offset: dict[int, int] = {}
    for t in range(teachers):
        envelope = {"tenant": tenant, "agent_id": f"teacher-{t}", "scope": f"team:{team}"}
        record = _Recorder(messages, next_offset, t % 3, envelope, bad_share, rng)
        seed_t = 1000 * seed + t + 1
        run = learn(
            SoftmaxPolicy.initial(4, 2, HIDDEN, seed=seed_t),
            seed_t,
            threshold=threshold,
            max_steps=max_steps,
            on_step=record,
        )
        spent.append(run["steps"] or max_steps)
    return messages, {"teacher_steps": spent}


def distil_messages(
    messages: list[tuple[int, int, bytes]],
    models_dir: Path,
    *,
    tenant: str = "eval",
    team: str = "pilots",
) -> tuple[int | None, dict[str, int], DistillationStage]:
    """The messages through validation and the stage, in offset order per partition, then
    one cycle; (version published, rejections by reason, the stage)."""
    spec = TeamSpec(tenant, team, DistillTeam(observation_dim=4, actions=2, hidden=HIDDEN))
    stage = DistillationStage([spec], models_dir)
    rejected: dict[str, int] = {}
    for partition, offset, value in sorted(messages, key=lambda m: (m[1], m[0])):
        error = take(stage, value, partition, offset, MAX_EVENT_BYTES)
        if error is not None:
            rejected[error.reason] = rejected.get(error.reason, 0) + 1
    version = fit_and_publish(stage.snapshot(spec.key), stage.registry(spec))
    return version, rejected, stage


def _spread(values: list[float]) -> dict[str, float]:
    quartiles = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return {
        "min": min(values),
        "q1": quartiles[0],
        "median": statistics.median(values),
        "q3": quartiles[2],
        "max": max(values),
    }


def run_distill_eval(
    seeds: int = 5,
    first_seed: int = 0,
    teachers: int = 3,
    bad_share: float = 0.10,
    max_steps: int = MAX_STEPS,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Steps to the threshold from the student and from scratch, per seed and as medians."""
    threshold = reward_threshold()
    rows = []
    for seed in range(first_seed, first_seed + seeds):
        messages, spent = teach(seed, teachers, threshold, bad_share=bad_share, max_steps=max_steps)
        with tempfile.TemporaryDirectory() as tmp:
            version, rejected, stage = distil_messages(messages, Path(tmp))
            registry = stage.registry(next(iter(stage.specs.values())))
            if version is None:
                raise RuntimeError(f"seed {seed}: no student was published")
            onnx_bytes = registry.load(version)
            meta = registry.metadata(version)
            clean = [m for m in messages if take_ok(m)]
            clean_version, _, clean_stage = distil_messages(clean, Path(tmp) / "clean")
            clean_meta = clean_stage.registry(next(iter(clean_stage.specs.values()))).metadata(
                clean_version or 0
            )
        student = SoftmaxPolicy.from_onnx(onnx_bytes)
        from_student = learn(student, seed, threshold=threshold, max_steps=max_steps)
        from_scratch = learn(
            SoftmaxPolicy.initial(4, 2, HIDDEN, seed=seed),
            seed,
            threshold=threshold,
            max_steps=max_steps,
        )
        row = {
            "seed": seed,
            "steps_from_student": from_student["steps"] or max_steps,
            "steps_from_scratch": from_scratch["steps"] or max_steps,
            "censored": int(from_student["steps"] is None) + int(from_scratch["steps"] is None),
            "teacher_steps": spent["teacher_steps"],
            "student_pairs": meta["lineage"]["pairs"],
            "student_kl": round(meta["kl"], 5),
            "events": len(messages),
            "rejected": rejected,
            "same_student_without_bad_events": clean_meta["weights_sha256"]
            == meta["weights_sha256"],
        }
        rows.append(row)
        if progress is not None:
            progress(
                f"seed {seed}: {row['steps_from_student']} steps from the student, "
                f"{row['steps_from_scratch']} from scratch"
            )
    student_steps = [float(r["steps_from_student"]) for r in rows]
    scratch_steps = [float(r["steps_from_scratch"]) for r in rows]
    median_student = statistics.median(student_steps)
    median_scratch = statistics.median(scratch_steps)
    return {
        "environment": ENVIRONMENT,
        "threshold": threshold,
        "window": WINDOW,
        "seeds": list(range(first_seed, first_seed + seeds)),
        "teachers": teachers,
        "bad_share": bad_share,
        "max_steps": max_steps,
        "steps_from_student": median_student,
        "steps_from_scratch": median_scratch,
        "reduction": round(1.0 - median_student / median_scratch, 4),
        "spread": {"from_student": _spread(student_steps), "from_scratch": _spread(scratch_steps)},
        "reduction_per_seed": [
            round(1.0 - s / c, 4) for s, c in zip(student_steps, scratch_steps, strict=True)
        ],
        "bad_events_changed_nothing": all(r["same_student_without_bad_events"] for r in rows),
        "per_seed": rows,
        "bar": "reduction >= 0.30",
    }


def take_ok(message: tuple[int, int, bytes]) -> bool:
    """Whether a message passes validation and the shape check (the clean stream)."""
    from memstream.streams.validate import InvalidEvent, validate_event

    try:
        event = validate_event(message[2], "memstream.experience")
    except InvalidEvent:
        return False
    payload = event.payload  # type: ignore[attr-defined]
    return len(payload.observation) == 4 and len(payload.distribution) == 2
