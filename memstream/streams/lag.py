"""Consumer lag per group and partition, as Prometheus gauges on every worker's /metrics.

Lag is what the broker holds that a group has not committed yet: the partition's end
offset minus the group's committed offset there. It is read from the broker (the group
offsets and the end offsets), not from the consumers themselves, so it is right while a
group's members are stopped, which is when it matters: a worker that stopped consuming
cannot report on itself, any other worker's /metrics shows its lag rising. Every group
on the broker is reported (the pipeline, plug-ins, gateways), up to `MAX_GROUPS`, on every
partition of the topics it has committed on. Refreshed on a timer (`MEMSTREAM_LAG_INTERVAL_S`), not on
each scrape, so a scrape never waits on the broker. Not on Tansu, whose end offsets are
wrong (memstream.broker.tansu).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import Gauge

from memstream.broker.security import kafka_client_kwargs

log = structlog.get_logger("memstream.lag")

MAX_GROUPS = 200
"""Groups read per refresh: beyond that the broker is being asked too much each time."""

CONSUMER_LAG = Gauge(
    "memstream_consumer_lag_records",
    "Records in a partition that a consumer group has not committed: end offset minus the "
    "group's committed offset",
    ["group", "topic", "partition"],
)
LAG_REFRESHED = Gauge(
    "memstream_consumer_lag_refreshed_timestamp_seconds",
    "When consumer lag was last read from the broker (unix time)",
)


@dataclass
class LagMonitor:
    """Reads every group's lag from the broker and sets the gauges; one admin client and one
    (group-less) consumer kept open between refreshes."""

    bootstrap: str
    _admin: AIOKafkaAdminClient | None = field(default=None, init=False)
    _consumer: AIOKafkaConsumer | None = field(default=None, init=False)

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None or self._consumer is None:
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self.bootstrap, request_timeout_ms=10_000, **kafka_client_kwargs()
            )
            await admin.start()
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, enable_auto_commit=False, **kafka_client_kwargs()
            )
            await consumer.start()
            self._admin, self._consumer = admin, consumer
        return self._admin, self._consumer

    async def read(self) -> dict[tuple[str, str, int], int]:
        """(group, topic, partition) -> lag in records, for every partition of each topic a
        group has committed on; a partition it has not committed on yet counts from its
        first offset (where a new member starts: `auto_offset_reset=earliest`)."""
        admin, consumer = await self._clients()
        groups = sorted(g[0] for g in await admin.list_consumer_groups())[:MAX_GROUPS]
        committed: dict[str, dict[TopicPartition, int]] = {}
        for group in groups:
            offsets = await admin.list_consumer_group_offsets(group)
            kept = {tp: m.offset for tp, m in offsets.items() if m is not None and m.offset >= 0}
            if kept:
                committed[group] = kept
        if not committed:
            return {}
        topics = sorted({tp.topic for offsets in committed.values() for tp in offsets})
        partitions = {
            d["topic"]: [TopicPartition(d["topic"], p["partition"]) for p in d["partitions"]]
            for d in await admin.describe_topics(topics)
        }
        every = sorted({tp for tps in partitions.values() for tp in tps})
        ends = await consumer.end_offsets(every)
        firsts = await consumer.beginning_offsets(every)
        lag = {}
        for group, offsets in committed.items():
            for topic in {tp.topic for tp in offsets}:
                for tp in partitions.get(topic, []):
                    position = offsets.get(tp, firsts.get(tp, 0))
                    lag[(group, topic, tp.partition)] = max(0, ends.get(tp, position) - position)
        return lag

    async def refresh(self) -> bool:
        """Read and publish; False (gauges unchanged, clients reopened next time) when the
        broker did not answer, which is logged, never raised."""
        try:
            lag = await self.read()
        except Exception as err:
            log.warning("consumer lag not read", error=f"{type(err).__name__}: {err}"[:300])
            await self.close()
            return False
        # no await from here on: a scrape sees the old set or the new one, never half
        CONSUMER_LAG.clear()
        for (group, topic, partition), records in lag.items():
            CONSUMER_LAG.labels(group=group, topic=topic, partition=str(partition)).set(records)
        LAG_REFRESHED.set(time.time())
        return True

    async def close(self) -> None:
        admin, consumer = self._admin, self._consumer
        self._admin = self._consumer = None
        for stop in (admin.close if admin else None, consumer.stop if consumer else None):
            if stop is not None:
                try:
                    await stop()
                except Exception:  # closing a client to a dead broker: nothing to save
                    pass
