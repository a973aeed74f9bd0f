"""The replay itself: plan the target version, read, write, checkpoint, swap."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from memstream.log.replay.checkpoint import Checkpoint
from memstream.log.replay.pipeline import ReplayStats, _Pipeline
from memstream.log.replay.plugin_outputs import _ProcessorSender
from memstream.log.replay.positions import (
    CHECKPOINT_FILE,
    INPUT_TOPICS,
    Position,
    ReplayError,
    parse_position,
)
from memstream.log.replay.sources import (
    KafkaRange,
    _archive_sealer,
    count_archive_range,
    read_archive_range,
)
from memstream.logging import get_logger
from memstream.processors import ProcessorSpec, RawMessage
from memstream.schemas.topics import INDEXED
from memstream.settings import Settings

log = get_logger("memstream.log.replay")


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


def replay(settings: Settings | None = None, **options: Any) -> dict[str, Any]:
    """Re-process a range of the log into a store version; returns a summary. Takes the
    keyword arguments of `replay_async`, which it runs in a new event loop."""
    return asyncio.run(replay_async(settings, **options))


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
    """`replay` inside a running event loop: re-process a range of the log into a store
    version; returns a summary.

    Reads `topics` (default: the pipeline's input topics) from `from_archive` or from the
    broker at `bootstrap` (default `settings.kafka_bootstrap`) between `start` and `stop`
    (`beginning`/`end`, an offset applied to every partition, or an ISO time), writes the
    results into version `into` (a number, or `new`) of the Edge store at `store_root`
    (default the settings' store directory), and with `swap` makes it live at the end.
    `processors` also runs these plug-ins over the replayed events, sending their outputs
    and dead letters to the broker. The checkpoint is saved (after a shard flush) at most
    every `checkpoint_every_s`; 0 saves after every batch.
    """
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
