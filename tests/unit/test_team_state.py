"""Pooled team memory (SRMT-style): the ONNX attention block, the agents' recurrent states,
teammate ranking, and smoke runs of `bench pool` and `eval team-pool`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from memstream.bench.team_pool import run_team_pool_bench
from memstream.models.team_state import (
    DIM,
    HEADS,
    MASK_BIAS,
    TEMPERATURE,
    Team,
    TeamPooler,
    TeamStates,
    build_team_attention,
    rank_teammates,
)


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def pooler() -> TeamPooler:
    return TeamPooler(prefer="cpu")


def _reference(
    states: np.ndarray,
    mask: np.ndarray,
    r: np.ndarray,
    query: np.ndarray | None = None,
    heads: int = HEADS,
    temperature: float = TEMPERATURE,
) -> tuple[np.ndarray, np.ndarray]:
    """Multi-head attention written out literally in numpy: Q, K, V projected per head by
    the model's R, softmax over the agents with -1e9 on padding, concat, output R^T."""
    s, m, r = states.astype(np.float64), mask.astype(np.float64), r.astype(np.float64)
    b, a, d = s.shape
    dh = d // heads
    if query is None:
        q = (s * m[..., None]).sum(1) / np.maximum(m.sum(1, keepdims=True), 1.0)
    else:
        q = query.astype(np.float64)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    qp, kp, vp = q @ r, s @ r, s @ r
    ctx = np.zeros((b, d))
    weights = np.zeros((b, heads, a))
    for h in range(heads):
        cols = slice(h * dh, (h + 1) * dh)
        scores = np.einsum("bd,bad->ba", qp[:, cols], kp[:, :, cols]) * heads / temperature
        scores = scores + (m - 1.0) * MASK_BIAS
        e = np.exp(scores - scores.max(axis=1, keepdims=True))
        w = e / e.sum(axis=1, keepdims=True)
        weights[:, h] = w
        ctx[:, cols] = np.einsum("ba,bad->bd", w, vp[:, :, cols])
    out = ctx @ r.T
    return out / np.linalg.norm(out, axis=1, keepdims=True), weights


def _r(pooler: TeamPooler) -> np.ndarray:
    model = onnx.load_from_string(pooler.model_bytes)
    return next(numpy_helper.to_array(t) for t in model.graph.initializer if t.name == "W_q")


def test_models_validate_at_opset_17(pooler: TeamPooler) -> None:
    for query in ("team", "input"):
        model = build_team_attention(query=query)
        onnx.checker.check_model(model, full_check=True)
        assert model.opset_import[0].version == 17
        assert [i.name for i in model.graph.output] == ["pooled", "weights"]
    onnx.checker.check_model(onnx.load_from_string(pooler.model_bytes), full_check=True)
    onnx.checker.check_model(onnx.load_from_string(pooler.query_model_bytes), full_check=True)


def test_session_reports_its_providers(pooler: TeamPooler) -> None:
    assert "CPUExecutionProvider" in pooler.providers


def test_matches_numpy_multi_head_attention(pooler: TeamPooler) -> None:
    rng = np.random.default_rng(1)
    teams = [_unit(rng, 5), _unit(rng, 2), _unit(rng, 7)]
    states = np.zeros((3, 7, DIM), np.float32)
    mask = np.zeros((3, 7), np.float32)
    for i, t in enumerate(teams):
        states[i, : len(t)], mask[i, : len(t)] = t, 1.0
    r = _r(pooler)

    ref_vec, ref_w = _reference(states, mask, r)
    for i, got in enumerate(pooler.pool(teams)):
        n = len(teams[i])
        np.testing.assert_allclose(got.vector, ref_vec[i], atol=1e-5)
        np.testing.assert_allclose(got.weights, ref_w[i, :, :n], atol=1e-5)
        np.testing.assert_allclose(got.agent_influence, ref_w[i, :, :n].mean(0), atol=1e-5)

    queries = _unit(rng, 3)
    ref_vec, ref_w = _reference(states, mask, r, query=queries)
    for i, got in enumerate(pooler.attend(queries, teams)):
        n = len(teams[i])
        np.testing.assert_allclose(got.vector, ref_vec[i], atol=1e-5)
        np.testing.assert_allclose(got.weights, ref_w[i, :, :n], atol=1e-5)


