"""memstream as an MCP server: its memory tools for model hosts (Claude, IDEs, agents).

Two doors, one set of tools:

- streamable HTTP at `/mcp` on the worker's API port (`mount_mcp`), authenticated with
  the API's own bearer tokens (`Authorization: Bearer <token>`; 401 without a valid one,
  and a session answers only to the token that opened it);
- stdio (`memstream mcp`, `run_stdio`) for hosts that start a local process.

Every tool is a call to the memstream HTTP API through `AsyncHttpClient` with the caller's
own token (in-process through `httpx.ASGITransport` for `/mcp`, over the network for stdio),
so tenant, agent, teams and clearance, and every access rule, are exactly the API's: there
is no second implementation of who may see what. API refusals become tool errors whose text
names what was wrong.

Deliveries of subscriptions can be pulled with the `poll_deliveries` tool, or pushed: a
client that subscribes to the resource `memstream://deliveries` (`resources/subscribe`)
gets `notifications/resources/updated` for it whenever new deliveries arrive for its agent,
and reading the resource returns those not yet read by this session. The push needs a
session with a back-channel (stdio, or streamable HTTP at the handshake protocol versions);
sessionless clients (the 2026-07-28 revision) poll.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

import anyio
import anyio.abc
import httpx
import mcp.types as types
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from prometheus_client import Gauge
from pydantic import Field
from starlette.types import ASGIApp, Receive, Scope, Send

from memstream.logging import get_logger
from memstream.sdk.http import (
    AsyncHttpClient,
    Forbidden,
    InvalidRequest,
    MemstreamError,
    NotFound,
    RateLimited,
    Unauthorized,
)

log = get_logger("memstream.mcp")
T = TypeVar("T")

WATCHERS = Gauge(
    "memstream_mcp_delivery_watchers", "MCP sessions subscribed to memstream://deliveries"
)

DELIVERIES_URI = "memstream://deliveries"
WATCH_WAIT_MS = 20_000  # one long poll of the background watcher
INBOX_SIZE = 500  # deliveries kept for a session between two reads of the resource
IN_PROCESS_URL = "http://memstream"

ClientFor = Callable[[Any], AbstractAsyncContextManager[AsyncHttpClient]]
"""Opens an API client for the request a tool call came in (None on stdio)."""

INSTRUCTIONS = """\
memstream is a memory shared by AI agents: what one agent learns, others of its tenant
(company, project) can find. Search it before answering questions about facts others may
have recorded (infrastructure, decisions, people, procedures); add a memory when you learn
something durable that others would want. Memories are indexed asynchronously: a new one
is searchable about a second after add_memory returns. To hear about new memories on a
topic, subscribe and then poll_deliveries (or subscribe to the resource
memstream://deliveries). What you may see and write is decided by your token."""


# --- per-request context and per-session state -------------------------------------------------

_CURRENT: contextvars.ContextVar[ServerRequestContext[Any, Any] | None] = contextvars.ContextVar(
    "memstream_mcp_request", default=None
)


async def _remember_request(
    ctx: ServerRequestContext[Any, Any], call_next: CallNext
) -> HandlerResult:
    """Server middleware: makes the request context reachable from handlers that are not
    given one (a static resource)."""
    reset = _CURRENT.set(ctx)
    try:
        return await call_next(ctx)
    finally:
        _CURRENT.reset(reset)


@dataclass
class _Runtime:
    """What the server's lifespan holds: the task group the delivery watchers run in."""

    tasks: anyio.abc.TaskGroup


@dataclass
class _Inbox:
    """One session's pushed deliveries: the watcher fills it, a read of the resource drains it."""

    pending: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=INBOX_SIZE))
    cursor: str | None = None
    watcher: anyio.CancelScope | None = None


_INBOX_KEY = "memstream.inbox"


def _connection(rctx: ServerRequestContext[Any, Any]) -> Any | None:
    """The request's `mcp.server.connection.Connection` (per session, with `state`, an
    `exit_stack` unwound when the session ends, and its standalone back-channel). The SDK
    hands handlers a per-request `ServerSession` over it but exposes the connection itself
    only on that session's private attribute; without it (another SDK layout) push is off."""
    connection = getattr(rctx.session, "_connection", None)
    if not (hasattr(connection, "state") and hasattr(connection, "exit_stack")):
        return None
    return connection


