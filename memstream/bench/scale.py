"""`memstream bench scale`: how the model stage scales with model workers (issue 17).

One Apache Kafka broker (full JIT: a benchmark), input topics of 8 partitions. LoCoMo turns
(as `bench ingest` builds them, copied under fresh ids and tenants up to `--memories`) are
published onto `memstream.memories` *before* any worker starts, spread round-robin over the
partitions, so what is measured is how fast the workers drain a backlog, not how fast the
bench publishes. Then, per configuration k of `--workers` and per repeat (interleaved:
1, 2, 1, 2, ...):

- a fresh consumer group (`MEMSTREAM_CONSUMER_GROUP`) and a fresh data dir;
- k processes of `memstream worker --role model`, worker i pinned to core i with
  `taskset -c i` (its PII child process inherits the pin);
- the rate is distinct records on `memstream.indexed` (their producer timestamps) per second
  over the steady window: from the later of 10 % of the memories handed on and every worker
  having handed on its first record (models loaded, partitions assigned), to 90 %;
- every second the bench samples each worker's `memstream_memories_indexed_total` (/metrics),
  the CPU and run-queue wait of each worker and its children (/proc), the broker's and its
  own CPU, per-core busy time and every other process's CPU: who used the cores in the window.

No sink runs: model workers never open the store; nothing else reads `memstream.indexed`
(the bench follows it). The broker and the bench run unpinned, on the same two cores as the
workers. The machine is shared: compare the ratio within one run, not rates across runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memstream.streams.admin import topic_end_offsets

BAR = 1.8
"""Events/s with 2 model workers over 1 (issue 17, acceptance 1)."""

PARTITIONS = 8
HEADLINE_MEMORIES = 2000
LIGHT_MEMORIES = 20_000
TICK_S = 1.0
LO, HI = 0.10, 0.90
STALL_S = 180.0
"""A run fails when nothing new is handed on for this long."""

HEADLINE_MODELS = {  # what is being scaled: the worker's defaults, stated explicitly
    "MEMSTREAM_EMBEDDER": "minilm",
    "MEMSTREAM_PII_ENABLED": "true",
    "MEMSTREAM_PII_TIER": "full",
    "MEMSTREAM_PRIVACY_PROCESS": "true",
}
LIGHT_MODELS = {  # secondary figure only: the delivery path without the real models
    "MEMSTREAM_EMBEDDER": "static",
    "MEMSTREAM_PII_ENABLED": "true",
    "MEMSTREAM_PII_TIER": "fast",
    "MEMSTREAM_PRIVACY_PROCESS": "true",
}

_CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- pure parts ----------------------------------------------------------------------------


def parse_workers(text: str) -> tuple[int, ...]:
    """`1,2` -> (1, 2): worker counts, each at least 1, no repeats, in the order given."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise ValueError("--workers is empty: give worker counts, e.g. 1,2")
    counts: list[int] = []
    for part in parts:
        try:
            n = int(part)
        except ValueError:
            raise ValueError(f"--workers: {part!r} is not a whole number") from None
        if n < 1:
            raise ValueError(f"--workers: {n} is not a positive worker count")
        if n in counts:
            raise ValueError(f"--workers: {n} is given twice")
        counts.append(n)
    return tuple(counts)


def schedule(workers: Sequence[int], repeats: int) -> list[tuple[int, int]]:
    """(workers, repeat) in run order: configurations interleaved, so slow drift of the
    shared machine's load spreads over all of them."""
    return [(k, r) for r in range(repeats) for k in workers]


def steady_rate(
    times: Sequence[float],
    total: int,
    *,
    lo: float = LO,
    hi: float = HI,
    not_before: float | None = None,
) -> dict[str, float] | None:
    """Events/s over the steady window of a drain of `total` events, from the time each
    distinct event appeared (`times`, any order).

    The window opens at the record that makes `lo` of `total` (or the first at or after
    `not_before`, if that is later: every worker producing) and closes at the one that
    makes `hi`; the rate is the records after the first over the time between the two.
    None when the window holds under two records or no time."""
    if total < 2 or not 0 <= lo < hi <= 1:
        raise ValueError("need total >= 2 and 0 <= lo < hi <= 1")
    ordered = sorted(times)
    start = max(math.ceil(lo * total) - 1, 0)
    if not_before is not None:
        while start < len(ordered) and ordered[start] < not_before:
            start += 1
    end = math.ceil(hi * total) - 1
    if end >= len(ordered) or end <= start:
        return None
    span = ordered[end] - ordered[start]
    if span <= 0:
        return None
    return {
        "rate_per_s": (end - start) / span,
        "start": ordered[start],
        "end": ordered[end],
        "window_s": span,
        "events_in_window": float(end - start),
    }


