"""`run_push_bench`: both parts, one report."""

from __future__ import annotations

import json
import os
import platform
import uuid
from pathlib import Path
from typing import Any

from memstream.bench.push.corpus import MAX_PER_MINUTE
from memstream.bench.push.latency import end_to_end
from memstream.bench.push.matcher import matcher_scaling
from memstream.bench.push.simulation import BATCH


def run_push_bench(
    rates: tuple[int, ...] = (50, 200),
    subscriptions: int = 100,
    seconds: float = 20.0,
    matcher_sizes: tuple[int, ...] = (1_000, 10_000),
    broker: str = "tansu",
    *,
    match_share: float = 0.05,
    matcher_match_share: float = 0.001,
    matcher_seconds: float = 10.0,
    matcher_check: int = 64,
    locomo: Path = Path("../shared/data/locomo_dev.json"),
    progress: bool = True,
) -> dict[str, Any]:
    """Both parts (an empty `rates` or `matcher_sizes` skips one); a JSON-able dict.
    `match_share`: target fraction of subscriptions each memory matches end to end (sets
    min_score); `matcher_match_share`: the same for the random worst case of part 2;
    `matcher_seconds`: per size, for each of search and match (methods interleaved);
    `matcher_check`: memories compared with brute force per size."""
    matcher = (
        matcher_scaling(
            matcher_sizes,
            locomo,
            budget_s=matcher_seconds,
            check=matcher_check,
            random_match_share=matcher_match_share,
            progress=progress,
        )
        if matcher_sizes
        else None
    )
    e2e = (
        end_to_end(rates, subscriptions, seconds, broker, match_share, progress) if rates else None
    )
    return {
        "bench": "push",
        "run_id": uuid.uuid4().hex[:8],
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_avg_1_5_15_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "rates": list(rates),
        "subscriptions": subscriptions,
        "seconds": seconds,
        "end_to_end": e2e,
        "matcher": matcher,
        "notes": [
            "Latency = SSE arrival - time just before the POST, same process clock; "
            "publish_to_matched uses the delivery's ts (worker wall clock, same machine).",
            "Benchmark client, broker and worker share this machine's CPUs; "
            "bench_client_cpu_cores_avg is the client's share.",
            "Each SSE stream has its own gateway consumer reading the whole deliveries "
            "partition of its agent and filtering by key (3 partitions, 20 streams).",
            f"Subscriptions use max_per_minute={MAX_PER_MINUTE}: the default 60/min "
            "would throttle them at these rates.",
            "Matcher: all subscriptions in ONE tenant (worst case; matching reads only the "
            "memory's tenant, so T equal tenants cost ~1/T). search = finding every "
            "subscription at or over its min_score (exact); match = that plus the "
            "per-subscription checks and building the Delivery events. scan = the matcher "
            "before issue 17 (one float32 matrix-vector product per memory); float32 / int8 "
            f"= the exact batched first passes ({BATCH} memories per call); methods are "
            "interleaved in one run, so machine load hits them alike.",
        ],
    }


if __name__ == "__main__":
    print(json.dumps(run_push_bench(), indent=2))
