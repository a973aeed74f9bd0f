"""`HttpClient`: the blocking transport for the calls `calls.py` builds and answers."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
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
    ImportSummary,
    MemoryRecord,
    Outcome,
    SearchHit,
    SubscriptionInfo,
)


class HttpClient:
    """Blocking client for the memstream HTTP API."""

    def __init__(self, url: str, token: str, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, headers=calls._headers(token), timeout=timeout)

    def _do(self, call: _Call) -> Any:
        response = self._http.request(call.method, call.path, params=call.query(), json=call.body)
        return call.answer(response)

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
        return self._do(
            calls._add(text, scope, tags, topic, metadata, context, supersedes, ttl, fact)
        )

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
        return self._do(calls._search(query, k, topics, tags, as_of, mode))

    def get(self, memory_id: UUID | str) -> MemoryRecord:
        """One memory (NotFound if absent or not visible to this token)."""
        return self._do(calls._get(memory_id))

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
        return self._do(calls._list(topic, agent, tags, since, limit, cursor))

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
        return self._do(calls._delete(memory_id))

    def history(self, memory_id: UUID | str) -> list[MemoryRecord]:
        """The supersession chain through a memory, oldest first."""
        return self._do(calls._history(memory_id))

    def feedback(
        self,
        memory_id: UUID | str,
        outcome: Outcome,
        *,
        score: float | None = None,
        note: str | None = None,
    ) -> UUID:
        return self._do(calls._feedback(memory_id, outcome, score, note))

    def cache_result(
        self,
        task: str,
        result: str,
        *,
        verification: Literal["verified", "unverified", "failed"] = "unverified",
        scope: str = "tenant",
    ) -> CachedResult:
        """Publish a task's result, so that agents about to do the same task find it."""
        return self._do(calls._cache_result(task, result, verification, scope))

    def reputation(self, agent_id: str) -> dict[str, Any]:
        """An agent's reputation in your tenant and what it rests on."""
        return self._do(calls._reputation(agent_id))

    def pooled_state(self, team: str) -> dict[str, Any]:
        """Your team's pooled memory state: members, their attention influence, the vector
        (members of the team only; NotFound before its first team memory)."""
        return self._do(calls._pooled_state(team))

    def lookup(self, task: str) -> CacheLookup:
        """A stored result for this task (same meaning, same values), if there is one."""
        return self._do(calls._lookup(task))

    def model(self, name: str, version: int | None = None) -> ModelVersion:
        """A student policy of your team (`onnx_b64` holds the model; NotFound before the
        first version, Forbidden outside the team)."""
        return self._do(calls._model(name, version))

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
        return self._do(calls._subscribe(query, min_score, filters, include_own, max_per_minute))

    def unsubscribe(self, subscription_id: str) -> None:
        self._do(calls._unsubscribe(subscription_id))

    def subscriptions(self) -> list[SubscriptionInfo]:
        return self._do(calls._subscriptions())

    def deliveries(
        self, cursor: str | None = None, *, wait_ms: int = 1000, limit: int = 100
    ) -> tuple[list[DeliveredMemory], str]:
        """One long poll: deliveries after `cursor` (from now without one) and the cursor
        to poll from next."""
        return self._do(calls._deliveries(cursor, wait_ms, limit))

    def stream(
        self, cursor: str | None = None, *, reconnect: bool = True
    ) -> Iterator[DeliveredMemory]:
        """Deliveries as they come (server-sent events), forever; on a dropped connection it
        reconnects with the last event id, so nothing is missed (one may repeat)."""
        last = cursor
        while True:
            headers = calls._stream_headers(last)
            try:
                with self._http.stream(
                    "GET", "/v1/stream", headers=headers, timeout=calls.STREAM_TIMEOUT
                ) as response:
                    if response.status_code >= 400:
                        response.read()
                        _raise_for(response)
                    parser = calls._SseParser()
                    for line in response.iter_lines():
                        delivery = parser.delivery(line)
                        if delivery is not None:
                            last = delivery.cursor or last
                            yield delivery
            except (httpx.TransportError, httpx.RemoteProtocolError):
                if not reconnect:
                    raise
                time.sleep(1.0)

    def topics(self) -> dict[str, int]:
        return self._do(calls._topics())

    def export(self, *, topic: str | None = None) -> Iterator[dict[str, Any]]:
        """Every memory this token may see, as export rows (streamed)."""
        params = calls._export(topic).query()
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
        return self._do(calls._import(lines, source, default_scope))

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
