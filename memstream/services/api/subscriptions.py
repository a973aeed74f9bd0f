"""Subscriptions and their deliveries: poll, SSE stream, WebSocket."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Annotated

from fastapi import FastAPI, Header, HTTPException, Query, Request, WebSocket
from fastapi.responses import StreamingResponse

from memstream.schemas.answers import Deliveries, SubscriptionView
from memstream.schemas.events import Subscription, SubscriptionPayload, new_event_id
from memstream.schemas.topics import SUBSCRIPTIONS
from memstream.services.api.backend import Backend, Publish
from memstream.services.api.bodies import SubscriptionCreated, SubscriptionIn
from memstream.services.api.identity import Subscriber, bearer_token
from memstream.services.auth import InvalidToken, TokenStore
from memstream.services.gateway import (
    CHECK_S,
    InvalidCursor,
    check_cursor,
    deliveries_for,
    poll_deliveries,
    sse_stream,
)
from memstream.store.base import Caller


def add_subscription_routes(
    api: FastAPI, backend: Backend, publish: Publish, tokens: TokenStore
) -> None:
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
