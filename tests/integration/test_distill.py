"""Experience distilled into a student through the real broker and the session worker, served
by HTTP and MCP, and rebuilt by a replay of the topic (issue 20)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiokafka import AIOKafkaProducer

from memstream.models.policy import SoftmaxPolicy
from memstream.models.providers import make_session
from memstream.schemas.events import DeadLetter, Experience, ExperiencePayload
from memstream.schemas.topics import DEAD_LETTER, EXPERIENCE
from memstream.sdk import HttpClient
from memstream.sdk.http import Forbidden, NotFound
from memstream.settings import DistillTeam
from memstream.streams.distill import DistillationStage, TeamSpec, fit_and_publish, take
from tests.integration.conftest import DISTILL_TEAMS, Worker, read_topic
from tests.integration.test_http_sdk import _until
from tests.integration.test_mcp import _call, _http_session

TENANT, TEAM, MODEL = "distill-test", "pilots", "policy-pilots"


def experience(seed: int = 3) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes, str]]]:
    """Two teachers' steps (agent, JSON) from a fixed teacher policy on random
    observations, and one bad event per ten good ones (agent, JSON, the expected reason)."""
    rng = np.random.default_rng(seed)
    teacher = SoftmaxPolicy.initial(4, 2, 8, seed=seed)
    teacher.w2 *= 300  # confident
    good: list[tuple[str, bytes]] = []
    bad: list[tuple[str, bytes, str]] = []
    for agent in ("teacher-a", "teacher-b"):
        for episode in range(3):
            for step in range(60):
                obs = rng.normal(size=4)
                dist = teacher.probabilities(obs)[0]
                event = Experience(
                    tenant=TENANT,
                    agent_id=agent,
                    scope=f"team:{TEAM}",
                    payload=ExperiencePayload(
                        episode=episode,
                        step=step,
                        observation=obs.tolist(),
                        action=int(np.argmax(dist)),
                        reward=1.0,
                        done=step == 59,
                        distribution=(dist / dist.sum()).tolist(),
                    ),
                )
                good.append((agent, event.to_json()))
                if step % 10 == 0:
                    raw = json.loads(event.to_json())
                    raw["event_id"] = raw["event_id"][:-4] + "beef"
                    fault = (episode * 6 + step // 10) % 3
                    if fault == 0:
                        raw["payload"]["observation"][1] = float("nan")
                        reason = "invalid_fields"
                    elif fault == 1:
                        raw["payload"]["distribution"] = [0.9, 0.3]
                        reason = "invalid_fields"
                    else:
                        raw["payload"]["observation"] = raw["payload"]["observation"][:3]
                        reason = "wrong_shape"
                    bad.append((agent, json.dumps(raw).encode(), reason))
    return good, bad


async def produce(bootstrap: str, messages: list[tuple[str, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in messages:
            await producer.send_and_wait(EXPERIENCE.name, value, key=key.encode())
    finally:
        await producer.stop()


def clean_student(good: list[tuple[str, bytes]], tmp: Path) -> str:
    """The weights digest the same spec gives on the good events alone, no broker."""
    spec = TeamSpec(TENANT, TEAM, DistillTeam(**json.loads(DISTILL_TEAMS)[f"{TENANT}/{TEAM}"]))
    stage = DistillationStage([spec], tmp)
    for offset, (_, value) in enumerate(good):
        assert take(stage, value, 0, offset, 1_048_576) is None
    version = fit_and_publish(stage.snapshot(spec.key), stage.registry(spec))
    assert version == 1
    return stage.registry(spec).metadata(1)["weights_sha256"]


def test_experience_is_distilled_served_and_rebuilt_by_replay(
    worker: Worker, broker, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    good, bad = experience()
    stream: list[tuple[str, bytes]] = []
    bad_iter = iter(bad)
    for i, item in enumerate(good):
        stream.append(item)
        if i % 10 == 0:
            agent, value, _ = next(bad_iter)
            stream.append((agent, value))
    asyncio.run(produce(broker.bootstrap, stream))
    member = HttpClient(worker.url, worker.token(TENANT, "learner", teams=[TEAM]))

    def served() -> Any:
        try:
            found = member.model(MODEL)
        except NotFound:
            return None
        return found if found.lineage["pairs"] == len(good) else None

    live = _until(served, timeout=120)
    # bad events: dead-lettered with their reason, and the student is the one without them
    letters = asyncio.run(
        read_topic(
            broker.bootstrap,
            DEAD_LETTER.name,
            lambda rs: sum(b"memstream.experience" in r.value for r in rs) >= len(bad),
            timeout=60,
        )
    )
    reasons = sorted(
        letter.payload.reason
        for letter in (DeadLetter.model_validate_json(r.value) for r in letters)
        if letter.payload.origin_topic == EXPERIENCE.name and letter.tenant == TENANT
    )
    assert reasons == sorted(reason for _, _, reason in bad)
    assert live.weights_sha256 == clean_student(good, tmp_path / "clean")

    # the ONNX model runs here (CPU; CUDA first where onnxruntime-gpu sees a GPU)
    onnx_bytes = base64.b64decode(live.onnx_b64 or "")
    session = make_session(onnx_bytes)
    assert session.get_providers()[0] in ("CPUExecutionProvider", "CUDAExecutionProvider")
    obs = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    (probabilities,) = session.run(["probabilities"], {"observation": obs})
    expected = SoftmaxPolicy.from_onnx(onnx_bytes).probabilities(obs)
    assert np.allclose(probabilities, expected, atol=1e-5)

    # who may fetch it: the team's members only; another tenant has no such model
    with pytest.raises(Forbidden):
        HttpClient(worker.url, worker.token(TENANT, "outsider")).model(MODEL)
    with pytest.raises(NotFound):
        HttpClient(worker.url, worker.token("distill-other", "learner", teams=[TEAM])).model(MODEL)

    # over MCP, for the member
    async def over_mcp() -> dict[str, Any]:
        async with _http_session(worker, worker.token(TENANT, "learner", teams=[TEAM])) as session:
            return await _call(session, "get_model", name=MODEL, version=live.version)

    got = asyncio.run(over_mcp())
    assert got["weights_sha256"] == live.weights_sha256 and got["onnx_b64"] == live.onnx_b64

    # a replay of the topic up to the live version's offsets gives the same student
    env = {
        **os.environ,
        "MEMSTREAM_DATA_DIR": str(worker.data_dir),
        "MEMSTREAM_DISTILL_TEAMS": DISTILL_TEAMS,
        "MEMSTREAM_LOG_LEVEL": "WARNING",
    }
    done = subprocess.run(
        [sys.executable, "-m", "memstream", "distill", "rebuild", "--tenant", TENANT,
         "--team", TEAM, "--version", str(live.version), "--bootstrap", broker.bootstrap,
         "--json"],
        env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rebuilt = json.loads(done.stdout)
    assert rebuilt["identical"] and rebuilt["same_pairs"], rebuilt
    assert rebuilt["rebuilt_from"] == live.version and rebuilt["version"] > live.version
    now = member.model(MODEL)
    assert now.version == rebuilt["version"] and now.lineage["rebuilt_from"] == live.version
    assert now.weights_sha256 == live.weights_sha256


EXAMPLE = (
    Path(__file__).resolve().parents[2] / "examples" / "distill-cartpole" / "distill_cartpole.py"
)


def test_the_cartpole_example_runs_against_the_stack(worker: Worker, broker) -> None:  # type: ignore[no-untyped-def]
    """A short run of the worked example (one teacher, a step cap): it publishes through the
    SDK, waits for the student covering its steps and fetches it over HTTP."""
    token = worker.token(TENANT, "newcomer", teams=[TEAM])
    env = {**os.environ, "MEMSTREAM_KAFKA_BOOTSTRAP": broker.bootstrap, "MEMSTREAM_LOG_LEVEL": "WARNING"}  # fmt: skip
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--tenant", TENANT, "--team", TEAM, "--teachers", "1",
         "--max-steps", "2000", "--url", worker.url, "--token", token, "--timeout", "90"],
        env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(report) == {
        "steps_from_student",
        "steps_from_scratch",
        "reduction",
        "student_version",
    }
    assert "teacher-0" in done.stdout
