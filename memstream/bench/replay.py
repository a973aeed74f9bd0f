"""`memstream bench replay`: how fast a replay rebuilds a store from the archive.

Two paths, each from an `ArchiveWriter` archive in a temp dir into a fresh Edge store:

- `memories`: raw `memstream.memories` records through validate, privacy (when
  `MEMSTREAM_PII_ENABLED`), embed (MiniLM on ONNX), value, compress and store. The embedding dominates (~300 sentences/s on 2 CPU cores),
  so this run is capped at `embed_cap` events and says so;
- `indexed`: `memstream.indexed` records stored as they are (no re-embedding), the
  `--topic memstream.indexed` fast path, on all `events`. The records are made once by the
  model stage from `distinct` texts and repeated with fresh ids.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from memstream.log.archive import ArchiveWriter
from memstream.schemas.events import Indexed, Memory, new_event_id
from memstream.schemas.topics import INDEXED, MEMORIES
from memstream.settings import Settings

console = Console(stderr=True)

PARTITIONS = 3
SUBJECTS = (
    "the staging database",
    "the billing service",
    "the nightly deploy",
    "the kubernetes cluster",
    "the payments API",
    "the search index",
    "customer acme",
    "the on-call rota",
    "the VPN gateway",
    "the data warehouse",
)
FACTS = (
    "moved to eu-west-{n}",
    "needs a restart after {n} hours",
    "was upgraded to version {n}.2",
    "failed {n} times last week because of disk pressure",
    "is owned by team {n} from now on",
    "has a new alert threshold of {n} percent",
    "will be retired in {n} weeks",
    "doubled its latency after release {n}",
)


def make_memories(n: int) -> list[Memory]:
    """n valid memory events with varied texts (subject x fact x number)."""
    events = []
    for i in range(n):
        subject = SUBJECTS[i % len(SUBJECTS)]
        fact = FACTS[(i // len(SUBJECTS)) % len(FACTS)].format(n=i % 97 + 1)
        events.append(
            Memory(
                tenant=f"bench-{i % 4}",
                agent_id=f"agent-{i % 16}",
                scope="tenant",
                payload={"text": f"{subject} {fact} (note {i})", "tags": ["bench"]},
            )
        )
    return events


def _archive(root: Path, topic: str, values: list[tuple[bytes, bytes]]) -> None:
    """Values spread over PARTITIONS partitions as Kafka would (round robin here)."""
    now = time.time_ns() // 1_000_000
    offsets = [0] * PARTITIONS
    with ArchiveWriter(root, fsync=False) as writer:
        for i, (key, value) in enumerate(values):
            partition = i % PARTITIONS
            writer.append(topic, partition, offsets[partition], now, key, value)
            offsets[partition] += 1


def run_replay_bench(
    events: int = 100_000,
    *,
    embed_cap: int = 5_000,
    distinct: int = 500,
    embedder: str | None = None,
    batch_size: int = 500,
) -> dict[str, Any]:
    """Time both replay paths; returns counts and events/s of each (and prints them)."""
    from memstream.log.replay import replay

    base = Settings()
    embedded = min(events, embed_cap)
    with tempfile.TemporaryDirectory(prefix="memstream-bench-replay-") as tmp:
        tmp_path = Path(tmp)
        settings = base.model_copy(
            update={
                "data_dir": tmp_path / "data",
                "store": None,
                "embedder": embedder or base.embedder,
            }
        )

        def replay_archive(topic: str, name: str, store: str) -> dict[str, Any]:
            """Replay `topic` from the archive `archive-<name>` into a fresh store `store`."""
            return replay(
                settings,
                topics=[topic],
                from_archive=tmp_path / f"archive-{name}",
                store_root=tmp_path / store,
                batch_size=batch_size,
                progress=False,
            )

        # (a) raw memories: the full pipeline
        memories = make_memories(embedded)
        _archive(
            tmp_path / "archive-memories",
            MEMORIES.name,
            [(m.agent_id.encode(), m.to_json()) for m in memories],
        )
        console.print(
            f"replaying {embedded:,} memories (embedding"
            + (f"; capped from {events:,} at {embed_cap:,}" if embedded < events else "")
            + ")"
        )
        full = replay_archive(MEMORIES.name, "memories", "store-a")
        # (b) indexed records: no embedding
        from memstream.models.embedding import load_embedder
        from memstream.models.registry import HotSwapScorer, ModelRegistry
        from memstream.streams.enrich import ModelStage

        stage = ModelStage(
            load_embedder(settings.embedder, settings.onnx_provider),
            HotSwapScorer(ModelRegistry(settings.data_dir / "models", "valuation")),
        )
        templates: list[Indexed] = stage.process(make_memories(min(distinct, events)))
        templates = [t for t in templates if t.payload.duplicate_of is None] or templates
        indexed = []
        for i in range(events):
            record = templates[i % len(templates)].model_copy(update={"event_id": new_event_id()})
            indexed.append((str(record.event_id).encode(), record.to_json()))
        _archive(tmp_path / "archive-indexed", INDEXED.name, indexed)
        console.print(f"replaying {events:,} indexed records (no embedding)")
        fast = replay_archive(INDEXED.name, "indexed", "store-b")
    result = {
        "events": events,
        "embedder": settings.embedder,
        "memories": {
            "events": embedded,
            "capped": embedded < events,
            "written": full["memories_written"],
            "duplicates_merged": full["duplicates_merged"],
            "seconds": full["seconds"],
            "events_per_s": full["records_per_s"],
        },
        "indexed": {
            "events": events,
            "written": fast["memories_written"],
            "seconds": fast["seconds"],
            "events_per_s": fast["records_per_s"],
        },
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    console.print(
        f"memories (validate+privacy+embed+value+compress+store): {embedded:,} events, "
        f"{result['memories']['events_per_s']:,.0f} events/s"
        + (f" [capped at {embed_cap:,} of {events:,}]" if embedded < events else "")
    )
    console.print(
        f"indexed (store only, no embedding): {events:,} events, "
        f"{result['indexed']['events_per_s']:,.0f} events/s"
    )
    return result


__all__ = ["make_memories", "run_replay_bench"]
