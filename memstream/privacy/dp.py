"""Differential privacy for aggregates shared beyond a tenant (or across teams inside one).

Aggregates about memories (how many per tag or topic, mean usefulness) can leak single
memories when shared raw, e.g. a tag used by one memory. Released through this module, an
aggregate is ``epsilon``-differentially private, and every release is charged to the
tenant's :class:`PrivacyBudget` *before* anything is released, so the total privacy loss of a
tenant's data is bounded by its budget (sequential composition: epsilons add up).

**Unit of privacy: one memory.** Two data sets are neighbours when they differ by adding or
removing one memory (one stored point). The guarantee is about any single memory; an agent
or person behind many memories is protected only to ``k * epsilon`` for ``k`` memories.

Noise comes from OpenDP (Rust core, proofs per mechanism): discrete Laplace for counts,
sampled exactly from integers, and OpenDP's floating-point-safe Laplace for sums, so the
classic floating-point attacks on naive Laplace samplers (Mironov 2012) do not apply.
OpenDP draws from the OS's CSPRNG and cannot be seeded, by design.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import opendp.prelude as dp

from memstream.store.sqlite_file import SqliteFile

dp.enable_features("contrib")  # make_laplace and friends are "contrib" in OpenDP

_SLACK = 1e-9  # float sums of epsilons: 0.1 spent ten times must fit a budget of 1.0

_SCHEMA = (
    """
    create table if not exists dp_spent (
        tenant text primary key,
        spent real not null
    )
    """,
    """
    create table if not exists dp_agent_spent (
        tenant text not null,
        agent_id text not null,
        spent real not null,
        primary key (tenant, agent_id)
    )
    """,
    """
    create table if not exists dp_ledger (
        tenant text not null,
        epsilon real not null,
        what text not null,
        at text not null
    )
    """,
)


class BudgetExceeded(Exception):
    """A release would take a tenant (or one agent's share of it) past its privacy budget;
    nothing was released."""

    def __init__(
        self, tenant: str, spent: float, total: float, asked: float, agent_id: str | None = None
    ) -> None:
        self.tenant, self.spent, self.total, self.asked = tenant, spent, total, asked
        self.agent_id = agent_id
        whose = (
            f"agent {agent_id!r}'s share of tenant {tenant!r}" if agent_id else f"tenant {tenant!r}"
        )
        super().__init__(
            f"privacy budget of {whose} exceeded: spent {spent:g} of {total:g}, "
            f"asked for {asked:g} more (remaining {max(0.0, total - spent):g})"
        )


def _check_epsilon(epsilon: float) -> float:
    epsilon = float(epsilon)
    if not math.isfinite(epsilon) or epsilon <= 0:
        raise ValueError(f"epsilon must be a finite number > 0, got {epsilon!r}")
    return epsilon


class PrivacyBudget(SqliteFile):
    """Each tenant may spend at most ``epsilon_per_tenant`` in total, across processes, and
    each of its agents at most ``agent_share`` of that, so one agent cannot spend what the
    whole tenant has (the total is a lifetime budget: once spent, it is gone).

    What was spent is kept in SQLite (WAL; a spend is one ``BEGIN IMMEDIATE`` transaction,
    so concurrent workers cannot both take the last of a budget) together with a ledger of
    every release. The totals are this object's settings; the spending persists.
    """

    def __init__(
        self, path: Path, epsilon_per_tenant: float = 1.0, agent_share: float = 1.0
    ) -> None:
        self.epsilon_per_tenant = _check_epsilon(epsilon_per_tenant)
        agent_share = float(agent_share)
        if not 0 < agent_share <= 1:
            raise ValueError(f"agent_share must be in (0, 1], got {agent_share!r}")
        self.epsilon_per_agent = self.epsilon_per_tenant * agent_share
        super().__init__(path, _SCHEMA, ("synchronous=full",))

    def spent(self, tenant: str) -> float:
        """Epsilon the tenant has spent so far."""
        with self._lock:
            row = self._db.execute(
                "select spent from dp_spent where tenant = ?", (tenant,)
            ).fetchone()
        return 0.0 if row is None else float(row[0])

    def remaining(self, tenant: str) -> float:
        """Epsilon the tenant may still spend."""
        return max(0.0, self.epsilon_per_tenant - self.spent(tenant))

    def agent_spent(self, tenant: str, agent_id: str) -> float:
        """Epsilon one agent of the tenant has spent so far."""
        with self._lock:
            row = self._db.execute(
                "select spent from dp_agent_spent where tenant = ? and agent_id = ?",
                (tenant, agent_id),
            ).fetchone()
        return 0.0 if row is None else float(row[0])

    def spend(
        self, tenant: str, epsilon: float, *, what: str = "", agent_id: str | None = None
    ) -> None:
        """Charge ``epsilon`` to the tenant (and to ``agent_id``'s share of it, when given),
        or raise :class:`BudgetExceeded` (nothing charged)."""
        epsilon = _check_epsilon(epsilon)
        total = self.epsilon_per_tenant
        with self._write() as db:
            row = db.execute("select spent from dp_spent where tenant = ?", (tenant,)).fetchone()
            spent = 0.0 if row is None else float(row[0])
            if agent_id is not None:
                row = db.execute(
                    "select spent from dp_agent_spent where tenant = ? and agent_id = ?",
                    (tenant, agent_id),
                ).fetchone()
                mine = 0.0 if row is None else float(row[0])
                share = self.epsilon_per_agent
                if mine + epsilon > share * (1 + _SLACK) + _SLACK:
                    raise BudgetExceeded(tenant, mine, share, epsilon, agent_id)
                db.execute(
                    "insert into dp_agent_spent values (?, ?, ?)"
                    " on conflict(tenant, agent_id) do update set spent = ?",
                    (tenant, agent_id, mine + epsilon, mine + epsilon),
                )
            if spent + epsilon > total * (1 + _SLACK) + _SLACK:
                raise BudgetExceeded(tenant, spent, total, epsilon)
            db.execute(
                "insert into dp_spent values (?, ?) on conflict(tenant) do update set spent = ?",
                (tenant, spent + epsilon, spent + epsilon),
            )
            db.execute(
                "insert into dp_ledger values (?, ?, ?, ?)",
                (tenant, epsilon, what, datetime.now(UTC).isoformat()),
            )

    def ledger(self, tenant: str) -> list[tuple[float, str, str]]:
        """Every charge to the tenant: ``(epsilon, what, at)``, oldest first (for audits)."""
        with self._lock:
            rows = self._db.execute(
                "select epsilon, what, at from dp_ledger where tenant = ? order by rowid",
                (tenant,),
            ).fetchall()
        return [(float(e), str(w), str(a)) for e, w, a in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> PrivacyBudget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _calibrated(make: Callable[[float], Any], d_in: float, epsilon: float) -> Any:
    """The measurement with the smallest noise scale whose proven loss at ``d_in`` is at most
    ``epsilon`` (OpenDP's own accounting, float rounding included)."""
    return dp.binary_search_chain(make, d_in=d_in, d_out=epsilon)


def dp_counts(
    tenant: str,
    counts: Mapping[str, int],
    epsilon: float,
    budget: PrivacyBudget,
    *,
    sensitivity: int = 1,
    categories: Iterable[str] | None = None,
    agent_id: str | None = None,
) -> dict[str, int]:
    """``epsilon``-DP counts (e.g. memories per tag or topic), clipped at 0 afterwards.

    ``sensitivity`` bounds the L1 change of all counts together when one memory is added or
    removed: 1 for one topic per memory, ``k`` when a memory carries up to ``k`` tags (cap
    the tags counted per memory at ``k`` before counting). Discrete Laplace noise of scale
    ``sensitivity / epsilon`` is added to each count.

    ``agent_id``, when given, is charged too (its share of the tenant's budget).

    The released keys are ``categories`` when given (missing ones count 0, others are left
    out), else the keys of ``counts``. Which keys exist is itself data: pass a public list of
    categories (the configured topics, a tag vocabulary) unless the keys are public anyway.
    """
    epsilon = _check_epsilon(epsilon)
    if isinstance(sensitivity, bool) or not isinstance(sensitivity, int) or sensitivity < 1:
        raise ValueError(f"sensitivity must be an int >= 1, got {sensitivity!r}")
    keys = list(dict.fromkeys(categories)) if categories is not None else list(counts)
    true = [int(counts.get(k, 0)) for k in keys]
    if any(not 0 <= c < 2**63 for c in true):  # checked before spending: fail for free
        raise ValueError("counts must be ints in [0, 2**63)")
    if not keys:
        return {}
    space = dp.vector_domain(dp.atom_domain(T="i64")), dp.l1_distance(T="i64")
    meas = _calibrated(lambda s: dp.m.make_laplace(*space, scale=s), sensitivity, epsilon)
    budget.spend(
        tenant,
        epsilon,
        what=f"dp_counts n={len(keys)} sensitivity={sensitivity}",
        agent_id=agent_id,
    )
    noisy = meas(true)
    return {k: max(0, int(v)) for k, v in zip(keys, noisy, strict=True)}


def dp_mean(
    tenant: str,
    values: Sequence[float],
    lower: float,
    upper: float,
    epsilon: float,
    budget: PrivacyBudget,
) -> float:
    """``epsilon``-DP mean of ``values`` clamped to ``[lower, upper]`` (e.g. usefulness).

    Half the budget goes to a noisy clamped sum, half to a noisy count (how many memories is
    itself private); the result is their ratio, clamped to ``[lower, upper]`` (post-
    processing). NaNs are left out. With few values the answer is mostly noise.
    """
    epsilon = _check_epsilon(epsilon)
    lower, upper = float(lower), float(upper)
    if not (math.isfinite(lower) and math.isfinite(upper) and lower < upper):
        raise ValueError(f"need finite bounds with lower < upper, got {lower!r}, {upper!r}")
    data = [float(v) for v in values if not math.isnan(float(v))]
    space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.symmetric_distance()
    clamped_sum = space >> dp.t.then_clamp((lower, upper)) >> dp.t.then_sum()
    count = space >> dp.t.then_count()
    meas = dp.c.make_composition(
        [
            _calibrated(lambda s: clamped_sum >> dp.m.then_laplace(scale=s), 1, epsilon / 2),
            _calibrated(lambda s: count >> dp.m.then_laplace(scale=s), 1, epsilon / 2),
        ]
    )
    if meas.map(1) > epsilon * (1 + _SLACK):  # pragma: no cover - OpenDP's accounting guards it
        raise RuntimeError("composed mean measurement exceeds its epsilon")
    budget.spend(tenant, epsilon, what=f"dp_mean bounds=[{lower:g}, {upper:g}]")
    noisy_sum, noisy_count = meas(data)
    mean = float(noisy_sum) / max(1, int(noisy_count))
    return min(upper, max(lower, mean))