def test_heads_really_differ(pooler: TeamPooler) -> None:
    """Multi-head: each head scores the agents in its own subspace."""
    team = _unit(np.random.default_rng(2), 6)
    weights = pooler.pool([team])[0].weights
    assert weights.shape == (HEADS, 6)
    assert np.abs(weights - weights.mean(axis=0)).max() > 1e-3


def test_weights_sum_to_one_and_vectors_are_unit(pooler: TeamPooler) -> None:
    rng = np.random.default_rng(3)
    teams = [_unit(rng, n) for n in (1, 3, 8, 64)]
    for result in pooler.pool(teams) + pooler.attend(_unit(rng, 4), teams):
        np.testing.assert_allclose(result.weights.sum(axis=1), 1.0, atol=1e-5)
        assert result.agent_influence.sum() == pytest.approx(1.0, abs=1e-5)
        assert np.linalg.norm(result.vector) == pytest.approx(1.0, abs=1e-5)
        assert result.vector.dtype == np.float32
    assert pooler.pool([teams[0]])[0].weights.tolist() == [[1.0]] * HEADS


def test_mask_zeroes_padding_and_padding_changes_nothing(pooler: TeamPooler) -> None:
    rng = np.random.default_rng(4)
    small, large = _unit(rng, 3), _unit(rng, 9)
    alone = pooler.pool([small])[0]
    together = pooler.pool([small, large])[0]
    np.testing.assert_allclose(together.vector, alone.vector, atol=1e-6)
    np.testing.assert_allclose(together.weights, alone.weights, atol=1e-6)

    # padding rows hold garbage: their weight is exactly 0 and the output is unchanged
    states = np.zeros((1, 9, DIM), np.float32)
    states[0, :3] = small
    mask = np.zeros((1, 9), np.float32)
    mask[0, :3] = 1.0
    session = pooler._team
    zero_pooled, zero_w = session.run(None, {"states": states, "mask": mask})
    states[0, 3:] = 50.0 * rng.standard_normal((6, DIM))
    junk_pooled, junk_w = session.run(None, {"states": states, "mask": mask})
    assert (junk_w[0, :, 3:] == 0.0).all()
    np.testing.assert_allclose(junk_pooled, zero_pooled, atol=1e-7)
    np.testing.assert_allclose(junk_w, zero_w, atol=1e-7)


def test_two_poolers_give_identical_bytes() -> None:
    rng = np.random.default_rng(5)
    teams = [_unit(rng, n) for n in (4, 8, 2)]
    queries = _unit(rng, 3)
    a, b = TeamPooler(prefer="cpu"), TeamPooler(prefer="cpu")
    assert a.model_bytes == b.model_bytes
    assert a.version == b.version and a.version.startswith("team-attention-h4-t0.1-")
    for x, y in zip(a.pool(teams), b.pool(teams), strict=True):
        assert x.vector.tobytes() == y.vector.tobytes()
        assert x.weights.tobytes() == y.weights.tobytes()
    for x, y in zip(a.attend(queries, teams), b.attend(queries, teams), strict=True):
        assert x.vector.tobytes() == y.vector.tobytes()


def test_same_updates_same_order_same_bytes(pooler: TeamPooler) -> None:
    rng = np.random.default_rng(6)
    events = [(f"agent-{rng.integers(0, 5)}", v) for v in _unit(rng, 40)]
    pooled = []
    for _ in range(2):
        states = TeamStates()
        for ts, (agent, v) in enumerate(events):
            states.update("t", "team", agent, v, ts)
        pooled.append(pooler.pool([states.matrix("t", "team")])[0].vector.tobytes())
    assert pooled[0] == pooled[1]


