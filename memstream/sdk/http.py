"""The HTTP SDK: `HttpClient` (sync) and `AsyncHttpClient` (asyncio), over httpx.

Both speak to the memstream API with a bearer token; the token, not the client, decides
tenant, agent, teams and clearance, so an agent outside the cluster's trust boundary uses
this (the Kafka `memstream.Client` is for services inside it). Every method maps to one
endpoint; a 4xx answer raises a `MemstreamError` subclass naming what was wrong.

    with HttpClient("http://127.0.0.1:8000", token) as ms:
        event_id = ms.add("the staging DB moved to eu-west-2", tags=["infra"])
        ms.wait_for(event_id)
        for hit in ms.search("where is the staging database?", k=3):
            print(hit.score, hit.text)
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import httpx
from pydantic import BaseModel

from memstream.schemas.answers import (
    CachedResult,
    CacheLookup,
    MemoryPage,
    MemoryView,
    ModelVersion,
    SearchResult,
    SubscriptionView,
)

Outcome = Literal["used", "helped", "wrong", "ignored"]


# --- results -----------------------------------------------------------------------------------


# the API's own answer models (schemas/answers.py), under the names the SDK gives them
SearchHit = SearchResult
MemoryRecord = MemoryView
SubscriptionInfo = SubscriptionView


class DeliveredMemory(BaseModel):
    """One pushed memory: `cursor` resumes after it."""

    cursor: str
    subscription_id: str
    memory_id: UUID
    text: str
    score: float
    source_agent: str
    memory_scope: str
    tags: list[str] = []
    topic: str | None = None
    redacted: bool = False

    @classmethod
    def from_api(cls, cursor: str, data: dict[str, Any]) -> DeliveredMemory:
        payload = data.get("payload", data)
        fields = {k: payload[k] for k in cls.model_fields if k in payload and k != "cursor"}
        return cls(cursor=cursor, **fields)


class ImportSummary(BaseModel):
    accepted: int
    dead_lettered: int
    rows: list[dict[str, Any]]


# --- errors ------------------------------------------------------------------------------------


class MemstreamError(Exception):
    """An answer the API refused; `status` is its HTTP status, `fields` the invalid ones."""

    def __init__(self, status: int, message: str, fields: list[dict[str, str]] | None = None):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.fields = fields or []


class InvalidRequest(MemstreamError):
    """400 or 422: the request names a bad value (see `fields`)."""


class Unauthorized(MemstreamError):
    """401: no token, or one that is unknown or revoked."""


class Forbidden(MemstreamError):
    """403: the token's identity may not do this."""


class NotFound(MemstreamError):
    """404: no such thing visible to this token (not found and not yours look the same)."""


class PayloadTooLarge(MemstreamError):
    """413: the body or event is over the size limit."""


class RateLimited(MemstreamError):
    """429: over the token's rate limit or privacy budget; retry after `retry_after` s."""

    retry_after: float | None = None


