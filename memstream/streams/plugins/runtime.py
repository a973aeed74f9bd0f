"""Plug-in processors and the topic archive, run inside the worker as Faust tasks.

Faust has one consumer group per app (the pipeline's), but a processor must see every
event whatever that group has done, and one added later must catch up from the start. So
each processor gets its own plain `AIOKafkaConsumer` in group `memstream-proc-<name>`
(`auto_offset_reset=earliest`, manual commits) in a Faust task: `getmany` batch ->
`decode_all` -> `run_processor` -> outputs and dead letters through the app's producer ->
wait for their acks -> commit. A crash between send and commit re-sends: at-least-once.

The archive works the same way in group `memstream-archive`: every record of the archived
topics goes to an `ArchiveWriter`, which is flushed (fsync) before offsets are committed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import faust
from prometheus_client import Counter

from memstream.broker.security import kafka_client_kwargs
from memstream.logging import get_logger
from memstream.schemas.topics import DEAD_LETTER, TOPICS, TopicSpec
from memstream.settings import FETCH_MAX_WAIT_MS, Settings
from memstream.streams.plugins.registry import ProcessorSpec, RawMessage, discover
from memstream.streams.plugins.running import decode_all, processor_letter, run_processor

log = get_logger("memstream.plugins")

ARCHIVE_GROUP = "memstream-archive"


def archive_group(settings: Settings) -> str:
    """The archive's consumer group: `memstream-archive` for the default worker group, else
    `<group>-archive`, so a worker with a data dir of its own archives every partition
    instead of splitting them with another's archive."""
    default = Settings.model_fields["consumer_group"].default
    return (
        ARCHIVE_GROUP
        if settings.consumer_group == default
        else f"{settings.consumer_group}-archive"
    )


RETRY_AFTER_S = 5.0
"""Pause before a failed processor or archive loop reconnects and re-reads from its
committed offsets."""

PROCESSOR_EVENTS_IN = Counter(
    "memstream_processor_events_in", "events handed to a plug-in processor", ["processor"]
)
PROCESSOR_EVENTS_OUT = Counter(
    "memstream_processor_events_out", "outputs a plug-in processor produced", ["processor"]
)
PROCESSOR_FAILURES = Counter(
    "memstream_processor_failures",
    "events a plug-in processor dead-lettered (raised, bad output, undecodable)",
    ["processor"],
)
PROCESSOR_SECONDS = Counter(
    "memstream_processor_seconds", "time spent inside a plug-in processor", ["processor"]
)
ARCHIVE_RECORDS = Counter("memstream_archive_records", "records appended to the archive")

Send = Callable[[str, bytes | None, bytes], Awaitable[Awaitable[Any]]]
"""Schedules one message (topic, key, value); awaiting the result waits for its ack."""


def group_for(spec: ProcessorSpec) -> str:
    """The consumer group of one processor: its own, so it sees every event."""
    return f"memstream-proc-{spec.name}"


def bootstrap_of(app: faust.App) -> str:
    """`host:port,...` from the app's `kafka://` broker URLs."""
    return ",".join(f"{url.host}:{url.port or 9092}" for url in app.conf.broker)


def undecodable_letter(spec: ProcessorSpec, message: RawMessage, error: Exception) -> Any:
    """A consumed record that is no event: dead-lettered under the processor's stage."""
    return processor_letter(spec, message, "invalid_fields", f"not an event: {error}")


async def process_and_send(
    spec: ProcessorSpec,
    messages: Sequence[RawMessage],
    send: Send,
    *,
    executor: Executor | None = None,
) -> tuple[int, int]:
    """Run `spec` over consumed records and send its outputs and dead letters; returns
    (outputs, failures) once the broker acknowledged every message it sent."""
    good, bad = decode_all(messages)
    letters = [(m, undecodable_letter(spec, m, exc)) for m, exc in bad]
    before = spec.metrics.as_dict()
    result = await run_processor(spec, good, executor=executor)
    after = spec.metrics.as_dict()
    PROCESSOR_EVENTS_IN.labels(spec.name).inc(after["events_in"] - before["events_in"] + len(bad))
    PROCESSOR_EVENTS_OUT.labels(spec.name).inc(after["events_out"] - before["events_out"])
    PROCESSOR_FAILURES.labels(spec.name).inc(after["failures"] - before["failures"] + len(bad))
    PROCESSOR_SECONDS.labels(spec.name).inc(after["seconds"] - before["seconds"])
    if bad:
        spec.metrics.events_in += len(bad)
        spec.metrics.failures += len(bad)
    letters.extend((f.origin, f.dead_letter) for f in result.failures)
    pending = [await send(out.topic, out.key, out.value) for out in result.outputs]
    pending += [await send(DEAD_LETTER.name, m.key, letter.to_json()) for m, letter in letters]
    if pending:
        await asyncio.gather(*pending)
    for message, exc in bad:
        log.warning(
            "processor input is not an event; dead-lettered",
            processor=spec.name,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            error=str(exc)[:500],
        )
    return len(result.outputs), len(letters)


