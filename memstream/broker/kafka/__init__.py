"""Apache Kafka 4.x (KRaft) brokers started from Python: jars via Maven, JVMs via subprocess."""

from memstream.broker.kafka.launcher import KAFKA_VERSION, ensure_kafka_jars, start_kafka

__all__ = ["KAFKA_VERSION", "ensure_kafka_jars", "start_kafka"]
