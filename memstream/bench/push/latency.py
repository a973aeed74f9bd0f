"""Part 1: publish-to-push latency through one worker, at each rate."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from memstream.bench.push.corpus import (
    MAX_MEMORIES,
    MAX_PER_MINUTE,
    PUBLISHER_AGENTS,
    SUBSCRIBER_AGENTS,
    TENANT,
    calibrate_min_score,
    memory_texts,
    subscription_queries,
)
from memstream.bench.push.stream import (
    _auth,
    _cpu_s,
    _drain,
    _follow_indexed,
    _publish_at,
    _rate_report,
    _read_stream,
    _Run,
    _stats,
)
from memstream.broker import start_broker
from memstream.broker.base import free_port
from memstream.services.auth import TokenStore
from memstream.services.stack import spawn_worker, stop_process, wait_for_http
from memstream.streams.admin import ensure_topics


def serve_worker(
    bootstrap: str, data_dir: Path, **env: str
) -> tuple[subprocess.Popen[bytes], str, Path]:
    """A `memstream worker --serve` on a free port with its data (and `worker.log`) in
    `data_dir`, once its /healthz answers: (process, url, log). If it never does, the worker
    is stopped and RuntimeError carries its log's tail."""
    log = data_dir / "worker.log"
    port = free_port()
    worker = spawn_worker(
        bootstrap,
        log_path=log,
        MEMSTREAM_SERVE="true",
        MEMSTREAM_WEB_PORT=str(port),
        MEMSTREAM_DATA_DIR=str(data_dir),
        MEMSTREAM_LOG_LEVEL="WARNING",
        **env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/healthz", 180)
    except TimeoutError as err:
        stop_process(worker)
        raise RuntimeError(f"worker not up; log tail:\n{log.read_text()[-3000:]}") from err
    return worker, url, log


async def _end_to_end(
    url: str,
    bootstrap: str,
    tokens: dict[str, str],
    pid: int,
    rates: tuple[int, ...],
    subscriptions: int,
    seconds: float,
    min_score: float,
    say: Callable[[str], None],
) -> dict[str, Any]:
    run = _Run(url, tokens)
    stats_token = tokens["sub-0"]
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    follower = asyncio.create_task(_follow_indexed(run, bootstrap))
    readers: list[asyncio.Task[None]] = []
    try:
        async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as api:
            t0 = time.perf_counter()
            for agent_index, query in subscription_queries(subscriptions):
                r = await api.post(
                    "/v1/subscriptions",
                    json={
                        "query": query,
                        "min_score": min_score,
                        "max_per_minute": MAX_PER_MINUTE,
                    },
                    headers=_auth(tokens[f"sub-{agent_index}"]),
                )
                r.raise_for_status()
            for _ in range(600):
                if (await _stats(api, stats_token))["subscriptions"] >= subscriptions:
                    break
                await asyncio.sleep(0.25)
            else:
                raise RuntimeError("the worker never applied all subscriptions")
            subscribe_s = time.perf_counter() - t0
            say(f"{subscriptions} subscriptions applied in {subscribe_s:.1f}s; opening streams")

            agents = sorted({f"sub-{i}" for i, _ in subscription_queries(subscriptions)})
            readers = [asyncio.create_task(_read_stream(run, a)) for a in agents]
            while len(run.connected) < len(agents):
                if run.failures:
                    raise RuntimeError(run.failures[0])
                await asyncio.sleep(0.1)
            await asyncio.sleep(2.0)  # each stream's consumer seeks to the end after `connected`
            say("warm-up: 20 memories at 10/s")
            warm = await _publish_at(api, run, 10, 2.0, first=0)
            warm_drain = await _drain(api, run, stats_token, timeout=120)
            say(f"warm-up drained: {warm_drain}")
            rows = []
            first = len(warm)
            for rate in rates:
                say(f"rate {rate}/s for {seconds}s")
                cpu0, own0 = _cpu_s(pid), time.process_time()
                t_start = time.perf_counter()
                sent = await _publish_at(api, run, rate, seconds, first=first)
                first += int(rate * seconds)
                send_s = max(s.perf for s in sent) - min(s.perf for s in sent) + 1.0 / rate
                drain = await _drain(api, run, stats_token, timeout=max(180.0, 10 * seconds))
                wall = time.perf_counter() - t_start
                cpu1, own1 = _cpu_s(pid), time.process_time()
                row = _rate_report(rate, seconds, sent, run, send_s)
                row["drained"] = drain["complete"]
                row["window_s"] = round(wall, 1)
                row["worker_cpu_cores_avg"] = round((cpu1 - cpu0) / wall, 2)
                row["bench_client_cpu_cores_avg"] = round((own1 - own0) / wall, 2)
                rows.append(row)
                say(
                    f"  published {row['published']} ({row['publish_rate_achieved_per_s']}/s), "
                    f"indexed {row['memories_indexed']} at {row['worker_indexing_rate_per_s']}/s, "
                    f"delivered {row['memories_delivered']}, first-delivery latency "
                    f"{row['latency_first_delivery_ms']}"
                )
            final = await _stats(api, stats_token)
    finally:
        for task in [*readers, follower]:
            task.cancel()
        await asyncio.gather(*readers, follower, return_exceptions=True)
    return {
        "subscribe_s": round(subscribe_s, 2),
        "streams": len(agents),
        "warmup": {"published": len(warm), **warm_drain},
        "rates": rows,
        "worker_counts": final.get("worker"),
        "memories_in_store": final.get("memories_indexed"),
        "models": run.models,
        "failures": run.failures[:20],
        "failure_count": len(run.failures),
    }


def end_to_end(
    rates: tuple[int, ...],
    subscriptions: int,
    seconds: float,
    broker: str,
    match_share: float,
    progress: bool,
) -> dict[str, Any]:
    """Part 1: broker + worker + API; see the module docstring."""

    def say(msg: str) -> None:
        if progress:
            print(f"[push] {msg}", file=sys.stderr, flush=True)

    needed = 20 + sum(int(rate * seconds) for rate in rates)
    if needed > MAX_MEMORIES - 400:
        raise ValueError(f"{needed} memories asked; at most {MAX_MEMORIES - 400} distinct ones")
    sample = [t for _, t in memory_texts(needed)]
    queries = [q for _, q in subscription_queries(subscriptions)]
    calibration = calibrate_min_score(
        queries, [t for _, t in memory_texts(400, start=MAX_MEMORIES - 400)], match_share
    )
    say(f"calibrated: {calibration}")
    handle = start_broker(broker)
    worker = None
    try:
        asyncio.run(ensure_topics(handle.bootstrap, partitions=3))
        with tempfile.TemporaryDirectory(prefix="memstream-push-") as tmp:
            data_dir = Path(tmp)
            t0 = time.perf_counter()
            worker, url, log = serve_worker(
                handle.bootstrap, data_dir, MEMSTREAM_LEARNER_ENABLED="false"
            )
            say(f"worker up in {time.perf_counter() - t0:.1f}s at {url} on {handle.label}")
            store = TokenStore(data_dir / "tokens.db")
            tokens = {
                f"sub-{i}": store.create(TENANT, f"sub-{i}") for i in range(SUBSCRIBER_AGENTS)
            }
            tokens |= {
                f"pub-{i}": store.create(TENANT, f"pub-{i}") for i in range(PUBLISHER_AGENTS)
            }
            result = asyncio.run(
                _end_to_end(
                    url,
                    handle.bootstrap,
                    tokens,
                    worker.pid,
                    rates,
                    subscriptions,
                    seconds,
                    calibration["min_score"],
                    say,
                )
            )
            alive = worker.poll() is None
            stop_process(worker)
            worker = None
            if not alive:
                result["worker_log_tail"] = log.read_text()[-3000:]
    finally:
        if worker is not None:
            stop_process(worker)
        handle.stop()
    return {
        "broker": handle.label,
        "tenant_layout": (
            f"1 tenant, {SUBSCRIBER_AGENTS} subscriber agents (1 SSE stream each), "
            f"{PUBLISHER_AGENTS} publisher agents, scope=tenant"
        ),
        "memory_text": {
            "words_mean": round(float(np.mean([len(t.split()) for t in sample])), 1),
            "chars_mean": round(float(np.mean([len(t) for t in sample])), 1),
            "example": sample[0],
        },
        "calibration": calibration,
        "max_per_minute": MAX_PER_MINUTE,
        "publish_clock": "time.perf_counter() just before each POST /v1/memories",
        **result,
    }
