"""Part 1's moving parts: SSE readers, the timed publisher, the drain and the rate report."""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from memstream.bench.push.corpus import PUBLISHER_AGENTS, memory_texts, summary_ms
from memstream.schemas.events import (
    Indexed,
)


@dataclass
class Arrival:
    memory_id: str
    subscription_id: str
    recipient: str
    perf: float
    wall: float
    matched_wall: float


@dataclass
class Sent:
    memory_id: str
    scheduled: float
    perf: float
    wall: float
    ack_perf: float


@dataclass
class _Run:
    url: str
    tokens: dict[str, str]
    arrivals: list[Arrival] = field(default_factory=list)
    connected: set[str] = field(default_factory=set)
    sent_ids: set[str] = field(default_factory=set)
    indexed: dict[str, tuple[float, bool]] = field(default_factory=dict)  # id -> (ts, dup)
    models: dict[str, str] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _read_stream(run: _Run, agent: str) -> None:
    """One subscriber's SSE stream: every delivery's arrival time, keyed by memory id."""
    async with httpx.AsyncClient(base_url=run.url, timeout=None) as client:
        async with client.stream("GET", "/v1/stream", headers=_auth(run.tokens[agent])) as r:
            if r.status_code != 200:
                run.failures.append(f"stream {agent}: HTTP {r.status_code}")
                return
            async for line in r.aiter_lines():
                if line.startswith(": connected"):
                    run.connected.add(agent)
                elif line.startswith("data: "):
                    perf, wall = time.perf_counter(), time.time()
                    p = json.loads(line[6:])
                    matched = datetime.fromisoformat(p["ts"]).timestamp()
                    d = p["payload"]
                    run.arrivals.append(
                        Arrival(
                            d["memory_id"],
                            d["subscription_id"],
                            d["recipient"],
                            perf,
                            wall,
                            matched,
                        )
                    )


async def _follow_indexed(run: _Run, bootstrap: str) -> None:
    """Which memories the worker finished (and which it merged as near-duplicates, which
    are never delivered), with the `indexed` record's broker timestamp."""
    from aiokafka import AIOKafkaConsumer

    from memstream.schemas.topics import INDEXED

    consumer = AIOKafkaConsumer(
        INDEXED.name,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        while True:
            for messages in (await consumer.getmany(timeout_ms=200)).values():
                for message in messages:
                    record = Indexed.model_validate_json(message.value)
                    run.indexed[str(record.event_id)] = (
                        message.timestamp / 1000.0,
                        record.payload.duplicate_of is not None,
                    )
                    if not run.models:
                        run.models = dict(record.payload.models)
    finally:
        await consumer.stop()


async def _stats(api: httpx.AsyncClient, token: str) -> dict[str, Any]:
    return (await api.get("/v1/stats", headers=_auth(token))).json()


async def _publish_at(
    api: httpx.AsyncClient, run: _Run, rate: int, seconds: float, first: int
) -> list[Sent]:
    """POST `rate * seconds` memories on a fixed timetable (one task per send, so a slow
    answer never delays the next send); records the clock just before each POST."""
    texts = memory_texts(int(rate * seconds), start=first)
    publishers = [f"pub-{i}" for i in range(PUBLISHER_AGENTS)]
    sent: list[Sent] = []

    async def one(i: int, scheduled: float, topic: str, text: str) -> None:
        token = run.tokens[publishers[i % len(publishers)]]
        perf, wall = time.perf_counter(), time.time()
        try:
            r = await api.post(
                "/v1/memories",
                json={"text": text, "topic": topic, "scope": "tenant", "tags": [topic]},
                headers=_auth(token),
            )
        except httpx.HTTPError as err:
            run.failures.append(f"publish: {type(err).__name__}: {err}")
            return
        if r.status_code != 202:
            run.failures.append(f"publish: HTTP {r.status_code} {r.text[:200]}")
            return
        memory_id = r.json()["event_id"]
        run.sent_ids.add(memory_id)
        sent.append(Sent(memory_id, scheduled, perf, wall, time.perf_counter()))

    start = time.perf_counter() + 0.1
    tasks = []
    for i, (topic, text) in enumerate(texts):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, scheduled, topic, text)))
    await asyncio.gather(*tasks)
    return sent


