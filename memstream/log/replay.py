"""`memstream replay`: rebuild a store version from the log (a topic range or the archive).

The log is the source of truth, so any projection can be rebuilt from it. A replay writes
into a NEW collection version (`memories_v<N>`) while the live one keeps serving, then
optionally swaps the alias (`--swap`). It is:

- **idempotent**: point ids are memory ids, so replaying a range twice changes nothing;
- **resumable**: `replay-checkpoint.json` in the target version directory records the last
  offset stored per (topic, partition), written atomically after the shard is flushed, at
  most every `checkpoint_every_s` (2 s; flushing after every batch cost 60% of the time of
  an `indexed` replay); the same command run again continues after it (`restart=True`
  ignores it) and redoes at most those seconds of work, harmlessly (idempotent);
- **broker-free** from an archive; plug-in processors (`processors=[...]`) need a broker to
  send their outputs to.

Sources: records of `memstream.memories` / `memstream.observations` go through the whole
pipeline with the worker's own functions (validate, privacy, embed, value, compress,
store; the privacy stage uses the data dir's keystore and master key, so run the replay
with the worker's `MEMSTREAM_DATA_DIR`); records of `memstream.indexed` are
written as they are (no re-embedding: the fast path). Invalid records are counted as
rejected; a replay sends no dead letters of its own (the live pipeline already did).

A running worker's store (`memstream.store.live.LiveStore`) follows the alias within a
second of `--swap`. Duplicates are found against the replay's own in-memory pool,
so after a resume a duplicate of a memory stored before the crash is kept on its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from memstream.broker.security import kafka_client_kwargs
from memstream.logging import get_logger
from memstream.processors import ProcessorSpec, RawMessage
from memstream.schemas.events import Indexed, Memory, Observation
from memstream.schemas.topics import DELIVERIES, FEEDBACK, INDEXED, INPUT_KINDS
from memstream.settings import Settings
from memstream.streams.validate import InvalidEvent, validate_event

log = get_logger("memstream.log.replay")

CHECKPOINT_FILE = "replay-checkpoint.json"
INPUT_TOPICS: tuple[str, ...] = tuple(INPUT_KINDS)
REPLAYABLE: tuple[str, ...] = (*INPUT_TOPICS, INDEXED.name)
"""Topics whose records a replay writes into the store."""


class ReplayError(Exception):
    """A replay cannot start as asked (bad range, no broker for processors, ...)."""


# --- positions ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Position:
    """Where a range starts or stops: an offset (every partition), a time, or the edge of
    the log (both None: the beginning for a start, the end for a stop)."""

    offset: int | None = None
    time_ms: int | None = None

    @property
    def edge(self) -> bool:
        return self.offset is None and self.time_ms is None

    def describe(self) -> str:
        if self.offset is not None:
            return str(self.offset)
        if self.time_ms is not None:
            return datetime.fromtimestamp(self.time_ms / 1000, UTC).isoformat()
        return "edge"


def parse_position(text: str | int | datetime | None) -> Position:
    """`beginning`/`end`/None, an offset (`1200`), or an ISO time (`2026-11-25T10:00Z`)."""
    if text is None or isinstance(text, Position):
        return text or Position()
    if isinstance(text, datetime):
        when = text if text.tzinfo else text.replace(tzinfo=UTC)
        return Position(time_ms=int(when.timestamp() * 1000))
    if isinstance(text, int):
        if text < 0:
            raise ReplayError(f"an offset must be >= 0, not {text}")
        return Position(offset=text)
    value = text.strip()
    if value.lower() in ("", "beginning", "earliest", "start", "end", "latest"):
        return Position()
    if value.isdigit():
        return Position(offset=int(value))
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ReplayError(
            f"{text!r} is not `beginning`, `end`, an offset or an ISO time "
            "(e.g. 2026-11-25T10:00:00Z)"
        ) from None
    return parse_position(when)


def in_range(message: RawMessage, start: Position, stop: Position) -> bool:
    """Whether a record lies in [start, stop) (offsets per partition, times in ms)."""
    if start.offset is not None and message.offset < start.offset:
        return False
    if stop.offset is not None and message.offset >= stop.offset:
        return False
    ts = message.timestamp_ms
    if ts is not None:
        if start.time_ms is not None and ts < start.time_ms:
            return False
        if stop.time_ms is not None and ts >= stop.time_ms:
            return False
    return True


# --- checkpoint --------------------------------------------------------------------------------


@dataclass
class Checkpoint:
    """Per (topic, partition), the last offset whose record is in the store.

    `source` names what was replayed (archive path or bootstrap, topics, range): a
    checkpoint is only resumed by the same source, since offsets of another broker or
    archive mean something else."""

    path: Path
    source: dict[str, Any]
    offsets: dict[str, dict[int, int]] = field(default_factory=dict)
    complete: bool = False
    counts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Checkpoint | None:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning(
                "replay checkpoint unreadable; starting over", path=str(path), error=repr(exc)
            )
            return None
        return cls(
            path=path,
            source=dict(data.get("source", {})),
            offsets={
                topic: {int(p): int(o) for p, o in parts.items()}
                for topic, parts in data.get("offsets", {}).items()
            },
            complete=bool(data.get("complete", False)),
            counts={k: int(v) for k, v in data.get("counts", {}).items()},
        )

    def done(self, message: RawMessage) -> bool:
        """Whether this record was already stored by an earlier run."""
        last = self.offsets.get(message.topic, {}).get(message.partition)
        return last is not None and message.offset <= last

    def advance(self, messages: Iterable[RawMessage]) -> None:
        for message in messages:
            parts = self.offsets.setdefault(message.topic, {})
            if message.offset > parts.get(message.partition, -1):
                parts[message.partition] = message.offset

    def save(self) -> None:
        """Write the whole checkpoint atomically (temp file, fsync, rename)."""
        data = {
            "source": self.source,
            "offsets": {
                topic: {str(p): o for p, o in sorted(parts.items())}
                for topic, parts in sorted(self.offsets.items())
            },
            "complete": self.complete,
            "counts": self.counts,
            "updated_at": datetime.now(UTC).isoformat(),
        }
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".replay-checkpoint-")
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(data, handle, indent=1, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


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


# --- the replay --------------------------------------------------------------------------------


@dataclass
class ReplayStats:
    records_read: int = 0
    skipped_done: int = 0
    skipped_other: int = 0
    rejected: int = 0
    memories_written: int = 0
    duplicates_merged: int = 0
    superseded: int = 0
    processor_outputs: int = 0
    processor_failures: int = 0
    erased: int = 0
    deleted: int = 0
    kept_out: int = 0


_UNSET = object()


class _Pipeline:
    """Validate -> privacy -> model stage -> sink for one replay, with the worker's own
    functions, so a replayed memory is stored exactly as the live pipeline stores it. The
    models load on first use, so an `indexed` replay never loads them."""

    def __init__(self, settings: Settings, store: Any, embedder: Any = None) -> None:
        self.settings = settings
        self.store = store
        self._embedder = embedder
        self._stage: Any = None
        self._privacy: Any = _UNSET
        self._keystore: Any = _UNSET
        self._tombstones: Any = _UNSET
        self._book: Any = _UNSET

    @property
    def stage(self) -> Any:
        if self._stage is None:
            from memstream.models.embedding import load_embedder
            from memstream.models.registry import HotSwapScorer, ModelRegistry
            from memstream.streams.app import annotation_stages
            from memstream.streams.enrich import ModelStage

            embedder = self._embedder or load_embedder(
                self.settings.embedder, self.settings.onnx_provider
            )
            registry = ModelRegistry(self.settings.data_dir / "models", "valuation")
            self._stage = ModelStage(
                embedder,
                HotSwapScorer(registry, check_every_s=self.settings.valuation_check_s),
                duplicate_cosine=self.settings.duplicate_cosine,
                **annotation_stages(self.settings, embedder),
            )
        return self._stage

    @property
    def privacy(self) -> Any:
        """The worker's privacy stage, built the same way (same keystore and master key under
        the data dir, so erased subjects stay erased and pseudonyms match), or None where
        the worker would run none."""
        if self._privacy is _UNSET:
            from memstream.streams import app

            build = getattr(app, "build_privacy_stage", None)
            enabled = getattr(self.settings, "pii_enabled", False)
            self._privacy = build(self.settings) if build is not None and enabled else None
        return self._privacy

    def enrich(self, events: list[Memory | Observation]) -> list[Indexed | str]:
        """The batch through the worker's own privacy and model stages (`enrich_or_reject`:
        on failure event by event); `"rejected"` or `"erased"` for an event the pipeline
        would not keep."""
        from memstream.streams.app import enrich_or_reject
        from memstream.streams.privacy_stage import ErasedSubject

        privacy = self.privacy
        args = (privacy,) if privacy is not None else ()
        results = enrich_or_reject(self.stage, events, *args)
        return [
            r
            if isinstance(r, Indexed)
            else "erased"
            if isinstance(r, ErasedSubject)
            else "rejected"
            for r in results
        ]

    @property
    def keystore(self) -> Any:
        """The data dir's key store (for the erasure tombstones), or None without one."""
        if self._keystore is _UNSET:
            from memstream.privacy.keystore import KeyStore

            path = self.settings.data_dir / "keys.db"
            self._keystore = KeyStore(path) if path.exists() else None
        return self._keystore

    @property
    def tombstones(self) -> Any:
        """The data dir's tombstones (deleted and expired memories), or None without any."""
        if self._tombstones is _UNSET:
            from memstream.store.tombstones import TOMBSTONES_FILE, Tombstones

            path = self.settings.data_dir / TOMBSTONES_FILE
            self._tombstones = Tombstones(path) if path.exists() else None
        return self._tombstones

    def deleted(self, tenant: str, memory_id: Any) -> bool:
        """Whether the memory was deleted (author, admin, time to live): left out, as the
        live pipeline deleted it."""
        marks = self.tombstones
        return marks is not None and bool(marks.deleted(tenant, [memory_id]))

    def erased(self, record: Indexed) -> bool:
        """Whether a stored record holds a value of a subject erased since: it is left
        out, as the live pipeline deleted it."""
        keys = self.keystore
        subjects = record.payload.subjects
        return (
            bool(subjects)
            and keys is not None
            and any(keys.erased(record.tenant, s) for s in subjects)
        )

    def _quarantined(self) -> Any:
        """The data dir's reputation book's quarantine (as it stands now), if it has one."""
        from memstream.models.reputation import ReputationBook

        if self._book is _UNSET:
            path = self.settings.data_dir / "reputation.db"
            self._book = (
                ReputationBook(
                    path,
                    seeds=self.settings.reputation_seed_map(),
                    floor=self.settings.reputation_floor,
                )
                if path.exists()
                else None
            )
        return None if self._book is None else self._book.quarantined

    def run(self, batch: list[RawMessage], stats: ReplayStats) -> list[tuple[RawMessage, Indexed]]:
        """Store one batch; returns the (source record, Indexed) pairs that were stored."""
        from memstream.models.admission import admission_bar
        from memstream.store.conflicts import resolve_conflicts
        from memstream.store.sink import write_records

        pairs: list[tuple[RawMessage, Indexed]] = []
        inputs: list[tuple[RawMessage, Memory | Observation]] = []
        for message in batch:
            if message.topic in INPUT_KINDS:
                try:
                    event = validate_event(
                        message.value, message.topic, self.settings.max_event_bytes
                    )
                except InvalidEvent:
                    stats.rejected += 1
                    continue
                if self.deleted(event.tenant, event.event_id):
                    stats.deleted += 1
                    continue
                inputs.append((message, event))  # type: ignore[arg-type]
            elif message.topic == INDEXED.name:
                try:
                    record = Indexed.model_validate_json(message.value or b"")
                except ValidationError:
                    stats.rejected += 1
                    continue
                if self.erased(record):
                    stats.erased += 1
                elif self.deleted(record.tenant, record.event_id):
                    stats.deleted += 1
                else:
                    pairs.append((message, record))
            else:
                stats.skipped_other += 1
        if inputs:
            results = self.enrich([event for _, event in inputs])
            for (message, _), result in zip(inputs, results, strict=True):
                if result == "erased":
                    stats.erased += 1
                elif isinstance(result, str):
                    stats.rejected += 1
                else:
                    pairs.append((message, result))
        bar = admission_bar(self.settings.admission_bar, self._quarantined())
        if bar is not None:  # the live sink's admission bar, so a rebuild holds what it holds
            admitted = [(m, r) for m, r in pairs if bar.admits(r)]
            stats.kept_out += len(pairs) - len(admitted)
            pairs = admitted
        if pairs:
            records = [record for _, record in pairs]
            written = write_records(self.store, records)
            stats.memories_written += written.written
            stats.duplicates_merged += written.merged
            # the live sink's conflict rule, so a rebuild holds the same timelines (the
            # events are the live worker's to publish: a replay publishes nothing)
            stats.superseded += written.superseded + len(resolve_conflicts(self.store, records))
        return pairs


