"""Routes that write and read memories: publish, search, pages, history, export, import."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import StreamingResponse

from memstream.retrieval.modes import KnowledgeItem, candidates_for, consolidate, resolve_mode
from memstream.schemas.answers import (
    MemoryHistory,
    MemoryPage,
    MemoryView,
    SearchResult,
    SearchResults,
)
from memstream.schemas.events import Memory, MemoryPayload, Observation, ObservationPayload, utc_now
from memstream.schemas.topics import MEMORIES, OBSERVATIONS
from memstream.services.api.backend import Backend, Publish
from memstream.services.api.bodies import (
    Accepted,
    ImportIn,
    ImportOutcome,
    ImportResult,
    MemoryIn,
    ObservationIn,
)
from memstream.services.api.identity import Reader, Writer, require_member
from memstream.services.import_rows import BadRow, export_row, memory_from_row, parse_line
from memstream.store.base import Caller
from memstream.streams.privacy_stage import without_secrets


def add_memory_routes(
    api: FastAPI, backend: Backend, publish: Publish, max_body_bytes: int
) -> None:
    @api.post("/v1/memories", status_code=202, response_model=Accepted)
    async def post_memory(body: MemoryIn, who: Writer) -> Accepted:
        """Share a memory; it is validated, scrubbed, embedded and indexed asynchronously.
        A `team:<x>` scope needs membership of team x (403 otherwise)."""
        require_member(who, body.scope)
        event = Memory(
            tenant=who.tenant,
            agent_id=who.agent_id,
            scope=body.scope,
            payload=MemoryPayload(
                **body.model_dump(exclude={"scope", "ttl"}),
                expires_at=utc_now() + timedelta(seconds=body.ttl) if body.ttl else None,
            ),
        )
        event = without_secrets(event)  # a pasted key never reaches the log
        await publish(MEMORIES.name, event, who.agent_id)
        return Accepted(event_id=event.event_id)

    @api.post("/v1/observations", status_code=202, response_model=Accepted)
    async def post_observation(body: ObservationIn, who: Writer) -> Accepted:
        require_member(who, body.scope)
        payload = ObservationPayload(**body.model_dump(exclude={"scope"}))
        event = without_secrets(
            Observation(tenant=who.tenant, agent_id=who.agent_id, scope=body.scope, payload=payload)
        )
        await publish(OBSERVATIONS.name, event, who.agent_id)
        return Accepted(event_id=event.event_id)

    @api.get("/v1/search", response_model=SearchResults)
    async def search(
        who: Reader,
        q: Annotated[str, Query(min_length=1, max_length=4096)],
        k: Annotated[int, Query(ge=1, le=100)] = 10,
        topic: Annotated[list[str] | None, Query(max_length=32)] = None,
        tag: Annotated[list[str] | None, Query(max_length=32)] = None,
        as_of: Annotated[
            datetime | None,
            Query(description="the memories valid at this time (ISO 8601 with a zone)"),
        ] = None,
        mode: Annotated[
            Literal["episodic", "knowledge", "auto"],
            Query(description="memories, consolidated facts, or by the query (auto)"),
        ] = "episodic",
    ) -> SearchResults:
        """Hybrid search over the memories this caller may see; `topic` and `tag` (each
        repeatable, any of) narrow it; `as_of` searches the memories valid then, so a
        superseded value is found as of the time it held."""
        if as_of is not None and as_of.tzinfo is None:
            raise HTTPException(422, "as_of needs a time zone, e.g. 2026-01-01T00:00:00Z")
        if resolve_mode(q, mode) == "knowledge":
            wide = await backend.search(
                who, q, candidates_for(k), topics=topic or None, tags=tag or None, as_of=as_of
            )
            return SearchResults(results=[fact_result(f, who) for f in consolidate(wide, k)])
        results = await backend.search(
            who, q, k, topics=topic or None, tags=tag or None, as_of=as_of
        )
        return SearchResults(
            results=[
                SearchResult(
                    memory_id=r.memory.memory_id,
                    text=backend.visible_text(r.memory, who),
                    score=round(r.score, 6),
                    agent_id=r.memory.agent_id,
                    scope=r.memory.scope,
                    tags=r.memory.tags,
                    valid_from=r.memory.valid_from,
                    valid_to=r.memory.valid_to,
                    verification=r.memory.verification,
                )
                for r in results
            ]
        )

    def fact_result(fact: KnowledgeItem, who: Caller) -> SearchResult:
        """A consolidated fact as this reader may see it: each member's visible text, in
        the order they were written."""
        members = sorted(fact.members, key=lambda h: h.memory.valid_from or h.memory.ts)
        top = fact.members[0].memory
        return SearchResult(
            memory_id=top.memory_id,
            text=" \u2026 ".join(backend.visible_text(h.memory, who) for h in members),
            score=round(fact.score, 6),
            agent_id=top.agent_id,
            scope=top.scope,
            tags=sorted({t for h in fact.members for t in h.memory.tags}),
            kind="fact",
            provenance=list(fact.provenance),
        )

    def view(memory: Any, who: Caller) -> MemoryView:
        return MemoryView(
            memory_id=memory.memory_id,
            text=backend.visible_text(memory, who),
            agent_id=memory.agent_id,
            scope=memory.scope,
            topic=memory.topic,
            tags=memory.tags,
            metadata={k: v for k, v in memory.metadata.items() if k != "context"},
            ts=memory.ts,
            valid_from=memory.valid_from,
            valid_to=memory.valid_to,
            expires_at=memory.expires_at,
            usefulness=round(memory.usefulness, 6),
            supersedes=[UUID(i) for i in memory.supersedes],
            auto_tags=list(memory.auto_tags),
            links=[UUID(link["memory_id"]) for link in memory.links],
        )

    async def readable(who: Caller, memory_id: UUID) -> Any:
        memory = await backend.visible(who, memory_id)
        if memory is None:
            raise HTTPException(404, f"no memory {memory_id} visible to this agent")
        return memory

    @api.get("/v1/memories/{memory_id}", response_model=MemoryView)
    async def get_memory(memory_id: UUID, who: Reader) -> MemoryView:
        """One memory, if this caller may see it (404 otherwise: not found and not yours
        look the same)."""
        return view(await readable(who, memory_id), who)

    @api.get("/v1/memories", response_model=MemoryPage)
    async def list_memories(
        who: Reader,
        topic: Annotated[str | None, Query(max_length=128)] = None,
        agent: Annotated[str | None, Query(max_length=128)] = None,
        tag: Annotated[list[str] | None, Query(max_length=32)] = None,
        since: datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: Annotated[str | None, Query(max_length=64)] = None,
    ) -> MemoryPage:
        """The memories this caller may see, oldest first, a page at a time; narrowed to a
        topic, an author (`agent`), tags (any of) and a creation time (`since`)."""
        try:
            start = UUID(cursor) if cursor else None
        except ValueError:
            raise HTTPException(400, f"cursor {cursor[:64]!r} is not one this API gave") from None
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        memories, following = await backend.page(
            who, limit, start, topic=topic, agent=agent, tags=tag or None, since=since
        )
        return MemoryPage(
            memories=[view(m, who) for m in memories],
            next_cursor=str(following) if following else None,
        )

    @api.get("/v1/memories/{memory_id}/history", response_model=MemoryHistory)
    async def memory_history(memory_id: UUID, who: Reader) -> MemoryHistory:
        """The versions of a memory: the ones it superseded and the ones that superseded
        it, oldest first, each with its valid-from and valid-to."""
        await readable(who, memory_id)
        chain = await backend.history(who, memory_id)
        return MemoryHistory(memory_id=memory_id, versions=[view(m, who) for m in chain])

    @api.delete("/v1/memories/{memory_id}", status_code=202, response_model=Accepted)
    async def delete_memory(memory_id: UUID, who: Writer) -> Accepted:
        """Delete a memory: its author may, or a token with the admin clearance of its
        tenant. The deletion is an event on the log (a replay honours it); it leaves search
        within moments (poll `GET /v1/memories/{id}` for 404)."""
        memory = await readable(who, memory_id)
        if memory.agent_id != who.agent_id and "admin" not in who.clearance:
            raise HTTPException(403, "only the memory's author or an admin may delete it")
        event_id = await backend.delete(who.tenant, who.agent_id, [memory_id], "deleted")
        return Accepted(event_id=event_id)

    @api.get("/v1/topics")
    async def topics(who: Reader) -> dict[str, Any]:
        """Topics of the memories this caller may see, with exact counts (its own view;
        `/v1/aggregates` is the differentially private one for sharing)."""
        return {"topics": await backend.topics(who)}

    @api.get("/v1/export")
    async def export(
        who: Reader,
        topic: Annotated[str | None, Query(max_length=128)] = None,
        since: datetime | None = None,
    ) -> StreamingResponse:
        """Every memory this caller may see as JSON lines (`memstream import` reads them
        back), streamed a page at a time."""

        async def lines() -> Any:
            start: UUID | None = None
            while True:
                memories, start = await backend.page(who, 500, start, topic=topic, since=since)
                for memory in memories:
                    row = export_row(memory, backend.visible_text(memory, who))
                    yield (json.dumps(row, ensure_ascii=False) + "\n").encode()
                if start is None:
                    return

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    @api.post("/v1/import", response_model=ImportResult)
    async def import_rows(body: ImportIn, who: Writer) -> ImportResult:
        """Bring memories in, a batch of lines at a time (`memstream import` sends them):
        each row becomes a memory with an id derived from (tenant, its id), so importing a
        file twice changes nothing; a bad row is dead-lettered with its line number."""
        outcomes = []
        for row in body.rows:
            try:
                if row.size is not None:
                    raise BadRow(
                        "too_large", f"row of {row.size} bytes; the limit is {max_body_bytes}"
                    )
                event = without_secrets(
                    memory_from_row(parse_line(row.data), who, default_scope=body.default_scope)
                )
                await publish(MEMORIES.name, event, who.agent_id)
                outcomes.append(
                    ImportOutcome(line=row.line, status="accepted", memory_id=event.event_id)
                )
            except BadRow as bad:
                await backend.dead_letter_row(
                    who, body.source, row.line, row.data, bad.reason, bad.detail
                )
                outcomes.append(
                    ImportOutcome(
                        line=row.line, status="dead_letter", reason=bad.reason, detail=bad.detail
                    )
                )
        accepted = sum(1 for o in outcomes if o.status == "accepted")
        return ImportResult(
            accepted=accepted, dead_lettered=len(outcomes) - accepted, rows=outcomes
        )
