"""`memstream bench faults`: broker faults under a steady stream, and what each did to it.

On a local 3-node Apache Kafka cluster (KRaft, replication factor 3,
`min.insync.replicas=2`) with one `memstream worker`, memories are published at a steady
rate by the SDK's `Client` with an idempotent `acks=all` producer; each send is either
acknowledged (its future resolved) or failed. Mid-stream, the fault:

- `kill`: SIGKILL node A (the worker's group coordinator), wait, restart it from its own
  directory and ports, wait until every partition's ISR is whole again, then SIGKILL node
  B (another node, leading partitions of the input topic) and restart it the same way;
- `pause`: SIGSTOP node A for longer than the broker session (9 s, after which the
  controller fences it and moves its leaderships and ISR places) and the worker's
  consumer session, SIGCONT, wait for a whole ISR, then the same on node B.

The worker is supervised as `memstream up` would: one that exits is restarted (and the
result says so). Once the worker has indexed all it will, `memstream.indexed` is read from
the beginning and counted by memory id, and the worker's store is opened after the worker
stopped. Reported: published, acknowledged, failed, indexed (acknowledged ids found on
`indexed`), duplicated (ids found there more than once: at-least-once may re-emit after a
retry or re-read), lost (acknowledged ids never indexed), and from the store its points,
duplicates (points beyond distinct ids: the store is keyed by memory id) and missing ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

from memstream.bench.push import memory_texts
from memstream.broker.base import BrokerHandle
from memstream.schemas.events import Memory, MemoryPayload
from memstream.schemas.topics import CATALOGUE, INDEXED, MEMORIES

Fault = Literal["kill", "pause"]
FAULTS: tuple[str, ...] = ("kill", "pause")
CONSUMER_GROUP = "memstream-worker"
AGENTS = 8
MAX_WORKER_RESTARTS = 10


def _say_stderr(message: str) -> None:
    print(f"[faults {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- pure parts


def pick_nodes(leaders: dict[int, int], coordinator: int | None, nodes: int = 3) -> tuple[int, int]:
    """(A, B): two different nodes to fault. A is the worker's group coordinator (when
    known), B the other node leading most input partitions (`leaders`: node -> count)."""
    if nodes < 2:
        raise ValueError("faults need at least 2 nodes")
    first = coordinator if coordinator is not None and 0 <= coordinator < nodes else None
    if first is None:
        first = max(range(nodes), key=lambda n: (leaders.get(n, 0), -n))
    others = [n for n in range(nodes) if n != first]
    second = max(others, key=lambda n: (leaders.get(n, 0), -n))
    return first, second


def tally(
    published: Iterable[str],
    acknowledged: Iterable[str],
    indexed_keys: Iterable[str],
    store_ids: Iterable[str],
) -> dict[str, int]:
    """The counts by memory id. `indexed_keys`: the key of every record on `indexed` (any
    memory), `store_ids`: the id of every point the store lists for the run's tenant."""
    sent = set(published)
    acked = set(acknowledged)
    seen = Counter(k for k in indexed_keys if k in sent)
    stored = Counter(store_ids)
    return {
        "published": len(sent),
        "acknowledged": len(acked),
        "failed": len(sent - acked),
        "indexed": len(acked & seen.keys()),
        "indexed_unacknowledged": len(seen.keys() - acked),
        "indexed_records": sum(seen.values()),
        "duplicated": sum(1 for n in seen.values() if n > 1),
        "duplicate_records": sum(n - 1 for n in seen.values() if n > 1),
        "lost": len(acked - seen.keys()),
        "store_points": sum(stored.values()),
        "store_distinct_ids": len(stored),
        "store_duplicates": sum(stored.values()) - len(stored),
        "store_missing": len(acked - stored.keys()),
    }


# --------------------------------------------------------------------------- cluster views


def _admin(bootstrap: str) -> Any:
    from aiokafka.admin import AIOKafkaAdminClient

    return AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=10_000, retry_backoff_ms=200
    )


