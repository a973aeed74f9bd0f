"""`memstream bench store-faults`: the store's disk fills up under a steady stream; is
anything lost?

One `memstream worker` (its own consumer group, its store on a small tmpfs of its own)
indexes memories published at a steady rate by an idempotent `acks=all` producer; each
send is either acknowledged (its future resolved) or failed. Once the worker has indexed
some, a ballast file fills the store's file system; the worker's /healthz and /metrics are
sampled while the disk stays full (`fault_s`); then the ballast is deleted and the backlog
must drain. With `kill`, the worker is SIGKILLed while the store is failing and a new one
started (same group, same store) once the disk is free: what the first one had not
written must be re-read, i.e. it never committed past it.

Backends: `edge` (Qdrant Edge, the default store) and `server` (the Qdrant server code
path, `QdrantServerStore`, on qdrant-client's local mode persisted to SQLite under the
tmpfs: `MEMSTREAM_STORE=qdrant-local:<dir>`; no Qdrant server binary is available here).
Edge maps its files into memory, where a write on a full disk is a SIGBUS that kills the
process; the worker refuses to write below `MEMSTREAM_STORE_MIN_FREE_MB` instead. So for
`edge` the disk is filled in two steps: first to below that reserve (the worker's next
write is refused: ENOSPC from the guard), then, once /healthz says so, to the last byte.
For `server` it is filled to the last byte at once (SQLite: "database or disk is full").

Counted once the worker has drained and stopped: published, acknowledged, indexed
(acknowledged ids found both in the worker's store and on `memstream.indexed`),
duplicated (store points beyond distinct ids; ids seen more than once on
`memstream.indexed`: at-least-once may re-announce after a re-read, and on a shared
broker another worker indexes the same events), dead-lettered (acknowledged ids on
`memstream.dead-letter`, with reasons) and lost (acknowledged, neither indexed nor
dead-lettered). Mounting a tmpfs needs root (CAP_SYS_ADMIN).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from memstream.bench.push import memory_texts
from memstream.broker.base import free_port
from memstream.schemas.events import Memory
from memstream.schemas.topics import (
    DEAD_LETTER,
    ERASURES,
    FEEDBACK,
    INDEXED,
    MEMORIES,
    OBSERVATIONS,
)
from memstream.store.faults import free_bytes

BACKENDS = ("edge", "server")
AGENTS = 8
TMPFS_MB = 192
"""Qdrant Edge on a tmpfs takes about 26 MB for an empty shard, and loading one maps (and
so allocates) its sparse files: about 110 MB for a few hundred points (on ext4: nothing)."""
MIN_FREE_MB = 16
WORKER_TOPICS = (MEMORIES.name, OBSERVATIONS.name, ERASURES.name, INDEXED.name, FEEDBACK.name)
METRICS = (
    "memstream_store_up",
    "memstream_store_failures_total",
    "memstream_store_write_retries_total",
    "memstream_memories_indexed_total",
    "memstream_dead_letters_total",
)


class MountUnavailable(RuntimeError):
    """A tmpfs cannot be mounted here (not root, no CAP_SYS_ADMIN, no `mount`)."""


def _say_stderr(message: str) -> None:
    print(f"[store-faults {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the disk


@contextlib.contextmanager
def tmpfs(path: Path, size_mb: int) -> Iterator[Path]:
    """A tmpfs of `size_mb` MiB mounted at `path` for the duration (MountUnavailable if
    this machine does not allow it)."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "tmpfs", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as err:
        raise MountUnavailable(f"cannot run mount: {err}") from err
    if done.returncode != 0:
        raise MountUnavailable(
            f"cannot mount a tmpfs at {path} (needs root or CAP_SYS_ADMIN): "
            f"{(done.stderr or done.stdout).strip()}"
        )
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


