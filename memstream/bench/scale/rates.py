"""The scale bench's pure parts: arguments, rates from timestamps, the ratio and the diagnosis."""

from __future__ import annotations

import contextlib
import math
import statistics
from collections.abc import Iterable, Sequence
from typing import Any

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
