"""The pure parts: which two nodes to fault, and the counts by memory id."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Iterable
from typing import Literal

Fault = Literal["kill", "pause"]
FAULTS: tuple[str, ...] = ("kill", "pause")
CONSUMER_GROUP = "memstream-worker"
AGENTS = 8
MAX_WORKER_RESTARTS = 10


def _say_stderr(message: str) -> None:
    print(f"[faults {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def pick_nodes(leaders: dict[int, int], coordinator: int | None, nodes: int = 3) -> tuple[int, int]:
    """(A, B): two different nodes to fault. A is the worker's group coordinator (when
    known), B the other node leading most input partitions (`leaders`: node -> count)."""
    if nodes < 2:
        raise ValueError("faults need at least 2 nodes")
    first = coordinator if coordinator is not None and 0 <= coordinator < nodes else None
    if first is None:
        first = max(range(nodes), key=lambda n: (leaders.get(n, 0), -n))
    others = [n for n in range(nodes) if n != first]
    second = max(others, key=lambda n: (leaders.get(n, 0), -n))
    return first, second


def tally(
    published: Iterable[str],
    acknowledged: Iterable[str],
    indexed_keys: Iterable[str],
    store_ids: Iterable[str],
) -> dict[str, int]:
    """The counts by memory id. `indexed_keys`: the key of every record on `indexed` (any
    memory), `store_ids`: the id of every point the store lists for the run's tenant."""
    sent = set(published)
    acked = set(acknowledged)
    seen = Counter(k for k in indexed_keys if k in sent)
    stored = Counter(store_ids)
    return {
        "published": len(sent),
        "acknowledged": len(acked),
        "failed": len(sent - acked),
        "indexed": len(acked & seen.keys()),
        "indexed_unacknowledged": len(seen.keys() - acked),
        "indexed_records": sum(seen.values()),
        "duplicated": sum(1 for n in seen.values() if n > 1),
        "duplicate_records": sum(n - 1 for n in seen.values() if n > 1),
        "lost": len(acked - seen.keys()),
        "store_points": sum(stored.values()),
        "store_distinct_ids": len(stored),
        "store_duplicates": sum(stored.values()) - len(stored),
        "store_missing": len(acked - stored.keys()),
    }
