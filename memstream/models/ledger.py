"""The pool's credit ledger: reading costs credits, contributions rated helpful earn them.

Built only from events on the log, so a replay of the same events rebuilds it exactly:

- a **delivery** (`memstream.deliveries`) costs its recipient `delivery_cost`;
- `used` or `helped` **feedback** (`memstream.feedback`) on another agent's memory costs the
  rater `use_cost` (it took the memory) and earns the author `helped_reward` or
  `used_reward`, times the rater's trust as reputation weighs it now (`ReputationBook.
  rater_weight`, read when a balance is: a ring's praise earns nothing where the tenant has
  seeds, and the balance does not depend on the order events came in); feedback on one's
  own memory counts for nothing;
- every agent starts at `initial_credit`.

Each event counts once (by event id). Off by default: a tenant turns it on with
`MEMSTREAM_LEDGER_TENANTS`; the rules are `Settings.ledger_*` (docs/models.md, "Ledger").
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from memstream.store.sqlite_file import SqliteFile


@dataclass(frozen=True)
class LedgerRules:
    initial_credit: float = 100.0
    delivery_cost: float = 1.0
    use_cost: float = 1.0
    helped_reward: float = 3.0
    used_reward: float = 1.0


@dataclass(frozen=True)
class Balance:
    tenant: str
    agent_id: str
    balance: float
    earned: float
    spent: float
    entries: int


class Ledger:
    def __init__(
        self,
        path: Path | None = None,
        rules: LedgerRules | None = None,
        rater_weight: Callable[[str, str], float] | None = None,
    ) -> None:
        """`rater_weight(tenant, rater)`: how far a rater's praise earns its author credit
        (the reputation book's; 1 for everyone without one)."""
        self.rules = rules or LedgerRules()
        self.rater_weight = rater_weight or (lambda tenant, rater: 1.0)
        self._lock = threading.Lock()
        self._seen: set[str] = set()
        # (tenant, agent) -> entries (amount, rater whose trust scales it, or "")
        self._accounts: dict[tuple[str, str], list[tuple[float, str]]] = {}
        self._db = (
            SqliteFile(
                path,
                [
                    "create table if not exists entries (event_id text, tenant text, agent "
                    "text, amount real, rater text, primary key (event_id, agent))"
                ],
            )
            if path is not None
            else None
        )
        self._loaded = 0
        self.refresh()

    def refresh(self) -> None:
        """Take in what another process (the sink's learner) wrote since."""
        if self._db is None:
            return
        with self._lock:
            rows, self._loaded = self._db.rows_since(
                "entries", "event_id, tenant, agent, amount, rater", self._loaded
            )
            for event_id, tenant, agent, amount, rater in rows:
                if f"{event_id}/{agent}" not in self._seen:
                    self._seen.add(f"{event_id}/{agent}")
                    self._accounts.setdefault((tenant, agent), []).append((amount, rater))

    def _post(self, event_id: str, tenant: str, entries: list[tuple[str, float, str]]) -> bool:
        with self._lock:
            fresh = [e for e in entries if f"{event_id}/{e[0]}" not in self._seen and e[1]]
            if not fresh:
                return False
            if self._db is not None:
                with self._db.transaction() as db:
                    db.executemany(
                        "insert or ignore into entries values (?, ?, ?, ?, ?)",
                        [(event_id, tenant, a, x, r) for a, x, r in fresh],
                    )
            for agent, amount, rater in fresh:
                self._seen.add(f"{event_id}/{agent}")
                self._accounts.setdefault((tenant, agent), []).append((amount, rater))
        return True

    def delivery(self, event_id: str, tenant: str, recipient: str) -> bool:
        """A delivery event: its recipient pays for the read."""
        return self._post(event_id, tenant, [(recipient, -self.rules.delivery_cost, "")])

    def feedback(self, event_id: str, tenant: str, rater: str, author: str, outcome: str) -> bool:
        """A feedback event on `author`'s memory; only `used` and `helped` move credit."""
        if rater == author or outcome not in ("used", "helped"):
            return False
        reward = self.rules.helped_reward if outcome == "helped" else self.rules.used_reward
        return self._post(
            event_id, tenant, [(rater, -self.rules.use_cost, ""), (author, reward, rater)]
        )

    def balance(self, tenant: str, agent_id: str) -> Balance:
        with self._lock:
            entries = list(self._accounts.get((tenant, agent_id), []))
        earned = spent = 0.0
        for amount, rater in entries:
            value = amount * (
                min(max(self.rater_weight(tenant, rater), 0.0), 1.0) if rater else 1.0
            )
            if value >= 0:
                earned += value
            else:
                spent -= value
        return Balance(
            tenant,
            agent_id,
            round(self.rules.initial_credit + earned - spent, 6),
            round(earned, 6),
            round(spent, 6),
            len(entries),
        )

    def tenant_balances(self, tenant: str) -> list[Balance]:
        with self._lock:
            agents = sorted(a for t, a in self._accounts if t == tenant)
        return [self.balance(tenant, a) for a in agents]

    def to_dict(self) -> dict[str, float]:
        with self._lock:
            keys = sorted(self._accounts)
        return {f"{t}/{a}": self.balance(t, a).balance for t, a in keys}
