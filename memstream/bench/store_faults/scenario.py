"""One backend's run: publish, fill the disk, free it, drain; `run_store_faults`."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from memstream.bench.push import memory_texts
from memstream.bench.store_faults.counts import _count, _log_events
from memstream.bench.store_faults.disk import (
    AGENTS,
    BACKENDS,
    MIN_FREE_MB,
    TMPFS_MB,
    Ballast,
    _say_stderr,
    tmpfs,
)
from memstream.bench.store_faults.topics import (
    _committed,
    _end_offsets,
    _members,
    _partitions,
    start_group_at_end,
)
from memstream.bench.store_faults.worker import _probe, _Worker
from memstream.schemas.events import Memory
from memstream.schemas.topics import (
    DEAD_LETTER,
    INDEXED,
    MEMORIES,
)
from memstream.store.faults import free_bytes


async def _publish(
    bootstrap: str,
    tenant: str,
    texts: list[tuple[str, str]],
    rate: float,
    acked: list[str],
    failed: list[str],
    say: Callable[[str], None],
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    pending: list[tuple[str, asyncio.Future[Any]]] = []
    start = time.monotonic()
    try:
        for i, (topic, text) in enumerate(texts):
            event = Memory(
                tenant=tenant,
                agent_id=f"agent-{i % AGENTS}",
                payload={"text": text, "topic": topic, "tags": ["store-faults"]},
            )
            try:
                future = await producer.send(
                    MEMORIES.name, event.to_json(), key=event.agent_id.encode()
                )
                pending.append((str(event.event_id), future))
            except Exception:
                failed.append(str(event.event_id))
            if (i + 1) % max(1, int(rate * 10)) == 0:
                say(f"published {i + 1}/{len(texts)}")
            await asyncio.sleep(max(0.0, start + (i + 1) / rate - time.monotonic()))
        for event_id, future in pending:
            try:
                await future
                acked.append(event_id)
            except Exception:
                failed.append(event_id)
    finally:
        await producer.stop()


async def _sample_fault(
    client: httpx.AsyncClient, worker: _Worker, until: float, samples: list[dict[str, Any]]
) -> None:
    while time.monotonic() < until:
        status, body, metrics = await _probe(client, worker.url)
        samples.append({"status": status, "body": body, "metrics": metrics})
        await asyncio.sleep(1.0)


async def _wait_health(
    client: httpx.AsyncClient, worker: _Worker, want: int, timeout: float
) -> tuple[float | None, Any, dict[str, float]]:
    """Seconds until /healthz answers `want`, with that body and the metrics then."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        status, body, metrics = await _probe(client, worker.url)
        if status == want:
            return round(time.monotonic() - start, 2), body, metrics
        await asyncio.sleep(0.25)
    return None, None, {}


