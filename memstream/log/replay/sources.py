"""What a replay reads: a range of the archive or of the broker's topics, in batches."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memstream.broker.security import kafka_client_kwargs
from memstream.log.replay.checkpoint import Checkpoint
from memstream.log.replay.positions import Position, ReplayError, in_range
from memstream.logging import get_logger
from memstream.processors import RawMessage
from memstream.settings import Settings

log = get_logger("memstream.log.replay")


# --- sources -----------------------------------------------------------------------------------


def _chunks(records: Iterator[RawMessage], size: int) -> Iterator[list[RawMessage]]:
    batch: list[RawMessage] = []
    for record in records:
        batch.append(record)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def read_archive_range(
    root: Path,
    topics: Sequence[str],
    start: Position,
    stop: Position,
    batch_size: int,
    sealer: Any = None,
    on_erased: Any = None,
) -> Iterator[list[RawMessage]]:
    """Batches of archived records of `topics` in [start, stop), in (topic, partition,
    offset) order, each record once. Encrypted records are opened with `sealer` (a
    `RecordSealer` over the worker's key store); one whose key was erased, or with no
    sealer to open it, is left out and reported to `on_erased()`."""
    from memstream.log.archive import ArchiveReader

    reader = ArchiveReader(root)

    def opened(topic: str) -> Iterator[RawMessage]:
        for r in reader.read(topic, start.time_ms, stop.time_ms):
            value = r.value
            if r.sealed_with is not None:
                value = sealer.open(r.sealed_with, value) if sealer is not None else None
                if value is None:
                    if on_erased is not None and in_range(r, start, stop):  # type: ignore[arg-type]
                        on_erased()
                    continue
            yield RawMessage(r.topic, r.partition, r.offset, r.key, value, r.timestamp_ms)

    for topic in topics:
        yield from _chunks((r for r in opened(topic) if in_range(r, start, stop)), batch_size)
    for path, error in reader.skipped:
        log.warning("archive segment skipped by the replay", path=str(path), error=error)


def count_archive_range(root: Path, topics: Sequence[str], start: Position, stop: Position) -> int:
    from memstream.log.archive import ArchiveReader

    reader = ArchiveReader(root)
    total = 0
    for topic in topics:
        for r in reader.read(topic, start.time_ms, stop.time_ms):
            if start.offset is not None and r.offset < start.offset:
                continue
            if stop.offset is not None and r.offset >= stop.offset:
                continue
            total += 1
    return total


@dataclass
class KafkaRange:
    """A bounded read of whole topics with a plain consumer (no group, nothing committed).

    It stops at the end offsets captured when it starts, or when `getmany` returns nothing
    for `idle_s` after the last record: Tansu's `end_offsets` cannot be trusted, so on Tansu
    only the idle rule ends the read (records produced meanwhile may be included)."""

    bootstrap: str
    topics: Sequence[str]
    start: Position = field(default_factory=Position)
    stop: Position = field(default_factory=Position)
    batch_size: int = 500
    idle_s: float | None = None
    resume: Checkpoint | None = None
    total: int | None = None
    """Records expected (from the end offsets), known once `batches()` has started."""

    async def batches(self) -> AsyncIterator[list[RawMessage]]:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        from memstream.streams.admin import broker_is_tansu

        tansu = await broker_is_tansu(self.bootstrap)
        idle_s = self.idle_s if self.idle_s is not None else (2.0 if tansu else 30.0)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            **kafka_client_kwargs(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=16 * 1_048_576,
            fetch_max_bytes=64 * 1_048_576,
        )
        await consumer.start()
        try:
            tps = []
            for topic in self.topics:
                parts = await _partitions(consumer, topic)
                if not parts:
                    raise ReplayError(f"topic {topic} does not exist at {self.bootstrap}")
                tps.extend(TopicPartition(topic, p) for p in sorted(parts))
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            firsts = await consumer.beginning_offsets(tps)
            starts: dict[Any, int] = {}
            if self.start.time_ms is not None and not tansu:
                found = await consumer.offsets_for_times({tp: self.start.time_ms for tp in tps})
                for tp in tps:
                    starts[tp] = found[tp].offset if found.get(tp) else ends[tp]
            for tp in tps:
                first = starts.get(tp, firsts[tp])
                if self.start.offset is not None:
                    first = max(first, self.start.offset)
                if self.resume is not None:
                    last = self.resume.offsets.get(tp.topic, {}).get(tp.partition)
                    if last is not None:
                        first = max(first, last + 1)
                starts[tp] = first
                consumer.seek(tp, first)
            limits = {
                tp: min(ends[tp], self.stop.offset) if self.stop.offset is not None else ends[tp]
                for tp in tps
            }
            self.total = sum(max(0, limits[tp] - starts[tp]) for tp in tps)
            open_tps = {tp for tp in tps if tansu or starts[tp] < limits[tp]}
            idle_since = time.monotonic()
            while open_tps:
                got = await consumer.getmany(*open_tps, timeout_ms=200, max_records=self.batch_size)
                batch: list[RawMessage] = []
                for tp, records in got.items():
                    for r in records:
                        if not tansu and r.offset >= limits[tp]:
                            break
                        if self.stop.offset is not None and r.offset >= self.stop.offset:
                            break
                        message = RawMessage(
                            r.topic, r.partition, r.offset, r.key, r.value, r.timestamp
                        )
                        if in_range(message, self.start, self.stop):
                            batch.append(message)
                    position = records[-1].offset + 1 if records else None
                    if position is not None and (
                        (not tansu and position >= limits[tp])
                        or (self.stop.offset is not None and position >= self.stop.offset)
                    ):
                        open_tps.discard(tp)
                        consumer.pause(tp)
                if got:
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since >= idle_s:
                    if not tansu:
                        log.warning(
                            "replay source idle before its end offsets; stopping",
                            open=[f"{tp.topic}[{tp.partition}]" for tp in open_tps],
                        )
                    break
                if batch:
                    yield batch
        finally:
            await consumer.stop()


async def _partitions(consumer: Any, topic: str) -> set[int]:
    parts = consumer.partitions_for_topic(topic)
    if parts:
        return set(parts)
    await consumer._client.force_metadata_update()  # aiokafka has no public call
    return set(consumer.partitions_for_topic(topic) or ())


def _archive_sealer(settings: Settings) -> Any:
    """A `RecordSealer` over the data dir's key store, or None where there is none (then
    encrypted records cannot be opened, and are left out as erased)."""
    from memstream.privacy.keystore import KeyStore
    from memstream.privacy.record_seal import RecordSealer

    path = settings.data_dir / "keys.db"
    return RecordSealer(KeyStore(path)) if path.exists() else None