def _target_version(
    collections: Any, into: int | str, source: dict[str, Any], restart: bool
) -> tuple[int, bool]:
    """(version, created): `into` as a number (created if missing), or `new`, which reuses
    an unfinished replay of the same source (so re-running the command resumes) unless
    `restart`."""
    if isinstance(into, str) and into.strip().lower() != "new":
        if not into.strip().isdigit():
            raise ReplayError(f"--into takes a version number or `new`, not {into!r}")
        into = int(into)
    if isinstance(into, int):
        if into < 1:
            raise ReplayError("versions start at 1")
        path = collections.path(into)
        if path.is_dir():
            return into, False
        path.mkdir(parents=True)
        return into, True
    live = collections.live_version()
    if not restart:
        for version in reversed(collections.versions()):
            if version == live:
                continue
            checkpoint = Checkpoint.load(collections.path(version) / CHECKPOINT_FILE)
            if checkpoint and not checkpoint.complete and checkpoint.source == source:
                return version, False
    return collections.create_version(), True


def replay(
    settings: Settings | None = None,
    *,
    topics: Sequence[str] | None = None,
    start: str | int | datetime | Position | None = None,
    stop: str | int | datetime | Position | None = None,
    from_archive: Path | str | None = None,
    bootstrap: str | None = None,
    into: int | str = "new",
    processors: Sequence[str] = (),
    swap: bool = False,
    restart: bool = False,
    batch_size: int | None = None,
    progress: bool = True,
    store_root: Path | str | None = None,
    idle_s: float | None = None,
    embedder: Any = None,
    processor_specs: Sequence[ProcessorSpec] | None = None,
    checkpoint_every_s: float = 2.0,
) -> dict[str, Any]:
    """Re-process a range of the log into a store version; returns a summary.

    Reads `topics` (default: the pipeline's input topics) from `from_archive` or from the
    broker at `bootstrap` (default `settings.kafka_bootstrap`) between `start` and `stop`
    (`beginning`/`end`, an offset applied to every partition, or an ISO time), writes the
    results into version `into` (a number, or `new`) of the Edge store at `store_root`
    (default the settings' store directory), and with `swap` makes it live at the end.
    `processors` also runs these plug-ins over the replayed events, sending their outputs
    and dead letters to the broker. The checkpoint is saved (after a shard flush) at most
    every `checkpoint_every_s`; 0 saves after every batch.
    """
    return asyncio.run(
        replay_async(
            settings,
            topics=topics,
            start=start,
            stop=stop,
            from_archive=from_archive,
            bootstrap=bootstrap,
            into=into,
            processors=processors,
            swap=swap,
            restart=restart,
            batch_size=batch_size,
            progress=progress,
            store_root=store_root,
            idle_s=idle_s,
            embedder=embedder,
            processor_specs=processor_specs,
            checkpoint_every_s=checkpoint_every_s,
        )
    )