async def describe(bootstrap: str, topics: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Partitions (leader, replicas, isr) of each topic."""
    admin = _admin(bootstrap)
    await admin.start()
    try:
        return {d["topic"]: d["partitions"] for d in await admin.describe_topics(topics)}
    finally:
        await admin.close()


async def roles(bootstrap: str, group: str = CONSUMER_GROUP) -> dict[str, Any]:
    """Who leads what now: input/output partition leaders and the group coordinator."""
    parts = await describe(bootstrap, [MEMORIES.name, INDEXED.name])
    admin = _admin(bootstrap)
    await admin.start()
    try:
        coordinator: int | None = await admin.find_coordinator(group)
    except Exception:  # a view for the report, never a reason to stop
        coordinator = None
    finally:
        await admin.close()
    return {
        "memories_leaders": {p["partition"]: p["leader"] for p in parts.get(MEMORIES.name, [])},
        "indexed_leaders": {p["partition"]: p["leader"] for p in parts.get(INDEXED.name, [])},
        "group_coordinator": coordinator,
    }


async def wait_full_isr(bootstrap: str, topics: list[str], timeout: float) -> float:
    """Seconds until every partition of `topics` has a leader and all replicas in its ISR."""
    start = time.monotonic()
    while True:
        try:
            parts = await describe(bootstrap, topics)
            if len(parts) == len(topics) and all(
                p["leader"] >= 0 and sorted(p["isr"]) == sorted(p["replicas"])
                for partitions in parts.values()
                for p in partitions
            ):
                return time.monotonic() - start
        except Exception:  # metadata may fail while a node is down
            pass
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"ISR of {topics} not whole within {timeout:.0f} s")
        await asyncio.sleep(0.5)


async def topic_config(
    bootstrap: str, topic: str, keys: tuple[str, ...], timeout_s: float = 15.0
) -> dict[str, str]:
    """Some configs of `topic` as the broker reports them. Right after the topic is created
    the node asked may not know it yet and answer with none: asked again until every key
    is there or `timeout_s` has passed (then what there is)."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    deadline = time.monotonic() + timeout_s
    while True:
        admin = _admin(bootstrap)
        await admin.start()
        try:
            [response] = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic)]
            )
        finally:
            await admin.close()
        out = {}
        for resource in response.resources:
            for entry in resource[4]:
                if entry[0] in keys:
                    out[entry[0]] = entry[1]
        if set(keys) <= set(out) or time.monotonic() > deadline:
            return out
        await asyncio.sleep(0.5)


# --------------------------------------------------------------------------- the worker


class Supervisor:
    """One `memstream worker`, restarted when it exits, as `memstream up` does."""

    def __init__(self, bootstrap: str, data_dir: Path, env: dict[str, str], say: Any) -> None:
        self.bootstrap = bootstrap
        self.data_dir = data_dir
        self.env = env
        self.say = say
        self.log = data_dir / "worker.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts: list[dict[str, Any]] = []
        self.started_at = time.monotonic()

    def spawn(self) -> None:
        from memstream.services.stack import spawn_worker

        self.proc = spawn_worker(
            self.bootstrap,
            log_path=self.log,
            MEMSTREAM_DATA_DIR=str(self.data_dir),
            **self.env,
        )

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            if self.proc is None or self.proc.poll() is None:
                continue
            code = self.proc.returncode
            if len(self.restarts) >= MAX_WORKER_RESTARTS:
                raise RuntimeError(f"the worker exited {len(self.restarts) + 1} times")
            self.restarts.append({"t": round(time.monotonic() - self.started_at, 1), "exit": code})
            self.say(f"worker exited with status {code}; restarting it (as `memstream up` does)")
            await asyncio.sleep(1.0)
            self.spawn()

    def stop(self) -> int | None:
        from memstream.services.stack import stop_process

        if self.proc is None:
            return None
        code = stop_process(self.proc, timeout=30)
        self.proc = None
        return code

    def log_lines(self, levels: tuple[str, ...] = ("error", "critical")) -> dict[str, int]:
        """How often each message at `levels` appears in the worker log (JSON lines)."""
        seen: Counter[str] = Counter()
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return {}
        for line in text.splitlines():
            start = line.find("{")
            try:
                record = json.loads(line[start:]) if start >= 0 else None
            except ValueError:
                continue
            if isinstance(record, dict) and str(record.get("level", "")).lower() in levels:
                seen[str(record.get("event", ""))[:200]] += 1
        return dict(seen.most_common(20))


# --------------------------------------------------------------------------- the run


async def _read_indexed(
    bootstrap: str,
    wanted: set[str],
    *,
    drain_s: float,
    idle_s: float,
    settle_s: float,
    alive: Callable[[], None],
) -> list[str]:
    """Keys of every record on `indexed` from the beginning, read until every `wanted` id
    was seen (then `settle_s` more, for late duplicates), nothing new came for `idle_s`,
    or `drain_s` passed."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        INDEXED.name,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=16 * 1_048_576,
        fetch_max_bytes=64 * 1_048_576,
    )
    await consumer.start()
    keys: list[str] = []
    missing = set(wanted)
    try:
        start = last_new = time.monotonic()
        done_at: float | None = None
        while time.monotonic() - start < drain_s:
            alive()
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for messages in batches.values():
                for message in messages:
                    key = (message.key or b"").decode(errors="replace")
                    keys.append(key)
                    if key in missing:
                        missing.discard(key)
                        last_new = time.monotonic()
            now = time.monotonic()
            if not missing and done_at is None:
                done_at = now + settle_s
            if done_at is not None and now >= done_at:
                break
            if now - last_new > idle_s:
                break
        return keys
    finally:
        await consumer.stop()


def _store_ids(store_path: Path, tenant: str) -> tuple[list[str], int]:
    """Every point id the store lists for `tenant`, and its exact point count."""
    from memstream.store import open_store
    from memstream.store.base import Caller

    store = open_store(str(store_path))
    try:
        caller = Caller(tenant, "faults-reader")
        ids: list[str] = []
        start = None
        while True:
            page, start = store.page(caller, 500, start)
            ids.extend(str(m.memory_id) for m in page)
            if start is None:
                break
        return ids, store.count(tenant)
    finally:
        store.close()


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