def fitted_rate(times: Sequence[float], start: float, end: float) -> float | None:
    """Least-squares slope of the count of records against time over [start, end]: a
    cross-check of `steady_rate`, which counts from one record to another and so depends on
    where in a sub-batch (the worker hands on 64 records at a time) each end falls."""
    inside = [t for t in sorted(times) if start <= t <= end]
    n = len(inside)
    if n < 3:
        return None
    mean_t = sum(inside) / n
    mean_i = (n - 1) / 2
    var = sum((t - mean_t) ** 2 for t in inside)
    if var <= 0:
        return None
    return sum((t - mean_t) * (i - mean_i) for i, t in enumerate(inside)) / var


def first_to_last_rate(times: Sequence[float]) -> float | None:
    """Events/s from the first record to the last (start-up and tail included)."""
    if len(times) < 2:
        return None
    span = max(times) - min(times)
    return (len(times) - 1) / span if span > 0 else None


def metric_value(text: str, name: str) -> float:
    """The sum of every sample of `name` in a Prometheus text exposition (0 if absent)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name) : len(name) + 1] in (" ", "{")):
            with contextlib.suppress(ValueError, IndexError):
                total += float(line.rsplit(maxsplit=1)[-1])
    return total


def median(values: Iterable[float]) -> float | None:
    got = [v for v in values if v is not None]
    return statistics.median(got) if got else None


def diagnose(runs: list[dict[str, Any]], ratio: float | None, bar: float = BAR) -> list[str]:
    """Plain facts on where the cores went in the 1- and 2-worker runs' steady windows:
    the CPU the workers got, per worker, what else ran, and the work per CPU-second."""
    notes: list[str] = []
    for k in (1, 2):
        mine = [r for r in runs if r["workers"] == k and r.get("in_window")]
        if not mine:
            continue
        got = median(r["in_window"]["workers_cpu_cores"] for r in mine)
        per_cpu = median(r["events_per_worker_cpu_s"] for r in mine)
        others = median(r["in_window"]["other_cpu_cores"] for r in mine)
        broker = median(r["in_window"]["broker_cpu_cores"] for r in mine)
        bench = median(r["in_window"]["bench_cpu_cores"] for r in mine)
        each = [
            [
                round(w["cpu_cores_worker"] + w["cpu_cores_pii_child"], 2)
                for w in r["in_window"]["workers"]
            ]
            for r in mine
        ]
        notes.append(
            f"{k} worker(s): workers got {got:.2f} cores in all (each, by run: {each}); "
            f"{per_cpu:.2f} events per worker CPU-second; broker {broker:.2f}, bench "
            f"{bench:.2f}, other processes {others:.2f} cores (medians over repeats)"
        )
        if k == 2:
            idle = [
                w["worker"]
                for r in mine
                for w in r["in_window"]["workers"]
                if w["rate_per_s_metrics"] <= 0
            ]
            if idle:
                notes.append(f"a worker handed on nothing in the window: {sorted(set(idle))}")
            unbalanced = [
                r["assignment"]
                for r in mine
                if r.get("assignment")
                and len({len(m["topics"].get("memstream.memories", [])) for m in r["assignment"]})
                > 1
            ]
            if unbalanced:
                notes.append(f"unequal partition assignment: {unbalanced}")
    if ratio is not None and ratio < bar:
        one = [r for r in runs if r["workers"] == 1 and r.get("in_window")]
        two = [r for r in runs if r["workers"] == 2 and r.get("in_window")]
        if one and two:
            cpu1 = median(r["in_window"]["workers_cpu_cores"] for r in one)
            cpu2 = median(r["in_window"]["workers_cpu_cores"] for r in two)
            eff1 = median(r["events_per_worker_cpu_s"] for r in one)
            eff2 = median(r["events_per_worker_cpu_s"] for r in two)
            if cpu1 and cpu2 and eff1 and eff2:
                notes.append(
                    f"below the bar: the 2 workers got {cpu2 / cpu1:.2f}x the CPU of 1 and did "
                    f"{eff2 / eff1:.2f}x the work per CPU-second ({ratio:.2f} ~ "
                    f"{cpu2 / cpu1 * eff2 / eff1:.2f})"
                )
    return notes


def scaling(medians: dict[int, float | None], base: int = 1, to: int = 2) -> float | None:
    """events/s(to) / events/s(base), when both were measured."""
    a, b = medians.get(base), medians.get(to)
    return b / a if a and b else None


# --- /proc ---------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    head, _, rest = text.rpartition(")")
    return [head.split("(", 1)[-1], *rest.split()]  # [comm, state, ppid, ...]


def cpu_s(pid: int) -> float | None:
    """utime + stime of `pid` (its threads, living and ended), in seconds."""
    f = _stat_fields(pid)
    return (int(f[12]) + int(f[13])) / _CLK_TCK if f else None


def run_wait_s(pid: int) -> float:
    """Seconds the living threads of `pid` spent runnable but waiting for a core."""
    total = 0
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int((task / "schedstat").read_text().split()[1])
    return total / 1e9


def scan_procs() -> dict[int, tuple[str, int, float]]:
    """Every process: (name, parent pid, CPU seconds so far), one pass over /proc."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            f = _stat_fields(int(entry.name))
            if f:
                out[int(entry.name)] = (f[0], int(f[2]), (int(f[12]) + int(f[13])) / _CLK_TCK)
    return out