def _resolve_store_root(settings: Settings, store_root: Path | str | None) -> Path:
    location = str(store_root) if store_root is not None else settings.store_location()
    if location.startswith(("http://", "https://")) or location == ":memory:":
        raise ReplayError(
            f"replay builds versioned Qdrant Edge directories; the store {location!r} is not "
            "one (pass --store DIR)"
        )
    return Path(location).expanduser()


def _pick_processors(
    names: Sequence[str], specs: Sequence[ProcessorSpec] | None
) -> list[ProcessorSpec]:
    if not names:
        return []
    if specs is None:
        from memstream.processors import discover

        specs = discover()
    by_name = {spec.name: spec for spec in specs}
    missing = [name for name in names if name not in by_name]
    if missing:
        raise ReplayError(f"no processor named {missing}; installed: {sorted(by_name) or 'none'}")
    return [by_name[name] for name in names]


def _plan(
    settings: Settings,
    topics: list[str],
    begin: Position,
    end: Position,
    from_archive: Path | str | None,
    bootstrap: str | None,
    into: int | str,
    specs: list[ProcessorSpec],
    restart: bool,
    store_root: Path | str | None,
) -> tuple[Path | None, Any, int, bool, Checkpoint, bool]:
    """Check the request and pick the target version and checkpoint (file system work, so
    the async replay runs it in a thread)."""
    from memstream.store.collections import CollectionSet

    archive = Path(from_archive).expanduser() if from_archive is not None else None
    if archive is None and not bootstrap:
        raise ReplayError("nothing to read: pass --from-archive DIR or a broker (--bootstrap)")
    if archive is not None and not archive.is_dir():
        raise ReplayError(f"no archive at {archive}")
    if specs and not bootstrap:
        raise ReplayError(
            f"--processors {','.join(s.name for s in specs)} needs a broker for their outputs: pass "
            "--bootstrap (or MEMSTREAM_KAFKA_BOOTSTRAP), or replay without --processors"
        )
    source = {
        "kind": "archive" if archive is not None else "kafka",
        "where": str(archive.resolve()) if archive is not None else bootstrap,
        "topics": sorted(topics),
        "from": begin.describe(),
        "to": end.describe(),
    }
    collections = CollectionSet(_resolve_store_root(settings, store_root))
    version, created = _target_version(collections, into, source, restart)
    if version == collections.live_version():
        log.warning("replaying into the live version; the worker writes there too", version=version)
    checkpoint_path = collections.path(version) / CHECKPOINT_FILE
    checkpoint = None if restart else Checkpoint.load(checkpoint_path)
    if checkpoint is not None and checkpoint.source != source:
        log.warning(
            "the version's checkpoint is for another source; ignoring it",
            checkpoint=checkpoint.source,
            source=source,
        )
        checkpoint = None
    resumed = checkpoint is not None and bool(checkpoint.offsets)
    if checkpoint is None:
        checkpoint = Checkpoint(checkpoint_path, source)
    checkpoint.complete = False
    return archive, collections, version, created, checkpoint, resumed


