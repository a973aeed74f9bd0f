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

from memstream.bench.scale.procs import descendants
from memstream.bench.scale.rates import (
    diagnose,
    first_to_last_rate,
    fitted_rate,
    metric_value,
    parse_workers,
    scaling,
    schedule,
    steady_rate,
)
from memstream.bench.scale.run import run_scale_bench

__all__ = [
    "descendants",
    "diagnose",
    "first_to_last_rate",
    "fitted_rate",
    "metric_value",
    "parse_workers",
    "run_scale_bench",
    "scaling",
    "schedule",
    "steady_rate",
]
