"""Prometheus metrics of the pipeline's stages, in the worker's process.

`memstream_stage_seconds{stage}`: time a batch spends in a stage (validate, privacy,
model, sink, match), measured where the work runs (the privacy child process measures
its own scan and returns the figure); `memstream_stage_batch_size{stage}`: events per
batch entering the stage; `memstream_stage_events_total{stage,outcome}`: events out of a
stage, `ok` or the reason it dropped them; `memstream_privacy_actions_total{category,
action}`: personal-data categories the privacy stage found and what it did (seal, redact,
...); `memstream_model_info{model,provider}` = 1 for the embedding model in use;
`memstream_store_points`: points in the store (sink role; read every 30 s).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

STAGES = ("validate", "privacy", "model", "sink", "match")

STAGE_SECONDS = Histogram(
    "memstream_stage_seconds",
    "Seconds a batch spends in a pipeline stage",
    ["stage"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
BATCH_SIZE = Histogram(
    "memstream_stage_batch_size",
    "Events per batch entering a pipeline stage",
    ["stage"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000),
)
STAGE_EVENTS = Counter(
    "memstream_stage_events_total",
    "Events out of a pipeline stage: ok, or the reason it dead-lettered them",
    ["stage", "outcome"],
)
PRIVACY_ACTIONS = Counter(
    "memstream_privacy_actions_total",
    "Personal-data categories found in events, by what the privacy stage did with them",
    ["category", "action"],
)
MODEL_INFO = Gauge(
    "memstream_model_info",
    "1 for the embedding model and ONNX provider in use",
    ["model", "provider"],
)
STORE_POINTS = Gauge("memstream_store_points", "Points (memories) in the store")


@contextmanager
def timed(stage: str, size: int) -> Iterator[None]:
    """Time a batch of `size` events in `stage`."""
    BATCH_SIZE.labels(stage).observe(size)
    started = time.perf_counter()
    try:
        yield
    finally:
        STAGE_SECONDS.labels(stage).observe(time.perf_counter() - started)


def observe(stage: str, size: int, seconds: float) -> None:
    """A batch timed elsewhere (the privacy child process)."""
    BATCH_SIZE.labels(stage).observe(size)
    STAGE_SECONDS.labels(stage).observe(seconds)


def count_outcomes(
    stage: str, outcomes: Sequence[Any], reason_of: Callable[[Any], str | None]
) -> None:
    """One `ok` per outcome whose `reason_of` is None, else one under its reason."""
    counts: dict[str, int] = {}
    for outcome in outcomes:
        key = reason_of(outcome) or "ok"
        counts[key] = counts.get(key, 0) + 1
    for key, n in counts.items():
        STAGE_EVENTS.labels(stage, key).inc(n)


def count_privacy(pii_types: Sequence[str], action: str) -> None:
    for category in set(pii_types):
        PRIVACY_ACTIONS.labels(category, action).inc()
