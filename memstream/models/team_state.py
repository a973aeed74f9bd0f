"""Pooled team memory after the Shared Recurrent Memory Transformer (SRMT).

Each agent of a team keeps a recurrent memory state: its memories' embeddings folded into
one unit vector (`TeamStates`). On every update the team's agent states are pooled by
multi-head attention into one shared team state (`TeamPooler.pool`), and a query can read
the same states to rank which teammates' memories matter to it (`rank_teammates`).

Nothing is learned: the attention block is parameterised by one fixed orthogonal matrix R
(numpy, fixed seed) so that it works on the embedder's space as it is.

The attention block itself is built in `memstream.models.team_attention`.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from memstream.models.providers import Preference, make_session
from memstream.models.team_attention import (
    DIM,
    HEADS,
    MASK_BIAS,
    OPSET,
    SEED,
    TEMPERATURE,
    QueryKind,
    _frozen,
    build_team_attention,
    model_bytes,
    projection,
)

if TYPE_CHECKING:
    import onnxruntime as ort

SLOTS = 64
"""Memory tokens kept per agent: its 64 latest memories (98 KB at 384 float32 each)."""
ALPHA = 0.1
"""EMA factor of an agent's state: after warm-up each new memory weighs 0.1 of the state."""


@dataclass(frozen=True, eq=False)
class PooledTeam:
    """One team's pooled state: `vector` (dim, unit length), `weights` (heads x agents, each
    head's row sums to 1) and `agent_influence` (mean weight per agent over the heads)."""

    vector: np.ndarray
    weights: np.ndarray
    agent_influence: np.ndarray


@dataclass(frozen=True, eq=False)
class Team:
    """A team's agents in sorted order and their states. Without `owners` row i is member
    i's state; with it, the rows are memory tokens and row i belongs to member `owners[i]`
    (`TeamStates.memory_team`: each agent's recent memories, attended one by one)."""

    members: tuple[str, ...]
    states: np.ndarray
    owners: np.ndarray | None = None

    def influence(self, token_weights: np.ndarray) -> np.ndarray:
        """Each member's share of the attention: its rows' weights summed."""
        if self.owners is None:
            return token_weights
        return np.bincount(self.owners, weights=token_weights, minlength=len(self.members))


@dataclass(frozen=True)
class Teammate:
    """One agent's share of a query's attention (mean over heads; the team's sum to 1)."""

    agent_id: str
    weight: float


class TeamPooler:
    """The attention block on ONNX Runtime: `pool` for the team query, `attend` and `rank`
    for a query vector. A batch of teams of different sizes runs as one padded batch."""

    def __init__(
        self,
        prefer: Preference = "auto",
        threads: int | None = None,
        *,
        spin: bool = True,
        dim: int = DIM,
        heads: int = HEADS,
        temperature: float = TEMPERATURE,
        seed: int = SEED,
    ) -> None:
        self.dim, self.heads = dim, heads
        self._args = (dim, heads, temperature, seed)
        self._session_args = (prefer, threads, spin)
        self.model_bytes = model_bytes(dim, heads, "team", temperature, seed)
        self._team = make_session(self.model_bytes, prefer, threads, spin=spin)
        self._query: ort.InferenceSession | None = None  # query-driven, made on first use

    @property
    def providers(self) -> list[str]:
        """What ONNX Runtime really runs the block on."""
        return list(self._team.get_providers())

    @property
    def version(self) -> str:
        """A label of the exact model (parameters and a hash of its bytes), for whoever stores
        a pooled state, so states pooled by different blocks are never mixed up."""
        _dim, heads, temperature, seed = self._args
        digest = hashlib.sha256(self.model_bytes).hexdigest()[:12]
        return f"team-attention-h{heads}-t{temperature:g}-s{seed}@{digest}"

    @property
    def query_model_bytes(self) -> bytes:
        dim, heads, temperature, seed = self._args
        return model_bytes(dim, heads, "input", temperature, seed)

    def _pad(self, states: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, list[int]]:
        if not states:
            raise ValueError("no teams to pool")
        sizes = []
        for s in states:
            if s.ndim != 2 or s.shape[1] != self.dim or len(s) == 0:
                raise ValueError(f"a team's states must be [agents >= 1, {self.dim}]: {s.shape}")
            sizes.append(len(s))
        padded = np.zeros((len(states), max(sizes), self.dim), np.float32)
        mask = np.zeros((len(states), max(sizes)), np.float32)
        for i, s in enumerate(states):
            padded[i, : len(s)] = s
            mask[i, : len(s)] = 1.0
        return padded, mask, sizes

    @staticmethod
    def _unpack(pooled: np.ndarray, weights: np.ndarray, sizes: list[int]) -> list[PooledTeam]:
        out = []
        for i, n in enumerate(sizes):
            w = np.ascontiguousarray(weights[i, :, :n])
            out.append(PooledTeam(_frozen(pooled[i].copy()), _frozen(w), _frozen(w.mean(axis=0))))
        return out

    def pool(self, states: Sequence[np.ndarray]) -> list[PooledTeam]:
        """The shared state of each team (its [agents, dim] states) in one ONNX run."""
        padded, mask, sizes = self._pad(states)
        pooled, weights = self._team.run(None, {"states": padded, "mask": mask})
        return self._unpack(pooled, weights, sizes)

    def attend(
        self, queries: np.ndarray | Sequence[np.ndarray], states: Sequence[np.ndarray]
    ) -> list[PooledTeam]:
        """Query i read over team i: the team's answer vector and each agent's weight."""
        query = np.ascontiguousarray(np.asarray(queries, np.float32).reshape(-1, self.dim))
        if len(query) != len(states):
            raise ValueError(f"{len(query)} queries for {len(states)} teams")
        padded, mask, sizes = self._pad(states)
        if self._query is None:
            prefer, threads, spin = self._session_args
            self._query = make_session(self.query_model_bytes, prefer, threads, spin=spin)
        pooled, weights = self._query.run(None, {"states": padded, "mask": mask, "query": query})
        return self._unpack(pooled, weights, sizes)

    def rank(
        self, queries: np.ndarray | Sequence[np.ndarray], teams: Sequence[Team]
    ) -> list[list[Teammate]]:
        """Per (query, team) pair, the team's agents by the query's attention, highest first
        (ties by agent id, so the order is deterministic)."""
        read = self.attend(queries, [t.states for t in teams])
        ranked = []
        for team, result in zip(teams, read, strict=True):
            pairs = sorted(
                zip(team.members, team.influence(result.agent_influence).tolist(), strict=True),
                key=lambda p: (-p[1], p[0]),
            )
            ranked.append([Teammate(a, w) for a, w in pairs])
        return ranked


