"""`memstream bench push`: publish-to-push latency over the real API, and matcher throughput.

Part 1 (end to end) starts a broker and one `memstream worker --serve` (real embedding
model), creates `subscriptions` standing queries for 20 subscriber agents of one tenant,
opens one SSE stream per subscriber, then publishes memories through `POST /v1/memories`
on a fixed timetable at each rate. Latency is SSE arrival minus the moment just before the
POST (`publish_clock`); the delivery's own `ts` (stamped by the worker when it matched)
splits it into publish -> matched (queueing, batching, embedding, store write) and
matched -> arrived (deliveries topic, the per-stream gateway consumer, SSE).

Part 2 (broker-free, `--matcher-sizes`) times the subscription matcher at each size in one
tenant (the worst case: matching reads the memory's tenant only), on subscriptions simulated
from real MiniLM embeddings (see the comment there) and on random vectors: memories/s for
the matcher as it was before issue 17 and for the exact batched passes, in the same run, and
the sets of subscriptions over threshold against float64 brute force on a sample.
"""

from __future__ import annotations

from memstream.bench.push.corpus import (
    MAX_MEMORIES,
    SUBSCRIBER_AGENTS,
    memory_texts,
    subscription_queries,
    summary_ms,
)
from memstream.bench.push.latency import end_to_end
from memstream.bench.push.matcher import matcher_throughput
from memstream.bench.push.run import run_push_bench

__all__ = [
    "MAX_MEMORIES",
    "SUBSCRIBER_AGENTS",
    "end_to_end",
    "matcher_throughput",
    "memory_texts",
    "run_push_bench",
    "subscription_queries",
    "summary_ms",
]