class Ballast:
    """A file that takes a file system's free space away, and gives it back."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "ballast"

    def fill(self, leave_bytes: int = 0) -> str | None:
        """Grow the ballast until at most `leave_bytes` are free (0: until the file system
        refuses, ENOSPC); returns the error that stopped it, if any."""
        stopped: str | None = None
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for chunk in (1 << 20, 1 << 16, 1 << 12, 1 << 9, 1):
                block = b"\0" * chunk
                try:
                    while leave_bytes <= 0 or free_bytes(self.directory) - chunk >= leave_bytes:
                        os.write(fd, block)
                except OSError as err:
                    stopped = f"{type(err).__name__}: {err}"
        finally:
            os.close(fd)
        return stopped

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- Kafka


async def _partitions(bootstrap: str, topic: str) -> list[TopicPartition]:
    from memstream.streams.admin import partition_count

    return [TopicPartition(topic, p) for p in range(await partition_count(bootstrap, topic))]


async def _end_offsets(bootstrap: str, parts: list[TopicPartition]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        return dict(await consumer.end_offsets(parts))
    finally:
        await consumer.stop()


async def start_group_at_end(bootstrap: str, group: str) -> None:
    """Commit the end of every topic the worker reads, so a worker of `group` on a shared
    broker starts with this run's events, not the broker's history."""
    parts: list[TopicPartition] = []
    for topic in WORKER_TOPICS:
        parts += await _partitions(bootstrap, topic)
    ends = await _end_offsets(bootstrap, parts)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        consumer.assign(parts)
        await consumer.commit(ends)
    finally:
        await consumer.stop()


async def _committed(bootstrap: str, group: str, parts: list[TopicPartition]) -> dict:
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await probe.start()
    try:
        return {tp: await probe.committed(tp) for tp in parts}
    finally:
        await probe.stop()


async def _members(bootstrap: str, group: str) -> list[str]:
    """The member ids of `group` now (a member the group evicted and took back has a new
    one); empty if the broker cannot say."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        responses = await admin.describe_consumer_groups([group])
        members: list[str] = []
        for response in responses:
            for described in response.to_object()["groups"]:
                members += [m["member_id"] for m in described["members"]]
        return sorted(members)
    except Exception:
        return []
    finally:
        await admin.close()


async def _read_from(
    bootstrap: str, starts: dict[TopicPartition, int], timeout: float = 120
) -> list[Any]:
    """Every record from `starts` to the partitions' current ends."""
    parts = list(starts)
    ends = await _end_offsets(bootstrap, parts)
    todo = {tp for tp in parts if ends[tp] > starts[tp]}
    if not todo:  # (stopping a consumer right after assign() trips aiokafka up)
        return []
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=16 * 1_048_576,
        fetch_max_bytes=64 * 1_048_576,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        consumer.assign(parts)
        for tp, offset in starts.items():
            consumer.seek(tp, offset)
        deadline = time.monotonic() + timeout
        while todo and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for tp, messages in batches.items():
                records += [m for m in messages if m.offset < ends[tp]]
            todo = {tp for tp in todo if await consumer.position(tp) < ends[tp]}
        return records
    finally:
        await consumer.stop()


# --------------------------------------------------------------------------- the worker


def _parse_metrics(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in METRICS:
        match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
        if match:
            out[name] = float(match.group(1))
    return out


class _Worker:
    """One `memstream worker --serve` on the store under test, restartable."""

    def __init__(self, bootstrap: str, env: dict[str, str], log_path: Path) -> None:
        self.bootstrap, self.env, self.log_path = bootstrap, env, log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout: float = 180) -> None:
        from memstream.services.stack import spawn_worker, wait_for_http

        self.proc = spawn_worker(
            self.bootstrap,
            log_path=self.log_path,
            tied=True,
            **self.env,
            MEMSTREAM_SERVE="true",
            MEMSTREAM_WEB_PORT=str(self.port),
        )
        self.starts += 1

        def alive() -> None:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"worker exited ({self.proc.returncode}): {self.log_tail()}")

        wait_for_http(f"{self.url}/healthz", timeout, alive=alive)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> int | None:
        from memstream.services.stack import stop_process

        if self.proc is None:
            return None
        return stop_process(self.proc, timeout=30)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


