"""Contributor reputation: how the memories an agent wrote fared, by whom they were rated.

Feedback is an edge rater -> author (`helped` +1, `used` +0.5, `wrong` -1, `ignored` 0: a
memory returned and not used was most often just off-topic for that question, which says
nothing of its author; the valuation learns from it instead).
An agent's own feedback on its own memories is dropped, and each feedback event counts once
(at-least-once delivery redelivers). A rating weighs what its rater is trusted for, and
trust comes from EigenTrust (Kamvar et al., 2003): each rater spreads one unit of trust over
the authors it rated positively (net of its negative ratings), and trust flows from the
tenant's **seeds**, the raters it trusts a priori (`MEMSTREAM_REPUTATION_SEEDS`), with
damping 0.15. A ring of agents that only rate each other receives no trust from outside
itself, so its ratings weigh nothing and its members stay where nobody rated them (0.5).
Without seeds every agent is pre-trusted alike (plain EigenTrust), and rings are then not
resisted: the docs say so.

reputation = (good + 1) / (good + bad + 2), where good and bad are the author's ratings, each
weighted by its rater's trust relative to the most trusted rater of the tenant. A function
of the set of feedback events only (not of their order), so replaying the log rebuilds it
exactly. Keyed by tenant: one agent id may exist in many tenants.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from memstream.store.sqlite_file import SqliteFile

RATING = {"helped": 1.0, "used": 0.5, "wrong": -1.0, "ignored": 0.0}
DAMPING = 0.15
ITERATIONS = 60
QUARANTINE_BELOW = 0.1
"""Default floor: under it (in a tenant with seeds) an author's shared memories leave search."""
REFRESH_S = 5.0
"""How often a reader picks up what another process (the sink's learner) wrote."""


@dataclass
class _Tenant:
    # (rater, author) -> [positive, negative] sums of ratings
    edges: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    cached: dict[str, float] | None = None
    trust: dict[str, float] | None = None


@dataclass(frozen=True)
class Standing:
    """One agent's reputation and what it rests on (for `GET /v1/agents/{id}/reputation`)."""

    tenant: str
    agent_id: str
    reputation: float
    trust: float
    """as a rater, relative to the most trusted rater of the tenant (0-1)"""
    ratings_received: int
    weighted_good: float
    weighted_bad: float
    seeded: bool