@functools.lru_cache(maxsize=1)
def _default_pooler() -> TeamPooler:
    return TeamPooler()


def rank_teammates(
    query_vec: np.ndarray, team: Team, pooler: TeamPooler | None = None
) -> list[Teammate]:
    """Which teammates' memories matter to a query: the team's agents ranked by the query's
    multi-head attention over their states (mean weight over heads, highest first)."""
    query = np.asarray(query_vec, np.float32).reshape(1, -1)
    return (pooler or _default_pooler()).rank(query, [team])[0]


@dataclass
class _TeamRows:
    ids: list[str] = field(default_factory=list)  # sorted
    states: np.ndarray = field(default_factory=lambda: np.zeros((0, DIM), np.float32))
    raw: np.ndarray = field(default_factory=lambda: np.zeros((0, DIM), np.float64))
    counts: list[int] = field(default_factory=list)
    ts: list[float] = field(default_factory=list)
    recent: dict[str, np.ndarray] = field(default_factory=dict)  # agent -> [<= slots, dim]


class TeamStates:
    """Each agent's latest state per (tenant, team), in memory only.

    An agent's state is a recurrent memory, as in SRMT: each new memory vector v (made unit)
    is folded into an accumulator `m <- (1 - a) * m + a * v` with `a = max(1/n, alpha)` for
    the agent's n-th memory, and the state is `m / |m|`. The first `1/alpha` memories are
    thus averaged exactly (a fresh agent is not its first memory alone), later ones decay
    with factor `alpha`: with 0.1 a memory 22 updates old weighs a tenth of the newest;
    `alpha=0` keeps the exact mean of all the agent's memories (its centroid). The
    accumulator is kept unnormalised because renormalising it every step would inflate the
    old part (a mean of unit vectors is shorter than 1) and let early memories dominate.
    Updates are applied in arrival
    order (`ts` is kept, not used to reorder), so the same updates in the same order give
    the same bytes. Bounded: a team keeps `max_agents` (the least recently updated by `ts`
    goes first) and at most `max_teams` teams are kept (the least recently updated goes).
    """

    def __init__(
        self,
        dim: int = DIM,
        alpha: float = ALPHA,
        *,
        max_agents: int = 1024,
        max_teams: int = 100_000,
        slots: int = SLOTS,
    ) -> None:
        """`slots`: how many of each agent's latest memory vectors it keeps as memory
        tokens (`memory_team`), besides the recurrent state."""
        if not 0 <= alpha <= 1:
            raise ValueError("alpha must be in [0, 1]")
        if slots < 1:
            raise ValueError("slots must be >= 1")
        self.slots = slots
        self.dim, self.alpha = dim, alpha
        self.max_agents, self.max_teams = max_agents, max_teams
        self._teams: OrderedDict[tuple[str, str], _TeamRows] = OrderedDict()

    def __len__(self) -> int:
        return len(self._teams)

    def teams(self) -> list[tuple[str, str]]:
        """(tenant, team) keys, sorted."""
        return sorted(self._teams)

    def update(self, tenant: str, team: str, agent_id: str, vector: np.ndarray, ts: float) -> None:
        """Fold one new memory vector of `agent_id` into its state."""
        v = np.asarray(vector, np.float64).reshape(-1)
        if v.shape != (self.dim,):
            raise ValueError(f"a memory vector must be {self.dim}-d, not {v.shape}")
        norm = float(np.linalg.norm(v))
        if not np.isfinite(norm) or norm == 0.0:
            raise ValueError("a memory vector must be finite and non-zero")
        v /= norm
        key = (tenant, team)
        rows = self._teams.get(key)
        if rows is None:
            rows = self._teams[key] = _TeamRows(
                states=np.zeros((0, self.dim), np.float32), raw=np.zeros((0, self.dim))
            )
            while len(self._teams) > self.max_teams:
                self._teams.popitem(last=False)
        self._teams.move_to_end(key)
        i = _index(rows.ids, agent_id)
        if i is None:
            if len(rows.ids) >= self.max_agents:
                oldest = min(range(len(rows.ids)), key=lambda j: (rows.ts[j], rows.ids[j]))
                _remove(rows, oldest)
            i = _insert(rows, agent_id, self.dim)
        n = rows.counts[i] + 1
        a = max(1.0 / n, self.alpha)
        m = (1.0 - a) * rows.raw[i] + a * v
        m_norm = float(np.linalg.norm(m))
        rows.raw[i] = m
        rows.states[i] = m / m_norm if m_norm > 1e-12 else v  # m cancelled out: v wins
        rows.counts[i] = n
        rows.ts[i] = float(ts)
        recent = rows.recent.get(agent_id)
        if recent is None or len(recent) < self.slots:  # grows to `slots`, then shifts
            grown = np.empty(((0 if recent is None else len(recent)) + 1, self.dim), np.float32)
            if recent is not None:
                grown[:-1] = recent
            recent = rows.recent[agent_id] = grown
        else:
            recent[:-1] = recent[1:]
        recent[-1] = v

    def members(self, tenant: str, team: str) -> list[str]:
        """The team's agent ids, sorted (the row order of `matrix`)."""
        rows = self._teams.get((tenant, team))
        return list(rows.ids) if rows else []

    def matrix(self, tenant: str, team: str) -> np.ndarray:
        """The team's agent states, [agents, dim] float32, rows in `members` order."""
        rows = self._teams.get((tenant, team))
        return rows.states.copy() if rows else np.zeros((0, self.dim), np.float32)

    def team(self, tenant: str, team: str) -> Team:
        """Members and states together, for `rank_teammates`."""
        return Team(tuple(self.members(tenant, team)), _frozen(self.matrix(tenant, team)))

    def memory_team(self, tenant: str, team: str) -> Team:
        """The team as memory tokens: each agent's latest `slots` memory vectors (oldest
        first, agents in sorted order), with `owners` naming each row's agent. Attention over
        these finds the teammate holding the memory a query needs, which one averaged state
        per agent blurs (docs/coordination.md has the measured difference)."""
        rows = self._teams.get((tenant, team))
        if rows is None or not rows.ids:
            return Team((), np.zeros((0, self.dim), np.float32), np.zeros(0, np.int64))
        empty = np.zeros((0, self.dim), np.float32)
        tokens = [rows.recent.get(a, empty) for a in rows.ids]
        owners = np.repeat(np.arange(len(rows.ids)), [len(t) for t in tokens])
        return Team(tuple(rows.ids), _frozen(np.concatenate(tokens)), _frozen(owners))

    def last_ts(self, tenant: str, team: str) -> dict[str, float]:
        """Each agent's latest update time."""
        rows = self._teams.get((tenant, team))
        return dict(zip(rows.ids, rows.ts, strict=True)) if rows else {}


