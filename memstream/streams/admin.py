"""Create the catalogue's topics, idempotently, on any Kafka-compatible broker."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from memstream.broker.security import kafka_client_kwargs
from memstream.logging import get_logger
from memstream.schemas.topics import CATALOGUE, TopicSpec

log = get_logger("memstream.admin")


async def ensure_topics(
    bootstrap: str,
    *,
    partitions: int | None = None,
    replication_factor: int = 1,
    supports_compaction: bool | None = None,
    specs: tuple[TopicSpec, ...] = CATALOGUE,
) -> list[str]:
    """Create every missing topic of `specs`; returns the names it created.

    `supports_compaction=None` asks the broker: Tansu (which accepts `cleanup.policy=compact`
    and then never compacts) gets plain topics, any other broker compacted ones.
    """
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=30_000, **kafka_client_kwargs()
    )
    await admin.start()
    try:
        if supports_compaction is None:
            supports_compaction = not await is_tansu(admin)
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name=spec.name,
                num_partitions=partitions or spec.partitions,
                replication_factor=replication_factor,
                topic_configs=spec.broker_config(supports_compaction, replication_factor),
            )
            for spec in specs
            if spec.name not in existing
        ]
        if not missing:
            return []
        response = await admin.create_topics(missing)
        created = []
        for name, code, message in _topic_errors(response):
            if code == 0:
                created.append(name)
            elif code != TopicAlreadyExistsError.errno:  # another process won the race
                raise RuntimeError(f"could not create topic {name}: error {code} {message}")
        log.info("topics created", topics=created)
        return created
    finally:
        await admin.close()


def _topic_errors(response: object) -> list[tuple[str, int, str | None]]:
    """(name, error code, message) per topic, for every CreateTopics response version."""
    rows = []
    for entry in response.topic_errors:  # type: ignore[attr-defined]
        name, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 else None
        rows.append((name, code, message))
    return rows


async def is_tansu(admin: AIOKafkaAdminClient) -> bool:
    """Tansu answers DescribeCluster with its default cluster id `tansu_cluster`."""
    cluster = await admin.describe_cluster()
    return str(cluster.get("cluster_id", "")).startswith("tansu")


async def broker_is_tansu(bootstrap: str) -> bool:
    """Whether `bootstrap` is a Tansu broker (which needs shorter group timeouts)."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=30_000, **kafka_client_kwargs()
    )
    await admin.start()
    try:
        return await is_tansu(admin)
    finally:
        await admin.close()


async def cluster_id(bootstrap: str) -> str:
    """The cluster id the broker reports (`tansu_cluster` for every Tansu)."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=30_000, **kafka_client_kwargs()
    )
    await admin.start()
    try:
        return str((await admin.describe_cluster()).get("cluster_id") or "unknown")
    finally:
        await admin.close()


_partition_counts: dict[tuple[str, str], int] = {}


async def partition_count(bootstrap: str, topic: str) -> int:
    """Partitions of `topic` (cached: memstream never changes them while running)."""
    cached = _partition_counts.get((bootstrap, topic))
    if cached:
        return cached
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=30_000, **kafka_client_kwargs()
    )
    await admin.start()
    try:
        [description] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    count = len(description["partitions"])
    if count:
        _partition_counts[(bootstrap, topic)] = count
    return max(count, 1)


async def topic_partitions(bootstrap: str, topic: str) -> list[int]:
    """The partition numbers of `topic`, sorted; empty when there is no such topic."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=10_000, **kafka_client_kwargs()
    )
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return sorted(
        p["partition"] for d in described if d.get("error_code", 0) == 0 for p in d["partitions"]
    )


async def topic_end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """Each partition's end offset of `topic` now (partition -> next offset). Not on Tansu,
    whose `end_offsets` is wrong (memstream.broker.tansu)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    parts = await topic_partitions(bootstrap, topic)
    if not parts:
        raise RuntimeError(f"topic {topic} has no partitions")
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, **kafka_client_kwargs()
    )
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in parts])
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        await consumer.stop()
