"""`memstream bench pipeline`: where the time of the validate stage goes, on each broker.

For each broker it measures, on the same N pre-encoded memory events:
- `publish_events_per_s`: aiokafka producer, acks=all, 256 KiB batches;
- `validate_only_events_per_s`: `validate_event` in a loop (the CPU floor of the stage);
- `aiokafka_stage_events_per_s`: a plain aiokafka consume-validate-produce loop with
  `getmany` batches (what the stage costs without a stream framework);
- `faust_stage_events_per_s`: the real `memstream worker` (Faust) process, from its first
  to its last output record (record timestamps), so start-up and group join are excluded.
"""

from __future__ import annotations

import asyncio
import os
import platform
import tempfile
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from rich.console import Console

from memstream.broker import BrokerUnavailable, start_broker
from memstream.schemas import Memory
from memstream.schemas.topics import INDEXED, MEMORIES, TopicSpec
from memstream.services.stack import spawn_worker, stop_process
from memstream.streams.admin import ensure_topics
from memstream.streams.validate import validate_event

BENCH_OUT = TopicSpec("memstream.bench.validated", "memory id", "aiokafka baseline output")
console = Console(stderr=True)


def make_events(n: int) -> list[bytes]:
    """n distinct, valid memory events of about 400 bytes each, already encoded."""
    return [
        Memory(
            tenant=f"bench-{i % 8}",
            agent_id=f"agent-{i % 32}",
            payload={
                "text": f"memory {i}: " + "the quick brown fox jumps over the lazy dog " * 6,
                "tags": ["bench"],
            },
        ).to_json()
        for i in range(n)
    ]


async def send_memories(
    bootstrap: str, records: Iterable[tuple[bytes, bytes]]
) -> tuple[float, float]:
    """Send every (key, value) onto `memstream.memories` (acks=all) and wait for all the
    acks: (wall clock time of the first send, seconds from it to the last ack)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=256 * 1024
    )
    await producer.start()
    try:
        first = time.time()
        start = time.perf_counter()
        futures = [await producer.send(MEMORIES.name, v, key=k) for k, v in records]
        await asyncio.gather(*futures)
        return first, time.perf_counter() - start
    finally:
        await producer.stop()


async def publish(bootstrap: str, values: list[bytes]) -> float:
    _, seconds = await send_memories(
        bootstrap, ((f"agent-{i % 32}".encode(), v) for i, v in enumerate(values))
    )
    return len(values) / seconds


def validate_only(values: list[bytes]) -> float:
    start = time.perf_counter()
    for value in values:
        validate_event(value, MEMORIES.name)
    return len(values) / (time.perf_counter() - start)


async def aiokafka_stage(bootstrap: str, n: int) -> float:
    """Consume n events in batches, validate, produce to a bench topic; events/s."""
    consumer = AIOKafkaConsumer(
        MEMORIES.name,
        bootstrap_servers=bootstrap,
        group_id=f"bench-aiokafka-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=2000,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=256 * 1024
    )
    await consumer.start()
    await producer.start()
    try:
        done = 0
        start: float | None = None
        while done < n:
            batches = await consumer.getmany(timeout_ms=500, max_records=2000)
            if start is None and batches:
                start = time.perf_counter()
            futures = []
            for messages in batches.values():
                for message in messages:
                    event = validate_event(message.value, message.topic)
                    futures.append(
                        await producer.send(
                            BENCH_OUT.name, message.value, key=str(event.event_id).encode()
                        )
                    )
                done += len(messages)
            await asyncio.gather(*futures)
            if batches:
                await consumer.commit()
        assert start is not None
        return n / (time.perf_counter() - start)
    finally:
        await consumer.stop()
        await producer.stop()


async def count_outputs(bootstrap: str, topic: str, n: int, timeout: float) -> tuple[int, float]:
    """Read `topic` until n records; (count, events/s between first and last timestamps)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    first = last = None
    count = 0
    try:
        deadline = time.monotonic() + timeout
        while count < n and time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                for message in messages:
                    count += 1
                    first = message.timestamp if first is None else min(first, message.timestamp)
                    last = message.timestamp if last is None else max(last, message.timestamp)
    finally:
        await consumer.stop()
    if count < 2 or first is None or last is None or last == first:
        return count, 0.0
    return count, (count - 1) / ((last - first) / 1000)


def bench_broker(kind: str, values: list[bytes], progress: bool) -> dict[str, Any]:
    n = len(values)
    with start_broker(kind) as handle:
        bootstrap = handle.bootstrap
        asyncio.run(ensure_topics(bootstrap, partitions=3, specs=(MEMORIES, INDEXED, BENCH_OUT)))
        if progress:
            console.print(f"[bold]{handle.label}[/]: publishing {n} events")
        publish_rate = asyncio.run(publish(bootstrap, values))
        if progress:
            console.print(f"  publish {publish_rate:,.0f}/s; aiokafka stage")
        aiokafka_rate = asyncio.run(aiokafka_stage(bootstrap, n))
        if progress:
            console.print(f"  aiokafka stage {aiokafka_rate:,.0f}/s; faust worker")
        with tempfile.TemporaryDirectory() as tmp:
            log = Path(tmp) / "worker.log"
            worker = spawn_worker(
                bootstrap,
                log_path=log,
                MEMSTREAM_LOG_LEVEL="WARNING",
                MEMSTREAM_DATA_DIR=tmp,
                # the validate stage alone: the model stage has its own benches
                MEMSTREAM_MODEL_STAGE_ENABLED="false",
                MEMSTREAM_PII_ENABLED="false",
                MEMSTREAM_LEARNER_ENABLED="false",
                MEMSTREAM_ARCHIVE_ENABLED="false",
                MEMSTREAM_PROCESSORS_ENABLED="false",
            )
            try:
                count, faust_rate = asyncio.run(
                    count_outputs(bootstrap, INDEXED.name, n, timeout=max(120, n / 100))
                )
            finally:
                stop_process(worker)
            if count < n:
                raise RuntimeError(
                    f"faust worker indexed {count}/{n}; log tail:\n{log.read_text()[-3000:]}"
                )
        if progress:
            console.print(f"  faust stage {faust_rate:,.0f}/s")
        return {
            "broker": handle.label,
            "us_per_event": {
                "validate_only": None,  # filled in by run_pipeline_bench
                "aiokafka_stage": round(1e6 / aiokafka_rate, 1),
                "faust_stage": round(1e6 / faust_rate, 1) if faust_rate else None,
            },
            "events": n,
            "publish_events_per_s": round(publish_rate),
            "aiokafka_stage_events_per_s": round(aiokafka_rate),
            "faust_stage_events_per_s": round(faust_rate),
        }


def run_pipeline_bench(events: int, brokers: list[str], progress: bool = True) -> dict[str, Any]:
    values = make_events(events)
    result: dict[str, Any] = {
        "events": events,
        "event_bytes_avg": round(sum(map(len, values)) / len(values)),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "validate_only_events_per_s": round(validate_only(values)),
        "brokers": {},
        "skipped": {},
    }
    for kind in brokers:
        try:
            row = bench_broker(kind, values, progress)
            row["us_per_event"]["validate_only"] = round(
                1e6 / result["validate_only_events_per_s"], 1
            )
            result["brokers"][kind] = row
        except BrokerUnavailable as err:
            result["skipped"][kind] = str(err)
    return result
