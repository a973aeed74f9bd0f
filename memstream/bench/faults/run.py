"""One fault scenario end to end: cluster, worker, stream, faults, counts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from memstream.bench.faults.cluster import describe, roles, topic_config, wait_full_isr
from memstream.bench.faults.counts import (
    AGENTS,
    CONSUMER_GROUP,
    FAULTS,
    Fault,
    _say_stderr,
    pick_nodes,
    tally,
)
from memstream.bench.faults.worker import Supervisor, _read_indexed, _store_ids
from memstream.bench.push import memory_texts
from memstream.broker.base import BrokerHandle
from memstream.schemas.events import Memory, MemoryPayload
from memstream.schemas.topics import CATALOGUE, MEMORIES


async def _faults(
    broker: BrokerHandle,
    fault: Fault,
    a: int,
    b: int,
    *,
    down_s: float,
    pause_s: float,
    gap_s: float,
    isr_timeout: float,
    mark: Callable[[str], None],
) -> None:
    """The fault sequence on node A, then node B; `mark` notes each step in the timeline."""
    topics = [spec.name for spec in CATALOGUE] + ["__consumer_offsets"]
    for node in (a, b):
        if fault == "kill":
            await asyncio.to_thread(broker.kill_node, node)
            mark(f"kill -9 node {node}")
            await asyncio.sleep(down_s)
            mark(f"restart node {node}")
            await asyncio.to_thread(broker.restart_node, node, 120.0)
            mark(f"node {node} back in metadata")
        else:
            await asyncio.to_thread(broker.pause_node, node)
            mark(f"SIGSTOP node {node}")
            await asyncio.sleep(pause_s)
            await asyncio.to_thread(broker.resume_node, node)
            mark(f"SIGCONT node {node}")
        waited = await wait_full_isr(broker.bootstrap, topics, isr_timeout)
        mark(f"ISR whole again ({waited:.1f} s)")
        await asyncio.sleep(gap_s)


async def run_broker_faults_async(
    fault: Fault,
    *,
    events: int = 3000,
    rate: float = 40.0,
    down_s: float = 10.0,
    pause_s: float = 20.0,
    gap_s: float = 2.0,
    lead_fraction: float = 0.15,
    drain_s: float = 300.0,
    idle_s: float = 90.0,
    settle_s: float = 5.0,
    fast_start: bool = False,
    light: bool = False,
    keep_dir: bool = False,
    say: Callable[[str], None] = _say_stderr,
) -> dict[str, Any]:
    """Run one fault scenario (see the module docstring) and return its counts."""
    from memstream.broker.kafka import start_kafka
    from memstream.client import Client
    from memstream.streams.admin import ensure_topics
    from memstream.streams.probe import probe_pipeline

    if fault not in FAULTS:
        raise ValueError(f"fault must be one of {FAULTS}, not {fault!r}")
    if events < 1 or rate <= 0:
        raise ValueError("events and rate must be positive")
    run_id = uuid.uuid4().hex[:8]
    tenant = f"faults-{run_id}"
    texts = memory_texts(events)
    work = Path(tempfile.mkdtemp(prefix=f"memstream-faults-{fault}-"))
    data_dir = work / "worker"
    data_dir.mkdir()
    env = {
        "MEMSTREAM_REPLICATION_FACTOR": "3",
        "MEMSTREAM_PARTITIONS": "3",
        "MEMSTREAM_CONSUMER_GROUP": CONSUMER_GROUP,
        "MEMSTREAM_LOG_LEVEL": "INFO",
        "MEMSTREAM_ARCHIVE_ENABLED": "false",
        "MEMSTREAM_PROCESSORS_ENABLED": "false",
    }
    if light:  # the delivery path only: no MiniLM, no PII models (tests)
        env |= {"MEMSTREAM_EMBEDDER": "static", "MEMSTREAM_PII_ENABLED": "false"}
    timeline: list[dict[str, Any]] = []
    clock0 = time.monotonic()
    published: list[str] = []
    acknowledged: list[str] = []
    failures: Counter[str] = Counter()
    ack_ms: list[float] = []

    def mark(what: str) -> None:
        row = {
            "t": round(time.monotonic() - clock0, 1),
            "event": what,
            "published": len(published),
            "acknowledged": len(acknowledged),
        }
        timeline.append(row)
        say(
            f"t={row['t']:>6} s  {what}  (published {row['published']}, acked {row['acknowledged']})"
        )

    say(f"starting a 3-node Apache Kafka cluster ({'C1 JIT' if fast_start else 'full JIT'})")
    broker = start_kafka(nodes=3, fast_start=fast_start)
    supervisor: Supervisor | None = None
    watch: asyncio.Task[None] | None = None
    try:
        await ensure_topics(broker.bootstrap, partitions=3, replication_factor=3)
        configs = await topic_config(
            broker.bootstrap,
            MEMORIES.name,
            ("min.insync.replicas", "unclean.leader.election.enable"),
        )
        supervisor = Supervisor(broker.bootstrap, data_dir, env, say)
        supervisor.spawn()
        say("worker started; waiting for it to index a probe memory")
        await probe_pipeline(broker.bootstrap, timeout=300)
        watch = asyncio.create_task(supervisor.watch())
        await wait_full_isr(broker.bootstrap, ["__consumer_offsets"], 60)
        view = await roles(broker.bootstrap)
        leaders = Counter(view["memories_leaders"].values())
        a, b = pick_nodes(dict(leaders), view["group_coordinator"])
        say(f"roles before the faults: {view}; faulting node {a}, then node {b}")

        async with Client(
            broker.bootstrap, tenant=tenant, agent_id="faults-0", enable_idempotence=True
        ) as client:
            pending: set[asyncio.Task[None]] = set()

            async def send(event: Memory, key: str) -> None:
                began = time.perf_counter()
                try:
                    await client.publish(MEMORIES.name, event, key=key)
                except Exception as exc:  # counted, that is the point
                    failures[type(exc).__name__] += 1
                    return
                ack_ms.append((time.perf_counter() - began) * 1000)
                acknowledged.append(str(event.event_id))

            async def stream() -> None:
                next_at = time.monotonic()
                for i, (topic, text) in enumerate(texts):
                    await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                    next_at += 1.0 / rate
                    agent = f"faults-{i % AGENTS}"
                    event = Memory(
                        tenant=tenant,
                        agent_id=agent,
                        scope="tenant",
                        payload=MemoryPayload(text=text, topic=topic, tags=["faults"]),
                    )
                    published.append(str(event.event_id))
                    task = asyncio.create_task(send(event, agent))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                    if i and i % max(1, int(rate * 10)) == 0:
                        say(f"published {len(published)}, acknowledged {len(acknowledged)}")
                mark("stream published")
                await asyncio.gather(*list(pending))
                mark("every send answered")

            mark("stream starts")
            streaming = asyncio.create_task(stream())
            lead = lead_fraction * events / rate
            await asyncio.sleep(lead)
            result_roles = await roles(broker.bootstrap)
            try:
                await _faults(
                    broker,
                    fault,
                    a,
                    b,
                    down_s=down_s,
                    pause_s=pause_s,
                    gap_s=gap_s,
                    isr_timeout=180.0,
                    mark=mark,
                )
            except BaseException:
                streaming.cancel()
                for task in list(pending):
                    task.cancel()
                raise
            faults_done_at = len(published)
            if faults_done_at >= events:
                say("note: the faults outlasted the stream; raise --events for a longer tail")
            await streaming

        def alive() -> None:
            if watch is not None and watch.done() and watch.exception() is not None:
                raise RuntimeError(f"worker supervision failed: {watch.exception()}")

        say("waiting for the worker to index every acknowledged memory")
        keys = await _read_indexed(
            broker.bootstrap,
            set(acknowledged),
            drain_s=drain_s,
            idle_s=idle_s,
            settle_s=settle_s,
            alive=alive,
        )
        mark("indexed read")
        after = await describe(broker.bootstrap, [spec.name for spec in CATALOGUE])
        leaders_after = {t: {p["partition"]: p["leader"] for p in ps} for t, ps in after.items()}
        if watch is not None:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watch
        exit_code = supervisor.stop()
        store_ids, store_count = await asyncio.to_thread(_store_ids, data_dir / "store", tenant)
        counts = tally(published, acknowledged, keys, store_ids)
        ordered = sorted(ack_ms)
        result = {
            "bench": f"faults-{fault}",
            "fault": fault,
            "broker": broker.label,
            "nodes": broker.nodes,
            "replication_factor": 3,
            "partitions": 3,
            "topic_config": configs,
            "producer": {"acks": "all", "enable_idempotence": True, "client": "memstream.Client"},
            "events": events,
            "rate": rate,
            "faulted_nodes": [a, b],
            "roles_before": view,
            "roles_at_first_fault": result_roles,
            "leaders_after": leaders_after,
            **counts,
            "store_count": store_count,
            "failed_by_error": dict(failures),
            "ack_latency_ms": {
                "p50": round(ordered[len(ordered) // 2], 1) if ordered else None,
                "p99": round(ordered[int(len(ordered) * 0.99)], 1) if ordered else None,
                "max": round(ordered[-1], 1) if ordered else None,
            },
            "worker_restarts": supervisor.restarts,
            "worker_exit_on_stop": exit_code,
            "worker_log_errors": supervisor.log_lines(),
            "published_when_faults_ended": faults_done_at,
            "timeline": timeline,
            "seconds": round(time.monotonic() - clock0, 1),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "run_id": run_id,
        }
        if counts["lost"] or counts["store_duplicates"]:
            keep_dir = True
        if keep_dir:
            result["kept_dir"] = str(work)
        return result
    except BaseException:
        keep_dir = True  # the worker's log and store, to see what happened
        say(f"failed; the worker's data dir and log are kept in {work}")
        raise
    finally:
        if watch is not None and not watch.done():
            watch.cancel()
        if supervisor is not None:
            supervisor.stop()
        broker.stop()
        if not keep_dir:
            shutil.rmtree(work, ignore_errors=True)


def run_broker_faults(fault: Fault, **options: Any) -> dict[str, Any]:
    return asyncio.run(run_broker_faults_async(fault, **options))
