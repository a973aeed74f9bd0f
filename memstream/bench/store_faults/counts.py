"""The counts once the worker has stopped: indexed, duplicated, dead-lettered, lost."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from typing import Any

from aiokafka import TopicPartition

from memstream.bench.store_faults.topics import _json_values
from memstream.schemas.topics import (
    DEAD_LETTER,
    INDEXED,
)


def _log_events(text: str) -> dict[str, int]:
    """How often each event (a JSON log line's `event`, cut at 80 characters) was logged."""
    seen: Counter[str] = Counter()
    for line in text.splitlines():
        try:  # (a progress bar may have left terminal escapes before the JSON)
            event = json.loads(line[line.find("{") :]).get("event")
        except (ValueError, AttributeError):
            continue
        if event:
            seen[str(event)[:80]] += 1
    return dict(seen.most_common(30))


async def _count(
    bootstrap: str,
    tenant: str,
    acked: list[str],
    watched: dict[str, dict[TopicPartition, int]],
    location: str,
) -> dict[str, Any]:
    wanted = set(acked)
    announced: Counter[str] = Counter()
    for value in await _json_values(bootstrap, watched[INDEXED.name]):
        if value.get("tenant") == tenant:
            announced[str(value.get("event_id"))] += 1
    reasons: Counter[str] = Counter()
    dead: set[str] = set()
    for value in await _json_values(bootstrap, watched[DEAD_LETTER.name]):
        parents = {str(p) for p in value.get("parent_ids") or []}
        if parents & wanted or value.get("tenant") == tenant:
            dead |= parents & wanted
            reasons[str((value.get("payload") or {}).get("reason"))] += 1
    points, stored = _store_ids(location, tenant)
    in_store = wanted & set(stored)
    on_indexed = wanted & set(announced)
    indexed = in_store & on_indexed
    lost = wanted - indexed - dead
    return {
        "indexed": len(indexed),
        "in_store": len(in_store),
        "on_indexed_topic": len(on_indexed),
        "duplicated": {
            "store_points_beyond_ids": points - len(set(stored)),
            "indexed_topic_repeats": sum(n - 1 for n in announced.values() if n > 1),
        },
        "dead_lettered": len(dead),
        "dead_letter_reasons": dict(reasons),
        "lost": len(lost),
        "lost_ids": sorted(lost)[:20],
        "store_points": points,
    }


_READ_STORE = """
import json, sys
from memstream.store import Caller, open_store
store = open_store(sys.argv[1], min_free_bytes=0)
caller, start, ids = Caller(sys.argv[2], "store-faults-counter", frozenset()), None, []
while True:
    page, start = store.page(caller, 1000, start)
    ids += [str(m.memory_id) for m in page]
    if start is None:
        break
print(json.dumps({"points": store.count(sys.argv[2]), "ids": ids}))
store.close()
"""


def _store_ids(location: str, tenant: str) -> tuple[int, list[str]]:
    """(points, memory ids) of `tenant` in the stopped worker's store, read by a child
    process: loading an Edge shard maps its files, and on a tmpfs that allocates pages
    (about 110 MB for a small shard, measured), so a too small disk is a SIGBUS there,
    not in this process."""
    done = subprocess.run(
        [sys.executable, "-c", _READ_STORE, location, tenant],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"reading the store failed ({done.returncode}): {done.stderr.strip()[-2000:]}"
        )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    return int(found["points"]), list(found["ids"])
