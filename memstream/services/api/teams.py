"""A team's pooled state."""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, HTTPException, Path

from memstream.schemas.events import PooledStatePayload
from memstream.services.api.backend import Backend
from memstream.services.api.identity import Reader, require_member


def add_team_routes(api: FastAPI, backend: Backend) -> None:
    @api.get("/v1/teams/{team}/pooled", response_model=PooledStatePayload)
    async def pooled_state(
        team: Annotated[str, Path(min_length=1, max_length=128)], who: Reader
    ) -> PooledStatePayload:
        """The team's pooled memory state (attention over its members' states, updated by
        every team-scoped memory; also on `memstream.pooled`). Members of the team only."""
        require_member(who, f"team:{team}")
        found = backend.pooled_state(who, team)
        if found is None:
            raise HTTPException(404, f"no pooled state for team {team!r} on this worker yet")
        return found