def descendants(pid: int, procs: dict[int, tuple[str, int, float]] | None = None) -> list[int]:
    """Every living process under `pid` (the PII child, multiprocessing's helpers)."""
    procs = scan_procs() if procs is None else procs
    out, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, (_, parent, _) in procs.items() if parent == p]
        out.extend(kids)
        frontier.extend(kids)
    return out


def affinity(pid: int) -> str | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                return line.split(":", 1)[1].strip()
    return None


def repin(pids: Iterable[int], core: int) -> list[str]:
    """Put every thread of `pids` back on `core`. `taskset` sets the mask a process starts
    with, but a thread may set its own: ONNX Runtime pins its intra-op pool threads to cores
    when no thread count is given (the worker gives none), so one thread of a worker started
    with `taskset -c 0` runs on core 1. Returns `pid/tid:name:mask` of each thread moved."""
    moved = []
    for pid in pids:
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                tid = int(task.name)
                try:
                    mask = os.sched_getaffinity(tid)
                    if mask != {core}:
                        os.sched_setaffinity(tid, {core})
                        name = (task / "comm").read_text().strip()
                        moved.append(f"{pid}/{tid}:{name}:{','.join(map(str, sorted(mask)))}")
                except OSError:  # the thread ended meanwhile
                    continue
    return moved


def threads(pid: int) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return None


