"""`memstream bench fuzz`: hostile and careless requests against a running HTTP API.

Each request is drawn from a catalogue of what attackers and careless clients send: deep
and wide metadata, NaN and infinities, lone surrogates (escaped, and as raw bytes), bodies
over the limit (with a length and chunked), wrong types, unknown fields, garbage bytes,
other teams' scopes, made-up ids, cursors and epsilons out of range, bad tokens, unknown
routes. Every answer must be below 500, and every 4xx must say why (a JSON body with an
`error`). Afterwards, a search in every tenant must still answer. Requests are spread over
many tokens so that rate limits (a correct 429) do not hide the other answers; only local
addresses are used.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

Case = Callable[[random.Random, "Target"], dict[str, Any]]
"""Builds the keyword arguments of one `httpx.AsyncClient.request` call."""


@dataclass(frozen=True)
class Target:
    tokens: list[str]
    tenants: list[str]
    limit_bytes: int

    def auth(self, rng: random.Random) -> dict[str, str]:
        return {"Authorization": f"Bearer {rng.choice(self.tokens)}"}


def _nested(depth: int, leaf: Any = 1, as_list: bool = False) -> str:
    """JSON text nested `depth` levels deep, without building it recursively."""
    if as_list:
        return "[" * depth + json.dumps(leaf) + "]" * depth
    return '{"a":' * depth + json.dumps(leaf) + "}" * depth


def _raw(method: str, path: str, body: bytes | str, t: Target, rng: random.Random) -> dict:
    content = body.encode() if isinstance(body, str) else body
    headers = t.auth(rng) | {"Content-Type": "application/json"}
    return {"method": method, "url": path, "content": content, "headers": headers}


def _memory_body(rng: random.Random, metadata: str = "{}", extra: str = "") -> str:
    text = json.dumps(f"fuzz note {rng.randrange(10**6)} about the staging database")
    return f'{{"text":{text},"metadata":{metadata}{extra}}}'


def deep_metadata(rng: random.Random, t: Target) -> dict:
    depth = rng.choice([15, 16, 17, 20, 64, 126, 127, 150, 199, 200, 201, 250, 300, 5000])
    metadata = _nested(depth - 1, "x", as_list=rng.random() < 0.3)
    return _raw("POST", "/v1/memories", _memory_body(rng, f'{{"m":{metadata}}}'), t, rng)


def non_finite(rng: random.Random, t: Target) -> dict:
    value = rng.choice(["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e-400"])
    if rng.random() < 0.5:
        return _raw("POST", "/v1/memories", _memory_body(rng, f'{{"x":{value}}}'), t, rng)
    body = f'{{"memory_id":"{uuid.uuid4()}","outcome":"helped","score":{value}}}'
    return _raw("POST", "/v1/feedback", body, t, rng)


def huge_numbers(rng: random.Random, t: Target) -> dict:
    value = rng.choice(["1" + "0" * 30, "-" + "9" * 25, "9223372036854775808", "1" * 5000])
    return _raw("POST", "/v1/memories", _memory_body(rng, f'{{"n":{value}}}'), t, rng)


def surrogates(rng: random.Random, t: Target) -> dict:
    escaped = rng.choice(["\\ud800", "\\udfff", "\\ud83d", "x\\udc00y"])
    where = rng.choice(["text", "tag", "metadata", "topic", "key"])
    if where == "text":
        body = f'{{"text":"a {escaped} b"}}'
    elif where == "tag":
        body = f'{{"text":"ok","tags":["{escaped}"]}}'
    elif where == "topic":
        body = f'{{"text":"ok","topic":"{escaped}"}}'
    elif where == "key":
        body = f'{{"text":"ok","metadata":{{"{escaped}":1}}}}'
    else:
        body = f'{{"text":"ok","metadata":{{"s":"{escaped}"}}}}'
    raw = body.encode()
    if rng.random() < 0.3:  # the surrogate's UTF-8-like bytes themselves: not UTF-8 at all
        raw = raw.replace(escaped.encode(), b"\xed\xa0\x80")
    return _raw("POST", "/v1/memories", raw, t, rng)


def oversize(rng: random.Random, t: Target) -> dict:
    size = t.limit_bytes + rng.choice([1, 1000, 500_000])
    body = _memory_body(rng, json.dumps({"pad": "x" * size}))
    kwargs = _raw("POST", "/v1/memories", body, t, rng)
    if rng.random() < 0.5:  # chunked: no Content-Length to refuse it by

        async def chunks(data: bytes = kwargs.pop("content")) -> Any:
            for i in range(0, len(data), 65536):
                yield data[i : i + 65536]

        kwargs["content"] = chunks()
    return kwargs


def wide_metadata(rng: random.Random, t: Target) -> dict:
    n = rng.choice([100, 1000, 5000, 20000])
    metadata = json.dumps({f"k{i}": i for i in range(n)})
    return _raw("POST", "/v1/memories", _memory_body(rng, metadata), t, rng)


def wrong_types(rng: random.Random, t: Target) -> dict:
    field, value = rng.choice(
        [
            ("text", 42),
            ("text", ""),
            ("text", None),
            ("text", ["a"]),
            ("tags", "infra"),
            ("tags", [1, 2]),
            ("tags", ["x" * 100]),
            ("tags", [f"t{i}" for i in range(40)]),
            ("scope", "the world"),
            ("scope", "team:"),
            ("scope", 7),
            ("metadata", []),
            ("metadata", "str"),
            ("supersedes", ["not-a-uuid"]),
            ("supersedes", [str(uuid.uuid4())] * 100),
            ("topic", "t" * 200),
            ("context", "c" * 9000),
            ("tenant", "someone-else"),
            ("agent_id", "someone"),
            ("valid_from", "yesterday"),
        ]
    )
    body: dict[str, Any] = {"text": "a fuzzed memory"}
    body[field] = value
    return _raw("POST", "/v1/memories", json.dumps(body), t, rng)


def garbage(rng: random.Random, t: Target) -> dict:
    body = rng.choice(
        [
            b"",
            b"{",
            b"null",
            b"[]",
            b"[1,2,3]",
            b'"just a string"',
            b"\xff\xfe\x00garbage",
            bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))),
            b'{"text": "dup", "text": "dup"}',
            b'{"text": "a"} trailing',
        ]
    )
    path = rng.choice(["/v1/memories", "/v1/observations", "/v1/feedback", "/v1/subscriptions"])
    return _raw("POST", path, body, t, rng)


def other_team(rng: random.Random, t: Target) -> dict:
    scope = rng.choice(["team:payroll", "team:board", f"team:x{rng.randrange(1000)}"])
    path = rng.choice(["/v1/memories", "/v1/observations"])
    return _raw(
        "POST", path, json.dumps({"text": "into a team I am not in", "scope": scope}), t, rng
    )


def made_up_ids(rng: random.Random, t: Target) -> dict:
    memory_id = rng.choice([str(uuid.uuid4()), "not-a-uuid", "0" * 32, ""])
    body = json.dumps({"memory_id": memory_id, "outcome": rng.choice(["helped", "bogus"])})
    if rng.random() < 0.5:
        return _raw("POST", "/v1/feedback", body, t, rng)
    sub = rng.choice([f"sub-{uuid.uuid4().hex}", "x" * 300, "../../etc", "%00"])
    return {"method": "DELETE", "url": f"/v1/subscriptions/{sub}", "headers": t.auth(rng)}


def subscriptions(rng: random.Random, t: Target) -> dict:
    body = rng.choice(
        [
            {"query": "staging", "min_score": 2},
            {"query": "staging", "min_score": "NaN"},
            {"query": "staging", "max_per_minute": 0},
            {"query": "staging", "expires_at": "soon"},
            {"query": "staging", "filters": {"scopes": ["bogus"]}},
            {"query": "staging", "filters": {"unknown": 1}},
            {"query": [0.1] * 3},
            {"query": ""},
            {"query": "q" * 300_000},
        ]
    )
    return _raw("POST", "/v1/subscriptions", json.dumps(body), t, rng)


def searches(rng: random.Random, t: Target) -> dict:
    k = rng.choice(["5", "0", "-1", "101", "1e3", "abc", "9" * 30])
    raw = rng.choice(["%ED%A0%80", "a%00b", "%FF%FE", "%C0%AF", "x%ud800"])
    if rng.random() < 0.4:  # bytes that are not UTF-8 once the query string is decoded
        return {"method": "GET", "url": f"/v1/search?q={raw}&k={k}", "headers": t.auth(rng)}
    q = rng.choice(
        ["staging database", "", "x" * 5000, "'; drop table memories; --", "\u202e\U0001f600"]
    )
    return {
        "method": "GET",
        "url": "/v1/search",
        "params": {"q": q, "k": k},
        "headers": t.auth(rng),
    }


def aggregates(rng: random.Random, t: Target) -> dict:
    field = rng.choice(["topic", "tags", "bogus", "../stats"])
    epsilon = rng.choice(["1e-300", "0", "-1", "nan", "inf", "1e308", "abc", "0.0001", "11"])
    return {
        "method": "GET",
        "url": f"/v1/aggregates/{field}?epsilon={epsilon}",
        "headers": t.auth(rng),
    }


def cursors(rng: random.Random, t: Target) -> dict:
    cursor = rng.choice(
        [
            "0:9223372036854775807",
            "0:99999999999999999999999",
            "-1:5",
            "a:b",
            "1",
            ":",
            "0:-2",
            "99999999999:0",
            "x" * 5000,
        ]
    )
    if rng.random() < 0.5:
        return {"method": "GET", "url": f"/v1/stream?cursor={cursor}", "headers": t.auth(rng)}
    return {
        "method": "GET",
        "url": "/v1/stream",
        "headers": t.auth(rng) | {"Last-Event-ID": cursor},
    }


def bad_auth(rng: random.Random, t: Target) -> dict:
    header = rng.choice(
        [
            None,
            "",
            "Bearer",
            "Bearer ",
            "Bearer ms_",
            "Bearer ms__",
            "Bearer ms_x_y_z",
            "Basic dXNlcjpwYXNz",
            "Bearer " + "A" * 5000,
            f"Bearer {rng.choice(t.tokens)}x",
        ]
    )
    headers = {} if header is None else {"Authorization": header}
    path = rng.choice(["/v1/stats", "/v1/search?q=x", "/v1/memories"])
    method = "POST" if path == "/v1/memories" else "GET"
    return {"method": method, "url": path, "headers": headers, "json": {"text": "x"}}


def unknown_routes(rng: random.Random, t: Target) -> dict:
    path = rng.choice(["/v2/memories", "/v1/../../etc/passwd", "/v1/memories/x", "/%ff", "/v1/"])
    return {
        "method": rng.choice(["GET", "POST", "PUT", "PATCH"]),
        "url": path,
        "headers": t.auth(rng),
    }


def valid(rng: random.Random, t: Target) -> dict:
    body = {
        "text": f"fuzz baseline {rng.randrange(10**6)}: the cache is warm",
        "tags": ["fuzz"],
        "metadata": {"n": rng.randrange(100), "nested": {"ok": True}},
    }
    return {"method": "POST", "url": "/v1/memories", "json": body, "headers": t.auth(rng)}


CASES: dict[str, Case] = {
    "deep_metadata": deep_metadata,
    "non_finite": non_finite,
    "huge_numbers": huge_numbers,
    "surrogates": surrogates,
    "oversize": oversize,
    "wide_metadata": wide_metadata,
    "wrong_types": wrong_types,
    "garbage": garbage,
    "other_team": other_team,
    "made_up_ids": made_up_ids,
    "subscriptions": subscriptions,
    "searches": searches,
    "aggregates": aggregates,
    "cursors": cursors,
    "bad_auth": bad_auth,
    "unknown_routes": unknown_routes,
    "valid": valid,
}


def _has_reason(response: httpx.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and bool(body.get("error"))


async def _one(client: httpx.AsyncClient, kwargs: dict[str, Any]) -> tuple[int, bool]:
    """(status, whether a 4xx said why); status 0 for a connection error, -1 for a
    request the client itself refuses to send (an illegal header). A stream that opens
    (200) is closed at once."""
    try:
        async with client.stream(**kwargs) as response:
            if response.status_code == 200 and kwargs["url"].startswith("/v1/stream"):
                return 200, True
            await response.aread()
            return response.status_code, _has_reason(response)
    except httpx.LocalProtocolError:
        return -1, True
    except httpx.HTTPError:
        return 0, False


async def run_fuzz_async(
    url: str,
    tokens: list[str],
    tenants: list[str],
    *,
    requests: int = 10_000,
    seed: int = 7,
    concurrency: int = 8,
    limit_bytes: int = 1_048_576,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Send `requests` fuzzed requests to `url`; returns the counts (see the module doc)."""
    host = httpx.URL(url).host
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"the fuzzer only targets local addresses, not {host}")
    rng = random.Random(seed)
    target = Target(tokens, tenants, limit_bytes)
    names = list(CASES)
    plan = [rng.choice(names) for _ in range(requests)]
    statuses: Counter[int] = Counter()
    by_case: dict[str, Counter[str]] = {name: Counter() for name in names}
    no_reason: list[str] = []
    server_errors: list[str] = []
    queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
    for i, name in enumerate(plan):
        queue.put_nowait((i, name))
    done = 0
    started = time.perf_counter()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

        async def worker(worker_rng: random.Random) -> None:
            nonlocal done
            while not queue.empty():
                _, name = queue.get_nowait()
                kwargs = CASES[name](worker_rng, target)
                status, reason = await _one(client, kwargs)
                statuses[status] += 1
                by_case[name][str(status)] += 1
                if status >= 500 or status == 0:
                    server_errors.append(f"{name}: {kwargs['method']} {kwargs['url'][:120]}")
                elif 400 <= status < 500 and not reason:
                    no_reason.append(f"{name}: {kwargs['method']} {kwargs['url'][:120]} {status}")
                done += 1
                if progress is not None:
                    progress(done)

        await asyncio.gather(*(worker(random.Random(seed * 1000 + i)) for i in range(concurrency)))
        seconds = time.perf_counter() - started
        after: dict[str, int] = {}
        for tenant, token in zip(tenants, tokens, strict=False):
            r = await client.get(
                "/v1/search",
                params={"q": "staging database", "k": 5},
                headers={"Authorization": f"Bearer {token}"},
            )
            after[tenant] = r.status_code
    rejected = sum(n for s, n in statuses.items() if 400 <= s < 500)
    return {
        "requests": requests,
        "seconds": round(seconds, 2),
        "requests_per_s": round(requests / seconds, 1) if seconds else 0.0,
        "status_counts": {str(k): v for k, v in sorted(statuses.items())},
        "server_errors_5xx": sum(n for s, n in statuses.items() if s >= 500),
        "connection_errors": statuses.get(0, 0),
        "not_sent_by_client": statuses.get(-1, 0),
        "rejected_4xx": rejected,
        "rejected_without_reason": len(no_reason),
        "accepted_2xx": sum(n for s, n in statuses.items() if 200 <= s < 300),
        "by_case": {name: dict(counts) for name, counts in by_case.items()},
        "search_after_by_tenant": after,
        "examples_5xx": server_errors[:20],
        "examples_without_reason": no_reason[:20],
    }


def run_fuzz(url: str, tokens: list[str], tenants: list[str], **options: Any) -> dict[str, Any]:
    return asyncio.run(run_fuzz_async(url, tokens, tenants, **options))
