"""The tools for a team's pooled state, student models and the result cache."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field

from memstream.services.mcp.session import ClientFor, _api


def add_team_tools(server: MCPServer[Any], client_for: ClientFor) -> None:
    """Register these tools on `server`; they call the API through `client_for`."""

    @server.tool()
    async def team_state(
        team: Annotated[str, Field(description="one of your teams")],
        ctx: Context,
    ) -> dict[str, Any]:
        """Your team's pooled memory state: which teammates' memories weigh most in what
        the team currently knows ({"members": [...], "influence": [...], ...}, influence in
        the members' order). Only members of the team may read it."""
        async with _api(client_for, ctx) as api:
            return await api.pooled_state(team)

    @server.tool()
    async def get_model(
        name: Annotated[
            str, Field(description="a student policy of your team, e.g. policy-<team>")
        ],
        ctx: Context,
        version: Annotated[int | None, Field(description="default: the current one")] = None,
    ) -> dict[str, Any]:
        """A student policy distilled from your team's experience: {"version", "lineage"
        (which experience offsets and teachers it was fitted on), "onnx_b64" (the ONNX model:
        input `observation` float32 [N, d], output `probabilities`), ...}. Team members only."""
        async with _api(client_for, ctx) as api:
            found = await api.model(name, version)
        return found.model_dump(mode="json")

    @server.tool()
    async def lookup_result(
        task: Annotated[
            str, Field(description="the task you are about to do, as you would put it")
        ],
        ctx: Context,
    ) -> dict[str, Any]:
        """Before doing a task, check whether an agent already did it: returns {"outcome":
        "hit", "result": {...}} with the stored result of a task that means the same and
        names the same values (host, region, number, date, identifier), or {"outcome":
        "miss"} / {"outcome": "rejected", "reason": ...} (a similar task with other values:
        do the work)."""
        async with _api(client_for, ctx) as api:
            found = await api.lookup(task)
        return found.model_dump(mode="json")

    @server.tool()
    async def cache_result(
        task: Annotated[str, Field(description="the task you did")],
        result: Annotated[str, Field(description="its result, self-contained")],
        ctx: Context,
        verification: Annotated[
            str, Field(description='"verified" (checked), "unverified" or "failed"')
        ] = "unverified",
        scope: Annotated[
            str, Field(description='who may reuse it: "tenant", "private", "team:<name>"')
        ] = "tenant",
    ) -> dict[str, Any]:
        """After doing a task, publish its result so that other agents can skip the same
        work (they find it with lookup_result). Returns the stored entry."""
        async with _api(client_for, ctx) as api:
            entry = await api.cache_result(
                task,
                result,
                verification=verification,
                scope=scope,  # type: ignore[arg-type]
            )
        return entry.model_dump(mode="json")