def core_busy() -> dict[str, tuple[float, float, float]]:
    """Per core (and `cpu` for all): (busy, steal, total) seconds since boot; steal (time
    the hypervisor ran something else while this VM wanted the core) is not in busy."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if not line.startswith("cpu"):
            break
        name, *vals = line.split()
        v = [int(x) for x in vals[:8]] + [0] * (8 - len(vals[:8]))
        idle, steal = v[3] + v[4], v[7]
        out[name] = ((sum(v) - idle - steal) / _CLK_TCK, steal / _CLK_TCK, sum(v) / _CLK_TCK)
    return out


def all_cpu() -> dict[int, tuple[str, float]]:
    """Every process: (name, CPU seconds so far)."""
    return {pid: (name, cpu) for pid, (name, _, cpu) in scan_procs().items()}


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    except OSError:
        return ""


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


# --- one run -------------------------------------------------------------------------------


@dataclass
class _Worker:
    index: int
    core: int
    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    children: set[int] = field(default_factory=set)
    first_output: float | None = None
    repinned: list[str] = field(default_factory=list)


@dataclass
class _Tick:
    t: float
    counts: list[float]
    dead: list[float]
    worker_cpu: list[float]  # the worker process alone
    child_cpu: list[float]  # its descendants (the PII child)
    wait: list[float]  # run-queue wait of the worker and its descendants
    broker_cpu: float
    self_cpu: float
    cores: dict[str, tuple[float, float, float]]
    procs: dict[int, tuple[str, float]]
    load: list[float]


def _spawn(
    index: int,
    core: int | None,
    bootstrap: str,
    data_dir: Path,
    group: str,
    models: dict[str, str],
) -> _Worker:
    from memstream.broker.base import free_port
    from memstream.services.stack import _die_with_parent

    port = free_port()
    log = data_dir / f"model-{index}.log"
    env = {
        **os.environ,
        "MEMSTREAM_KAFKA_BOOTSTRAP": bootstrap,
        "MEMSTREAM_ROLE": "model",
        "MEMSTREAM_DATA_DIR": str(data_dir),
        "MEMSTREAM_WEB_PORT": str(port),
        "MEMSTREAM_PARTITIONS": str(PARTITIONS),
        "MEMSTREAM_CONSUMER_GROUP": group,
        "MEMSTREAM_LEARNER_ENABLED": "false",
        "MEMSTREAM_LOG_LEVEL": "INFO",
        **models,
    }
    argv = [sys.executable, "-m", "memstream", "worker"]
    if core is not None:
        argv = ["taskset", "-c", str(core), *argv]
    out = os.fdopen(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
    try:
        proc = subprocess.Popen(
            argv,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # never outlive the bench
        )
    finally:
        out.close()
    return _Worker(index, core if core is not None else -1, proc, f"http://127.0.0.1:{port}", log)


def _stop(workers: list[_Worker]) -> None:
    from memstream.services.stack import stop_process

    for w in workers:
        with contextlib.suppress(Exception):
            w.children.update(descendants(w.proc.pid))
        stop_process(w.proc)
    for w in workers:  # a PII child left behind by a killed worker
        for pid in w.children:
            if "multiprocessing" in cmdline(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def _log_tail(w: _Worker, chars: int = 3000) -> str:
    try:
        return w.log.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def _models_used(w: _Worker) -> dict[str, Any]:
    """What the worker says it loaded (its `model stage ready` log line)."""
    for line in _log_tail(w, 200_000).splitlines():
        if "model stage ready" in line:
            with contextlib.suppress(ValueError):
                record = json.loads(line[line.index("{") :])
                return {
                    k: record[k] for k in ("embedding", "providers", "valuation") if k in record
                }
            return dict(re.findall(r"(\w+)=(\S+)", line))
    return {}


class _Follower:
    """Follows `memstream.indexed` from given offsets: when each distinct id first appeared
    (its producer timestamp), and how many records in all (duplicates: re-reads)."""

    def __init__(self, bootstrap: str, topic: str, start: dict[int, int]) -> None:
        self.bootstrap, self.topic, self.start = bootstrap, topic, start
        self.first: dict[bytes, float] = {}
        self.records = 0

    async def run(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100
        )
        await consumer.start()
        try:
            tps = [TopicPartition(self.topic, p) for p in self.start]
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, self.start[tp.partition])
            while True:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    for record in records:
                        self.records += 1
                        if record.key is not None:
                            self.first.setdefault(record.key, record.timestamp / 1000)
        finally:
            await consumer.stop()


async def _assignment(bootstrap: str, group: str) -> list[dict[str, Any]] | None:
    """Partitions per member of `group`, as the coordinator holds them now."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        response = (await admin.describe_consumer_groups([group]))[0]
        members = []
        for group_row in response.groups:
            state = group_row[2]
            for member in group_row[5]:
                raw = member[-1]
                try:
                    decoded = ConsumerProtocolMemberAssignment.decode(raw)
                    topics = {t: sorted(p) for t, p in decoded.assignment}
                except Exception:  # a report detail, never a reason to fail the run
                    topics = {"undecodable": [len(raw)]}
                members.append({"member": member[0][-12:], "state": state, "topics": topics})
        return members
    except Exception:
        return None
    finally:
        await admin.close()


def _nearest(ticks: list[_Tick], t: float) -> _Tick:
    return min(ticks, key=lambda tick: abs(tick.t - t))


