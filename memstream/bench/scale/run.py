"""`run_scale_bench`: the preload, every configuration and repeat, the report."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from memstream.bench.scale.procs import all_cpu, cmdline, loadavg
from memstream.bench.scale.rates import (
    BAR,
    HEADLINE_MEMORIES,
    HEADLINE_MODELS,
    HI,
    LIGHT_MEMORIES,
    LIGHT_MODELS,
    LO,
    PARTITIONS,
    diagnose,
    median,
    scaling,
    schedule,
)
from memstream.bench.scale.run_once import _round, _run_once


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
