"""Contributor reputation: how often an agent's memories helped, with a Beta(1, 1) prior.

`helped`/`used` count as successes, `wrong` as a failure, `ignored` as half a failure; an
agent nobody has rated yet is at 0.5. Keyed by `tenant/agent`, since one agent id may
exist in many tenants.
"""

from __future__ import annotations

import threading

_OUTCOME = {"helped": (1.0, 0.0), "used": (0.5, 0.0), "wrong": (0.0, 1.0), "ignored": (0.0, 0.5)}


class ReputationBook:
    def __init__(self, counts: dict[str, list[float]] | None = None) -> None:
        self._counts: dict[str, list[float]] = {k: list(v) for k, v in (counts or {}).items()}
        self._lock = threading.Lock()

    @staticmethod
    def key(tenant: str, agent_id: str) -> str:
        return f"{tenant}/{agent_id}"

    def record(self, tenant: str, agent_id: str, outcome: str) -> None:
        good, bad = _OUTCOME[outcome]
        with self._lock:
            counts = self._counts.setdefault(self.key(tenant, agent_id), [0.0, 0.0])
            counts[0] += good
            counts[1] += bad

    def get(self, tenant: str, agent_id: str) -> float:
        good, bad = self._counts.get(self.key(tenant, agent_id), (0.0, 0.0))
        return (good + 1.0) / (good + bad + 2.0)

    def to_dict(self) -> dict[str, list[float]]:
        with self._lock:
            return {k: list(v) for k, v in self._counts.items()}
