"""The HTTP API (FastAPI): publish, search, subscribe, stream; bearer-token identities.

Every identity fact (tenant, agent, teams, clearance) comes from the token, never from the
request body, so a client cannot widen what it sees. Malformed requests get a 4xx JSON
error naming the field and never reach the bus; bodies over the limit get 413.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Protocol
from uuid import UUID

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from memstream.logging import get_logger
from memstream.retrieval.ranking import ScoredMemory
from memstream.schemas.events import (
    Event,
    Feedback,
    FeedbackPayload,
    Memory,
    MemoryPayload,
    Metadata,
    Observation,
    ObservationPayload,
    Subscription,
    SubscriptionFilters,
    SubscriptionPayload,
    Tag,
    Text,
    new_event_id,
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
from memstream.services.auth import InvalidToken, TokenStore
from memstream.services.gateway import InvalidCursor, check_cursor, deliveries_for, sse_stream
from memstream.services.http_guard import BodyGuard, CatchAll
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

    async def search(self, caller: Caller, query: str, k: int) -> list[ScoredMemory]: ...

    async def stats(self, caller: Caller) -> dict[str, Any]: ...

    def subscription_owner(self, subscription_id: str) -> tuple[str, str] | None: ...

    async def private_counts(
        self, caller: Caller, field: str, epsilon: float
    ) -> dict[str, int]: ...

    def visible_text(self, memory: Any, caller: Caller) -> str: ...

    async def visible(self, caller: Caller, memory_id: UUID) -> Any | None: ...

    def reveal(self, sealed: dict[str, Any], tenant: str, caller: Caller) -> tuple[str, bool]: ...

    async def erase(self, tenant: str, values: list[str]) -> list[dict[str, str]]: ...


# --- request bodies ---------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class MemoryIn(_Body):
    text: Text
    scope: ScopeStr = "tenant"
    tags: list[Tag] = Field(default_factory=list, max_length=32)
    metadata: Metadata = Field(default_factory=dict)
    topic: str | None = Field(default=None, max_length=128)
    context: str | None = Field(default=None, max_length=8192)
    supersedes: list[UUID] = Field(default_factory=list, max_length=64)


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


class SubscriptionCreated(BaseModel):
    subscription_id: str


class SearchResult(BaseModel):
    memory_id: UUID
    text: str
    score: float
    agent_id: str
    scope: str
    tags: list[str]


class SearchResults(BaseModel):
    results: list[SearchResult]


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
    retry_after = request.app.state.limiter.take(token_key(token))
    if retry_after is not None:
        raise HTTPException(
            429,
            f"rate limit of this token exceeded; retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )
    return caller


def token_key(token: str | None) -> str:
    """What rate limits count against: the token's id (`ms_<id>_<secret>`)."""
    return (token or "").split("_", 2)[1] if (token or "").count("_") >= 2 else ""


def require_member(who: Caller, scope: str) -> None:
    """403 unless a `team:<x>` scope names one of the caller's own teams."""
    if scope.startswith("team:") and scope[5:] not in who.teams:
        raise HTTPException(403, f"agent {who.agent_id!r} is not in team {scope[5:]!r}")


