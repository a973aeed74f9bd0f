"""`memstream bench load`: a steady mix of writes, searches and streams against a running API.

Each client is one agent (its own token) looping, for `seconds`, over: a write (POST
/v1/memories) at its share of `rate`, a search after every `searches_per_write` writes,
and one open SSE stream of its deliveries (the clients subscribe to each other's topics,
so memories are pushed). Bounded loops, local addresses only. At the end it checks that
every acknowledged write was indexed (GET /v1/memories/{id}, waiting up to `drain_s`), and
reports achieved rates, p50/p99 latency per route, errors by route and status, and
deliveries received.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import defaultdict
from typing import Any
from urllib.parse import urlparse

import httpx

WORDS = (
    "cache queue deploy region shard index replica backup token schema alert latency "
    "gateway service worker broker cluster release rollback metric"
).split()


def _text(rng: random.Random, client: int, n: int) -> str:
    picked = " ".join(rng.sample(WORDS, 5))
    return f"load client {client} note {n}: the {picked} changed at step {rng.randint(0, 10**6)}"


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {"n": len(ordered), "p50": at(0.50), "p99": at(0.99), "max": round(ordered[-1], 1)}


async def run_load_async(
    url: str,
    tokens: list[str],
    *,
    seconds: float = 60.0,
    rate: float = 10.0,
    searches_per_write: int = 2,
    drain_s: float = 120.0,
    seed: int = 7,
    progress: Any = None,
) -> dict[str, Any]:
    """Drive the API at `url` with one client per token; see the module docstring."""
    host = urlparse(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"the load bench only targets local addresses, not {host}")
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    acked: list[tuple[str, str]] = []  # (token, memory id)
    delivered = 0
    stop_at = time.monotonic() + seconds
    per_client = rate / len(tokens)

    async with httpx.AsyncClient(base_url=url, timeout=30.0) as http:

        async def call(route: str, method: str, path: str, token: str, **kw: Any) -> Any:
            start = time.perf_counter()
            try:
                response = await http.request(
                    method, path, headers={"Authorization": f"Bearer {token}"}, **kw
                )
            except httpx.HTTPError as err:
                errors[f"{route} {type(err).__name__}"] += 1
                return None
            latencies[route].append((time.perf_counter() - start) * 1000)
            if response.status_code >= 400:
                errors[f"{route} {response.status_code}"] += 1
                return None
            return response.json()

        async def stream(token: str) -> None:
            nonlocal delivered
            headers = {"Authorization": f"Bearer {token}"}
            try:
                async with http.stream(
                    "GET", "/v1/stream", headers=headers, timeout=httpx.Timeout(30, read=None)
                ) as response:
                    async for line in response.aiter_lines():
                        if line.startswith("id:"):
                            delivered += 1
            except (httpx.HTTPError, asyncio.CancelledError):
                return

        async def agent(index: int, token: str) -> None:
            rng = random.Random(seed * 1000 + index)
            n = 0
            next_write = time.monotonic()
            while time.monotonic() < stop_at:
                await asyncio.sleep(max(0.0, next_write - time.monotonic()))
                next_write += 1.0 / per_client
                body = {"text": _text(rng, index, n), "topic": "load", "tags": [f"c{index}"]}
                answer = await call("POST /v1/memories", "POST", "/v1/memories", token, json=body)
                if answer is not None:
                    acked.append((token, answer["event_id"]))
                n += 1
                for _ in range(searches_per_write):
                    query = " ".join(rng.sample(WORDS, 3))
                    await call("GET /v1/search", "GET", "/v1/search", token, params={"q": query})
                if progress is not None:
                    progress(len(acked))

        for token in tokens:  # each agent hears about the others' writes
            await call(
                "POST /v1/subscriptions",
                "POST",
                "/v1/subscriptions",
                token,
                json={"query": "load client note changed", "min_score": 0.2},
            )
        streams = [asyncio.create_task(stream(t)) for t in tokens]
        started = time.monotonic()
        await asyncio.gather(*(agent(i, t) for i, t in enumerate(tokens)))
        elapsed = time.monotonic() - started

        # every acknowledged write must be indexed
        missing = list(acked)
        deadline = time.monotonic() + drain_s
        while missing and time.monotonic() < deadline:
            still = []
            for token, memory_id in missing:
                response = await http.get(
                    f"/v1/memories/{memory_id}", headers={"Authorization": f"Bearer {token}"}
                )
                if response.status_code != 200:
                    still.append((token, memory_id))
            missing = still
            if missing:
                await asyncio.sleep(1.0)
        for task in streams:
            task.cancel()
        await asyncio.gather(*streams, return_exceptions=True)

    return {
        "bench": "load",
        "clients": len(tokens),
        "seconds": round(elapsed, 1),
        "target_writes_per_s": rate,
        "achieved": {
            route: round(len(values) / elapsed, 2) for route, values in sorted(latencies.items())
        },
        "latency_ms": {route: _percentiles(v) for route, v in sorted(latencies.items())},
        "errors": dict(sorted(errors.items())),
        "errors_total": sum(errors.values()),
        "writes_acknowledged": len(acked),
        "writes_indexed": len(acked) - len(missing),
        "writes_missing": len(missing),
        "deliveries_received": delivered,
        "run_id": uuid.uuid4().hex[:8],
    }


def run_load(url: str, tokens: list[str], **options: Any) -> dict[str, Any]:
    return asyncio.run(run_load_async(url, tokens, **options))
