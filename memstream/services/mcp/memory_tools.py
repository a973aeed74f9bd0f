"""The tools that add, search, read, delete and rate memories."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field

from memstream.services.mcp.session import ClientFor, _api, _dump


def add_memory_tools(server: MCPServer[Any], client_for: ClientFor) -> None:
    """Register these tools on `server`; they call the API through `client_for`."""

    @server.tool()
    async def add_memory(
        text: Annotated[
            str, Field(description="the memory: one self-contained statement in plain language")
        ],
        ctx: Context,
        scope: Annotated[
            str,
            Field(
                description='who may read it: "tenant" (every agent of your tenant), "private" '
                '(only your agent), "team:<name>" (a team you are in) or "public" (everyone)'
            ),
        ] = "tenant",
        tags: Annotated[
            list[str] | None, Field(description='short labels to filter by, e.g. ["infra"]')
        ] = None,
        topic: Annotated[
            str | None, Field(description='a topic grouping related memories, e.g. "deploys"')
        ] = None,
        ttl: Annotated[
            float | None, Field(description="seconds the memory lives; omit for no expiry")
        ] = None,
    ) -> dict[str, Any]:
        """Share something durable you learned (a fact, a decision, a fix, a preference) so
        that other agents, and you later, can find it with search_memory. Returns
        {"memory_id": ...}; the memory is indexed asynchronously and becomes searchable and
        readable with get_memory about a second later."""
        async with _api(client_for, ctx) as api:
            memory_id = await api.add(text, scope=scope, tags=tags or [], topic=topic, ttl=ttl)
        return {"memory_id": str(memory_id), "status": "accepted; searchable within seconds"}

    @server.tool()
    async def search_memory(
        query: Annotated[
            str, Field(description="what you are looking for, as a question or description")
        ],
        ctx: Context,
        k: Annotated[int, Field(description="how many results at most (1-100)")] = 5,
        mode: Annotated[
            str,
            Field(
                description='"episodic" (memories), "knowledge" (facts consolidated from '
                'related memories, with provenance) or "auto"'
            ),
        ] = "episodic",
    ) -> dict[str, Any]:
        """Find memories relevant to a question or topic, by meaning (not only keywords).
        Use it before answering from assumptions about facts other agents may have recorded.
        Returns {"results": [{memory_id, text, score, agent_id, scope, tags, verification,
        kind, provenance}, ...]}, best first (higher score is more relevant); an empty list
        means nothing visible to you matched. A result marked "refuted" states a claim the
        verifiers found false."""
        async with _api(client_for, ctx) as api:
            hits = await api.search(query, k=k, mode=mode)
        return {"results": [_dump(h) for h in hits]}

    @server.tool()
    async def get_memory(
        memory_id: Annotated[str, Field(description="the memory's id (a UUID)")], ctx: Context
    ) -> dict[str, Any]:
        """Read one memory in full by its id (from search_memory, list_memories or a
        delivery): text, author agent_id, scope, topic, tags, metadata, timestamps and
        usefulness. Fails with "not found" when it does not exist, is not indexed yet, was
        deleted, or is not visible to you."""
        async with _api(client_for, ctx) as api:
            return _dump(await api.get(memory_id))

    @server.tool()
    async def list_memories(
        ctx: Context,
        topic: Annotated[str | None, Field(description="only memories of this topic")] = None,
        agent: Annotated[
            str | None, Field(description="only memories written by this agent id")
        ] = None,
        since: Annotated[
            datetime | None,
            Field(description='only memories from this time on (ISO 8601, "2025-01-31T09:00Z")'),
        ] = None,
        limit: Annotated[int, Field(description="page size (1-1000)")] = 20,
        cursor: Annotated[
            str | None, Field(description="next_cursor of the previous page, to continue")
        ] = None,
    ) -> dict[str, Any]:
        """Browse the memories visible to you, oldest first, optionally narrowed by topic,
        author or time (to find by meaning, use search_memory). Returns {"memories": [...],
        "next_cursor": ...}; a null next_cursor means there are no more pages."""
        async with _api(client_for, ctx) as api:
            page = await api.list(topic=topic, agent=agent, since=since, limit=limit, cursor=cursor)
        return _dump(page)

    @server.tool()
    async def delete_memory(
        memory_id: Annotated[str, Field(description="the memory's id (a UUID)")], ctx: Context
    ) -> dict[str, Any]:
        """Delete a memory that is wrong or obsolete; only its author (or an admin) may.
        It leaves search and reads within seconds. Returns {"deleted": memory_id,
        "event_id": ...}."""
        async with _api(client_for, ctx) as api:
            event_id = await api.delete(memory_id)
        return {"deleted": memory_id, "event_id": str(event_id)}

    @server.tool()
    async def give_feedback(
        memory_id: Annotated[str, Field(description="the memory's id (a UUID)")],
        outcome: Annotated[
            Literal["used", "helped", "wrong", "ignored"],
            Field(
                description='"used": you used it; "helped": it improved your answer; "wrong": '
                'it was incorrect or misleading; "ignored": it was irrelevant'
            ),
        ],
        ctx: Context,
    ) -> dict[str, Any]:
        """Say how a memory served you, after relying on (or rejecting) one from
        search_memory or a delivery; it improves the ranking for every agent. Returns
        {"event_id": ...}."""
        async with _api(client_for, ctx) as api:
            event_id = await api.feedback(memory_id, outcome)
        return {"event_id": str(event_id)}