def test_ema_update_rule() -> None:
    rng = np.random.default_rng(7)
    vs = _unit(rng, 30).astype(np.float64)
    states = TeamStates(alpha=0.1)
    for i, v in enumerate(vs):
        states.update("t", "team", "a", 3.0 * v, float(i))  # any length: made unit first
        if i == 0:
            np.testing.assert_allclose(states.matrix("t", "team")[0], v, atol=1e-6)
        if i == 9:  # the first 1/alpha memories are averaged exactly
            mean = vs[:10].mean(axis=0)
            np.testing.assert_allclose(
                states.matrix("t", "team")[0], mean / np.linalg.norm(mean), atol=1e-6
            )
    m = vs[:10].mean(axis=0)
    for v in vs[10:]:  # then an exponential moving average with factor 0.1
        m = 0.9 * m + 0.1 * v
    got = states.matrix("t", "team")[0]
    np.testing.assert_allclose(got, m / np.linalg.norm(m), atol=1e-6)
    assert got.dtype == np.float32
    assert np.linalg.norm(got) == pytest.approx(1.0, abs=1e-6)
    assert states.last_ts("t", "team") == {"a": 29.0}

    centroid = TeamStates(alpha=0.0)  # alpha 0: the mean of all memories
    for i, v in enumerate(vs):
        centroid.update("t", "team", "a", v, float(i))
    mean = vs.mean(axis=0)
    np.testing.assert_allclose(
        centroid.matrix("t", "team")[0], mean / np.linalg.norm(mean), atol=1e-6
    )


def test_members_sorted_and_bounded() -> None:
    rng = np.random.default_rng(8)
    vs = _unit(rng, 4)
    states = TeamStates(max_agents=3, max_teams=2)
    for ts, (agent, v) in enumerate(zip(["c", "a", "b"], vs, strict=False)):
        states.update("t", "team", agent, v, float(ts))
    assert states.members("t", "team") == ["a", "b", "c"]
    np.testing.assert_array_equal(states.matrix("t", "team")[0], vs[1])
    team = states.team("t", "team")
    assert team.members == ("a", "b", "c") and team.states.shape == (3, DIM)
    states.update("t", "team", "d", vs[3], 10.0)  # full: "c" was updated least recently
    assert states.members("t", "team") == ["a", "b", "d"]
    states.update("t", "other", "x", vs[0], 11.0)
    states.update("u", "third", "x", vs[0], 12.0)  # max_teams 2: the oldest team goes
    assert states.teams() == [("t", "other"), ("u", "third")]
    assert states.members("t", "team") == []
    assert states.matrix("t", "team").shape == (0, DIM)
    with pytest.raises(ValueError):
        states.update("t", "team", "a", np.zeros(DIM), 13.0)
    with pytest.raises(ValueError):
        states.update("t", "team", "a", np.ones(10), 13.0)


def test_pool_rejects_empty_and_misshapen_teams(pooler: TeamPooler) -> None:
    with pytest.raises(ValueError):
        pooler.pool([])
    with pytest.raises(ValueError):
        pooler.pool([np.zeros((0, DIM), np.float32)])
    with pytest.raises(ValueError):
        pooler.pool([np.zeros((3, 10), np.float32)])


def test_rank_teammates_puts_the_matching_agent_first(pooler: TeamPooler) -> None:
    rng = np.random.default_rng(9)
    states = TeamStates()
    vectors = _unit(rng, 8)
    for i, v in enumerate(vectors):
        states.update("t", "team", f"agent-{i}", v, float(i))
    team = states.team("t", "team")
    for target in (0, 5, 7):
        ranked = rank_teammates(vectors[target], team, pooler)
        assert ranked[0].agent_id == f"agent-{target}"
        assert [t.weight for t in ranked] == sorted((t.weight for t in ranked), reverse=True)
        assert sum(t.weight for t in ranked) == pytest.approx(1.0, abs=1e-5)
        assert sorted(t.agent_id for t in ranked) == list(team.members)
    # batched: one query per team
    other = Team(("x", "y"), vectors[:2].copy())
    both = pooler.rank(np.stack([vectors[3], vectors[1]]), [team, other])
    assert both[0][0].agent_id == "agent-3" and both[1][0].agent_id == "y"


def test_bench_smoke() -> None:
    result = run_team_pool_bench(sizes=(2, 4), teams=3, updates=6, seed=1, prefer="cpu")
    json.dumps(result)
    assert set(result["sizes"]) == {"2", "4"}
    for figures in result["sizes"].values():
        assert figures["updates"] == 6 and figures["runs"] == 2
        assert figures["updates_per_s"] > 0
    assert "CPUExecutionProvider" in result["providers"]