def _inbox(connection: Any) -> _Inbox:
    inbox = connection.state.get(_INBOX_KEY)
    if inbox is None:
        inbox = connection.state[_INBOX_KEY] = _Inbox()

        def stop() -> None:
            if inbox.watcher is not None:
                inbox.watcher.cancel()

        connection.exit_stack.callback(stop)  # the session ended: stop polling for it
    return inbox


# --- errors ------------------------------------------------------------------------------------


def describe(err: MemstreamError) -> str:
    """A refusal of the API in words a model can act on."""
    if isinstance(err, NotFound):
        return f"not found: {err.message} (it does not exist, or this token may not see it)"
    if isinstance(err, Unauthorized):
        return f"the memstream token was refused: {err.message}"
    if isinstance(err, Forbidden):
        return f"forbidden: {err.message}"
    if isinstance(err, RateLimited):
        wait = f"; retry in {err.retry_after} s" if err.retry_after is not None else ""
        return f"rate limited: {err.message}{wait}"
    if isinstance(err, InvalidRequest):
        fields = "; ".join(f"{f.get('field')}: {f.get('message')}" for f in err.fields)
        return f"invalid request: {err.message}" + (f" ({fields})" if fields else "")
    return f"memstream API error {err.status}: {err.message}"


@asynccontextmanager
async def _api(client_for: ClientFor, ctx: Context) -> AsyncIterator[AsyncHttpClient]:
    """The caller's API client; refusals and an unreachable API become tool errors."""
    try:
        async with client_for(ctx.request_context.request) as client:
            yield client
    except MemstreamError as err:
        raise ToolError(describe(err)) from err
    except httpx.HTTPError as err:
        raise ToolError(f"the memstream API could not be reached: {err!r}") from err


async def _detached(call: Coroutine[Any, Any, T]) -> T:
    """Await `call` in a task of its own. A cancelled anyio scope cancels every await inside
    it again and again, so a long poll cancelled there (the watcher stopping, a cancelled
    tool call) would not get to close its Kafka consumer; a plain asyncio task cancelled
    once runs its cleanup to the end."""
    task = asyncio.ensure_future(call)
    try:
        return await asyncio.shield(task)
    except BaseException:
        task.cancel()
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        raise


def _dump(model: Any) -> dict[str, Any]:
    return model.model_dump(mode="json")


# --- the server --------------------------------------------------------------------------------