async def replay_async(
    settings: Settings | None = None,
    *,
    topics: Sequence[str] | None = None,
    start: str | int | datetime | Position | None = None,
    stop: str | int | datetime | Position | None = None,
    from_archive: Path | str | None = None,
    bootstrap: str | None = None,
    into: int | str = "new",
    processors: Sequence[str] = (),
    swap: bool = False,
    restart: bool = False,
    batch_size: int | None = None,
    progress: bool = True,
    store_root: Path | str | None = None,
    idle_s: float | None = None,
    embedder: Any = None,
    processor_specs: Sequence[ProcessorSpec] | None = None,
    checkpoint_every_s: float = 2.0,
) -> dict[str, Any]:
    """`replay` inside a running event loop."""
    settings = settings or Settings()
    started = time.perf_counter()
    topics = list(topics or INPUT_TOPICS)
    begin, end = parse_position(start), parse_position(stop)
    batch_size = batch_size or settings.batch_size
    bootstrap = bootstrap or settings.kafka_bootstrap
    specs = _pick_processors(processors, processor_specs)
    plan = await asyncio.to_thread(
        _plan,
        settings,
        topics,
        begin,
        end,
        from_archive,
        bootstrap,
        into,
        specs,
        restart,
        store_root,
    )
    archive, collections, version, created, checkpoint, resumed = plan

    stats = ReplayStats()
    sender = None
    if specs:
        sender = await _ProcessorSender.start(bootstrap or "", settings, specs)
    store = collections.open(version)
    try:
        pipeline = _Pipeline(settings, store, embedder)
        derived_indexed = INDEXED.name not in topics
        if archive is not None:
            total = count_archive_range(archive, topics, begin, end) if progress else None
            sealer = _archive_sealer(settings)

            def erased() -> None:
                stats.erased += 1

            batches: AsyncIterator[list[RawMessage]] = _aiter(
                read_archive_range(archive, topics, begin, end, batch_size, sealer, erased)
            )
            kafka = None
        else:
            kafka = KafkaRange(bootstrap or "", topics, begin, end, batch_size, idle_s, checkpoint)
            batches = kafka.batches()
            total = None
        saved_at = time.monotonic()
        with _progress(progress) as bar:
            task = bar.add_task(f"replay -> v{version}", total=total)
            async for batch in batches:
                if kafka is not None and bar.tasks[task].total is None:
                    bar.update(task, total=kafka.total)
                stats.records_read += len(batch)
                todo = [m for m in batch if not checkpoint.done(m)]
                stats.skipped_done += len(batch) - len(todo)
                if todo:
                    pairs = await asyncio.to_thread(pipeline.run, todo, stats)
                    if sender is not None:
                        await sender.run(todo, pairs if derived_indexed else [], stats)
                    checkpoint.advance(todo)
                    if time.monotonic() - saved_at >= checkpoint_every_s:
                        await asyncio.to_thread(_persist, store, checkpoint, stats)
                        saved_at = time.monotonic()
                bar.update(task, advance=len(batch))
        checkpoint.complete = True
        _persist(store, checkpoint, stats)
    finally:
        store.close()
        if sender is not None:
            await sender.stop()
    swapped = False
    if swap:
        collections.swap(version)
        swapped = True
        log.info("alias swapped; running workers follow it", version=version)
    seconds = time.perf_counter() - started
    return {
        "version": version,
        "created": created,
        "resumed": resumed,
        "swapped": swapped,
        "source": checkpoint.source,
        "records_read": stats.records_read,
        "skipped_already_done": stats.skipped_done,
        "skipped_other_topics": stats.skipped_other,
        "rejected": stats.rejected,
        "skipped_erased": stats.erased,
        "skipped_deleted": stats.deleted,
        "kept_out_of_pool": stats.kept_out,
        "memories_written": stats.memories_written,
        "duplicates_merged": stats.duplicates_merged,
        "superseded": stats.superseded,
        "processor_outputs": stats.processor_outputs,
        "processor_failures": stats.processor_failures,
        "seconds": round(seconds, 3),
        "records_per_s": round(stats.records_read / seconds, 1) if seconds > 0 else 0.0,
    }


