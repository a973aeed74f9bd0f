"""Acceptance: 1,000 events, valid and every kind of invalid, through a real broker and worker.

Every event must end in `memstream.indexed` or `memstream.dead-letter`, exactly once, with the
right reason; the worker must survive all of it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import uuid
from collections import Counter
from collections.abc import Callable

from aiokafka import AIOKafkaProducer

from memstream.broker import BrokerHandle
from memstream.schemas import Memory, Observation
from memstream.schemas.topics import DEAD_LETTER, INDEXED, MEMORIES, OBSERVATIONS
from tests.integration.conftest import Worker, read_topic


def _memory(text: str = "a shared fact") -> Memory:
    return Memory(tenant="mix", agent_id="agent-1", payload={"text": text, "tags": ["t"]})


def _json_with(**changes: object) -> bytes:
    data = json.loads(_memory().to_json())
    for path, value in changes.items():
        target = data
        *parents, leaf = path.split("__")
        for parent in parents:
            target = target[parent]
        if value is _DELETE:
            del target[leaf]
        else:
            target[leaf] = value
    return json.dumps(data).encode()


_DELETE = object()

# kind -> (topic, value factory, expected dead-letter reason or None for valid)
CASES: dict[str, tuple[str, Callable[[], bytes | None], str | None]] = {
    "valid_memory": (MEMORIES.name, lambda: _memory().to_json(), None),
    "valid_observation": (
        OBSERVATIONS.name,
        lambda: Observation(tenant="mix", agent_id="agent-2", payload={"text": "saw it"}).to_json(),
        None,
    ),
    "not_json": (MEMORIES.name, lambda: b"{this is not json", "not_json"),
    "invalid_utf8": (MEMORIES.name, lambda: b'{"tenant": "\xff\xfe"}', "invalid_utf8"),
    "wrong_types": (
        MEMORIES.name,
        lambda: _json_with(payload__text=42, tenant=["x"]),
        "invalid_fields",
    ),
    "missing_fields": (
        MEMORIES.name,
        lambda: _json_with(payload=_DELETE, agent_id=_DELETE),
        "invalid_fields",
    ),
    "unknown_major": (
        MEMORIES.name,
        lambda: _json_with(schema_version="2.0"),
        "unsupported_schema_version",
    ),
    "oversize": (MEMORIES.name, lambda: _json_with(payload__text="x" * 1_200_000), "oversize"),
    "empty": (MEMORIES.name, lambda: b"", "empty"),
    "null": (MEMORIES.name, lambda: None, "empty"),
    "not_object": (MEMORIES.name, lambda: b"[1, 2, 3]", "not_object"),
    "wrong_kind": (MEMORIES.name, lambda: CASES["valid_observation"][1](), "wrong_kind"),
}


def _mix(n: int, seed: int) -> list[str]:
    """n case names: about half valid, every invalid kind at least once, few oversize."""
    rng = random.Random(seed)
    invalid = [k for k, case in CASES.items() if case[2] is not None and k != "oversize"]
    names = list(CASES)  # each kind once
    while len(names) < n:
        roll = rng.random()
        if roll < 0.5:
            names.append(rng.choice(["valid_memory", "valid_observation"]))
        elif roll < 0.505:
            names.append("oversize")
        else:
            names.append(rng.choice(invalid))
    rng.shuffle(names)
    return names


async def _publish(
    bootstrap: str, names: list[str], run: str
) -> tuple[dict[str, str], dict[str, tuple[str, bytes | None]]]:
    """Send the mix; returns valid event ids -> key and invalid keys -> (reason, bytes)."""
    valid: dict[str, str] = {}
    invalid: dict[str, tuple[str, bytes | None]] = {}
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_request_size=16 * 1_048_576
    )
    await producer.start()
    try:
        sends = []
        for i, name in enumerate(names):
            topic, make, reason = CASES[name]
            key = f"{run}-{i}-{name}"
            value = make()
            if reason is None:
                assert value is not None
                valid[json.loads(value)["event_id"]] = key
            else:
                invalid[key] = (reason, value)
            sends.append(await producer.send(topic, value, key=key.encode()))
        await asyncio.gather(*sends)
    finally:
        await producer.stop()
    return valid, invalid


async def test_thousand_events_each_end_in_indexed_or_dead_letter_exactly_once(
    broker: BrokerHandle, worker: Worker
) -> None:
    run = uuid.uuid4().hex[:8]
    names = _mix(1000, seed=7)
    assert len(names) == 1000
    valid, invalid = await _publish(broker.bootstrap, names, run)
    assert set(Counter(r for r, _ in invalid.values())) == {c[2] for c in CASES.values() if c[2]}

    def indexed_done(records: list) -> bool:
        return sum(1 for r in records if r.key.decode() in valid) >= len(valid)

    def dead_done(records: list) -> bool:
        return sum(1 for r in records if _origin_key(r) in invalid) >= len(invalid)

    indexed, dead = await asyncio.gather(
        read_topic(broker.bootstrap, INDEXED.name, indexed_done, timeout=180, settle=2),
        read_topic(broker.bootstrap, DEAD_LETTER.name, dead_done, timeout=180, settle=2),
    )

    indexed_ids = Counter(r.key.decode() for r in indexed if r.key.decode() in valid)
    dead_letters = {}
    dead_counts: Counter[str] = Counter()
    for record in dead:
        key = _origin_key(record)
        if key is None or not key.startswith(run):
            continue
        dead_counts[key] += 1
        dead_letters[key] = json.loads(record.value)

    assert set(indexed_ids) == set(valid), f"{len(valid) - len(indexed_ids)} valid events missing"
    assert max(indexed_ids.values()) == 1, "a valid event was indexed twice"
    assert set(dead_counts) == set(invalid), (
        f"{len(invalid) - len(dead_counts)} invalid events missing"
    )
    assert max(dead_counts.values()) == 1, "an invalid event was dead-lettered twice"
    assert not set(dead_counts) & {valid[e] for e in valid}, "a valid event was dead-lettered"
    assert len(valid) + len(invalid) == 1000

    for key, (reason, value) in invalid.items():
        letter = dead_letters[key]["payload"]
        assert letter["reason"] == reason, (key, letter["detail"])
        assert letter["stage"] == "validate"
        assert letter["origin_topic"] in (MEMORIES.name, OBSERVATIONS.name)
        assert letter["origin_offset"] >= 0
        assert letter["original_size"] == len(value or b"")
        if value is not None and not letter["truncated"]:
            assert base64.b64decode(letter["original_value_b64"]) == value


def _origin_key(record: object) -> str | None:
    letter = json.loads(record.value)["payload"]  # type: ignore[attr-defined]
    raw = letter.get("original_key_b64")
    return base64.b64decode(raw).decode() if raw else None