async def ensure_output_topics(
    bootstrap: str, specs: Sequence[ProcessorSpec], settings: Settings
) -> list[str]:
    """Create the output topics of `specs` that are not in the catalogue (idempotent)."""
    from memstream.streams.admin import ensure_topics

    extra = tuple(
        TopicSpec(name, "processor-defined", f"output of processor {spec.name}")
        for spec in specs
        if (name := spec.produces) and name not in TOPICS
    )
    catalogue = (DEAD_LETTER,)
    return await ensure_topics(
        bootstrap,
        partitions=settings.partitions,
        replication_factor=settings.replication_factor,
        specs=catalogue + tuple({s.name: s for s in extra}.values()),
    )


async def _group_timeouts(bootstrap: str, settings: Settings) -> dict[str, int]:
    """Tansu holds JoinGroup for half the session timeout, so it gets 4 s (docs/design.md)."""
    from memstream.streams.admin import broker_is_tansu

    session_s = 4.0 if await broker_is_tansu(bootstrap) else settings.session_timeout_s
    return {
        "session_timeout_ms": int(session_s * 1000),
        "rebalance_timeout_ms": int(session_s * 1000),
        "heartbeat_interval_ms": int(min(3.0, session_s / 4) * 1000),
    }


def _consumer(bootstrap: str, topics: Sequence[str], group: str, timeouts: dict[str, int]) -> Any:
    from aiokafka import AIOKafkaConsumer

    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        **kafka_client_kwargs(),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_interval_ms=300_000,
        max_partition_fetch_bytes=16 * 1_048_576,
        fetch_max_bytes=64 * 1_048_576,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        **timeouts,
    )


def _raw(record: Any) -> RawMessage:
    return RawMessage(
        record.topic, record.partition, record.offset, record.key, record.value, record.timestamp
    )


async def _supervise(name: str, loop: Callable[[], Awaitable[None]]) -> None:
    """Run `loop` until cancelled; on an error log it and start over from the committed
    offsets, so one failing processor never stops the worker or the other processors."""
    while True:
        try:
            await loop()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background consumer failed; restarting", task=name)
            await asyncio.sleep(RETRY_AFTER_S)


def attach_processors(
    app: faust.App,
    settings: Settings,
    dead_topic: Any = None,
    executor: Executor | None = None,
    *,
    specs: Sequence[ProcessorSpec] | None = None,
) -> list[ProcessorSpec]:
    """Start every installed plug-in processor (`discover()`, or `specs`) with the worker,
    each in its own consumer group; returns the processors attached.

    `dead_topic` (a Faust topic or a name; default `memstream.dead-letter`) receives their
    dead letters. Sync plug-ins run in `executor`; None gives them a thread of their own,
    so a slow plug-in never holds up the model stage."""
    specs = list(discover() if specs is None else specs)
    if not specs:
        return []
    dead_name = getattr(dead_topic, "get_topic_name", lambda: dead_topic)() or DEAD_LETTER.name
    pool = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="memstream-proc")

    async def send(topic: str, key: bytes | None, value: bytes) -> Awaitable[Any]:
        if topic == DEAD_LETTER.name:
            topic = dead_name
        return await app.producer.send(topic, key, value, None, None, None)

    def runner(spec: ProcessorSpec) -> Callable[[], Awaitable[None]]:
        async def consume() -> None:
            bootstrap = bootstrap_of(app)
            await ensure_output_topics(bootstrap, [spec], settings)
            consumer = _consumer(
                bootstrap,
                spec.consumes,
                group_for(spec),
                await _group_timeouts(bootstrap, settings),
            )
            await consumer.start()
            log.info("processor consuming", processor=spec.name, group=group_for(spec))
            try:
                while True:
                    got = await consumer.getmany(timeout_ms=1000, max_records=settings.batch_size)
                    if not got:
                        continue
                    messages = [_raw(r) for records in got.values() for r in records]
                    await process_and_send(spec, messages, send, executor=pool)
                    # outputs are acknowledged: now the offsets may move past their inputs
                    await consumer.commit(
                        {tp: records[-1].offset + 1 for tp, records in got.items() if records}
                    )
            finally:
                await consumer.stop()

        async def task() -> None:
            await _supervise(f"processor:{spec.name}", consume)

        task.__name__ = task.__qualname__ = f"processor_{spec.name}"
        return task

    for spec in specs:
        app.task(runner(spec))
    log.info("processors attached", processors=[s.name for s in specs])
    return specs


