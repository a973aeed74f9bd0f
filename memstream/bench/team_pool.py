"""`memstream bench pool`: team-state updates per second, as a worker applies them.

One update is one agent's new memory vector folded into its state (`TeamStates.update`) and
its team's re-pool. A worker takes a batch of events, one per team here, updates the states
and re-pools all the touched teams in one ONNX run (`TeamPooler.pool`); `updates_per_s`
counts the whole of that, matrices and padding included, and `pool_ms_*` the ONNX run
alone. States are random unit vectors (numpy, seeded); the teams start full, so every
update changes an existing agent. A warm-up round runs first, untimed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from memstream.models.providers import Preference
from memstream.models.team_state import DIM, SLOTS, TeamPooler, TeamStates

TENANT = "bench"


def _unit(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    x = rng.standard_normal((*shape, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _percentile_ms(seconds: list[float], q: float) -> float:
    return round(float(np.percentile(seconds, q)) * 1e3, 3)


def run_team_pool_bench(
    sizes: Sequence[int] = (8, 64),
    teams: int = 64,
    updates: int = 4096,
    seed: int = 0,
    *,
    prefer: Preference = "auto",
    threads: int | None = None,
) -> dict[str, Any]:
    """Updates/s per team size, each run re-pooling `teams` teams (one update each) as the
    sink does: over every agent's memory tokens, each agent holding its full `SLOTS`."""
    if teams < 1 or updates < 1 or not sizes:
        raise ValueError("teams, updates and sizes must be positive")
    pooler = TeamPooler(prefer, threads)
    rng = np.random.default_rng(seed)
    rounds = max(1, -(-updates // teams))
    out: dict[str, Any] = {}
    for size in sizes:
        states = TeamStates(max_agents=size)
        names = [f"team-{t:04d}" for t in range(teams)]
        agents = [f"agent-{a:04d}" for a in range(size)]
        for t, name in enumerate(names):
            for _ in range(SLOTS):  # every agent holds its full memory tokens
                for a, vector in enumerate(_unit(rng, (size,))):
                    states.update(TENANT, name, agents[a], vector, float(t))
        new = _unit(rng, (rounds + 1, teams))  # round 0 is the warm-up
        who = rng.integers(0, size, (rounds + 1, teams))
        run_s: list[float] = []
        pool_s: list[float] = []
        for r in range(rounds + 1):
            start = time.perf_counter()
            for t, name in enumerate(names):
                states.update(TENANT, name, agents[who[r, t]], new[r, t], float(r))
            matrices = [states.memory_team(TENANT, name).states for name in names]
            pool_start = time.perf_counter()
            pooled = pooler.pool(matrices)
            end = time.perf_counter()
            if r:  # round 0 warms the session up
                run_s.append(end - start)
                pool_s.append(end - pool_start)
        assert len(pooled) == teams
        total = sum(run_s)
        out[str(size)] = {
            "agents": size,
            "memory_tokens_per_team": size * SLOTS,
            "teams_per_run": teams,
            "runs": rounds,
            "updates": rounds * teams,
            "updates_per_s": round(rounds * teams / total, 1),
            "run_ms_p50": _percentile_ms(run_s, 50),
            "run_ms_p95": _percentile_ms(run_s, 95),
            "pool_ms_p50": _percentile_ms(pool_s, 50),
            "pool_ms_p95": _percentile_ms(pool_s, 95),
            "onnx_share": round(sum(pool_s) / total, 3),
        }
    return {
        "sizes": out,
        "providers": pooler.providers,
        "heads": pooler.heads,
        "dim": pooler.dim,
        "teams_per_run": teams,
        "seed": seed,
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run_team_pool_bench(), indent=2))
