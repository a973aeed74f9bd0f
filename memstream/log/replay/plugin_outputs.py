"""Plug-in processors over replayed records, their outputs sent to the broker."""

from __future__ import annotations

import asyncio
from typing import Any

from memstream.broker.security import kafka_client_kwargs
from memstream.log.replay.pipeline import ReplayStats
from memstream.log.replay.positions import ReplayError
from memstream.processors import ProcessorSpec, RawMessage
from memstream.schemas.events import Indexed
from memstream.schemas.topics import INDEXED
from memstream.settings import Settings


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