_ERRORS: dict[int, type[MemstreamError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    413: PayloadTooLarge,
    422: InvalidRequest,
    429: RateLimited,
}


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except ValueError:
        body = {"error": response.text[:500]}
    message = str(body.get("error", "")) if isinstance(body, dict) else str(body)
    fields = body.get("fields") if isinstance(body, dict) else None
    error = _ERRORS.get(response.status_code, MemstreamError)(response.status_code, message, fields)
    if isinstance(error, RateLimited) and "retry-after" in response.headers:
        error.retry_after = float(response.headers["retry-after"])
    raise error


# --- requests, shared by both clients ----------------------------------------------------------


@dataclass(frozen=True)
class _Call:
    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    body: Any = None

    def query(self) -> list[tuple[str, str]]:
        """Query parameters without Nones; lists repeat their key."""
        out: list[tuple[str, str]] = []
        for key, value in self.params.items():
            if value is None:
                continue
            for item in value if isinstance(value, list) else [value]:
                out.append((key, item.isoformat() if isinstance(item, datetime) else str(item)))
        return out


def _add(
    text: str,
    scope: str,
    tags: list[str] | None,
    topic: str | None,
    metadata: dict[str, Any] | None,
    context: str | None,
    supersedes: Iterable[UUID | str] | None,
    ttl: float | None,
    fact: dict[str, str] | None = None,
) -> _Call:
    body: dict[str, Any] = {"text": text, "scope": scope, "tags": tags or []}
    if topic is not None:
        body["topic"] = topic
    if metadata:
        body["metadata"] = metadata
    if context is not None:
        body["context"] = context
    if supersedes:
        body["supersedes"] = [str(s) for s in supersedes]
    if ttl is not None:
        body["ttl"] = ttl
    if fact is not None:
        body["fact"] = fact
    return _Call("POST", "/v1/memories", body=body)


def _list(
    topic: str | None,
    agent: str | None,
    tags: list[str] | None,
    since: datetime | None,
    limit: int,
    cursor: str | None,
) -> _Call:
    params = {
        "topic": topic,
        "agent": agent,
        "tag": tags,
        "since": since,
        "limit": limit,
        "cursor": cursor,
    }
    return _Call("GET", "/v1/memories", params)


def _cache_result(task: str, result: str, verification: str, scope: str) -> _Call:
    body = {"task": task, "result": result, "verification": verification, "scope": scope}
    return _Call("POST", "/v1/cache", body=body)


def _subscribe(
    query: str,
    min_score: float,
    filters: dict[str, Any] | None,
    include_own: bool,
    max_per_minute: int | None = None,
) -> _Call:
    body: dict[str, Any] = {"query": query, "min_score": min_score, "include_own": include_own}
    if max_per_minute is not None:
        body["max_per_minute"] = max_per_minute
    if filters:
        body["filters"] = filters
    return _Call("POST", "/v1/subscriptions", body=body)


class _SseParser:
    """Server-sent events, a line at a time: `feed` returns (id, data) when one ends;
    comments (the heartbeats) are skipped."""

    def __init__(self) -> None:
        self.event_id: str | None = None
        self.data: list[str] = []

    def feed(self, line: str) -> tuple[str | None, str] | None:
        if not line:
            done = (self.event_id, "\n".join(self.data)) if self.data else None
            self.event_id, self.data = None, []
            return done
        if line.startswith("id:"):
            self.event_id = line[3:].strip()
        elif line.startswith("data:"):
            self.data.append(line[5:].lstrip())
        return None


def _delivery(event_id: str | None, data: str) -> DeliveredMemory | None:
    try:
        body = json.loads(data)
    except ValueError:
        return None
    cursor = event_id or body.get("cursor", "")
    return DeliveredMemory.from_api(cursor, body.get("delivery", body))


MAX_ROW_BYTES = 900 * 1024
"""Largest row an import sends whole (the API's body limit is 1 MiB by default); a longer
one is sent cut, with its size, and the API dead-letters it."""


def _import_row(line: int, text: str) -> dict[str, Any]:
    size = len(text.encode())
    if size <= MAX_ROW_BYTES:
        return {"line": line, "data": text}
    return {"line": line, "data": text[:4096], "size": size}


def _headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "User-Agent": "memstream-python"}


# --- the clients -------------------------------------------------------------------------------