def _window_view(
    a: _Tick, b: _Tick, workers: list[_Worker], ours: set[int], broker_pids: set[int]
) -> dict[str, Any]:
    """Who used the cores between ticks `a` and `b`."""
    wall = b.t - a.t
    if wall <= 0:
        return {}
    per_worker = []
    for i, w in enumerate(workers):
        per_worker.append(
            {
                "worker": w.index,
                "core": w.core,
                "rate_per_s_metrics": round((b.counts[i] - a.counts[i]) / wall, 2),
                "cpu_cores_worker": round((b.worker_cpu[i] - a.worker_cpu[i]) / wall, 3),
                "cpu_cores_pii_child": round((b.child_cpu[i] - a.child_cpu[i]) / wall, 3),
                "runqueue_wait_cores": round((b.wait[i] - a.wait[i]) / wall, 3),
            }
        )
    cores, steal = {}, {}
    for name, (busy, stolen, total) in b.cores.items():
        if name in a.cores and total > a.cores[name][2]:
            span = total - a.cores[name][2]
            cores[name] = round((busy - a.cores[name][0]) / span, 3)
            steal[name] = round((stolen - a.cores[name][1]) / span, 3)
    others: dict[str, float] = {}
    for pid, (name, cpu) in b.procs.items():
        if pid in ours or pid in broker_pids or pid == os.getpid():
            continue
        used = cpu - (a.procs[pid][1] if pid in a.procs else 0.0)
        if used > 0.05 * wall:
            label = f"{pid} {cmdline(pid)[:90] or name}"
            others[label] = round(used / wall, 3)
    worker_cores = sum(w["cpu_cores_worker"] + w["cpu_cores_pii_child"] for w in per_worker)
    broker = (b.broker_cpu - a.broker_cpu) / wall
    bench = (b.self_cpu - a.self_cpu) / wall
    n_cores = sum(1 for name in cores if name != "cpu")
    # everything else, short-lived processes included: busy time of all cores less ours
    rest = cores.get("cpu", 0.0) * n_cores - worker_cores - broker - bench
    return {
        "wall_s": round(wall, 1),
        "workers": per_worker,
        "workers_cpu_cores": round(worker_cores, 3),
        "broker_cpu_cores": round(broker, 3),
        "bench_cpu_cores": round(bench, 3),
        "other_cpu_cores": round(max(rest, 0.0), 3),
        "core_busy_fraction": cores,  # `cpu`: both cores together, as a fraction of all
        "core_steal_fraction": steal,  # the hypervisor's: this VM wanted the core, got none
        # the largest of them, among processes still alive at the end of the window
        "other_processes_cpu_cores": dict(sorted(others.items(), key=lambda kv: -kv[1])[:8]),
        "loadavg": b.load,
    }


