"""Experience events, the distillation stage and the student policy (issue 20), no broker."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from memstream.eval.distill import bad_variants, run_distill_eval
from memstream.models.distill import DistillConfig, ExperienceBuffer, distil
from memstream.models.policy import SoftmaxPolicy
from memstream.models.providers import make_session, requested_providers
from memstream.schemas.events import Experience, ExperiencePayload
from memstream.schemas.topics import EXPERIENCE, TOPICS
from memstream.settings import DistillTeam, Settings
from memstream.streams.distill import (
    DistillationStage,
    TeamSpec,
    fit_and_publish,
    rebuild_student,
    take,
    team_specs,
)
from memstream.streams.validate import InvalidEvent, validate_event

SPEC = TeamSpec("acme", "pilots", DistillTeam(observation_dim=4, actions=2, epochs=40, every=50))


def step_event(agent: str, episode: int, step: int, *, scope: str = "team:pilots", tenant: str = "acme", rng: np.random.Generator | None = None) -> Experience:  # fmt: skip
    rng = rng or np.random.default_rng(episode * 1000 + step)
    obs = rng.normal(size=4)
    p = 1.0 / (1.0 + np.exp(-3 * obs[2]))
    return Experience(
        tenant=tenant,
        agent_id=agent,
        scope=scope,
        payload=ExperiencePayload(
            episode=episode,
            step=step,
            observation=obs.tolist(),
            action=int(p > 0.5),
            reward=1.0,
            done=False,
            distribution=[1.0 - p, p],
        ),
    )


def good_stream(n_agents: int = 2, episodes: int = 3, steps: int = 30) -> list[bytes]:
    return [
        step_event(f"t{a}", e, s).to_json()
        for a in range(n_agents)
        for e in range(episodes)
        for s in range(steps)
    ]


def student_of(values: list[bytes], tmp: Path) -> tuple[str, dict[str, int]]:
    stage = DistillationStage([SPEC], tmp)
    rejected: dict[str, int] = {}
    for offset, value in enumerate(values):
        error = take(stage, value, offset % 3, offset, 1_048_576)
        if error is not None:
            rejected[error.reason] = rejected.get(error.reason, 0) + 1
    version = fit_and_publish(stage.snapshot(SPEC.key), stage.registry(SPEC))
    assert version is not None
    return stage.registry(SPEC).metadata(version)["weights_sha256"], rejected


def test_experience_topic_is_in_the_catalogue_and_validated() -> None:
    assert EXPERIENCE.name in TOPICS
    event = validate_event(step_event("t0", 0, 0).to_json(), EXPERIENCE.name)
    assert isinstance(event, Experience)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"observation": [float("nan"), 0.0, 0.0, 0.0]}, "finite number"),
        ({"reward": float("inf")}, "finite number"),
        ({"distribution": [0.5, 0.6]}, "sums to 1.1"),
        ({"distribution": [1.2, -0.2]}, "outside [0, 1]"),
        ({"action": 2}, "not one of the distribution's 2 actions"),
        ({"observation": []}, "at least 1 item"),
        ({"step": -1}, "greater than or equal to 0"),
    ],
)
def test_bad_experience_is_rejected_with_its_reason(change: dict, needle: str) -> None:
    raw = json.loads(step_event("t0", 0, 0).to_json())
    raw["payload"].update(change)
    with pytest.raises(InvalidEvent) as err:
        validate_event(json.dumps(raw).encode(), EXPERIENCE.name)
    assert err.value.reason == "invalid_fields"
    assert needle in err.value.detail


def test_a_step_of_another_shape_than_the_team_is_a_wrong_shape(tmp_path: Path) -> None:
    stage = DistillationStage([SPEC], tmp_path)
    raw = json.loads(step_event("t0", 0, 0).to_json())
    raw["payload"]["observation"] = raw["payload"]["observation"][:3]
    error = take(stage, json.dumps(raw).encode(), 0, 0, 1_048_576)
    assert error is not None and error.reason == "wrong_shape"
    assert "4 values" in error.detail and "has 3" in error.detail
    assert stage.offsets == {0: 1}  # read, so a replay's range still covers it


def test_only_experience_shared_with_the_team_counts(tmp_path: Path) -> None:
    stage = DistillationStage([SPEC], tmp_path)
    cases = [
        (step_event("t0", 0, 0, scope="team:pilots"), True),
        (step_event("t0", 0, 1, scope="tenant"), True),
        (step_event("t1", 0, 0, scope="private"), False),
        (step_event("t2", 0, 0, scope="team:other"), False),
        (step_event("t3", 0, 0, tenant="other-tenant"), False),
    ]
    for offset, (event, _) in enumerate(cases):
        assert stage.accept(event, 0, offset) is None
    assert sorted(stage.buffers[SPEC.key].teachers) == ["t0"]
    assert len(stage.buffers[SPEC.key]) == 2


def test_the_same_set_of_steps_gives_the_same_student_in_any_order(tmp_path: Path) -> None:
    values = good_stream()
    first, _ = student_of(values, tmp_path / "a")
    shuffled = values + values[:20]  # redelivered, at-least-once
    random.Random(5).shuffle(shuffled)
    second, _ = student_of(shuffled, tmp_path / "b")
    assert first == second


def test_ten_percent_bad_events_change_nothing(tmp_path: Path) -> None:
    values = good_stream()
    rng = np.random.default_rng(1)
    mixed: list[bytes] = []
    for i, value in enumerate(values):
        if i % 10 == 0:
            mixed.append(json.dumps(bad_variants(json.loads(value), rng)).encode())
        mixed.append(value)
    clean, none = student_of(values, tmp_path / "clean")
    dirty, rejected = student_of(mixed, tmp_path / "dirty")
    assert none == {}
    assert sum(rejected.values()) == len(mixed) - len(values)
    assert set(rejected) == {"invalid_fields", "wrong_shape"}
    assert clean == dirty


def test_a_rebuild_from_the_lineage_gives_the_same_student(tmp_path: Path) -> None:
    values = good_stream()
    messages = [(i % 3, i // 3, v) for i, v in enumerate(values)]
    stage = DistillationStage([SPEC], tmp_path)
    for partition, offset, value in messages:
        assert take(stage, value, partition, offset, 1_048_576) is None
    live = fit_and_publish(stage.snapshot(SPEC.key), stage.registry(SPEC))
    assert live == 1
    assert fit_and_publish(stage.snapshot(SPEC.key), stage.registry(SPEC)) is None  # nothing new
    meta = stage.registry(SPEC).metadata(1)
    later = [(0, 10_000, step_event("t9", 0, 0).to_json())]  # after the range: left out
    version, _ = rebuild_student(
        messages + later, SPEC, meta["lineage"], tmp_path, max_bytes=1_048_576, source_version=1
    )
    rebuilt = stage.registry(SPEC).metadata(version or 0)
    assert version == 2 and rebuilt["lineage"]["rebuilt_from"] == 1
    assert rebuilt["weights_sha256"] == meta["weights_sha256"]


def test_cycles_start_after_every_steps_or_when_idle(tmp_path: Path) -> None:
    now = [0.0]
    stage = DistillationStage([SPEC], tmp_path, clock=lambda: now[0])
    for s in range(49):
        stage.accept(step_event("t0", 0, s), 0, s)
    assert stage.due() == [] and stage.due(idle_s=5) == []
    now[0] = 6.0
    assert stage.due(idle_s=5) == [SPEC.key]
    stage.accept(step_event("t0", 0, 49), 0, 49)
    assert stage.due() == [SPEC.key]  # 50 = every
    stage.snapshot(SPEC.key)
    assert stage.due(idle_s=0) == []


class _Trust:
    def get(self, tenant: str, agent_id: str) -> float:
        return {"good": 0.8, "poor": 0.2}.get(agent_id, 0.5)

    def quarantined(self, tenant: str, agent_id: str) -> bool:
        return agent_id == "sunk"


def test_teachers_are_the_configured_ones_else_the_trusted(tmp_path: Path) -> None:
    stage = DistillationStage([SPEC], tmp_path, _Trust())
    for offset, agent in enumerate(["good", "poor", "new", "sunk"]):
        stage.accept(step_event(agent, 0, 0), 0, offset)
    assert stage.teachers(SPEC) == ["good", "new"]  # reputation >= 0.5, not quarantined
    chosen = TeamSpec("acme", "pilots", DistillTeam(observation_dim=4, actions=2, teachers=["poor", "x"]))  # fmt: skip
    stage.specs[SPEC.key] = chosen
    assert stage.teachers(chosen) == ["poor"]


def test_buffer_keeps_each_teachers_latest_episodes() -> None:
    buffer = ExperienceBuffer(episodes_per_teacher=2)
    for episode in (0, 1, 2, 3):
        assert buffer.add("t", episode, 0, f"id-{episode}", [0.0], [0.5, 0.5])
    assert sorted(buffer.teachers["t"]) == [2, 3]
    assert not buffer.add("t", 1, 0, "late", [0.0], [0.5, 0.5])  # older than every kept one
    assert not buffer.add("t", 3, 0, "id-9", [1.0], [0.5, 0.5])  # same step, larger id
    assert buffer.add("t", 3, 0, "id-0", [2.0], [0.5, 0.5])  # same step, smaller id wins
    x, _, ids = buffer.pairs(["t"])
    assert ids == ["id-2", "id-0"] and x[1, 0] == 2.0


def test_distillation_fits_the_teachers_and_the_onnx_model_matches() -> None:
    rng = np.random.default_rng(0)
    teacher = SoftmaxPolicy.initial(4, 3, 8, seed=1)
    teacher.w2 *= 50
    x = rng.normal(size=(600, 4))
    result = distil(x, teacher.probabilities(x), DistillConfig(epochs=400, temperature=1.0))
    agree = np.mean(result.policy.probabilities(x).argmax(1) == teacher.probabilities(x).argmax(1))
    assert agree > 0.9 and result.kl < 0.2
    data = result.policy.to_onnx({"team": "pilots"})
    assert SoftmaxPolicy.from_onnx(data).weights_sha256() == result.policy.weights_sha256()
    session = make_session(data)
    assert session.get_providers()[0] == requested_providers()[0]  # CUDA first where present
    (p,) = session.run(["probabilities"], {"observation": x[:7].astype(np.float32)})
    assert np.allclose(p, result.policy.probabilities(x[:7]), atol=1e-5)


def test_settings_read_distill_teams_and_refuse_bad_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "MEMSTREAM_DISTILL_TEAMS", '{"acme/pilots": {"observation_dim": 4, "actions": 2}}'
    )
    (spec,) = team_specs(Settings().distill_teams)
    assert (spec.tenant, spec.team, spec.model) == ("acme", "pilots", "policy-pilots")
    with pytest.raises(ValueError, match="tenant/team"):
        team_specs({"no-slash": DistillTeam(observation_dim=4, actions=2)})


def test_the_eval_reports_medians_reduction_and_spread() -> None:
    # a tiny run (step cap far below the threshold's needs): the shape of the report only;
    # `memstream eval distill` measures the effect
    result = run_distill_eval(seeds=2, teachers=1, max_steps=1500)
    assert {"steps_from_student", "steps_from_scratch", "reduction", "spread"} <= set(result)
    assert result["seeds"] == [0, 1] and len(result["per_seed"]) == 2
    assert result["bad_events_changed_nothing"] is True
    assert set(result["spread"]["from_student"]) == {"min", "q1", "median", "q3", "max"}
