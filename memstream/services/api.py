"""The HTTP API (FastAPI): publish, search, subscribe, stream; bearer-token identities.

Every identity fact (tenant, agent, teams, clearance) comes from the token, never from the
request body, so a client cannot widen what it sees. Malformed requests get a 4xx JSON
error naming the field and never reach the bus; bodies over the limit get 413.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, Protocol
from uuid import UUID

from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from memstream.logging import get_logger
from memstream.models.taxonomy import validate_taxonomy
from memstream.retrieval.modes import KnowledgeItem, candidates_for, consolidate, resolve_mode
from memstream.retrieval.ranking import ScoredMemory
from memstream.schemas.answers import (
    CachedResult,
    CacheLookup,
    Deliveries,
    MemoryHistory,
    MemoryPage,
    MemoryView,
    ModelVersion,
    SearchResult,
    SearchResults,
    SubscriptionView,
)
from memstream.schemas.events import (
    Event,
    FactPayload,
    Feedback,
    FeedbackPayload,
    Memory,
    MemoryPayload,
    Metadata,
    Observation,
    ObservationPayload,
    PooledStatePayload,
    Subscription,
    SubscriptionFilters,
    SubscriptionPayload,
    Tag,
    Text,
    new_event_id,
    utc_now,
)
from memstream.schemas.events import (
    Scope as ScopeStr,
)
from memstream.schemas.topics import (
    FEEDBACK,
    MAX_EVENT_BYTES,
    MEMORIES,
    OBSERVATIONS,
    SUBSCRIPTIONS,
)
from memstream.services import auth
from memstream.services.auth import InvalidToken, TokenStore
from memstream.services.dashboard import mount_dashboard
from memstream.services.gateway import (
    CHECK_S,
    InvalidCursor,
    check_cursor,
    deliveries_for,
    poll_deliveries,
    sse_stream,
)
from memstream.services.http_guard import BodyGuard, CatchAll
from memstream.services.import_rows import BadRow, export_row, memory_from_row, parse_line
from memstream.services.ratelimit import RateLimiter
from memstream.store.base import Caller
from memstream.streams.privacy_stage import without_secrets

log = get_logger("memstream.api")

MIN_EPSILON = 0.001
"""Smallest epsilon an aggregate may ask for: below it the noise drowns every count, and
OpenDP's calibration cannot represent the scale."""

REQUESTS = Counter("memstream_http_requests_total", "HTTP requests", ["route", "status"])
PUBLISHED = Counter("memstream_api_published_total", "events published by the API", ["kind"])


class Backend(Protocol):
    """What the API needs from the process it runs in (the worker, in the embedded stack)."""

    bootstrap: str

    async def publish(self, topic: str, event: Event, key: str) -> None: ...

    async def search(
        self,
        caller: Caller,
        query: str,
        k: int,
        topics: list[str] | None = None,
        tags: list[str] | None = None,
        as_of: datetime | None = None,
    ) -> list[ScoredMemory]: ...

    async def page(
        self, caller: Caller, limit: int, start: UUID | None, **narrow: Any
    ) -> tuple[list[Any], UUID | None]: ...

    async def history(self, caller: Caller, memory_id: UUID) -> list[Any]: ...

    async def topics(self, caller: Caller) -> dict[str, int]: ...

    async def delete(self, tenant: str, agent_id: str, ids: list[UUID], reason: str) -> UUID: ...

    def subscriptions_of(self, caller: Caller) -> list[dict[str, Any]]: ...

    async def dead_letter_row(
        self, caller: Caller, source: str, line: int, data: str, reason: str, detail: str
    ) -> None: ...

    async def stats(self, caller: Caller) -> dict[str, Any]: ...

    def subscription_owner(self, subscription_id: str) -> tuple[str, str] | None: ...

    async def private_counts(
        self, caller: Caller, field: str, epsilon: float
    ) -> dict[str, int]: ...

    def visible_text(self, memory: Any, caller: Caller) -> str: ...

    async def visible(self, caller: Caller, memory_id: UUID) -> Any | None: ...

    def reveal(self, sealed: dict[str, Any], tenant: str, caller: Caller) -> tuple[str, bool]: ...

    async def erase(self, tenant: str, values: list[str]) -> list[dict[str, str]]: ...

    async def cache_publish(
        self, caller: Caller, task: str, result: str, verification: str, scope: str
    ) -> Any: ...

    async def cache_lookup(self, caller: Caller, task: str) -> Any: ...

    async def standing(self, caller: Caller, agent_id: str) -> Any: ...

    def pooled_state(self, caller: Caller, team: str) -> Any: ...

    def student(
        self, caller: Caller, name: str, version: int | None, include_model: bool
    ) -> ModelVersion | None: ...

    async def taxonomy(self, caller: Caller, taxonomy: dict[str, list[str]] | None) -> Any: ...

    async def balances(self, caller: Caller, everyone: bool) -> list[Any] | None: ...