async def _run_once(
    bootstrap: str,
    broker_pids: list[int],
    k: int,
    repeat: int,
    total: int,
    root: Path,
    models: dict[str, str],
    cores: list[int],
    pin: bool,
    say: Callable[[str], None],
) -> dict[str, Any]:
    import httpx

    from memstream.schemas.topics import INDEXED
    from memstream.services.stack import wait_for_http

    tag = f"{k}w-r{repeat + 1}-{uuid.uuid4().hex[:6]}"
    group = f"memstream-scale-{tag}"
    data_dir = root / f"run-{tag}"
    data_dir.mkdir()
    start = await topic_end_offsets(bootstrap, INDEXED.name)
    follower = _Follower(bootstrap, INDEXED.name, start)
    following = asyncio.create_task(follower.run())
    workers: list[_Worker] = []
    ticks: list[_Tick] = []
    t_spawn = time.time()
    try:
        for i in range(k):
            core = cores[i % len(cores)] if pin else None
            workers.append(_spawn(i, core, bootstrap, data_dir, group, models))

        def alive() -> None:
            for w in workers:
                if w.proc.poll() is not None:
                    raise RuntimeError(
                        f"model worker {w.index} exited ({w.proc.returncode}); log tail:\n"
                        + _log_tail(w)
                    )

        await asyncio.gather(
            *(asyncio.to_thread(wait_for_http, f"{w.url}/healthz", 300, alive) for w in workers)
        )
        t_ready = time.time()
        if pin:  # the models are loaded: their thread pools exist now
            for w in workers:
                w.repinned.extend(repin([w.proc.pid, *descendants(w.proc.pid)], w.core))
        say(f"{k} worker(s) ready in {t_ready - t_spawn:.1f}s (group {group})")
        ours = {os.getpid()}
        assignment = None
        last_progress, last_done = time.monotonic(), 0
        last_said = time.monotonic()
        async with httpx.AsyncClient(timeout=5) as http:
            while True:
                alive()
                texts = await asyncio.gather(
                    *(http.get(f"{w.url}/metrics") for w in workers), return_exceptions=True
                )
                now = time.time()
                counts, dead = [], []
                for w, r in zip(workers, texts, strict=True):
                    text = r.text if isinstance(r, httpx.Response) else ""
                    counts.append(metric_value(text, "memstream_memories_indexed_total"))
                    dead.append(metric_value(text, "memstream_dead_letters_total"))
                    if counts[-1] > 0 and w.first_output is None:
                        w.first_output = now
                procs = scan_procs()
                worker_cpu, child_cpu, wait = [], [], []
                for w in workers:
                    kids = descendants(w.proc.pid, procs)
                    w.children.update(kids)
                    if pin:
                        w.repinned.extend(repin([w.proc.pid, *kids], w.core))
                    ours.update([w.proc.pid, *kids])
                    worker_cpu.append(procs[w.proc.pid][2] if w.proc.pid in procs else 0.0)
                    child_cpu.append(sum(procs[c][2] for c in kids))
                    wait.append(run_wait_s(w.proc.pid) + sum(run_wait_s(c) for c in kids))
                ticks.append(
                    _Tick(
                        now,
                        counts,
                        dead,
                        worker_cpu,
                        child_cpu,
                        wait,
                        sum(cpu_s(p) or 0.0 for p in broker_pids),
                        sum(os.times()[:2]),
                        core_busy(),
                        {pid: (name, cpu) for pid, (name, _, cpu) in procs.items()},
                        loadavg(),
                    )
                )
                done = len(follower.first) + int(sum(dead))
                if assignment is None and done >= total // 2:
                    assignment = await _assignment(bootstrap, group)
                if done >= total:
                    break
                if time.monotonic() - last_said >= 30:
                    last_said = time.monotonic()
                    say(f"  {done}/{total} handed on, load {ticks[-1].load[0]}")
                if done > last_done:
                    last_progress, last_done = time.monotonic(), done
                elif time.monotonic() - last_progress > STALL_S:
                    raise RuntimeError(
                        f"no progress for {STALL_S:.0f}s at {done}/{total}; worker 0 log tail:\n"
                        + _log_tail(workers[0])
                    )
                await asyncio.sleep(TICK_S)
        await asyncio.sleep(0.5)  # the last records' fetch
        firsts = sorted(follower.first.values())
        all_producing = max(w.first_output or t_ready for w in workers)
        steady = steady_rate(firsts, total, not_before=all_producing)
        view: dict[str, Any] = {}
        if steady is not None and len(ticks) >= 2:
            view = _window_view(
                _nearest(ticks, steady["start"]),
                _nearest(ticks, steady["end"]),
                workers,
                ours,
                set(broker_pids),
            )
        models_used = _models_used(workers[0])
        result = {
            "workers": k,
            "repeat": repeat + 1,
            "consumer_group": group,
            "cores": [w.core for w in workers] if pin else None,
            "affinity": [affinity(w.proc.pid) for w in workers],
            "pii_child_affinity": [
                sorted({affinity(c) for c in w.children if affinity(c)}) for w in workers
            ],
            "threads": [threads(w.proc.pid) for w in workers],
            "threads_repinned": [w.repinned for w in workers],
            "rate_per_s": round(steady["rate_per_s"], 2) if steady else None,
            "rate_fit_per_s": _round(
                fitted_rate(firsts, steady["start"], steady["end"]) if steady else None
            ),
            "rate_first_to_last_per_s": _round(first_to_last_rate(firsts)),
            "events_per_worker_cpu_s": _round(
                steady["rate_per_s"] / view["workers_cpu_cores"]
                if steady and view.get("workers_cpu_cores")
                else None
            ),
            "window": {
                "from_s": round(steady["start"] - t_spawn, 1),
                "to_s": round(steady["end"] - t_spawn, 1),
                "events": int(steady["events_in_window"]),
            }
            if steady
            else None,
            "ready_s": round(t_ready - t_spawn, 1),
            "first_output_s": [
                round(w.first_output - t_spawn, 1) if w.first_output else None for w in workers
            ],
            "handed_on_distinct": len(follower.first),
            "indexed_records": follower.records,
            "dead_letters": int(sum(ticks[-1].dead)) if ticks else 0,
            "handed_on_by_worker": [int(c) for c in ticks[-1].counts] if ticks else [],
            "assignment": assignment,
            "in_window": view,
            "models_reported": models_used,
        }
        say(
            f"{k} worker(s), repeat {repeat + 1}: {result['rate_per_s']}/s steady "
            f"(fit {result['rate_fit_per_s']}/s) "
            f"({result['rate_first_to_last_per_s']}/s first to last); "
            f"by worker {[p['rate_per_s_metrics'] for p in view.get('workers', [])]}/s, "
            f"cpu {[p['cpu_cores_worker'] + p['cpu_cores_pii_child'] for p in view.get('workers', [])]}, "
            f"cores busy {view.get('core_busy_fraction')}"
        )
        return result
    finally:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
        _stop(workers)


def _round(x: float | None, nd: int = 2) -> float | None:
    return round(x, nd) if x is not None else None


# --- the whole bench -----------------------------------------------------------------------


