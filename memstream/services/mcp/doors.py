"""The two doors: streamable HTTP at /mcp behind the API's bearer tokens, and stdio."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import httpx
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

from memstream.sdk.http import AsyncHttpClient, MemstreamError, Unauthorized
from memstream.services.mcp.server import build_server
from memstream.services.mcp.session import IN_PROCESS_URL, log

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
