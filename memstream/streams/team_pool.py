"""The pooled team memory stage (sink role): each team-scoped memory joins its author's
memory tokens in the team (its latest memories, `TeamStates.memory_team`), and the team's
tokens are pooled by attention (models/team_state.py) into the shared team state published
on `memstream.pooled`, with each member's share of the attention (`influence`).

One ONNX run per batch for every team the batch touched. The states live in the worker's
memory: a restarted worker starts them empty and rebuilds them from the memories that
follow (a replay of `memstream.indexed` rebuilds them exactly, in log order). The latest
pooled state per team is kept for `GET /v1/teams/{team}/pooled`, which only the team's
members may read.
"""

from __future__ import annotations

import base64

import numpy as np

from memstream.logging import get_logger
from memstream.models.compression import decode_vector
from memstream.models.team_state import TeamPooler, TeamStates
from memstream.schemas.events import Indexed, PooledState, PooledStatePayload
from memstream.streams.enrich import about

log = get_logger("memstream.team_pool")


class TeamPoolStage:
    def __init__(self, pooler: TeamPooler | None = None, states: TeamStates | None = None) -> None:
        self._pooler = pooler
        self.states = states or TeamStates()
        self.latest: dict[tuple[str, str], PooledStatePayload] = {}

    @property
    def pooler(self) -> TeamPooler:
        if self._pooler is None:  # built on the first team memory: most tenants have none
            self._pooler = TeamPooler(spin=False)
        return self._pooler

    def update(self, records: list[Indexed]) -> list[PooledState]:
        """Fold the batch's team memories into their authors' states; one pooled state per
        team touched, keyed by the last memory that touched it."""
        touched: dict[tuple[str, str], Indexed] = {}
        for record in records:
            if not record.scope.startswith("team:") or record.payload.duplicate_of is not None:
                continue
            team = record.scope[5:]
            vector = decode_vector(base64.b64decode(record.payload.vector_b64))
            try:
                self.states.update(
                    record.tenant, team, record.agent_id, vector, record.ts.timestamp()
                )
            except ValueError:
                log.warning("memory left out of its team state", memory_id=str(record.event_id))
                continue
            touched[(record.tenant, team)] = record
        if not touched:
            return []
        keys = list(touched)
        teams = [self.states.memory_team(t, team) for t, team in keys]
        pooled = self.pooler.pool([t.states for t in teams])
        events = []
        for (tenant, team), tokens, result in zip(keys, teams, pooled, strict=True):
            last = touched[(tenant, team)]
            payload = PooledStatePayload(
                team=team,
                members=list(tokens.members),
                influence=[round(float(x), 6) for x in tokens.influence(result.agent_influence)],
                vector_b64=base64.b64encode(np.asarray(result.vector, "<f4").tobytes()).decode(),
                dim=int(result.vector.shape[0]),
                updated_by=last.event_id,
                model=self.pooler.version,
            )
            self.latest[(tenant, team)] = payload
            events.append(PooledState(**about(last, f"pooled:{team}"), payload=payload))
        return events