# --- request bodies ---------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


MAX_TTL_S = 10 * 365 * 86400


class MemoryIn(_Body):
    text: Text
    scope: ScopeStr = "tenant"
    tags: list[Tag] = Field(default_factory=list, max_length=32)
    metadata: Metadata = Field(default_factory=dict)
    topic: str | None = Field(default=None, max_length=128)
    context: str | None = Field(default=None, max_length=8192)
    supersedes: list[UUID] = Field(default_factory=list, max_length=64)
    fact: FactPayload | None = Field(
        default=None,
        description="the subject, attribute and value it states: a later memory with another "
        "value for them supersedes it (read from the text when unset)",
    )
    ttl: float | None = Field(
        default=None,
        gt=0,
        le=MAX_TTL_S,
        description="seconds the memory lives: then it leaves search and deliveries, and a "
        "deletion event removes it",
    )


class TaxonomyIO(_Body):
    tags: dict[str, list[str]] = Field(description="tag -> a few example texts")


class ImportRow(_Body):
    line: int = Field(ge=1)
    data: str = Field(max_length=MAX_EVENT_BYTES)
    size: int | None = Field(
        default=None,
        ge=0,
        description="set by a client that sent only the start of a row "
        "too large for one request: its real size in bytes (the row is dead-lettered)",
    )


class ImportIn(_Body):
    rows: list[ImportRow] = Field(min_length=1, max_length=1000)
    source: str = Field(default="import", max_length=256)
    default_scope: ScopeStr = "tenant"


class ImportOutcome(BaseModel):
    line: int
    status: Literal["accepted", "dead_letter"]
    memory_id: UUID | None = None
    reason: str | None = None
    detail: str | None = None


class ImportResult(BaseModel):
    accepted: int
    dead_lettered: int
    rows: list[ImportOutcome]


class ObservationIn(_Body):
    text: Text
    scope: ScopeStr = "private"
    tags: list[Tag] = Field(default_factory=list, max_length=32)
    metadata: Metadata = Field(default_factory=dict)
    topic: str | None = Field(default=None, max_length=128)


class FeedbackIn(_Body):
    memory_id: UUID
    outcome: Literal["used", "helped", "wrong", "ignored"]
    score: float | None = Field(default=None, ge=0.0, le=1.0)
    note: str | None = Field(default=None, max_length=2048)


class SubscriptionIn(_Body):
    query: Text
    min_score: float = Field(default=0.5, ge=-1.0, le=1.0)
    filters: SubscriptionFilters = Field(default_factory=SubscriptionFilters)
    max_per_minute: int = Field(default=60, ge=1, le=100_000)
    expires_at: datetime | None = None
    include_own: bool = False


class ErasureIn(_Body):
    values: list[Annotated[str, Field(min_length=1, max_length=1024)]] = Field(
        min_length=1, max_length=64, description="personal values: a name, an e-mail, ..."
    )


class Accepted(BaseModel):
    event_id: UUID


