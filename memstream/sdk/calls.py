"""The HTTP SDK's requests, built and answered in one place for both clients: each call
names its method, path, query and body, and how its answer is parsed; the sync and async
transports only send it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import httpx

from memstream.schemas.answers import (
    CachedResult,
    CacheLookup,
    MemoryPage,
    ModelVersion,
)
from memstream.sdk.errors import _raise_for
from memstream.sdk.results import (
    DeliveredMemory,
    ImportSummary,
    MemoryRecord,
    SearchHit,
    SubscriptionInfo,
)


def _as_is(data: Any) -> Any:
    return data


def _event_id(data: Any) -> UUID:
    return UUID(data["event_id"])


@dataclass(frozen=True)
class _Call:
    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    body: Any = None
    parse: Callable[[Any], Any] = _as_is

    def query(self) -> list[tuple[str, str]]:
        """Query parameters without Nones; lists repeat their key."""
        out: list[tuple[str, str]] = []
        for key, value in self.params.items():
            if value is None:
                continue
            for item in value if isinstance(value, list) else [value]:
                out.append((key, item.isoformat() if isinstance(item, datetime) else str(item)))
        return out

    def answer(self, response: httpx.Response) -> Any:
        """The parsed answer, or the `MemstreamError` the API's refusal maps to."""
        _raise_for(response)
        return self.parse(response.json() if response.content else None)


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
    return _Call("POST", "/v1/memories", body=body, parse=_event_id)


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
    return _Call("GET", "/v1/memories", params, parse=lambda d: MemoryPage(**d))


def _cache_result(task: str, result: str, verification: str, scope: str) -> _Call:
    body = {"task": task, "result": result, "verification": verification, "scope": scope}
    return _Call("POST", "/v1/cache", body=body, parse=lambda d: CachedResult(**d))


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
    return _Call("POST", "/v1/subscriptions", body=body, parse=lambda d: d["subscription_id"])


def _search(
    query: str,
    k: int,
    topics: list[str] | None,
    tags: list[str] | None,
    as_of: datetime | None,
    mode: str,
) -> _Call:
    params: dict[str, Any] = {"q": query, "k": k, "topic": topics, "tag": tags, "mode": mode}
    if as_of is not None:
        params["as_of"] = as_of.isoformat()
    return _Call(
        "GET", "/v1/search", params, parse=lambda d: [SearchHit(**r) for r in d["results"]]
    )


def _get(memory_id: UUID | str) -> _Call:
    return _Call("GET", f"/v1/memories/{memory_id}", parse=lambda d: MemoryRecord(**d))


def _delete(memory_id: UUID | str) -> _Call:
    return _Call("DELETE", f"/v1/memories/{memory_id}", parse=_event_id)


def _history(memory_id: UUID | str) -> _Call:
    parse = lambda d: [MemoryRecord(**m) for m in d["versions"]]  # noqa: E731
    return _Call("GET", f"/v1/memories/{memory_id}/history", parse=parse)


def _feedback(memory_id: UUID | str, outcome: str, score: float | None, note: str | None) -> _Call:
    body = {"memory_id": str(memory_id), "outcome": outcome, "score": score, "note": note}
    body = {k: v for k, v in body.items() if v is not None}
    return _Call("POST", "/v1/feedback", body=body, parse=_event_id)


def _reputation(agent_id: str) -> _Call:
    return _Call("GET", f"/v1/agents/{agent_id}/reputation")


def _pooled_state(team: str) -> _Call:
    return _Call("GET", f"/v1/teams/{team}/pooled")


def _lookup(task: str) -> _Call:
    return _Call("POST", "/v1/cache/lookup", body={"task": task}, parse=lambda d: CacheLookup(**d))


def _model(name: str, version: int | None) -> _Call:
    parse = lambda d: ModelVersion(**d)  # noqa: E731
    return _Call("GET", f"/v1/models/{name}", {"version": version}, parse=parse)


def _unsubscribe(subscription_id: str) -> _Call:
    return _Call("DELETE", f"/v1/subscriptions/{subscription_id}")


def _subscriptions() -> _Call:
    return _Call("GET", "/v1/subscriptions", parse=lambda d: [SubscriptionInfo(**s) for s in d])


def _parse_deliveries(data: Any) -> tuple[list[DeliveredMemory], str]:
    items = [DeliveredMemory.from_api(d["cursor"], d) for d in data["deliveries"]]
    return items, data["cursor"]


def _deliveries(cursor: str | None, wait_ms: int, limit: int) -> _Call:
    params = {"cursor": cursor, "wait_ms": wait_ms, "limit": limit}
    return _Call("GET", "/v1/deliveries", params, parse=_parse_deliveries)


def _topics() -> _Call:
    return _Call("GET", "/v1/topics", parse=lambda d: d["topics"])


def _export(topic: str | None) -> _Call:
    return _Call("GET", "/v1/export", {"topic": topic})


def _stream_headers(last: str | None) -> dict[str, str]:
    return {"Last-Event-ID": last} if last else {}


STREAM_TIMEOUT = httpx.Timeout(30.0, read=None)
"""The event stream waits for its next event for as long as it takes."""


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

    def delivery(self, line: str) -> DeliveredMemory | None:
        """The delivery this line completes, if it ends one."""
        event = self.feed(line)
        return _delivery(*event) if event else None


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


def _import(lines: list[tuple[int, str]], source: str, default_scope: str) -> _Call:
    body = {
        "rows": [_import_row(n, text) for n, text in lines],
        "source": source,
        "default_scope": default_scope,
    }
    return _Call("POST", "/v1/import", body=body, parse=lambda d: ImportSummary(**d))


def _headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "User-Agent": "memstream-python"}