def _archive_sealer(settings: Settings) -> Any:
    """A `RecordSealer` over the data dir's key store, or None where there is none (then
    encrypted records cannot be opened, and are left out as erased)."""
    from memstream.privacy.keystore import KeyStore
    from memstream.privacy.record_seal import RecordSealer

    path = settings.data_dir / "keys.db"
    return RecordSealer(KeyStore(path)) if path.exists() else None


def _persist(store: Any, checkpoint: Checkpoint, stats: ReplayStats) -> None:
    """Make the stored points durable, then (and only then) record them as done."""
    store.flush()
    checkpoint.counts = _counts(stats)
    checkpoint.save()


def _counts(stats: ReplayStats) -> dict[str, int]:
    return {
        "rejected": stats.rejected,
        "memories_written": stats.memories_written,
        "duplicates_merged": stats.duplicates_merged,
    }


async def _aiter(batches: Iterator[list[RawMessage]]) -> AsyncIterator[list[RawMessage]]:
    """A sync batch iterator (the archive) read in a thread, one batch at a time."""
    done = object()
    while True:
        batch = await asyncio.to_thread(next, batches, done)
        if batch is done:
            return
        yield batch  # type: ignore[misc]


def _progress(enabled: bool) -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    class _Rate(TextColumn):
        def __init__(self) -> None:
            super().__init__("")

        def render(self, task: Any) -> Any:  # records/s
            from rich.text import Text

            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.0f} rec/s" if speed else "- rec/s")

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        _Rate(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    )