class CachedResultIn(_Body):
    task: str = Field(min_length=1, max_length=4096, description="the task, as the agent put it")
    result: str = Field(max_length=65536)
    verification: Literal["verified", "unverified", "failed"] = "unverified"
    scope: ScopeStr = "tenant"


class Reputation(BaseModel):
    tenant: str
    agent_id: str
    reputation: float = Field(description="0-1; 0.5 where no trusted rater has rated it")
    trust: float = Field(description="its weight as a rater, relative to the most trusted")
    ratings_received: int = Field(description="feedback events on its memories, by others")
    weighted_good: float
    weighted_bad: float
    seeded: bool = Field(description="a rater the tenant trusts a priori")


class LedgerBalance(BaseModel):
    agent_id: str
    balance: float
    earned: float
    spent: float
    entries: int


class LedgerView(BaseModel):
    tenant: str
    balances: list[LedgerBalance]


class CacheLookupIn(_Body):
    task: str = Field(min_length=1, max_length=4096)


class SubscriptionCreated(BaseModel):
    subscription_id: str


class TokenView(BaseModel):
    token_id: str
    tenant: str
    agent_id: str
    teams: list[str]
    clearance: list[str]
    created_at: datetime
    revoked: bool
    expires_at: datetime | None
    scopes: list[str]


# --- identity ----------------------------------------------------------------------------------