def build_server(client_for: ClientFor) -> MCPServer[Any]:
    """The MCP server whose tools call the API through `client_for` (one per door)."""

    @asynccontextmanager
    async def lifespan(_: MCPServer[Any]) -> AsyncIterator[_Runtime]:
        async with anyio.create_task_group() as tasks:
            try:
                yield _Runtime(tasks)
            finally:
                tasks.cancel_scope.cancel()

    server: MCPServer[Any] = MCPServer(
        "memstream",
        title="memstream shared memory",
        instructions=INSTRUCTIONS,
        log_level="WARNING",
        lifespan=lifespan,
        middleware=[_remember_request],
    )

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

    @server.tool()
    async def subscribe(
        query: Annotated[
            str, Field(description='what to hear about, e.g. "payment gateway incidents"')
        ],
        ctx: Context,
        min_score: Annotated[
            float,
            Field(description="how close a new memory must be (-1 to 1; lower hears more)"),
        ] = 0.5,
    ) -> dict[str, Any]:
        """Ask to be told about future memories, written by other agents, that match a
        standing query. Returns {"subscription_id": ..., "cursor": ...}: then call
        poll_deliveries(since=cursor) from time to time (always passing the cursor it
        returned last), or subscribe to the resource memstream://deliveries to be notified.
        A subscription takes a few seconds to become active."""
        async with _api(client_for, ctx) as api:
            _, cursor = await api.deliveries(None, wait_ms=0)  # "now", before it exists
            subscription_id = await api.subscribe(query, min_score=min_score)
        return {"subscription_id": subscription_id, "cursor": cursor}

    @server.tool()
    async def unsubscribe(
        subscription_id: Annotated[str, Field(description='the id subscribe returned ("sub-...")')],
        ctx: Context,
    ) -> dict[str, Any]:
        """Stop a subscription made with subscribe. Returns {"unsubscribed": id}."""
        async with _api(client_for, ctx) as api:
            await api.unsubscribe(subscription_id)
        return {"unsubscribed": subscription_id}

    @server.tool()
    async def poll_deliveries(
        ctx: Context,
        since: Annotated[
            str | None,
            Field(
                description="the cursor from subscribe or the previous poll_deliveries; "
                "without one it starts from now (earlier deliveries are skipped)"
            ),
        ] = None,
        wait_seconds: Annotated[
            float, Field(description="how long to wait when nothing is there yet (0-30)")
        ] = 2.0,
        limit: Annotated[int, Field(description="how many at most (1-500)")] = 50,
    ) -> dict[str, Any]:
        """Receive the memories your subscriptions matched after a cursor. Returns
        {"deliveries": [{memory_id, text, score, source_agent, subscription_id, cursor,
        ...}], "cursor": ...}; pass the returned cursor to the next call so that nothing is
        missed or received twice."""
        wait_ms = int(max(0.0, min(wait_seconds, 30.0)) * 1000)
        async with _api(client_for, ctx) as api:
            items, cursor = await _detached(api.deliveries(since, wait_ms=wait_ms, limit=limit))
        return {"deliveries": [_dump(d) for d in items], "cursor": cursor}

    @server.resource(
        DELIVERIES_URI,
        name="deliveries",
        title="New deliveries of your subscriptions",
        description="Memories your subscriptions matched that this session has not read yet "
        "(reading drains them). Subscribe to this resource to be notified when there are new "
        "ones; needs a session (stdio or streamable HTTP with a handshake).",
        mime_type="application/json",
    )
    async def deliveries_resource() -> str:
        rctx = _CURRENT.get()
        connection = _connection(rctx) if rctx is not None else None
        inbox = connection.state.get(_INBOX_KEY) if connection is not None else None
        if inbox is None:
            return json.dumps(
                {"deliveries": [], "cursor": None, "hint": f"subscribe to {DELIVERIES_URI}"}
            )
        items = list(inbox.pending)
        inbox.pending.clear()
        return json.dumps({"deliveries": items, "cursor": inbox.cursor})

    async def on_subscribe(
        rctx: ServerRequestContext[Any, Any], params: types.SubscribeRequestParams
    ) -> types.EmptyResult:
        if str(params.uri) != DELIVERIES_URI:
            raise MCPError(code=types.INVALID_PARAMS, message=f"no resource {params.uri}")
        connection = _connection(rctx)
        if connection is None:
            return types.EmptyResult()
        inbox = _inbox(connection)
        if inbox.watcher is not None:
            return types.EmptyResult()
        watcher = inbox.watcher = anyio.CancelScope()  # taken before any await: one per session
        try:
            async with client_for(rctx.request) as client:
                _, inbox.cursor = await client.deliveries(None, wait_ms=0)  # from now on
        except (ToolError, MemstreamError, httpx.HTTPError) as err:
            inbox.watcher = None
            message = describe(err) if isinstance(err, MemstreamError) else str(err)
            raise MCPError(code=types.INTERNAL_ERROR, message=message) from err
        runtime: _Runtime = rctx.lifespan_context
        runtime.tasks.start_soon(_watch, inbox, watcher, client_for(rctx.request), connection)
        return types.EmptyResult()

    async def on_unsubscribe(
        rctx: ServerRequestContext[Any, Any], params: types.UnsubscribeRequestParams
    ) -> types.EmptyResult:
        connection = _connection(rctx)
        inbox = connection.state.get(_INBOX_KEY) if connection is not None else None
        if str(params.uri) == DELIVERIES_URI and inbox is not None and inbox.watcher is not None:
            inbox.watcher.cancel()
            inbox.watcher = None
        return types.EmptyResult()

    # MCPServer has no decorator for resources/subscribe; registering the handlers on its
    # low-level server also makes the initialize result advertise `resources.subscribe`.
    lowlevel = server._lowlevel_server
    lowlevel.add_request_handler("resources/subscribe", types.SubscribeRequestParams, on_subscribe)
    lowlevel.add_request_handler(
        "resources/unsubscribe", types.UnsubscribeRequestParams, on_unsubscribe
    )
    return server


async def _watch(
    inbox: _Inbox,
    watcher: anyio.CancelScope,
    opened: AbstractAsyncContextManager[AsyncHttpClient],
    connection: Any,
) -> None:
    """Long-poll this session's agent's deliveries and notify the session of each batch,
    until it unsubscribes, its session ends or the server stops."""
    failures = 0
    WATCHERS.inc()
    try:
        with watcher:
            async with opened as client:
                while True:
                    try:
                        items, inbox.cursor = await _detached(
                            client.deliveries(inbox.cursor, wait_ms=WATCH_WAIT_MS)
                        )
                        failures = 0
                    except (Unauthorized, Forbidden) as err:
                        log.info("mcp delivery watcher stops", reason=describe(err))
                        return
                    except (MemstreamError, httpx.HTTPError) as err:
                        failures += 1
                        log.warning("mcp delivery watcher poll failed", error=repr(err))
                        await anyio.sleep(min(30.0, 0.5 * 2**failures))
                        continue
                    if not items:
                        continue
                    inbox.pending.extend(_dump(d) for d in items)
                    try:
                        await connection.send_resource_updated(DELIVERIES_URI)
                    except Exception as err:  # the session's channel is gone
                        log.info("mcp delivery watcher stops", reason=repr(err))
                        return
    finally:
        WATCHERS.dec()
        if inbox.watcher is watcher:
            inbox.watcher = None