class _ProcessorSender:
    """Plug-ins over replayed records, their outputs and dead letters sent to the broker
    (acks=all, awaited before the batch's checkpoint is written: at-least-once)."""

    def __init__(self, producer: Any, specs: list[ProcessorSpec]) -> None:
        self.producer = producer
        self.specs = specs

    @classmethod
    async def start(
        cls, bootstrap: str, settings: Settings, specs: list[ProcessorSpec]
    ) -> _ProcessorSender:
        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import KafkaError

        from memstream.streams.plugins import ensure_output_topics

        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            **kafka_client_kwargs(),
            acks="all",
            linger_ms=5,
            max_batch_size=256 * 1024,
            max_request_size=16 * 1_048_576,
            request_timeout_ms=30_000,
        )
        try:
            await asyncio.wait_for(producer.start(), 30)
            await ensure_output_topics(bootstrap, specs, settings)
        except (KafkaError, OSError, TimeoutError) as exc:
            await producer.stop()
            raise ReplayError(
                f"--processors needs a reachable broker; {bootstrap} answered {exc!r}"
            ) from exc
        return cls(producer, specs)

    async def send(self, topic: str, key: bytes | None, value: bytes) -> Any:
        return await self.producer.send(topic, value, key=key)

    async def run(
        self,
        batch: list[RawMessage],
        derived: list[tuple[RawMessage, Indexed]],
        stats: ReplayStats,
    ) -> None:
        from memstream.streams.plugins import process_and_send

        # the Indexed records this replay made stand in for `memstream.indexed` (when that
        # topic is not itself replayed), traced to the source record's partition and offset
        indexed = [
            RawMessage(
                INDEXED.name,
                source.partition,
                source.offset,
                str(record.event_id).encode(),
                record.to_json(),
                source.timestamp_ms,
            )
            for source, record in derived
        ]
        for spec in self.specs:
            wanted = [m for m in [*batch, *indexed] if m.topic in spec.consumes]
            if wanted:
                outputs, failures = await process_and_send(spec, wanted, self.send)
                stats.processor_outputs += outputs
                stats.processor_failures += failures

    async def stop(self) -> None:
        await self.producer.stop()


