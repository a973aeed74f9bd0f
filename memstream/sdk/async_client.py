"""`AsyncHttpClient`: the asyncio transport for the calls `calls.py` builds and answers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import httpx

from memstream.schemas.answers import CachedResult, CacheLookup, MemoryPage, ModelVersion
from memstream.sdk import calls
from memstream.sdk.calls import _Call
from memstream.sdk.errors import NotFound, _raise_for
from memstream.sdk.results import (
    DeliveredMemory,
    MemoryRecord,
    Outcome,
    SearchHit,
    SubscriptionInfo,
)


class AsyncHttpClient:
    """The same API for asyncio; every method is a coroutine (`stream` an async iterator)."""

    def __init__(self, url: str, token: str, *, timeout: float = 30.0, **httpx_args: Any) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=calls._headers(token), timeout=timeout, **httpx_args
        )

    async def _do(self, call: _Call) -> Any:
        response = await self._http.request(
            call.method, call.path, params=call.query(), json=call.body
        )
        return call.answer(response)

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
        call = calls._add(text, scope, tags, topic, metadata, context, supersedes, ttl, fact)
        return await self._do(call)

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
        return await self._do(calls._search(query, k, topics, tags, as_of, mode))

    async def get(self, memory_id: UUID | str) -> MemoryRecord:
        return await self._do(calls._get(memory_id))

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
        return await self._do(calls._list(topic, agent, tags, since, limit, cursor))

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
        return await self._do(calls._delete(memory_id))

    async def history(self, memory_id: UUID | str) -> list[MemoryRecord]:
        return await self._do(calls._history(memory_id))

    async def feedback(
        self,
        memory_id: UUID | str,
        outcome: Outcome,
        *,
        score: float | None = None,
        note: str | None = None,
    ) -> UUID:
        return await self._do(calls._feedback(memory_id, outcome, score, note))

    async def cache_result(
        self,
        task: str,
        result: str,
        *,
        verification: Literal["verified", "unverified", "failed"] = "unverified",
        scope: str = "tenant",
    ) -> CachedResult:
        """Publish a task's result, so that agents about to do the same task find it."""
        return await self._do(calls._cache_result(task, result, verification, scope))

    async def reputation(self, agent_id: str) -> dict[str, Any]:
        """An agent's reputation in your tenant and what it rests on."""
        return await self._do(calls._reputation(agent_id))

    async def pooled_state(self, team: str) -> dict[str, Any]:
        return await self._do(calls._pooled_state(team))

    async def model(self, name: str, version: int | None = None) -> ModelVersion:
        return await self._do(calls._model(name, version))

    async def lookup(self, task: str) -> CacheLookup:
        """A stored result for this task (same meaning, same values), if there is one."""
        return await self._do(calls._lookup(task))

    async def subscribe(
        self,
        query: str,
        *,
        min_score: float = 0.5,
        filters: dict[str, Any] | None = None,
        include_own: bool = False,
        max_per_minute: int | None = None,
    ) -> str:
        call = calls._subscribe(query, min_score, filters, include_own, max_per_minute)
        return await self._do(call)

    async def unsubscribe(self, subscription_id: str) -> None:
        await self._do(calls._unsubscribe(subscription_id))

    async def subscriptions(self) -> list[SubscriptionInfo]:
        return await self._do(calls._subscriptions())

    async def deliveries(
        self, cursor: str | None = None, *, wait_ms: int = 1000, limit: int = 100
    ) -> tuple[list[DeliveredMemory], str]:
        return await self._do(calls._deliveries(cursor, wait_ms, limit))

    async def stream(
        self, cursor: str | None = None, *, reconnect: bool = True
    ) -> AsyncIterator[DeliveredMemory]:
        last = cursor
        while True:
            headers = calls._stream_headers(last)
            try:
                async with self._http.stream(
                    "GET", "/v1/stream", headers=headers, timeout=calls.STREAM_TIMEOUT
                ) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        _raise_for(response)
                    parser = calls._SseParser()
                    async for line in response.aiter_lines():
                        delivery = parser.delivery(line)
                        if delivery is not None:
                            last = delivery.cursor or last
                            yield delivery
            except (httpx.TransportError, httpx.RemoteProtocolError):
                if not reconnect:
                    raise
                await asyncio.sleep(1.0)

    async def topics(self) -> dict[str, int]:
        return await self._do(calls._topics())

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