# --- the /mcp door ------------------------------------------------------------------------------


def _unauthorized(message: str) -> ASGIApp:
    async def respond(scope: Scope, receive: Receive, send: Send) -> None:
        body = json.dumps({"error": message}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b"Bearer"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return respond


class BearerGate:
    """ASGI wrapper of the MCP endpoint: 401 without a token the API's token store accepts;
    otherwise the request goes on with its identity as the SDK's authenticated user, so the
    session manager binds each session to the token that opened it."""

    def __init__(self, app: ASGIApp, tokens: Any) -> None:
        self.app, self.tokens = app, tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        from memstream.services.auth import InvalidToken

        if scope["type"] != "http":
            return
        header = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        method, _, token = header.decode("latin-1").partition(" ")
        token = token.strip()
        if method.lower() != "bearer" or not token:
            await _unauthorized("an `Authorization: Bearer <token>` header is required")(
                scope, receive, send
            )
            return
        try:
            caller = await anyio.to_thread.run_sync(self.tokens.verify, token)
        except InvalidToken as err:
            await _unauthorized(str(err))(scope, receive, send)
            return
        from memstream.services.auth import token_id

        who = AccessToken(
            token=token,
            client_id=token_id(token) or f"{caller.tenant}/{caller.agent_id}",
            scopes=[],
            subject=f"{caller.tenant}/{caller.agent_id}",
        )
        await self.app({**scope, "user": AuthenticatedUser(who)}, receive, send)


def _token_of(request: Any) -> str:
    user = getattr(request, "scope", {}).get("user") if request is not None else None
    if not isinstance(user, AuthenticatedUser):
        raise ToolError("this MCP request carries no memstream token (Authorization: Bearer)")
    return user.access_token.token


def create_mcp(api: Any) -> tuple[ASGIApp, StreamableHTTPSessionManager]:
    """The `/mcp` ASGI app for the FastAPI `api` and its session manager (run it with
    `async with session_manager.run():` around the server). Tools call `api` in process
    with the caller's token, so they pass the same checks as any HTTP client."""

    @asynccontextmanager
    async def client_for(request: Any) -> AsyncIterator[AsyncHttpClient]:
        token = _token_of(request)
        transport = httpx.ASGITransport(app=api)
        async with AsyncHttpClient(IN_PROCESS_URL, token, transport=transport) as client:
            yield client

    server = build_server(client_for)
    # Host/Origin checks guard cookie-style ambient credentials against DNS rebinding; here
    # every request needs an explicit bearer token, which a rebound page does not have, and
    # the API may be reached under any host name.
    server.streamable_http_app(
        json_response=True,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    sessions = server.session_manager
    return BearerGate(sessions.handle_request, api.state.tokens), sessions


def mount_mcp(api: Any) -> StreamableHTTPSessionManager:
    """Serve MCP at `/mcp` (and `/mcp/`) of `api`; returns the session manager to run."""
    app, sessions = create_mcp(api)
    for path in ("/mcp", "/mcp/"):
        api.add_route(path, app, include_in_schema=False)
    return sessions


# --- the stdio door -----------------------------------------------------------------------------


async def serve_stdio(url: str, token: str) -> None:
    """Serve MCP on stdin/stdout with the API at `url` and this token; Unauthorized when the
    API refuses the token (an unreachable API is only warned about: it may come up later)."""
    async with AsyncHttpClient(url, token) as client:
        try:
            await client.subscriptions()
        except Unauthorized:
            raise
        except (MemstreamError, httpx.HTTPError) as err:
            log.warning("memstream API not reachable yet", url=url, error=repr(err))

        @asynccontextmanager
        async def client_for(request: Any) -> AsyncIterator[AsyncHttpClient]:
            yield client

        await build_server(client_for).run_stdio_async()


def run_stdio(url: str, token: str) -> None:
    """Blocking: `serve_stdio` until the host closes stdin."""
    anyio.run(serve_stdio, url, token)
