"""Per-request context, per-session state, error texts and the API call every tool makes."""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import anyio.abc
import httpx
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from prometheus_client import Gauge

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
