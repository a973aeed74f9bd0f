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
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from memstream.retrieval.ranking import ScoredMemory
from memstream.schemas.events import (
    Event,
    Feedback,
    FeedbackPayload,
    Memory,
    MemoryPayload,
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
from memstream.services.gateway import deliveries_for, sse_stream
from memstream.store.base import Caller

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


# --- request bodies ---------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MemoryIn(_Body):
    text: Text
    scope: ScopeStr = "tenant"
    tags: list[Tag] = Field(default_factory=list, max_length=32)
    metadata: dict[str, Any] = Field(default_factory=dict)
    topic: str | None = Field(default=None, max_length=128)
    context: str | None = Field(default=None, max_length=8192)
    supersedes: list[UUID] = Field(default_factory=list, max_length=64)


class ObservationIn(_Body):
    text: Text
    scope: ScopeStr = "private"
    tags: list[Tag] = Field(default_factory=list, max_length=32)
    metadata: dict[str, Any] = Field(default_factory=dict)
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


# --- body size limit ---------------------------------------------------------------------------


class BodyLimit:
    """413 for request bodies over `limit` bytes, by Content-Length or by counting."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._reject(send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await self._reject(send)

    async def _reject(self, send: Send) -> None:
        response = JSONResponse(
            {"error": "request body too large", "limit_bytes": self.limit}, status_code=413
        )
        await response({"type": "http"}, _no_receive, send)


class _TooLarge(Exception):
    pass


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


# --- identity ----------------------------------------------------------------------------------


def current_caller(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> Caller:
    """The identity of the bearer token; 401 for anything else."""
    token = authorization.removeprefix("Bearer ").strip() if authorization else None
    try:
        return request.app.state.tokens.verify(token)
    except InvalidToken as err:
        raise HTTPException(401, str(err), headers={"WWW-Authenticate": "Bearer"}) from err


Identity = Annotated[Caller, Depends(current_caller)]


# --- the app -----------------------------------------------------------------------------------


def create_api(
    backend: Backend, tokens: TokenStore, *, max_body_bytes: int = MAX_EVENT_BYTES
) -> FastAPI:
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

    api.state.tokens = tokens

    async def publish(topic: str, event: Event, key: str) -> None:
        size = len(event.to_json())
        if size > max_body_bytes:
            raise HTTPException(413, f"event is {size} bytes; the limit is {max_body_bytes}")
        await backend.publish(topic, event, key)
        PUBLISHED.labels(event.kind).inc()

    @api.post("/v1/memories", status_code=202, response_model=Accepted)
    async def post_memory(body: MemoryIn, who: Identity) -> Accepted:
        """Share a memory; it is validated, scrubbed, embedded and indexed asynchronously."""
        event = Memory(
            tenant=who.tenant,
            agent_id=who.agent_id,
            scope=body.scope,
            payload=MemoryPayload(**body.model_dump(exclude={"scope"})),
        )
        await publish(MEMORIES.name, event, who.agent_id)
        return Accepted(event_id=event.event_id)

    @api.post("/v1/observations", status_code=202, response_model=Accepted)
    async def post_observation(body: ObservationIn, who: Identity) -> Accepted:
        payload = ObservationPayload(**body.model_dump(exclude={"scope"}))
        event = Observation(
            tenant=who.tenant, agent_id=who.agent_id, scope=body.scope, payload=payload
        )
        await publish(OBSERVATIONS.name, event, who.agent_id)
        return Accepted(event_id=event.event_id)

    @api.post("/v1/feedback", status_code=202, response_model=Accepted)
    async def post_feedback(body: FeedbackIn, who: Identity) -> Accepted:
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
        return StreamingResponse(
            sse_stream(backend.bootstrap, who.agent_id, last_event_id or cursor),
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
        await ws.accept()
        async for item in deliveries_for(backend.bootstrap, who.agent_id, cursor):
            if item is not None:
                await ws.send_json({"cursor": item[0], "delivery": item[1]})

    @api.get("/v1/aggregates/{field}")
    async def aggregates(
        field: Literal["topic", "tags"],
        who: Identity,
        epsilon: Annotated[float, Query(gt=0, le=10)] = 0.1,
    ) -> dict[str, Any]:
        """Memories per topic or tag in the caller's tenant, with differential privacy: safe
        to share across teams or tenants. Each call spends `epsilon` of the tenant's budget."""
        from memstream.privacy.dp import BudgetExceeded

        try:
            counts = await backend.private_counts(who, field, epsilon)
        except BudgetExceeded as err:
            raise HTTPException(429, str(err)) from err
        return {"field": field, "epsilon": epsilon, "counts": counts}

    @api.get("/v1/stats")
    async def stats(who: Identity) -> dict[str, Any]:
        return await backend.stats(who)

    @api.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    api.add_middleware(BodyLimit, limit=max_body_bytes)
    return api