class ReputationBook:
    def __init__(
        self,
        path: Path | None = None,
        seeds: Mapping[str, Iterable[str]] | None = None,
        floor: float = QUARANTINE_BELOW,
    ) -> None:
        """`path`: a SQLite file that keeps every counted feedback event (so a restarted
        worker has the same reputations); None keeps them in memory. `seeds`: tenant ->
        the agents whose ratings are trusted a priori."""
        self.seeds = {t: frozenset(a) for t, a in (seeds or {}).items()}
        self.floor = floor
        self._tenants: dict[str, _Tenant] = {}
        self._counts: dict[tuple[str, str, str], int] = {}  # (tenant, rater, author) -> n
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self.self_feedback_ignored = 0
        self._db = (
            SqliteFile(
                path,
                [
                    "create table if not exists feedback (event_id text primary key, tenant "
                    "text, author text, rater text, outcome text)"
                ],
            )
            if path is not None
            else None
        )
        self._loaded_rowid = 0
        self._refreshed_at = 0.0
        self.refresh()

    def refresh(self) -> None:
        """Count the events another process (the sink's learner) added to the file since."""
        if self._db is None:
            return
        self._refreshed_at = time.monotonic()
        with self._lock:
            rows, self._loaded_rowid = self._db.rows_since(
                "feedback", "event_id, tenant, author, rater, outcome", self._loaded_rowid
            )
            for event_id, tenant, author, rater, outcome in rows:
                if event_id not in self._seen:
                    self._add(event_id, tenant, author, rater, outcome)

    def record(
        self,
        tenant: str,
        author: str,
        outcome: str,
        rater: str | None = None,
        event_id: str | None = None,
    ) -> bool:
        """Count one feedback event on a memory `author` wrote; False if it does not count
        (the author rating itself, or an event already counted). `rater=None` (legacy
        callers) counts as an anonymous rater with the weight of an unseeded one."""
        if outcome not in RATING:
            raise ValueError(f"unknown feedback outcome {outcome!r}")
        rater = rater if rater is not None else "?"
        if rater == author:
            self.self_feedback_ignored += 1
            return False
        with self._lock:
            if event_id is not None and event_id in self._seen:
                return False
            if self._db is not None and event_id is not None:
                with self._db.transaction() as db:
                    db.execute(
                        "insert or ignore into feedback values (?, ?, ?, ?, ?)",
                        (event_id, tenant, author, rater, outcome),
                    )
            self._add(event_id, tenant, author, rater, outcome)
        return True

    def _add(
        self, event_id: str | None, tenant: str, author: str, rater: str, outcome: str
    ) -> None:
        if event_id is not None:
            self._seen.add(event_id)
        book = self._tenants.setdefault(tenant, _Tenant())
        value = RATING[outcome]
        sums = book.edges.setdefault((rater, author), [0.0, 0.0])
        if value:
            sums[0 if value > 0 else 1] += abs(value)
        key = (tenant, rater, author)
        self._counts[key] = self._counts.get(key, 0) + 1
        book.cached = None
        book.trust = None

    # --- reading ---------------------------------------------------------------------------

    def get(self, tenant: str, agent_id: str) -> float:
        """Reputation in [0, 1]; 0.5 for an agent nobody (trusted) has rated."""
        return self._scores(tenant).get(agent_id, 0.5)

    def quarantined(self, tenant: str, agent_id: str) -> bool:
        """Whether `agent_id`'s memories are out of the tenant's searches: its reputation
        fell under the floor, by the ratings of raters the tenant's seeds vouch for. Never in
        a tenant without seeds: there any group of agents could sink anyone."""
        return bool(self.seeds.get(tenant)) and self.get(tenant, agent_id) < self.floor

    def rater_weight(self, tenant: str, rater: str) -> float:
        """How far `rater`'s feedback is trusted (0-1): its trust relative to the tenant's
        most trusted rater where the tenant has seeds; 1 where it has none (plain EigenTrust
        trust would only reorder honest raters there)."""
        if not self.seeds.get(tenant):
            return 1.0
        self._scores(tenant)
        with self._lock:
            trust = dict(self._tenants.get(tenant, _Tenant()).trust or {})
        top = max(trust.values(), default=0.0)
        return trust.get(rater, 0.0) / top if top > 0 else 0.0

    def standing(self, tenant: str, agent_id: str) -> Standing:
        scores = self._scores(tenant)
        with self._lock:
            book = self._tenants.get(tenant, _Tenant())
            trust = dict(book.trust or {})
            edges = [(r, s) for (r, a), s in book.edges.items() if a == agent_id]
        top = max(trust.values(), default=0.0)
        weight = {r: (t / top if top > 0 else 0.0) for r, t in trust.items()}
        good = sum(weight.get(r, 0.0) * s[0] for r, s in edges)
        bad = sum(weight.get(r, 0.0) * s[1] for r, s in edges)
        received = sum(n for (t, _, a), n in self._counts.items() if t == tenant and a == agent_id)
        return Standing(
            tenant,
            agent_id,
            round(scores.get(agent_id, 0.5), 6),
            round(weight.get(agent_id, 0.0), 6),
            received,
            round(good, 6),
            round(bad, 6),
            agent_id in self.seeds.get(tenant, frozenset()),
        )

    def to_dict(self) -> dict[str, float]:
        """Every rated agent's reputation, `tenant/agent` -> value (to compare two books)."""
        with self._lock:
            tenants = list(self._tenants)
        return {
            f"{t}/{a}": round(v, 9)
            for t in sorted(tenants)
            for a, v in sorted(self._scores(t).items())
        }

    def _scores(self, tenant: str) -> dict[str, float]:
        if self._db is not None and time.monotonic() - self._refreshed_at > REFRESH_S:
            self.refresh()
        with self._lock:
            book = self._tenants.get(tenant)
            if book is None:
                return {}
            if book.cached is None:
                book.trust = self._trust(tenant, book)
                book.cached = self._reputations(book)
            return book.cached

    def _trust(self, tenant: str, book: _Tenant) -> dict[str, float]:
        """EigenTrust: t = (1 - a) C^T t + a p, C the raters' normalised net positive
        ratings, p the seeds (every agent when the tenant has none)."""
        agents = sorted({x for edge in book.edges for x in edge})
        index = {a: i for i, a in enumerate(agents)}
        n = len(agents)
        seeds = [index[s] for s in self.seeds.get(tenant, frozenset()) if s in index]
        p = np.zeros(n)
        if seeds:
            p[seeds] = 1.0 / len(seeds)
        else:
            p[:] = 1.0 / n
        rows = np.array([index[r] for r, _ in book.edges], dtype=np.int64)
        cols = np.array([index[a] for _, a in book.edges], dtype=np.int64)
        net = np.array([max(pos - neg, 0.0) for pos, neg in book.edges.values()])
        out = np.bincount(rows, weights=net, minlength=n)
        share = np.where(out[rows] > 0, net / np.where(out[rows] > 0, out[rows], 1.0), 0.0)
        dangling = out <= 0  # no net positive rating: passes its trust on to the seeds
        t = p.copy()
        for _ in range(ITERATIONS):
            flow = np.bincount(cols, weights=share * t[rows], minlength=n)
            t = (1.0 - DAMPING) * (flow + t[dangling].sum() * p) + DAMPING * p
        return {a: float(t[i]) for a, i in index.items()}

    @staticmethod
    def _reputations(book: _Tenant) -> dict[str, float]:
        trust = book.trust or {}
        top = max(trust.values(), default=0.0)
        good: dict[str, float] = {}
        bad: dict[str, float] = {}
        for (rater, author), (pos, neg) in sorted(book.edges.items()):
            w = trust.get(rater, 0.0) / top if top > 0 else 0.0
            good[author] = good.get(author, 0.0) + w * pos
            bad[author] = bad.get(author, 0.0) + w * neg
        return {a: (good[a] + 1.0) / (good[a] + bad[a] + 2.0) for a in good}