def current_caller(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> Caller:
    """The identity of the bearer token; 401 for anything else, 429 (with `Retry-After`)
    when the token is over its rate limit."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(
            401,
            "an `Authorization: Bearer <token>` header is required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    token = token.strip()
    try:
        caller = request.app.state.tokens.verify(token)
    except InvalidToken as err:
        raise HTTPException(401, str(err), headers={"WWW-Authenticate": "Bearer"}) from err
    retry_after = request.app.state.limiter.take(auth.token_id(token))
    if retry_after is not None:
        raise HTTPException(
            429,
            f"rate limit of this token exceeded; retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )
    return caller


def _cached(entry: Any) -> CachedResult:
    """The answer for a `ResultCache` entry (its tenant and timestamp stay inside)."""
    return CachedResult.model_validate(entry, from_attributes=True)


def bearer_token(request: Request) -> str:
    """The token of the request's `Authorization: Bearer` header ("" without one)."""
    return request.headers.get("authorization", "").partition(" ")[2].strip()


def require_member(who: Caller, scope: str) -> None:
    """403 unless a `team:<x>` scope names one of the caller's own teams."""
    if scope.startswith("team:") and scope[5:] not in who.teams:
        raise HTTPException(403, f"agent {who.agent_id!r} is not in team {scope[5:]!r}")


Identity = Annotated[Caller, Depends(current_caller)]


def _scoped(scope: str) -> Any:
    def caller_with(who: Identity) -> Caller:
        if scope not in who.scopes:
            raise HTTPException(403, f"this token's scopes do not include {scope!r}")
        return who

    caller_with.__name__ = f"caller_with_{scope}"
    return Depends(caller_with)


Reader = Annotated[Caller, _scoped("read")]
Writer = Annotated[Caller, _scoped("write")]
Subscriber = Annotated[Caller, _scoped("subscribe")]
Administrator = Annotated[Caller, _scoped("admin")]
"""A caller whose token has that scope (403 otherwise)."""


# --- the app -----------------------------------------------------------------------------------


def create_api(
    backend: Backend,
    tokens: TokenStore,
    *,
    max_body_bytes: int = MAX_EVENT_BYTES,
    rate_per_s: float = 0.0,
    rate_burst: int = 200,
) -> FastAPI:
    """The API over `backend`; each token may make `rate_per_s` requests a second on
    average and `rate_burst` at once (`rate_per_s=0`: no limit)."""
    api = FastAPI(
        title="memstream",
        version="0.1.0",
        description="Shared memory for AI agents over a message bus.",
        docs_url=None,  # served below from the swagger-ui-bundle package: no CDN
        redoc_url=None,
    )
    _mount_docs(api)

    @api.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [
            {"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"]}
            for err in exc.errors()
        ]
        return JSONResponse({"error": "invalid request", "fields": fields}, status_code=422)

    @api.exception_handler(ValidationError)
    async def invalid_event(request: Request, exc: ValidationError) -> JSONResponse:
        fields = [
            {"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"]}
            for err in exc.errors()
        ]
        return JSONResponse({"error": "invalid event", "fields": fields}, status_code=422)

    @api.middleware("http")
    async def count(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        route = request.scope.get("route")
        REQUESTS.labels(getattr(route, "path", "unmatched"), str(response.status_code)).inc()
        return response

    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    api.state.tokens = tokens
    api.state.limiter = RateLimiter(rate_per_s, rate_burst)

    async def publish(topic: str, event: Event, key: str) -> None:
        size = len(event.to_json())
        if size > max_body_bytes:
            raise HTTPException(413, f"event is {size} bytes; the limit is {max_body_bytes}")
        await backend.publish(topic, event, key)
        PUBLISHED.labels(event.kind).inc()

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

    @api.post("/v1/feedback", status_code=202, response_model=Accepted)
    async def post_feedback(body: FeedbackIn, who: Writer) -> Accepted:
        """How useful a memory was; only on a memory the caller may see (404 otherwise)."""
        if await backend.visible(who, body.memory_id) is None:
            raise HTTPException(404, f"no memory {body.memory_id} visible to this agent")
        event = Feedback(
            tenant=who.tenant, agent_id=who.agent_id, payload=FeedbackPayload(**body.model_dump())
        )
        await publish(FEEDBACK.name, event, str(body.memory_id))
        return Accepted(event_id=event.event_id)

    @api.get("/v1/taxonomy", response_model=TaxonomyIO)
    async def get_taxonomy(who: Reader) -> TaxonomyIO:
        """The tenant's taxonomy for tag by example: tag -> example texts."""
        return TaxonomyIO(tags=await backend.taxonomy(who, None))

    @api.put("/v1/taxonomy", response_model=TaxonomyIO)
    async def put_taxonomy(body: TaxonomyIO, who: Administrator) -> TaxonomyIO:
        """Replace the tenant's taxonomy (`admin` scope): new memories get the likeliest of
        these tags (`auto_tags`); memories agents tag with them teach the tagger."""
        try:
            validate_taxonomy(body.tags)
        except ValueError as err:
            raise HTTPException(422, str(err)) from err
        return TaxonomyIO(tags=await backend.taxonomy(who, body.tags))

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

    @api.get("/v1/models/{name}", response_model=ModelVersion, response_model_exclude_none=True)
    async def student_model(
        name: Annotated[str, Path(min_length=1, max_length=128)],
        who: Reader,
        version: Annotated[int | None, Query(ge=1, description="default: the current one")] = None,
        include_model: Annotated[bool, Query(description="the ONNX bytes, base64")] = True,
    ) -> ModelVersion:
        """A student policy distilled from the team's experience (docs/distillation.md): its
        ONNX model (`observation` float32 [N, d] -> `probabilities`), version and lineage.
        Members of the model's team only; another tenant's models do not exist here."""
        try:
            found = backend.student(who, name, version, include_model)
        except PermissionError as err:
            raise HTTPException(403, str(err)) from err
        if found is None:
            raise HTTPException(404, f"no model {name!r} (or no such version) in your tenant")
        return found

    @api.get("/v1/agents/{agent_id}/reputation", response_model=Reputation)
    async def reputation(
        agent_id: Annotated[str, Path(min_length=1, max_length=256)], who: Reader
    ) -> Reputation:
        """An agent's reputation in the caller's tenant: how the memories it wrote fared,
        each rating weighted by the trust of its rater (self-feedback does not count)."""
        found = await backend.standing(who, agent_id)
        return Reputation.model_validate(found, from_attributes=True)

    async def _ledger(who: Caller, everyone: bool) -> LedgerView:
        found = await backend.balances(who, everyone)
        if found is None:
            raise HTTPException(
                404, f"tenant {who.tenant!r} keeps no ledger (MEMSTREAM_LEDGER_TENANTS)"
            )
        return LedgerView(
            tenant=who.tenant,
            balances=[LedgerBalance.model_validate(b, from_attributes=True) for b in found],
        )

    @api.get("/v1/ledger", response_model=LedgerView)
    async def ledger(who: Reader) -> LedgerView:
        """The caller's credit balance: deliveries and memories it used cost credits, its
        memories rated helpful earn them (404 where its tenant keeps no ledger)."""
        return await _ledger(who, everyone=False)

    @api.get("/v1/ledger/agents", response_model=LedgerView)
    async def ledger_of_tenant(who: Administrator) -> LedgerView:
        """Every agent's balance in the caller's tenant (`admin` scope)."""
        return await _ledger(who, everyone=True)

    @api.post("/v1/cache", status_code=201, response_model=CachedResult)
    async def cache_result(body: CachedResultIn, who: Writer) -> CachedResult:
        """Publish a task's result to the semantic result cache, so that an agent about to
        do the same task can look it up first; visible by `scope` like a memory."""
        require_member(who, body.scope)
        entry = await backend.cache_publish(
            who, body.task, body.result, body.verification, body.scope
        )
        return _cached(entry)

    @api.post("/v1/cache/lookup", response_model=CacheLookup)
    async def cache_lookup(body: CacheLookupIn, who: Reader) -> CacheLookup:
        """The stored result of a task that means the same and names the same values (host,
        region, number, date, identifier, ...), or none: `miss`, or `rejected` when only
        tasks with other values were similar."""
        found = await backend.cache_lookup(who, body.task)
        return CacheLookup(
            outcome=found.outcome,
            result=_cached(found.result) if found.result is not None else None,
            score=found.score,
            reason=found.reason,
        )

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

    @api.get("/v1/deliveries", response_model=Deliveries)
    async def poll(
        who: Subscriber,
        cursor: Annotated[str | None, Query(max_length=64)] = None,
        wait_ms: Annotated[int, Query(ge=0, le=30_000)] = 1000,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> Deliveries:
        """This agent's deliveries after `cursor`, waiting up to `wait_ms` for the first
        (long polling, for clients without SSE). Without a cursor: from now."""
        try:
            await check_cursor(backend.bootstrap, who, cursor)
        except InvalidCursor as err:
            raise HTTPException(400, str(err)) from err
        items, following = await poll_deliveries(
            backend.bootstrap,
            who,
            cursor,
            wait_s=wait_ms / 1000,
            limit=limit,
            reveal=backend.reveal,
        )
        return Deliveries(deliveries=items, cursor=following)

    @api.get("/v1/subscriptions", response_model=list[SubscriptionView])
    async def list_subscriptions(who: Subscriber) -> list[SubscriptionView]:
        """The active subscriptions this agent made."""
        return [SubscriptionView(**v) for v in backend.subscriptions_of(who)]

    @api.delete("/v1/subscriptions", status_code=200)
    async def unsubscribe_all(who: Subscriber) -> dict[str, int]:
        """Cancel every subscription this agent made."""
        mine = backend.subscriptions_of(who)
        for view_ in mine:
            await cancel(who, view_["subscription_id"])
        return {"cancelled": len(mine)}

    @api.get("/v1/tokens", response_model=list[TokenView])
    async def list_tokens(who: Administrator) -> list[TokenView]:
        """The tokens of the caller's tenant (admin clearance), never their secrets."""
        if "admin" not in who.clearance:
            raise HTTPException(403, "listing tokens needs a token with the admin clearance")
        return [TokenView(**row) for row in tokens.listing(who.tenant)]  # type: ignore[arg-type]

    @api.delete("/v1/tokens/{token_id}", status_code=204)
    async def revoke_token(token_id: str, who: Identity, request: Request) -> None:
        """Revoke a token of the caller's tenant (admin clearance), or the caller's own."""
        own = auth.token_id(bearer_token(request))
        if token_id != own and "admin" not in who.clearance:
            raise HTTPException(403, "revoking another token needs the admin clearance")
        if not tokens.revoke_id(token_id, who.tenant):
            raise HTTPException(404, "no such token in this tenant")

    async def cancel(who: Caller, subscription_id: str) -> None:
        event = Subscription(
            tenant=who.tenant,
            agent_id=who.agent_id,
            scope="private",
            payload=SubscriptionPayload(subscription_id=subscription_id, query="-", active=False),
        )
        await publish(SUBSCRIPTIONS.name, event, subscription_id)

    @api.post("/v1/subscriptions", response_model=SubscriptionCreated)
    async def subscribe(body: SubscriptionIn, who: Subscriber) -> SubscriptionCreated:
        """A standing query: matching new memories are pushed to this agent."""
        sub_id = f"sub-{new_event_id().hex}"
        event = Subscription(
            tenant=who.tenant,
            agent_id=who.agent_id,
            scope="private",
            payload=SubscriptionPayload(
                subscription_id=sub_id,
                **body.model_dump(),
                teams=sorted(who.teams),
                clearance=sorted(who.clearance),
            ),
        )
        await publish(SUBSCRIPTIONS.name, event, sub_id)
        return SubscriptionCreated(subscription_id=sub_id)

    @api.delete("/v1/subscriptions/{subscription_id}", status_code=204)
    async def unsubscribe(subscription_id: str, who: Subscriber) -> None:
        owner = backend.subscription_owner(subscription_id)
        if owner != (who.tenant, who.agent_id):
            raise HTTPException(404, "no such subscription")
        await cancel(who, subscription_id)

    def still_valid(token: str) -> Callable[[], bool]:
        """Whether `token` still verifies (not revoked, not expired): asked every CHECK_S (0.5 s)
        by every open stream, which ends when it no longer does."""

        def check() -> bool:
            try:
                tokens.verify(token)
                return True
            except InvalidToken:
                return False

        return check

    @api.get("/v1/stream")
    async def stream(
        who: Subscriber,
        request: Request,
        last_event_id: Annotated[str | None, Header()] = None,
        cursor: str | None = None,
    ) -> StreamingResponse:
        """Server-sent events of this agent's deliveries; resume with Last-Event-ID. The
        stream ends within a second of the token's revocation or expiry."""
        resume = last_event_id or cursor
        try:
            await check_cursor(backend.bootstrap, who, resume)
        except InvalidCursor as err:
            raise HTTPException(400, str(err)) from err
        token = bearer_token(request)
        return StreamingResponse(
            sse_stream(backend.bootstrap, who, resume, backend.reveal, still_valid(token)),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @api.websocket("/v1/ws")
    async def websocket(ws: WebSocket, token: str | None = None, cursor: str | None = None) -> None:
        """The same deliveries over a WebSocket. The token, best kept out of URLs (logs
        keep them): the subprotocol `bearer.<token>`, else a first message
        `{"token": "..."}` within 5 s, else `?token=`. Closes with 4401 for a bad token and
        within a second of its revocation or expiry; 4403 without the subscribe scope."""
        offered = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",")]
        chosen = next((p for p in offered if p.startswith("bearer.")), None)
        if chosen is not None:
            token = chosen[len("bearer.") :]
        if token is None:  # the first message carries it
            await ws.accept()
            try:
                first = await asyncio.wait_for(ws.receive_json(), timeout=5.0)
                token = str(first.get("token", "")) if isinstance(first, dict) else ""
            except Exception:
                token = ""
        try:
            who = tokens.verify(token)
        except InvalidToken:
            await ws.close(code=4401)  # before the handshake: the client sees HTTP 403
            return
        if chosen is not None or ws.client_state.name == "CONNECTING":
            await ws.accept(subprotocol=chosen)
        if "subscribe" not in who.scopes:
            await ws.close(code=4403)
            return
        try:
            await check_cursor(backend.bootstrap, who, cursor)
        except InvalidCursor:
            await ws.close(code=4400)
            return
        valid = still_valid(token)
        checked = time.monotonic()
        async for item in deliveries_for(
            backend.bootstrap, who, cursor, idle_s=CHECK_S, reveal=backend.reveal
        ):
            if time.monotonic() - checked >= CHECK_S:
                checked = time.monotonic()
                if not valid():
                    await ws.close(code=4401)
                    return
            if item is not None:
                await ws.send_json({"cursor": item[0], "delivery": item[1]})

    @api.get("/v1/aggregates/{field}")
    async def aggregates(
        field: Literal["topic", "tags"],
        who: Reader,
        epsilon: Annotated[float, Query(ge=MIN_EPSILON, le=10)] = 0.1,
    ) -> dict[str, Any]:
        """Memories per topic or tag among those the caller may see, with differential
        privacy: safe to share across teams or tenants. Each call spends `epsilon` of the
        caller's share of its tenant's budget (429 once spent)."""
        from memstream.privacy.dp import BudgetExceeded

        try:
            counts = await backend.private_counts(who, field, epsilon)
        except BudgetExceeded as err:
            raise HTTPException(429, str(err)) from err
        return {"field": field, "epsilon": epsilon, "counts": counts}

    @api.post("/v1/erasures", status_code=202)
    async def post_erasures(body: ErasureIn, who: Administrator) -> dict[str, Any]:
        """Forget data subjects of the caller's tenant (as `memstream erase`); needs a token
        with the `admin` clearance. 503 where this worker keeps no key store."""
        if "admin" not in who.clearance:
            raise HTTPException(403, "erasing subjects needs a token with the admin clearance")
        try:
            erasures = await backend.erase(who.tenant, body.values)
        except LookupError as err:
            raise HTTPException(503, str(err)) from err
        return {"erasures": erasures}

    @api.get("/v1/stats")
    async def stats(who: Reader) -> dict[str, Any]:
        return await backend.stats(who)

    add_health_routes(api, backend)
    mount_dashboard(api, backend)  # `/`: the operator's pages (admin token)

    api.add_middleware(BodyGuard, limit=max_body_bytes)
    api.add_middleware(CatchAll)  # outermost: a bug is a JSON 500, never a dropped connection
    return api


def add_health_routes(api: FastAPI, backend: object) -> None:
    """/healthz (readiness: the store takes writes), /livez and /metrics; every worker role
    serves them, the full API and a health-only one alike."""

    @api.get("/healthz", response_model=None)
    async def healthz() -> dict[str, str] | JSONResponse:
        """200 `{"status": "ok"}`; 503 `{"status": "degraded", "store": "unavailable",
        "error", "since", ...}` while the store fails the worker's writes (they are retried
        until it returns; nothing is acknowledged past them). A readiness check: for a
        liveness probe use /livez, since restarting the worker does not fix its disk."""
        store = getattr(backend, "store_status", None)
        if store is not None and not store.up:
            return JSONResponse({"status": "degraded", **store.snapshot()}, status_code=503)
        return {"status": "ok"}

    @api.get("/livez")
    async def livez() -> dict[str, str]:
        """200 while the process serves, whatever its store does (liveness)."""
        return {"status": "alive"}

    @api.get("/metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def create_health_api(backend: object) -> FastAPI:
    """Health and metrics alone: what a worker without the `api` role serves (probes and
    Prometheus scrapes, `deploy/k8s`)."""
    api = FastAPI(title="memstream worker", docs_url=None, redoc_url=None, openapi_url=None)
    add_health_routes(api, backend)
    return api


def _mount_docs(api: FastAPI) -> None:
    """/docs with Swagger UI's files from the swagger-ui-bundle package (works offline)."""
    import swagger_ui_bundle
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    api.mount(
        "/docs-assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets"
    )

    @api.get("/docs", include_in_schema=False)
    async def docs() -> Any:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="memstream API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )
