"""What /proc says about the workers and the cores: CPU, run-queue wait, pins, threads."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

_CLK_TCK = os.sysconf("SC_CLK_TCK")


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