def _index(ids: list[str], agent_id: str) -> int | None:
    i = bisect.bisect_left(ids, agent_id)
    return i if i < len(ids) and ids[i] == agent_id else None


def _insert(rows: _TeamRows, agent_id: str, dim: int) -> int:
    i = bisect.bisect_left(rows.ids, agent_id)
    rows.ids.insert(i, agent_id)
    rows.counts.insert(i, 0)
    rows.ts.insert(i, 0.0)
    rows.states = np.insert(rows.states, i, np.zeros(dim, np.float32), axis=0)
    rows.raw = np.insert(rows.raw, i, np.zeros(dim), axis=0)
    return i


def _remove(rows: _TeamRows, i: int) -> None:
    rows.recent.pop(rows.ids[i], None)
    del rows.ids[i], rows.counts[i], rows.ts[i]
    rows.states = np.delete(rows.states, i, axis=0)
    rows.raw = np.delete(rows.raw, i, axis=0)


__all__ = [
    "ALPHA",
    "DIM",
    "HEADS",
    "MASK_BIAS",
    "OPSET",
    "SEED",
    "SLOTS",
    "TEMPERATURE",
    "PooledTeam",
    "QueryKind",
    "Team",
    "TeamPooler",
    "TeamStates",
    "Teammate",
    "build_team_attention",
    "model_bytes",
    "projection",
    "rank_teammates",
]