async def _run(
    *,
    backend: str,
    events: int,
    rate: float,
    fault_s: float,
    kill: bool,
    bootstrap: str,
    mount: Path,
    work: Path,
    min_free_mb: float,
    worker_env: dict[str, str],
    say: Callable[[str], None],
) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:6]
    tenant, group = f"store-faults-{run_id}", f"store-faults-{backend}-{run_id}"
    store_dir = mount / "store"
    location = str(store_dir) if backend == "edge" else f"qdrant-local:{store_dir}"
    env = {
        "MEMSTREAM_DATA_DIR": str(work / "data"),
        "MEMSTREAM_STORE": location,
        "MEMSTREAM_STORE_MIN_FREE_MB": str(min_free_mb),
        "MEMSTREAM_CONSUMER_GROUP": group,
        "MEMSTREAM_LEARNER_ENABLED": "false",
        "MEMSTREAM_PROCESSORS_ENABLED": "false",
        "MEMSTREAM_ARCHIVE_ENABLED": "false",
        "MEMSTREAM_PII_ENABLED": "false",
        "MEMSTREAM_LOG_LEVEL": "WARNING",
        **worker_env,
    }
    await start_group_at_end(bootstrap, group)
    memories = await _partitions(bootstrap, MEMORIES.name)
    first = await _end_offsets(bootstrap, memories)  # where the group starts
    watched = {
        topic: await _end_offsets(bootstrap, await _partitions(bootstrap, topic))
        for topic in (INDEXED.name, DEAD_LETTER.name)
    }
    worker = _Worker(bootstrap, env, work / "worker.log")
    started = time.monotonic()
    say(f"starting the worker (store {location}, group {group})")
    await asyncio.to_thread(worker.start)
    say(f"worker up in {time.monotonic() - started:.1f}s; publishing {events} at {rate}/s")
    texts = memory_texts(events)
    acked: list[str] = []
    failed: list[str] = []
    ballast = Ballast(mount)
    fault: dict[str, Any] = {
        "kind": "full disk under the store (tmpfs + ballast file)",
        "reserve_mb": min_free_mb,
        "held_s": fault_s,
        "kill_during_fault": kill,
    }
    publishing = asyncio.create_task(_publish(bootstrap, tenant, texts, rate, acked, failed, say))
    async with httpx.AsyncClient(timeout=5) as client:
        warm = max(1, events // 5)
        while True:  # mid-stream: once the worker has indexed a fifth of the events
            _, _, metrics = await _probe(client, worker.url)
            if metrics.get("memstream_memories_indexed_total", 0) >= warm or publishing.done():
                break
            await asyncio.sleep(0.25)
        fault["indexed_before"] = int(metrics.get("memstream_memories_indexed_total", 0))
        fault["group_members_before"] = await _members(bootstrap, group)
        fault["free_before_bytes"] = free_bytes(mount)
        began = time.monotonic()
        if backend == "edge":  # below the reserve first: no write of the worker is mid-way
            fault["first_fill_stopped_by"] = await asyncio.to_thread(
                ballast.fill, int(min_free_mb * 1_048_576) // 2
            )
        else:
            fault["first_fill_stopped_by"] = await asyncio.to_thread(ballast.fill, 0)
        say(f"disk filled: {free_bytes(mount)} bytes free; waiting for /healthz to say so")
        seconds, body, metrics = await _wait_health(client, worker, 503, timeout=60)
        say(f"/healthz degraded after {seconds}s: {json.dumps(body)[:300]}")
        fault["healthz_degraded_after_s"] = seconds
        fault["healthz_during"] = body
        fault["metrics_during"] = metrics
        if backend == "edge":
            fault["second_fill_stopped_by"] = await asyncio.to_thread(ballast.fill, 0)
        fault["free_during_bytes"] = free_bytes(mount)
        samples: list[dict[str, Any]] = []
        hold = began + fault_s
        if kill:
            await _sample_fault(client, worker, began + fault_s / 2, samples)
            worker.kill()
            say("worker SIGKILLed while its store was failing")
        await _sample_fault(client, worker, hold, samples)
        fault["samples"] = len(samples)
        fault["samples_degraded"] = sum(1 for s in samples if s["status"] == 503)
        fault["samples_store_up_0"] = sum(
            1 for s in samples if s["metrics"].get("memstream_store_up") == 0
        )
        fault["samples_unanswered"] = sum(1 for s in samples if s["status"] is None)
        if samples and samples[-1]["metrics"]:
            fault["metrics_last"] = samples[-1]["metrics"]
        # what the group committed while the store failed: never more than was written
        committed = await _committed(bootstrap, group, memories)
        fault["committed_at_fault_end"] = sum(
            (committed[tp] or first[tp]) - first[tp] for tp in memories
        )
        last = [s["metrics"] for s in samples if s["metrics"]] or [fault["metrics_during"]]
        fault["indexed_at_fault_end"] = int(last[-1].get("memstream_memories_indexed_total", 0))
        fault["group_members_at_fault_end"] = await _members(bootstrap, group)
        ballast.remove()
        fault["held_for_s"] = round(time.monotonic() - began, 1)
        say(f"disk freed after {fault['held_for_s']}s; waiting for the backlog to drain")
        if kill:
            restarted = time.monotonic()
            await asyncio.to_thread(worker.start)
            fault["restarted_in_s"] = round(time.monotonic() - restarted, 1)
            seconds, body, metrics = 0.0, None, {}
        else:
            seconds, body, metrics = await _wait_health(client, worker, 200, timeout=120)
            say(f"/healthz ok {seconds}s after the disk was freed")
        fault["healthz_ok_after_free_s"] = seconds
        fault["metrics_after"] = metrics
        await publishing
        published_at = time.monotonic()
        ends = await _end_offsets(bootstrap, memories)
        drained = False
        while time.monotonic() - published_at < 300:
            committed = await _committed(bootstrap, group, memories)
            if all((committed.get(tp) or 0) >= ends[tp] for tp in memories):
                drained = True
                break
            await asyncio.sleep(0.5)
        drain_s = round(time.monotonic() - published_at, 1)
        _, _, final_metrics = await _probe(client, worker.url)
    exit_code = worker.stop()
    say(f"drained: {drained} in {drain_s}s after the last send; counting")
    counts = await _count(bootstrap, tenant, acked, watched, location)
    log_text = worker.log_tail(10**8)
    return {
        "backend": backend,
        "store": "Qdrant Edge" if backend == "edge" else "QdrantServerStore on qdrant-local",
        "published": events,
        "acknowledged": len(acked),
        **counts,
        "failed_sends": len(failed),
        "rate_per_s": rate,
        "fault": fault,
        "drained": drained,
        "drain_s_after_last_send": drain_s,
        "worker": {
            "starts": worker.starts,
            "exit_code": exit_code,
            "metrics_final": final_metrics,
            "log_store_unavailable_lines": log_text.count("store unavailable"),
            "log_store_back_lines": log_text.count("store available again"),
            "log_tracebacks": log_text.count("Traceback"),
            "log_events": _log_events(log_text),
            "settings": {k: v for k, v in env.items() if k != "MEMSTREAM_DATA_DIR"},
        },
    }


def run_store_faults(
    backend: str = "edge",
    events: int = 1000,
    *,
    rate: float = 25.0,
    fault_s: float = 20.0,
    kill: bool = False,
    bootstrap: str | None = None,
    tmpfs_mb: int = TMPFS_MB,
    min_free_mb: float = MIN_FREE_MB,
    worker_env: dict[str, str] | None = None,
    say: Callable[[str], None] = _say_stderr,
) -> dict[str, Any]:
    """The whole run (see the module docstring); starts a single-node Apache Kafka unless
    `bootstrap` names a broker; `worker_env` adds to the worker's settings. MountUnavailable
    where no tmpfs can be mounted."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if events < 10 or rate <= 0 or fault_s <= 0:
        raise ValueError("events must be at least 10; rate and fault_s positive")
    from memstream.streams.admin import ensure_topics

    work = Path(tempfile.mkdtemp(prefix="memstream-store-faults-"))
    broker = None
    try:
        with tmpfs(work / "disk", tmpfs_mb) as mount:
            if bootstrap is None:
                from memstream.broker import start_broker

                say("starting a single-node Apache Kafka")
                broker = start_broker("kafka", fast_start=True)
                bootstrap = broker.bootstrap
            asyncio.run(ensure_topics(bootstrap, partitions=3))
            started = time.monotonic()
            result = asyncio.run(
                _run(
                    backend=backend,
                    events=events,
                    rate=rate,
                    fault_s=fault_s,
                    kill=kill,
                    bootstrap=bootstrap,
                    mount=mount,
                    work=work,
                    min_free_mb=min_free_mb,
                    worker_env=worker_env or {},
                    say=say,
                )
            )
            result["tmpfs_mb"] = tmpfs_mb
            result["broker"] = broker.label if broker is not None else "given"
            result["wall_s"] = round(time.monotonic() - started, 1)
            return result
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(work, ignore_errors=True)