def attach_archive(
    app: faust.App,
    settings: Settings,
    root: Path,
    topics: Sequence[str] | None = None,
    *,
    flush_every_s: float = 1.0,
    flush_every_records: int = 5000,
    **writer_options: Any,
) -> None:
    """Copy every record of `topics` (default: the catalogue) to an `ArchiveWriter(root)`,
    in group `memstream-archive`: flushed (fsync) at least every `flush_every_s` or
    `flush_every_records`, and offsets committed only after a flush; idle segments are
    rotated on the same timer. Records of topics with raw personal data
    (`record_seal.SEALED_TOPICS`) are encrypted with a key per record from the data dir's
    key store first, so that erasure reaches their copies."""
    from memstream.log.archive import ArchiveWriter
    from memstream.privacy.keystore import KeyStore
    from memstream.privacy.record_seal import SEALED_TOPICS, RecordSealer
    from memstream.privacy.secrets import scrub_bytes

    names = list(topics) if topics is not None else list(TOPICS)
    sealer = RecordSealer(KeyStore(settings.data_dir / "keys.db"))

    def append(writer: ArchiveWriter, records: list[Any]) -> None:
        sealed = [r for r in records if r.topic in SEALED_TOPICS]
        # raw input never keeps a secret in the archive either (the pipeline drops them)
        copies = iter(
            sealer.seal([(r.topic, r.partition, r.offset, scrub_bytes(r.value)) for r in sealed])
            if sealed
            else []
        )
        for r in records:
            if r.topic in SEALED_TOPICS:
                value, kid = next(copies)
                writer.append(r.topic, r.partition, r.offset, r.timestamp, r.key, value, kid)
            else:
                writer.append(r.topic, r.partition, r.offset, r.timestamp, r.key, r.value)

    async def consume() -> None:
        import re

        from memstream.streams.admin import cluster_id

        bootstrap = bootstrap_of(app)
        epoch = settings.broker_epoch or await cluster_id(bootstrap)
        epoch = re.sub(r"[^A-Za-z0-9_-]", "_", epoch)[:64]
        writer = ArchiveWriter(root, epoch=epoch, **writer_options)
        consumer = _consumer(
            bootstrap, names, archive_group(settings), await _group_timeouts(bootstrap, settings)
        )
        await consumer.start()
        log.info("archive consuming", root=str(root), topics=names)
        positions: dict[Any, int] = {}
        pending = 0
        last_flush = time.monotonic()

        async def flush_and_commit() -> None:
            nonlocal pending, last_flush
            await asyncio.to_thread(writer.flush)
            if positions:
                await consumer.commit(dict(positions))
                positions.clear()
            ARCHIVE_RECORDS.inc(pending)
            pending = 0
            last_flush = time.monotonic()

        try:
            while True:
                got = await consumer.getmany(timeout_ms=500, max_records=flush_every_records)
                for tp, records in got.items():
                    if records:
                        await asyncio.to_thread(append, writer, records)
                        positions[tp] = records[-1].offset + 1
                        pending += len(records)
                now = time.monotonic()
                if pending and (
                    pending >= flush_every_records or now - last_flush >= flush_every_s
                ):
                    await flush_and_commit()
                elif not pending and now - last_flush >= flush_every_s:
                    await asyncio.to_thread(writer.rotate)
                    last_flush = now
        finally:
            try:
                await asyncio.to_thread(writer.close)
                if positions:
                    await consumer.commit(dict(positions))
            except Exception:
                log.exception("archive: final flush or commit failed; records will be re-read")
            finally:
                await consumer.stop()

    async def archive() -> None:
        await _supervise("archive", consume)

    app.task(archive)


__all__ = [
    "ARCHIVE_GROUP",
    "archive_group",
    "attach_archive",
    "attach_processors",
    "bootstrap_of",
    "ensure_output_topics",
    "group_for",
    "process_and_send",
]