def build_memories(dataset: Path, n: int) -> tuple[list[Any], dict[str, Any]]:
    """`n` LoCoMo turn memories (`bench ingest`'s: turn, speaker, date and previous turn as
    context), copies under fresh ids and a tenant per copy once the turns run out."""
    from memstream.bench.ingest import _retag
    from memstream.eval.locomo import load_locomo
    from memstream.eval.retrieval import turn_memories

    turns, _, _ = turn_memories(load_locomo(dataset))
    out: list[Any] = []
    copy = 0
    while len(out) < n:
        out.extend(_retag(turns, f"scale-{copy}")[: n - len(out)])
        copy += 1
    chars = [len(m.payload.text) for m in out]
    return out, {
        "turns_in_dataset": len(turns),
        "copies": copy,
        "mean_text_chars": round(statistics.fmean(chars), 1),
        "speakers": len({m.agent_id for m in turns}),
    }


async def _preload(bootstrap: str, memories: list[Any], partitions: int) -> dict[str, Any]:
    """Every memory onto `memstream.memories` (acks=all), round-robin over the partitions.
    Keyed by agent as the SDK does, LoCoMo's few speakers would fill only some partitions:
    what that would have been is reported beside."""
    from collections import Counter

    from aiokafka import AIOKafkaProducer
    from aiokafka.partitioner import DefaultPartitioner

    from memstream.schemas.topics import MEMORIES

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=256 * 1024
    )
    await producer.start()
    t0 = time.perf_counter()
    try:
        futures = [
            await producer.send(
                MEMORIES.name, m.to_json(), key=m.agent_id.encode(), partition=i % partitions
            )
            for i, m in enumerate(memories)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    parts = list(range(partitions))
    keyed = Counter(DefaultPartitioner()(m.agent_id.encode(), parts, parts) for m in memories)
    return {
        "published": len(memories),
        "seconds": round(time.perf_counter() - t0, 2),
        "partitioning": f"round-robin over {partitions} partitions",
        "per_partition": [
            sum(1 for i in range(len(memories)) if i % partitions == p) for p in parts
        ],
        "per_partition_if_keyed_by_agent": [keyed.get(p, 0) for p in parts],
    }


async def _wait_leaders(bootstrap: str, topics: list[str], timeout: float = 60) -> None:
    """Until every partition of `topics` has a leader (fresh topics elect theirs)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            described = await admin.describe_topics(topics)
            if all(
                d["partitions"] and all(p["leader"] >= 0 for p in d["partitions"])
                for d in described
            ):
                return
            await asyncio.sleep(0.5)
    finally:
        await admin.close()


def _kill_leftover_brokers(root: Path) -> list[int]:
    """SIGKILL `kafka.Kafka` JVMs whose working directory is under `root` (ours only)."""
    killed = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if "kafka.Kafka" not in cmdline(pid):
            continue
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if cwd.startswith(str(root)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
    return killed


def _top_others(seconds: float = 2.0) -> dict[str, float]:
    """What else uses the CPU right now (cores, over `seconds`)."""
    a = all_cpu()
    time.sleep(seconds)
    b = all_cpu()
    out = {}
    for pid, (name, cpu) in b.items():
        if pid == os.getpid() or pid not in a:
            continue
        used = (cpu - a[pid][1]) / seconds
        if used > 0.05:
            out[f"{pid} {cmdline(pid)[:90] or name}"] = round(used, 2)
    return dict(sorted(out.items(), key=lambda kv: -kv[1])[:8])


def run_scale_bench(
    workers: Sequence[int] = (1, 2),
    *,
    dataset: Path,
    memories: int | None = None,
    repeats: int = 2,
    light: bool = False,
    pin: bool = True,
    keep: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    def say(msg: str) -> None:
        if progress:
            print(f"[scale] {msg}", file=sys.stderr, flush=True)

    if pin and shutil.which("taskset") is None:
        raise RuntimeError("taskset is not installed (util-linux); pass --no-pin")

    def _terminate(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)  # unwinds through the finally blocks: nothing left

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return _run_scale_bench(workers, dataset, memories, repeats, light, pin, keep, say)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_scale_bench(
    workers: Sequence[int],
    dataset: Path,
    memories: int | None,
    repeats: int,
    light: bool,
    pin: bool,
    keep: bool,
    say: Callable[[str], None],
) -> dict[str, Any]:
    from memstream.broker.kafka import start_kafka
    from memstream.schemas.topics import INDEXED, MEMORIES
    from memstream.streams.admin import ensure_topics

    cores = sorted(os.sched_getaffinity(0))
    models = LIGHT_MODELS if light else HEADLINE_MODELS
    if memories is None:  # the light path drains ~10x faster: a longer backlog
        memories = LIGHT_MEMORIES if light else HEADLINE_MEMORIES
    batch, data_info = build_memories(dataset, memories)
    say(
        f"{len(batch)} memories ({data_info['turns_in_dataset']} LoCoMo turns x {data_info['copies']})"
    )
    machine_before = {"loadavg": loadavg(), "other_processes_cpu_cores": _top_others()}
    root = Path(tempfile.mkdtemp(prefix="memstream-scale-"))
    handle = None
    runs: list[dict[str, Any]] = []
    try:
        handle = start_kafka(nodes=1, data_dir=root / "kafka")
        asyncio.run(ensure_topics(handle.bootstrap, partitions=PARTITIONS))
        asyncio.run(_wait_leaders(handle.bootstrap, [MEMORIES.name, INDEXED.name]))
        say(f"{handle.label} at {handle.bootstrap} (unpinned), topics of {PARTITIONS} partitions")
        preload = asyncio.run(_preload(handle.bootstrap, batch, PARTITIONS))
        say(f"preloaded {preload['published']} memories in {preload['seconds']}s")
        for k, r in schedule(workers, repeats):
            if pin and k > len(cores):
                say(f"{k} workers on {len(cores)} cores: some share a core")
            runs.append(
                asyncio.run(
                    _run_once(
                        handle.bootstrap,
                        list(handle.pids),
                        k,
                        r,
                        len(batch),
                        root,
                        models,
                        cores,
                        pin,
                        say,
                    )
                )
            )
    finally:
        if handle is not None:
            with contextlib.suppress(Exception):
                handle.stop()
        leftovers = _kill_leftover_brokers(root)
        if keep:
            say(f"kept {root} (worker logs under run-*/)")
        else:
            shutil.rmtree(root, ignore_errors=True)
    medians = {k: median(r["rate_per_s"] for r in runs if r["workers"] == k) for k in workers}
    ratio = scaling(medians)
    result: dict[str, Any] = {
        "bench": "scale",
        "figure": "secondary (--light: static embedder, fast PII tier)"
        if light
        else "headline (default models: MiniLM, full PII tier)",
        "broker": handle.label if handle else None,
        "broker_pinned": False,
        "bench_process_pinned": False,
        "sink": "none: model workers never open the store; only the bench reads memstream.indexed",
        "partitions": PARTITIONS,
        "pinning": f"worker i on core i (taskset -c i) of {cores}; its PII child inherits "
        "it; every second the bench puts back on that core any thread that set its own "
        "affinity (ONNX Runtime's pool does: see runs[].threads_repinned)"
        if pin
        else "none",
        "models_requested": models,
        "models_reported": next((r["models_reported"] for r in runs if r["models_reported"]), {}),
        "memories": len(batch),
        "data": {"dataset": str(dataset), **data_info},
        "preload": preload,
        "measure": (
            f"distinct records on memstream.indexed (producer timestamps) per second, from the "
            f"later of {LO:.0%} handed on and every worker's first record, to {HI:.0%}"
        ),
        "rate_per_s_median": {str(k): _round(v) for k, v in medians.items()},
        "rate_fit_per_s_median": {
            str(k): _round(median(r["rate_fit_per_s"] for r in runs if r["workers"] == k))
            for k in workers
        },
        "rate_per_s_by_repeat": {
            str(k): [r["rate_per_s"] for r in runs if r["workers"] == k] for k in workers
        },
        "ratio_2_over_1": _round(ratio, 3),
        "ratio_over_1": {str(k): _round(scaling(medians, 1, k), 3) for k in workers if k != 1},
        "bar": BAR,
        "meets_bar": ratio is not None and ratio >= BAR,
        "machine": {
            "cpus": os.cpu_count(),
            "cores_available": cores,
            "python": platform.python_version(),
            "before": machine_before,
            "after": {"loadavg": loadavg()},
        },
        "diagnosis": diagnose(runs, ratio),
        "runs": runs,
        "leftover_brokers_killed": leftovers,
        "kept_dir": str(root) if keep else None,
    }
    for note in result["diagnosis"]:
        say(note)
    say(
        f"median events/s {result['rate_per_s_median']}; ratio 2/1 = {result['ratio_2_over_1']} "
        f"(bar {BAR}: {'met' if result['meets_bar'] else 'not met'})"
    )
    return result