Identity = Annotated[Caller, Depends(current_caller)]


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
    )

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
    async def post_memory(body: MemoryIn, who: Identity) -> Accepted:
        """Share a memory; it is validated, scrubbed, embedded and indexed asynchronously.
        A `team:<x>` scope needs membership of team x (403 otherwise)."""
        require_member(who, body.scope)
        event = Memory(
            tenant=who.tenant,
            agent_id=who.agent_id,
            scope=body.scope,
            payload=MemoryPayload(**body.model_dump(exclude={"scope"})),
        )
        event = without_secrets(event)  # a pasted key never reaches the log
        await publish(MEMORIES.name, event, who.agent_id)
        return Accepted(event_id=event.event_id)

    @api.post("/v1/observations", status_code=202, response_model=Accepted)
    async def post_observation(body: ObservationIn, who: Identity) -> Accepted:
        require_member(who, body.scope)
        payload = ObservationPayload(**body.model_dump(exclude={"scope"}))
        event = without_secrets(
            Observation(tenant=who.tenant, agent_id=who.agent_id, scope=body.scope, payload=payload)
        )
        await publish(OBSERVATIONS.name, event, who.agent_id)
        return Accepted(event_id=event.event_id)

    @api.post("/v1/feedback", status_code=202, response_model=Accepted)
    async def post_feedback(body: FeedbackIn, who: Identity) -> Accepted:
        """How useful a memory was; only on a memory the caller may see (404 otherwise)."""
        if await backend.visible(who, body.memory_id) is None:
            raise HTTPException(404, f"no memory {body.memory_id} visible to this agent")
        event = Feedback(
            tenant=who.tenant, agent_id=who.agent_id, payload=FeedbackPayload(**body.model_dump())
        )
        await publish(FEEDBACK.name, event, str(body.memory_id))
        return Accepted(event_id=event.event_id)

    @api.get("/v1/search", response_model=SearchResults)
    async def search(
        who: Identity,
        q: Annotated[str, Query(min_length=1, max_length=4096)],
        k: Annotated[int, Query(ge=1, le=100)] = 10,
    ) -> SearchResults:
        """Hybrid search over the memories this caller may see."""
        results = await backend.search(who, q, k)
        return SearchResults(
            results=[
                SearchResult(
                    memory_id=r.memory.memory_id,
                    text=backend.visible_text(r.memory, who),
                    score=round(r.score, 6),
                    agent_id=r.memory.agent_id,
                    scope=r.memory.scope,
                    tags=r.memory.tags,
                )
                for r in results
            ]
        )

    @api.post("/v1/subscriptions", response_model=SubscriptionCreated)
    async def subscribe(body: SubscriptionIn, who: Identity) -> SubscriptionCreated:
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
    async def unsubscribe(subscription_id: str, who: Identity) -> None:
        owner = backend.subscription_owner(subscription_id)
        if owner != (who.tenant, who.agent_id):
            raise HTTPException(404, "no such subscription")
        event = Subscription(
            tenant=who.tenant,
            agent_id=who.agent_id,
            scope="private",
            payload=SubscriptionPayload(subscription_id=subscription_id, query="-", active=False),
        )
        await publish(SUBSCRIPTIONS.name, event, subscription_id)

    @api.get("/v1/stream")
    async def stream(
        who: Identity,
        last_event_id: Annotated[str | None, Header()] = None,
        cursor: str | None = None,
    ) -> StreamingResponse:
        """Server-sent events of this agent's deliveries; resume with Last-Event-ID."""
        resume = last_event_id or cursor
        try:
            await check_cursor(backend.bootstrap, who, resume)
        except InvalidCursor as err:
            raise HTTPException(400, str(err)) from err
        return StreamingResponse(
            sse_stream(backend.bootstrap, who, resume, backend.reveal),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @api.websocket("/v1/ws")
    async def websocket(ws: WebSocket, token: str, cursor: str | None = None) -> None:
        """The same deliveries over a WebSocket: `?token=...&cursor=...`."""
        try:
            who = tokens.verify(token)
        except InvalidToken:
            await ws.close(code=4401)
            return
        try:
            await check_cursor(backend.bootstrap, who, cursor)
        except InvalidCursor:
            await ws.close(code=4400)
            return
        await ws.accept()
        async for item in deliveries_for(backend.bootstrap, who, cursor, reveal=backend.reveal):
            if item is not None:
                await ws.send_json({"cursor": item[0], "delivery": item[1]})

    @api.get("/v1/aggregates/{field}")
    async def aggregates(
        field: Literal["topic", "tags"],
        who: Identity,
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
    async def post_erasures(body: ErasureIn, who: Identity) -> dict[str, Any]:
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
    async def stats(who: Identity) -> dict[str, Any]:
        return await backend.stats(who)

    @api.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    api.add_middleware(BodyGuard, limit=max_body_bytes)
    api.add_middleware(CatchAll)  # outermost: a bug is a JSON 500, never a dropped connection
    return api
