"""The worker's Faust app class: Faust's own, with a fetch wait chosen for low latency.

Faust hard-codes `fetch_max_wait_ms=1500` for its worker consumer
(`faust.transport.drivers.aiokafka.AIOKafkaConsumerThread._create_worker_consumer`). Apache
Kafka answers a fetch as soon as one byte is there, so the wait only shows when a topic is
quiet, but brokers that hold a fetch for its full wait (Tansu) then add up to 1.5 s to every
memory's way through the pipeline. No setting reaches that value, so the transport's
consumer thread is subclassed and the wait set on the consumer before it starts.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from memstream.settings import FETCH_MAX_WAIT_MS


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read by AIOKafkaConsumer.start()
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class LowLatencyApp(faust.App):
    """`faust.App` whose consumer waits at most `FETCH_MAX_WAIT_MS` per fetch."""

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)
