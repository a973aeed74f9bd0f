"""The model workers of one run: spawn, stop, follow `memstream.indexed`, window views."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memstream.bench.scale.procs import cmdline, descendants
from memstream.bench.scale.rates import PARTITIONS


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