__all__ = [
    "CHECKPOINT_FILE",
    "Checkpoint",
    "KafkaRange",
    "Position",
    "ReplayError",
    "in_range",
    "parse_position",
    "read_archive_range",
    "replay",
    "replay_async",
]


# --- the pool's books ----------------------------------------------------------------------------


def rebuild_books(settings: Settings, messages: Iterable[RawMessage]) -> tuple[Any, Any]:
    """The reputation book and the credit ledger from the log alone, by the worker's
    learner's rules: `indexed` records say who wrote each memory, `feedback` on a memory of
    the same tenant counts (self-feedback dropped), `deliveries` cost their recipients in
    the tenants that keep a ledger. In memory: compare them with the live ones, or write
    nothing. Records that do not parse are skipped (the live worker dead-letters them)."""
    from memstream.models.ledger import Ledger
    from memstream.models.reputation import ReputationBook
    from memstream.schemas.events import Delivery, Feedback

    book = ReputationBook(seeds=settings.reputation_seed_map())
    ledger = Ledger(rules=settings.ledger_rules(), rater_weight=book.rater_weight)
    ledger_tenants = frozenset(settings.ledger_tenants)
    authors: dict[str, tuple[str, str]] = {}
    feedback: list[Feedback] = []
    for message in messages:
        try:
            if message.topic == INDEXED.name:
                record = Indexed.model_validate_json(message.value or b"")
                authors[str(record.event_id)] = (record.tenant, record.agent_id)
            elif message.topic == FEEDBACK.name:
                feedback.append(Feedback.model_validate_json(message.value or b""))
            elif message.topic == DELIVERIES.name:
                delivery = Delivery.model_validate_json(message.value or b"")
                if delivery.tenant in ledger_tenants:
                    ledger.delivery(
                        str(delivery.event_id), delivery.tenant, delivery.payload.recipient
                    )
        except ValueError:
            continue
    for event in feedback:
        author = authors.get(str(event.payload.memory_id))
        if author is None or author[0] != event.tenant:
            continue
        if event.tenant in ledger_tenants:
            ledger.feedback(
                str(event.event_id), event.tenant, event.agent_id, author[1], event.payload.outcome
            )
        book.record(
            *author, event.payload.outcome, rater=event.agent_id, event_id=str(event.event_id)
        )
    return book, ledger