async def _drain(
    api: httpx.AsyncClient, run: _Run, token: str, timeout: float, quiet_s: float = 20.0
) -> dict[str, Any]:
    """Wait until every published memory is on `indexed` and every delivery the worker
    produced has arrived (or nothing moved for `quiet_s`, or `timeout` passed)."""
    deadline = time.monotonic() + timeout
    last_progress, last_key = time.monotonic(), None
    worker: dict[str, Any] = {}
    while time.monotonic() < deadline:
        worker = (await _stats(api, token))["worker"]
        if run.sent_ids <= run.indexed.keys() and len(run.arrivals) >= worker["deliveries"]:
            return {"complete": True, **worker}
        key = (len(run.indexed), worker["deliveries"], len(run.arrivals))
        if key != last_key:
            last_key, last_progress = key, time.monotonic()
        elif time.monotonic() - last_progress > quiet_s:
            break
        await asyncio.sleep(0.2)
    return {"complete": False, **worker}


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rate_report(
    rate: int, seconds: float, sent: list[Sent], run: _Run, send_s: float
) -> dict[str, Any]:
    """Latencies and counts of one rate step's memories."""
    by_id = {s.memory_id: s for s in sent}
    mine = [a for a in run.arrivals if a.memory_id in by_id]
    pairs = {(a.memory_id, a.subscription_id) for a in mine}
    first: dict[str, Arrival] = {}
    for a in mine:
        if a.memory_id not in first or a.perf < first[a.memory_id].perf:
            first[a.memory_id] = a
    firsts = sorted(
        ((by_id[m].perf, a.perf - by_id[m].perf) for m, a in first.items()), key=lambda x: x[0]
    )
    quarter = max(len(firsts) // 4, 1)
    indexed = {m: run.indexed[m] for m in by_id if m in run.indexed}
    duplicates = sum(1 for _, dup in indexed.values() if dup)
    published = len(sent)
    last_arrival = max((a.perf for a in mine), default=None)
    last_send = max((s.perf for s in sent), default=None)
    index_times = sorted(ts for ts, _ in indexed.values())
    first_wall = min((s.wall for s in sent), default=None)
    return {
        "rate_target_per_s": rate,
        "seconds": seconds,
        "published": published,
        "publish_rate_achieved_per_s": round(published / send_s, 1) if send_s else None,
        "send_start_lag_ms": summary_ms([s.perf - s.scheduled for s in sent]),
        "post_202_ms": summary_ms([s.ack_perf - s.perf for s in sent]),
        "memories_indexed": len(indexed),
        "memories_merged_as_duplicates": duplicates,
        "worker_indexing_rate_per_s": (
            round(len(index_times) / (index_times[-1] - first_wall), 1)
            if index_times and first_wall and index_times[-1] > first_wall
            else None
        ),
        "memories_delivered": len(first),
        "memories_without_delivery": published - len(first),
        "deliveries_received": len(mine),
        "deliveries_unique": len(pairs),
        "deliveries_per_memory_mean": round(len(pairs) / published, 2) if published else None,
        "latency_first_delivery_ms": summary_ms([x for _, x in firsts]),
        "latency_each_delivery_ms": summary_ms([a.perf - by_id[a.memory_id].perf for a in mine]),
        "latency_first_delivery_p50_ms_by_quarter": [
            summary_ms([x for _, x in firsts[q * quarter : (q + 1) * quarter]])["p50"]
            for q in range(4)
        ],
        "latency_from_202_first_delivery_p50_ms": summary_ms(
            [a.perf - by_id[m].ack_perf for m, a in first.items()]
        )["p50"],
        "publish_to_matched_ms": summary_ms(
            [a.matched_wall - by_id[a.memory_id].wall for a in mine]
        ),
        "matched_to_arrived_ms": summary_ms([a.wall - a.matched_wall for a in mine]),
        "publish_to_indexed_record_ms": summary_ms(
            [ts - by_id[m].wall for m, (ts, _) in indexed.items()]
        ),
        "drain_after_last_send_s": (
            round(last_arrival - last_send, 2) if last_arrival and last_send else None
        ),
    }
