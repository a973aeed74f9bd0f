"""Subscriptions and their deliveries: the tools, the resource and its push watcher."""

from __future__ import annotations

import json
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any

import anyio
import anyio.abc
import httpx
import mcp.types as types
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from pydantic import Field

from memstream.sdk.http import AsyncHttpClient, Forbidden, MemstreamError, Unauthorized
from memstream.services.mcp.session import (
    _CURRENT,
    _INBOX_KEY,
    DELIVERIES_URI,
    WATCH_WAIT_MS,
    WATCHERS,
    ClientFor,
    _api,
    _connection,
    _detached,
    _dump,
    _Inbox,
    _inbox,
    _Runtime,
    describe,
    log,
)


def add_delivery_tools(server: MCPServer[Any], client_for: ClientFor) -> None:
    """Register these tools on `server`; they call the API through `client_for`."""

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