def replay_books(
    settings: Settings,
    *,
    from_archive: Path | None = None,
    bootstrap: str | None = None,
    tenant: str | None = None,
) -> dict[str, Any]:
    """`memstream replay --books`: the reputation book and the ledger rebuilt from the log
    (`indexed`, `feedback`, `deliveries`; the archive keeps no deliveries, so from an archive
    the ledger has no delivery costs), and whether they equal the live ones in the data dir
    (`tenant`: compare that tenant only). Writes nothing."""
    from memstream.models.ledger import Ledger
    from memstream.models.reputation import ReputationBook

    topics = [INDEXED.name, FEEDBACK.name, DELIVERIES.name]
    messages: list[RawMessage] = []
    if from_archive is not None:
        start, stop = Position(), Position()
        for batch in read_archive_range(
            from_archive, topics, start, stop, 1000, _archive_sealer(settings)
        ):
            messages += batch
    else:
        if not (bootstrap or settings.kafka_bootstrap):
            raise ReplayError("no broker: give --bootstrap or set MEMSTREAM_KAFKA_BOOTSTRAP")

        async def read() -> None:
            source = KafkaRange(bootstrap or settings.kafka_bootstrap or "", topics, idle_s=5.0)
            async for batch in source.batches():
                messages.extend(batch)

        asyncio.run(read())
    book, ledger = rebuild_books(settings, messages)
    live_book = ReputationBook(
        settings.data_dir / "reputation.db", seeds=settings.reputation_seed_map()
    )
    live_ledger = Ledger(
        settings.data_dir / "ledger.db", settings.ledger_rules(), live_book.rater_weight
    )

    def mine(values: dict[str, float]) -> dict[str, float]:
        return {k: v for k, v in values.items() if tenant is None or k.startswith(f"{tenant}/")}

    rebuilt = {"reputation": mine(book.to_dict()), "ledger": mine(ledger.to_dict())}
    live = {"reputation": mine(live_book.to_dict()), "ledger": mine(live_ledger.to_dict())}
    return {
        "records_read": len(messages),
        "source": str(from_archive) if from_archive is not None else "broker",
        "tenant": tenant,
        "rebuilt": rebuilt,
        "equal_to_live": {name: rebuilt[name] == live[name] for name in rebuilt},
        "differences": {
            name: sorted(set(rebuilt[name].items()) ^ set(live[name].items()))[:20]
            for name in rebuilt
        },
    }