async def _probe(client: httpx.AsyncClient, url: str) -> tuple[int | None, Any, dict[str, float]]:
    """(/healthz status, its body, /metrics of interest); None when nothing answers."""
    try:
        health = await client.get(f"{url}/healthz")
        metrics = await client.get(f"{url}/metrics")
    except httpx.HTTPError:
        return None, None, {}
    try:
        body = health.json()
    except ValueError:
        body = health.text
    return health.status_code, body, _parse_metrics(metrics.text)


# --------------------------------------------------------------------------- the run


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


def _log_events(text: str) -> dict[str, int]:
    """How often each event (a JSON log line's `event`, cut at 80 characters) was logged."""
    seen: Counter[str] = Counter()
    for line in text.splitlines():
        try:  # (a progress bar may have left terminal escapes before the JSON)
            event = json.loads(line[line.find("{") :]).get("event")
        except (ValueError, AttributeError):
            continue
        if event:
            seen[str(event)[:80]] += 1
    return dict(seen.most_common(30))


async def _count(
    bootstrap: str,
    tenant: str,
    acked: list[str],
    watched: dict[str, dict[TopicPartition, int]],
    location: str,
) -> dict[str, Any]:
    wanted = set(acked)
    announced: Counter[str] = Counter()
    for record in await _read_from(bootstrap, watched[INDEXED.name]):
        try:
            value = json.loads(record.value or b"")
        except ValueError:
            continue
        if value.get("tenant") == tenant:
            announced[str(value.get("event_id"))] += 1
    reasons: Counter[str] = Counter()
    dead: set[str] = set()
    for record in await _read_from(bootstrap, watched[DEAD_LETTER.name]):
        try:
            value = json.loads(record.value or b"")
        except ValueError:
            continue
        parents = {str(p) for p in value.get("parent_ids") or []}
        if parents & wanted or value.get("tenant") == tenant:
            dead |= parents & wanted
            reasons[str((value.get("payload") or {}).get("reason"))] += 1
    points, stored = _store_ids(location, tenant)
    in_store = wanted & set(stored)
    on_indexed = wanted & set(announced)
    indexed = in_store & on_indexed
    lost = wanted - indexed - dead
    return {
        "indexed": len(indexed),
        "in_store": len(in_store),
        "on_indexed_topic": len(on_indexed),
        "duplicated": {
            "store_points_beyond_ids": points - len(set(stored)),
            "indexed_topic_repeats": sum(n - 1 for n in announced.values() if n > 1),
        },
        "dead_lettered": len(dead),
        "dead_letter_reasons": dict(reasons),
        "lost": len(lost),
        "lost_ids": sorted(lost)[:20],
        "store_points": points,
    }


_READ_STORE = """
import json, sys
from memstream.store import Caller, open_store
store = open_store(sys.argv[1], min_free_bytes=0)
caller, start, ids = Caller(sys.argv[2], "store-faults-counter", frozenset()), None, []
while True:
    page, start = store.page(caller, 1000, start)
    ids += [str(m.memory_id) for m in page]
    if start is None:
        break
print(json.dumps({"points": store.count(sys.argv[2]), "ids": ids}))
store.close()
"""


def _store_ids(location: str, tenant: str) -> tuple[int, list[str]]:
    """(points, memory ids) of `tenant` in the stopped worker's store, read by a child
    process: loading an Edge shard maps its files, and on a tmpfs that allocates pages
    (about 110 MB for a small shard, measured), so a too small disk is a SIGBUS there,
    not in this process."""
    done = subprocess.run(
        [sys.executable, "-c", _READ_STORE, location, tenant],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"reading the store failed ({done.returncode}): {done.stderr.strip()[-2000:]}"
        )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    return int(found["points"]), list(found["ids"])


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
