"""One configuration and repeat: k pinned workers draining the preloaded backlog."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from memstream.bench.scale.procs import (
    affinity,
    core_busy,
    cpu_s,
    descendants,
    loadavg,
    repin,
    run_wait_s,
    scan_procs,
    threads,
)
from memstream.bench.scale.rates import (
    STALL_S,
    TICK_S,
    first_to_last_rate,
    fitted_rate,
    metric_value,
    steady_rate,
)
from memstream.bench.scale.workers import (
    _assignment,
    _Follower,
    _log_tail,
    _models_used,
    _nearest,
    _spawn,
    _stop,
    _Tick,
    _window_view,
    _Worker,
)
from memstream.streams.admin import topic_end_offsets


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