_TOPICS = {
    # session: (Ana's turn, Ben's turn)
    1: ("I glaze my pottery bowls with a blue cobalt glaze.", "I played chess at the club."),
    2: ("We hiked up a glacier in the Alps.", "My sourdough starter is called Bubbles."),
    3: ("I adopted a grey kitten named Pixel.", "I repaired the engine of my old motorbike."),
    4: ("I am learning to play the cello.", "I planted tomatoes and basil in my garden."),
}
_QUESTIONS = [
    ("What glaze does Ana use on her pottery?", "D1:1"),
    ("Where did Ana hike on a glacier?", "D2:1"),
    ("What is the name of Ben's sourdough starter?", "D2:2"),
    ("What did Ben repair on his motorbike?", "D3:2"),
    ("Which instrument is Ana learning?", "D4:1"),
    ("What vegetables did Ben plant in his garden?", "D4:2"),
]


def _synthetic_locomo(path: Path) -> Path:
    conversation: dict[str, object] = {"speaker_a": "Ana", "speaker_b": "Ben"}
    for session, (ana, ben) in _TOPICS.items():
        conversation[f"session_{session}_date_time"] = f"1:00 pm on {session} May, 2023"
        conversation[f"session_{session}"] = [
            {"speaker": "Ana", "dia_id": f"D{session}:1", "text": ana},
            {"speaker": "Ben", "dia_id": f"D{session}:2", "text": ben},
            {"speaker": "Ana", "dia_id": f"D{session}:3", "text": "Nice, see you soon!"},
        ]
    qa = [{"question": q, "answer": "-", "evidence": [e], "category": 4} for q, e in _QUESTIONS]
    path.write_text(json.dumps([{"sample_id": "conv-x", "conversation": conversation, "qa": qa}]))
    return path


def test_eval_smoke(tmp_path: Path) -> None:
    from memstream.eval.team_pool import run_team_pool_eval

    result = run_team_pool_eval(_synthetic_locomo(tmp_path / "locomo.json"), k=2, prefer="cpu")
    json.dumps(result)
    assert result["dataset"]["agents_per_team"] == {"conv-x": 8}
    assert result["dataset"]["questions"] == len(_QUESTIONS)
    effect, baseline = result["effect"], result["baseline"]
    assert effect["method"] == "memory_attention"
    assert baseline["best"] in ("centroid_cosine", "state_cosine", "best_memory_cosine")
    assert baseline["random_expected_routing"]["top1"] == pytest.approx(1 / 8, abs=1e-4)
    for key in ("top1", "top2", "mrr", "evidence_top1", "evidence_top2"):
        assert 0.0 <= effect["routing"][key] <= 1.0
    assert effect["routing"]["top1"] > baseline["random_expected_routing"]["top1"]
    routed = effect["retrieval"]["top1_agents"]
    assert 0 < routed["turns_searched"] < 1
    assert baseline["all_turns_retrieval"]["turns_searched"] == 1.0
    assert set(result["alpha_sweep"]) >= {"0.1", "0.0"}
    assert isinstance(result["verdict"], str)


def test_memory_tokens_route_a_query_to_the_agent_holding_the_matching_memory() -> None:
    rng = np.random.default_rng(5)
    states = TeamStates(slots=4)
    vectors = {}
    for step in range(6):  # six memories each: only the latest four stay as tokens
        for agent in ("ada", "bob", "cy"):
            v = rng.normal(size=384)
            vectors[(agent, step)] = v / np.linalg.norm(v)
            states.update("t", "x", agent, v, float(step))
    team = states.memory_team("t", "x")
    assert team.members == ("ada", "bob", "cy") and team.states.shape == (12, 384)
    assert np.bincount(team.owners).tolist() == [4, 4, 4]
    pooler = TeamPooler()
    # a query equal to one of bob's kept memories: bob first, though his average is not it
    ranked = pooler.rank(vectors[("bob", 3)][None, :], [team])[0]
    assert ranked[0].agent_id == "bob"
    assert abs(sum(t.weight for t in ranked) - 1.0) < 1e-5
    # a memory that left the tokens no longer routes there by itself
    evicted = pooler.rank(vectors[("cy", 0)][None, :], [team])[0]
    assert evicted[0].weight < ranked[0].weight