class HttpClient:
    """Blocking client for the memstream HTTP API."""

    def __init__(self, url: str, token: str, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, headers=_headers(token), timeout=timeout)

    def _do(self, call: _Call) -> Any:
        response = self._http.request(call.method, call.path, params=call.query(), json=call.body)
        _raise_for(response)
        return response.json() if response.content else None

    def add(
        self,
        text: str,
        *,
        scope: str = "tenant",
        tags: list[str] | None = None,
        topic: str | None = None,
        metadata: dict[str, Any] | None = None,
        context: str | None = None,
        supersedes: Iterable[UUID | str] | None = None,
        ttl: float | None = None,
        fact: dict[str, str] | None = None,
    ) -> UUID:
        """Share a memory; returns its id (it is searchable once indexed: `wait_for`).
        `ttl`: seconds it lives."""
        call = _add(text, scope, tags, topic, metadata, context, supersedes, ttl, fact)
        return UUID(self._do(call)["event_id"])

    def search(
        self,
        query: str,
        k: int = 10,
        *,
        topics: list[str] | None = None,
        tags: list[str] | None = None,
        as_of: datetime | None = None,
        mode: str = "episodic",
    ) -> list[SearchHit]:
        """Hybrid search; `as_of` (aware datetime): the memories valid at that time; `mode`:
        episodic (memories), knowledge (consolidated facts, `provenance` set) or auto."""
        params: dict[str, Any] = {"q": query, "k": k, "topic": topics, "tag": tags, "mode": mode}
        if as_of is not None:
            params["as_of"] = as_of.isoformat()
        data = self._do(_Call("GET", "/v1/search", params))
        return [SearchHit(**r) for r in data["results"]]

    def get(self, memory_id: UUID | str) -> MemoryRecord:
        """One memory (NotFound if absent or not visible to this token)."""
        return MemoryRecord(**self._do(_Call("GET", f"/v1/memories/{memory_id}")))

    def list(
        self,
        *,
        topic: str | None = None,
        agent: str | None = None,
        tags: list[str] | None = None,
        since: datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> MemoryPage:
        """One page of the memories this token may see, oldest first."""
        return MemoryPage(**self._do(_list(topic, agent, tags, since, limit, cursor)))

    def iterate(self, **narrow: Any) -> Iterator[MemoryRecord]:
        """Every memory `list` would page through, page by page."""
        cursor = None
        while True:
            page = self.list(cursor=cursor, **narrow)
            yield from page.memories
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def delete(self, memory_id: UUID | str) -> UUID:
        """Delete a memory (author or admin); returns the deletion event's id."""
        return UUID(self._do(_Call("DELETE", f"/v1/memories/{memory_id}"))["event_id"])

    def history(self, memory_id: UUID | str) -> list[MemoryRecord]:
        """The supersession chain through a memory, oldest first."""
        data = self._do(_Call("GET", f"/v1/memories/{memory_id}/history"))
        return [MemoryRecord(**m) for m in data["versions"]]

    def feedback(
        self,
        memory_id: UUID | str,
        outcome: Outcome,
        *,
        score: float | None = None,
        note: str | None = None,
    ) -> UUID:
        body = {"memory_id": str(memory_id), "outcome": outcome, "score": score, "note": note}
        body = {k: v for k, v in body.items() if v is not None}
        return UUID(self._do(_Call("POST", "/v1/feedback", body=body))["event_id"])

    def cache_result(
        self,
        task: str,
        result: str,
        *,
        verification: Literal["verified", "unverified", "failed"] = "unverified",
        scope: str = "tenant",
    ) -> CachedResult:
        """Publish a task's result, so that agents about to do the same task find it."""
        return CachedResult(**self._do(_cache_result(task, result, verification, scope)))

    def reputation(self, agent_id: str) -> dict[str, Any]:
        """An agent's reputation in your tenant and what it rests on."""
        return self._do(_Call("GET", f"/v1/agents/{agent_id}/reputation"))

    def pooled_state(self, team: str) -> dict[str, Any]:
        """Your team's pooled memory state: members, their attention influence, the vector
        (members of the team only; NotFound before its first team memory)."""
        return self._do(_Call("GET", f"/v1/teams/{team}/pooled"))

    def lookup(self, task: str) -> CacheLookup:
        """A stored result for this task (same meaning, same values), if there is one."""
        return CacheLookup(**self._do(_Call("POST", "/v1/cache/lookup", body={"task": task})))

    def model(self, name: str, version: int | None = None) -> ModelVersion:
        """A student policy of your team (`onnx_b64` holds the model; NotFound before the
        first version, Forbidden outside the team)."""
        return ModelVersion(**self._do(_Call("GET", f"/v1/models/{name}", {"version": version})))

    def subscribe(
        self,
        query: str,
        *,
        min_score: float = 0.5,
        filters: dict[str, Any] | None = None,
        include_own: bool = False,
        max_per_minute: int | None = None,
    ) -> str:
        """A standing query; returns the subscription id. Read deliveries with `stream` or
        `deliveries`. `max_per_minute`: deliveries past it are dropped (server default 60)."""
        call = _subscribe(query, min_score, filters, include_own, max_per_minute)
        return self._do(call)["subscription_id"]

    def unsubscribe(self, subscription_id: str) -> None:
        self._do(_Call("DELETE", f"/v1/subscriptions/{subscription_id}"))

    def subscriptions(self) -> list[SubscriptionInfo]:
        return [SubscriptionInfo(**s) for s in self._do(_Call("GET", "/v1/subscriptions"))]

    def deliveries(
        self, cursor: str | None = None, *, wait_ms: int = 1000, limit: int = 100
    ) -> tuple[list[DeliveredMemory], str]:
        """One long poll: deliveries after `cursor` (from now without one) and the cursor
        to poll from next."""
        params = {"cursor": cursor, "wait_ms": wait_ms, "limit": limit}
        data = self._do(_Call("GET", "/v1/deliveries", params))
        items = [DeliveredMemory.from_api(d["cursor"], d) for d in data["deliveries"]]
        return items, data["cursor"]

    def stream(
        self, cursor: str | None = None, *, reconnect: bool = True
    ) -> Iterator[DeliveredMemory]:
        """Deliveries as they come (server-sent events), forever; on a dropped connection it
        reconnects with the last event id, so nothing is missed (one may repeat)."""
        last = cursor
        while True:
            headers = {"Last-Event-ID": last} if last else {}
            try:
                with self._http.stream(
                    "GET", "/v1/stream", headers=headers, timeout=httpx.Timeout(30.0, read=None)
                ) as response:
                    if response.status_code >= 400:
                        response.read()
                        _raise_for(response)
                    parser = _SseParser()
                    for line in response.iter_lines():
                        event = parser.feed(line)
                        delivery = _delivery(*event) if event else None
                        if delivery is not None:
                            last = delivery.cursor or last
                            yield delivery
            except (httpx.TransportError, httpx.RemoteProtocolError):
                if not reconnect:
                    raise
                time.sleep(1.0)

    def topics(self) -> dict[str, int]:
        return self._do(_Call("GET", "/v1/topics"))["topics"]

    def export(self, *, topic: str | None = None) -> Iterator[dict[str, Any]]:
        """Every memory this token may see, as export rows (streamed)."""
        params = _Call("GET", "/v1/export", {"topic": topic}).query()
        with self._http.stream("GET", "/v1/export", params=params) as response:
            if response.status_code >= 400:
                response.read()
                _raise_for(response)
            for line in response.iter_lines():
                if line.strip():
                    yield json.loads(line)

    def import_lines(
        self,
        lines: list[tuple[int, str]],
        *,
        source: str = "import",
        default_scope: str = "tenant",
    ) -> ImportSummary:
        """Send (line number, raw line) pairs; bad ones are dead-lettered server-side."""
        body = {
            "rows": [_import_row(n, text) for n, text in lines],
            "source": source,
            "default_scope": default_scope,
        }
        return ImportSummary(**self._do(_Call("POST", "/v1/import", body=body)))

    def wait_for(self, memory_id: UUID | str, timeout: float = 30.0) -> MemoryRecord:
        """The memory once it is indexed (read-your-writes); TimeoutError after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.get(memory_id)
            except NotFound:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"memory {memory_id} not indexed in {timeout} s") from None
                time.sleep(0.1)

    def wait_gone(self, memory_id: UUID | str, timeout: float = 30.0) -> None:
        """Return once the memory is no longer readable (after a delete or its expiry)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.get(memory_id)
            except NotFound:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"memory {memory_id} still readable after {timeout} s")
            time.sleep(0.1)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncHttpClient:
    """The same API for asyncio; every method is a coroutine (`stream` an async iterator)."""

    def __init__(self, url: str, token: str, *, timeout: float = 30.0, **httpx_args: Any) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=_headers(token), timeout=timeout, **httpx_args
        )

    async def _do(self, call: _Call) -> Any:
        response = await self._http.request(
            call.method, call.path, params=call.query(), json=call.body
        )
        _raise_for(response)
        return response.json() if response.content else None

    async def add(
        self,
        text: str,
        *,
        scope: str = "tenant",
        tags: list[str] | None = None,
        topic: str | None = None,
        metadata: dict[str, Any] | None = None,
        context: str | None = None,
        supersedes: Iterable[UUID | str] | None = None,
        ttl: float | None = None,
        fact: dict[str, str] | None = None,
    ) -> UUID:
        call = _add(text, scope, tags, topic, metadata, context, supersedes, ttl, fact)
        return UUID((await self._do(call))["event_id"])

    async def search(
        self,
        query: str,
        k: int = 10,
        *,
        topics: list[str] | None = None,
        tags: list[str] | None = None,
        as_of: datetime | None = None,
        mode: str = "episodic",
    ) -> list[SearchHit]:
        """Hybrid search; `as_of` (aware datetime): the memories valid at that time; `mode`:
        episodic (memories), knowledge (consolidated facts, `provenance` set) or auto."""
        params: dict[str, Any] = {"q": query, "k": k, "topic": topics, "tag": tags, "mode": mode}
        if as_of is not None:
            params["as_of"] = as_of.isoformat()
        data = await self._do(_Call("GET", "/v1/search", params))
        return [SearchHit(**r) for r in data["results"]]

    async def get(self, memory_id: UUID | str) -> MemoryRecord:
        return MemoryRecord(**await self._do(_Call("GET", f"/v1/memories/{memory_id}")))

    async def list(
        self,
        *,
        topic: str | None = None,
        agent: str | None = None,
        tags: list[str] | None = None,
        since: datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> MemoryPage:
        return MemoryPage(**await self._do(_list(topic, agent, tags, since, limit, cursor)))

    async def iterate(self, **narrow: Any) -> AsyncIterator[MemoryRecord]:
        cursor = None
        while True:
            page = await self.list(cursor=cursor, **narrow)
            for memory in page.memories:
                yield memory
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def delete(self, memory_id: UUID | str) -> UUID:
        return UUID((await self._do(_Call("DELETE", f"/v1/memories/{memory_id}")))["event_id"])

    async def history(self, memory_id: UUID | str) -> list[MemoryRecord]:
        data = await self._do(_Call("GET", f"/v1/memories/{memory_id}/history"))
        return [MemoryRecord(**m) for m in data["versions"]]

    async def feedback(
        self,
        memory_id: UUID | str,
        outcome: Outcome,
        *,
        score: float | None = None,
        note: str | None = None,
    ) -> UUID:
        body = {"memory_id": str(memory_id), "outcome": outcome, "score": score, "note": note}
        body = {k: v for k, v in body.items() if v is not None}
        return UUID((await self._do(_Call("POST", "/v1/feedback", body=body)))["event_id"])

    async def cache_result(
        self,
        task: str,
        result: str,
        *,
        verification: Literal["verified", "unverified", "failed"] = "unverified",
        scope: str = "tenant",
    ) -> CachedResult:
        """Publish a task's result, so that agents about to do the same task find it."""
        return CachedResult(**await self._do(_cache_result(task, result, verification, scope)))

    async def reputation(self, agent_id: str) -> dict[str, Any]:
        """An agent's reputation in your tenant and what it rests on."""
        return await self._do(_Call("GET", f"/v1/agents/{agent_id}/reputation"))

    async def pooled_state(self, team: str) -> dict[str, Any]:
        return await self._do(_Call("GET", f"/v1/teams/{team}/pooled"))

    async def model(self, name: str, version: int | None = None) -> ModelVersion:
        data = await self._do(_Call("GET", f"/v1/models/{name}", {"version": version}))
        return ModelVersion(**data)

    async def lookup(self, task: str) -> CacheLookup:
        """A stored result for this task (same meaning, same values), if there is one."""
        data = await self._do(_Call("POST", "/v1/cache/lookup", body={"task": task}))
        return CacheLookup(**data)

    async def subscribe(
        self,
        query: str,
        *,
        min_score: float = 0.5,
        filters: dict[str, Any] | None = None,
        include_own: bool = False,
        max_per_minute: int | None = None,
    ) -> str:
        call = _subscribe(query, min_score, filters, include_own, max_per_minute)
        return (await self._do(call))["subscription_id"]

    async def unsubscribe(self, subscription_id: str) -> None:
        await self._do(_Call("DELETE", f"/v1/subscriptions/{subscription_id}"))

    async def subscriptions(self) -> list[SubscriptionInfo]:
        data = await self._do(_Call("GET", "/v1/subscriptions"))
        return [SubscriptionInfo(**s) for s in data]

    async def deliveries(
        self, cursor: str | None = None, *, wait_ms: int = 1000, limit: int = 100
    ) -> tuple[list[DeliveredMemory], str]:
        params = {"cursor": cursor, "wait_ms": wait_ms, "limit": limit}
        data = await self._do(_Call("GET", "/v1/deliveries", params))
        items = [DeliveredMemory.from_api(d["cursor"], d) for d in data["deliveries"]]
        return items, data["cursor"]

    async def stream(
        self, cursor: str | None = None, *, reconnect: bool = True
    ) -> AsyncIterator[DeliveredMemory]:
        last = cursor
        while True:
            headers = {"Last-Event-ID": last} if last else {}
            try:
                async with self._http.stream(
                    "GET", "/v1/stream", headers=headers, timeout=httpx.Timeout(30.0, read=None)
                ) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        _raise_for(response)
                    parser = _SseParser()
                    async for line in response.aiter_lines():
                        event = parser.feed(line)
                        delivery = _delivery(*event) if event else None
                        if delivery is not None:
                            last = delivery.cursor or last
                            yield delivery
            except (httpx.TransportError, httpx.RemoteProtocolError):
                if not reconnect:
                    raise
                await asyncio.sleep(1.0)

    async def topics(self) -> dict[str, int]:
        return (await self._do(_Call("GET", "/v1/topics")))["topics"]

    async def wait_for(self, memory_id: UUID | str, timeout: float = 30.0) -> MemoryRecord:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return await self.get(memory_id)
            except NotFound:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"memory {memory_id} not indexed in {timeout} s") from None
                await asyncio.sleep(0.1)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncHttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
