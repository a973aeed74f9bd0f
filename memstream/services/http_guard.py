"""ASGI middleware at the HTTP edge: bodies within their limit and well-formed JSON before
any route sees them, and a last resort that turns a bug into a JSON 500.

`BodyGuard` reads the whole body first (413 over the limit, by `Content-Length` or by
counting a chunked body), then parses JSON bodies with pydantic's parser (jiter): its
nesting limit and its refusal of lone surrogates give a 422 naming the problem where
Python's `json` would recurse until it fails or hand a surrogate to the serializers. The
route then parses the same bytes again, now known to be safe.
"""

from __future__ import annotations

import json

from pydantic_core import from_json
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from memstream.logging import get_logger

log = get_logger("memstream.api")


async def _send_json(send: Send, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


class BodyGuard:
    """413 for bodies over `limit` bytes; 422 for JSON bodies that are not valid JSON."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._too_large(send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body and b"json" in headers.get(b"content-type", b""):
            try:
                from_json(body)
            except ValueError as err:
                await _send_json(
                    send, 422, {"error": "invalid JSON", "detail": str(err)[:500], "fields": []}
                )
                return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()  # a disconnect, when the client goes away
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        await _send_json(send, 413, {"error": "request body too large", "limit_bytes": self.limit})


class CatchAll:
    """A request that raises gets a JSON 500 and the connection stays usable; the error is
    logged with the route, since it is a bug to fix."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception:
            log.exception("request failed", method=scope.get("method"), path=scope.get("path"))
            if not started:
                await _send_json(send, 500, {"error": "internal error"})
