"""Broker launchers: Apache Kafka (KRaft, jars from Maven Central), Tansu (embedded), external."""

from __future__ import annotations

import os
from pathlib import Path

from memstream.broker.base import BrokerHandle, BrokerUnavailable
from memstream.broker.tansu import start_tansu

__all__ = ["BrokerHandle", "BrokerUnavailable", "external_broker", "start_broker", "start_tansu"]


def external_broker(bootstrap: str) -> BrokerHandle:
    """A cluster someone else runs (`MEMSTREAM_KAFKA_BOOTSTRAP`); stopping it does nothing."""
    return BrokerHandle(kind="external", version="unknown", bootstrap=bootstrap)


def start_broker(
    kind: str = "tansu",
    nodes: int = 1,
    port: int | None = None,
    *,
    fast_start: bool = False,
    data_dir: Path | None = None,
    secure: bool = False,
) -> BrokerHandle:
    """Start a broker of `kind` (`kafka`, `tansu`) or wrap `external` from the environment.

    `fast_start` trades Kafka's peak throughput for a quicker JVM start (tests use it);
    `data_dir` keeps a Kafka cluster there across restarts (Tansu is memory-only);
    `secure` locks a Kafka cluster down (SCRAM over TLS, ACLs).
    """
    if kind == "tansu":
        if secure:
            raise ValueError("tansu has no security settings; use --kind kafka --secure")
        if nodes != 1:
            raise ValueError("tansu runs a single memory-only node; use --kind kafka for --nodes 3")
        return start_tansu(port=port)
    if kind == "kafka":
        from memstream.broker.kafka import start_kafka

        return start_kafka(
            nodes=nodes, port=port, data_dir=data_dir, fast_start=fast_start, secure=secure
        )
    if kind == "external":
        bootstrap = os.environ.get("MEMSTREAM_KAFKA_BOOTSTRAP")
        if not bootstrap:
            raise BrokerUnavailable(
                "--kind external needs MEMSTREAM_KAFKA_BOOTSTRAP=host:port[,...]"
            )
        return external_broker(bootstrap)
    raise ValueError(f"unknown broker kind {kind!r}: choose kafka, tansu or external")
