"""What `memstream up --demo` shows: two agents share memories, one bad event is caught."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from memstream.broker.security import kafka_client_kwargs
from memstream.client import Client
from memstream.schemas.topics import MEMORIES

DEMO_MEMORIES = {
    "planner": [
        "The staging database moved to eu-west-2 on Monday.",
        "Deploys are frozen on Fridays after 15:00 UTC.",
    ],
    "researcher": [
        "The customer prefers summaries under 200 words.",
        "Invoice exports fail when the CSV has more than 65k rows.",
    ],
}


async def run_demo(bootstrap: str) -> None:
    for agent, texts in DEMO_MEMORIES.items():
        async with Client(bootstrap, tenant="demo", agent_id=agent) as client:
            for text in texts:
                event_id = await client.publish_memory(text, tags=["demo"], scope="tenant")
                print(f"  {agent} shared {event_id}: {text}")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **kafka_client_kwargs())
    await producer.start()
    try:
        await producer.send_and_wait(MEMORIES.name, b"{not json", key=b"rogue-agent")
        print("  rogue-agent sent '{not json' -> memstream.dead-letter (reason not_json)")
    finally:
        await producer.stop()
