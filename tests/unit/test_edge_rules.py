"""Issue 11's rules, broker-free: bounded metadata, dead letters that never raise, writes
isolated per record, supersession, cursors and delivery filtering, record keys, the DP
budget per agent."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from memstream.privacy.dp import BudgetExceeded, PrivacyBudget
from memstream.privacy.keystore import KeyStore
from memstream.privacy.record_seal import RecordSealer, record_ref
from memstream.schemas.events import (
    MAX_METADATA_DEPTH,
    Delivery,
    DeliveryPayload,
    Memory,
)
from memstream.schemas.topics import DEAD_LETTER, MEMORIES
from memstream.services.gateway import (
    InvalidCursor,
    delivery_key,
    first_time,
    may_receive,
    parse_cursor,
)
from memstream.store.base import Caller, StoredMemory, may_supersede
from memstream.store.sink import write_isolated
from memstream.streams.validate import SYSTEM_TENANT, InvalidEvent, dead_letter, validate_event


def _memory_json(metadata_json: str) -> bytes:
    event = json.loads(Memory(tenant="t", agent_id="a", payload={"text": "x"}).to_json())
    text = json.dumps(event).replace('"metadata": {}', f'"metadata": {metadata_json}')
    return text.encode()


@pytest.mark.parametrize(
    ("metadata", "ok"),
    [
        ('{"a":' * (MAX_METADATA_DEPTH - 1) + "1" + "}" * (MAX_METADATA_DEPTH - 1), True),
        ('{"a":' * MAX_METADATA_DEPTH + "1" + "}" * MAX_METADATA_DEPTH, False),
        ('{"a":' * 130 + "1" + "}" * 130, False),
        ('{"n": NaN}', False),
        ('{"n": Infinity}', False),
        ('{"n": 9223372036854775807}', True),
        ('{"n": 9223372036854775808}', False),
        ('{"s": "ok \\u00e9 \\ud83d\\ude00"}', True),
        ('{"' + "k" * 300 + '": 1}', False),
        ('{"pad": "' + "x" * 70_000 + '"}', False),
    ],
)
def test_metadata_is_bounded_in_the_validate_stage(metadata: str, ok: bool) -> None:
    value = _memory_json(metadata)
    if ok:
        validate_event(value, MEMORIES.name)
    else:
        with pytest.raises(InvalidEvent) as err:
            validate_event(value, MEMORIES.name)
        assert err.value.reason == "invalid_fields" and "metadata" in err.value.detail


def test_metadata_from_python_refuses_surrogates_and_nan() -> None:
    for bad in ({"s": "\ud800"}, {"n": float("nan")}, {"o": object()}):
        with pytest.raises(ValidationError):
            Memory(tenant="t", agent_id="a", payload={"text": "x", "metadata": bad})


def test_dead_letter_never_raises_on_a_value_nested_100k_deep() -> None:
    value = b'{"tenant":"t","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(InvalidEvent) as err:
        validate_event(value, MEMORIES.name)
    letter = dead_letter(
        reason=err.value.reason,
        detail=err.value.detail,
        stage="validate",
        topic=MEMORIES.name,
        partition=0,
        offset=1,
        key=None,
        value=value,
    )
    assert letter.payload.reason == "not_json" and letter.tenant == SYSTEM_TENANT


class _FlakyStore:
    """A store that refuses some records (or everything, while `down`)."""

    def __init__(self, refuse: set[str], down_for: int = 0) -> None:
        self.refuse, self.down_for, self.written = refuse, down_for, []

    def count(self, tenant: str | None = None) -> int:
        if self.down_for > 0:
            self.down_for -= 1
            raise ConnectionError("store down")
        return len(self.written)


def test_write_isolated_dead_letters_only_the_refused_record(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import memstream.store.sink as sink

    store = _FlakyStore({"bad"})

    def write(target, records):  # type: ignore[no-untyped-def]
        if any(r in target.refuse for r in records):
            raise ValueError("refused")
        target.written.extend(records)

    monkeypatch.setattr(sink, "write_records", write)
    outcomes = write_isolated(store, ["a", "bad", "c"])  # type: ignore[arg-type,list-item]
    assert [o is None for o in outcomes] == [True, False, True]
    assert store.written == ["a", "c"]


def test_write_isolated_waits_for_a_store_that_is_down(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import memstream.store.sink as sink

    store = _FlakyStore(set(), down_for=3)
    calls = {"n": 0}

    def write(target, records):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if target.down_for > 0:
            raise ConnectionError("store down")
        target.written.extend(records)

    monkeypatch.setattr(sink, "write_records", write)
    slept: list[float] = []
    outcomes = write_isolated(store, ["a"], sleep=slept.append)  # type: ignore[arg-type,list-item]
    assert outcomes == [None] and store.written == ["a"]  # retried, never dead-lettered
    assert slept == [0.5, 1.0, 2.0]  # backoff doubles while the health check fails


def _stored(scope: str, agent: str = "owner") -> StoredMemory:
    now = datetime.now(UTC)
    return StoredMemory(uuid.uuid4(), "t", agent, scope, "x", now, now)


def test_may_supersede_never_hides_a_memory_from_its_readers() -> None:
    assert may_supersede("owner", "private", _stored("private"))
    assert not may_supersede("other", "tenant", _stored("private"))
    assert may_supersede("other", "team:core", _stored("team:core"))
    assert not may_supersede("other", "tenant", _stored("team:core"))  # membership unproven
    assert may_supersede("other", "public", _stored("tenant"))
    assert not may_supersede("owner", "private", _stored("tenant"))  # would hide it
    assert not may_supersede("owner", "team:core", _stored("public"))


def test_cursors_are_strict() -> None:
    assert parse_cursor(None) is None and parse_cursor("2:41") == (2, 41)
    assert parse_cursor("0:-1") == (0, -1)
    for bad in ("x", "1", ":", "a:b", "0:-2", "-1:0", f"0:{2**63 - 1}", "0:" + "9" * 30):
        with pytest.raises(InvalidCursor):
            parse_cursor(bad)


def test_a_poll_returns_a_redelivered_memory_once() -> None:
    """At-least-once: the deliveries topic may hold one memory's delivery twice (seen as
    test_http_sdk's poll returning the same memory twice); one answer lists it once."""

    def delivery(memory: uuid.UUID, subscription: str = "sub-1") -> Delivery:
        payload = DeliveryPayload(
            subscription_id=subscription,
            recipient="alice",
            memory_id=memory,
            text="t",
            score=0.9,
            source_agent="bob",
            memory_scope="team:ops",
        )
        return Delivery(tenant="acme", agent_id="alice", scope="private", payload=payload)

    one, two = uuid.uuid4(), uuid.uuid4()
    seen: set[tuple[str, str]] = set()
    kept = [
        d.payload.memory_id
        for d in [delivery(one), delivery(one), delivery(two), delivery(one, "sub-2")]
        if first_time(seen, d)
    ]
    assert kept == [one, two, one]


def test_deliveries_reach_exactly_the_identity_with_its_rights() -> None:
    def delivery(tenant: str, scope: str) -> Delivery:
        return Delivery(
            tenant=tenant,
            agent_id="alice",
            scope="private",
            payload=DeliveryPayload(
                subscription_id="sub-1",
                recipient="alice",
                memory_id=uuid.uuid4(),
                text="t",
                score=0.9,
                source_agent="bob",
                memory_scope=scope,
            ),
        )

    acme = Caller("acme", "alice", frozenset({"ops"}), frozenset({"pii"}))
    globex = Caller("globex", "alice", frozenset({"ops"}))
    assert delivery_key("acme", "alice") != delivery_key("globex", "alice")
    assert may_receive(acme, delivery("acme", "team:ops"))
    assert not may_receive(globex, delivery("acme", "tenant"))
    assert not may_receive(Caller("acme", "alice"), delivery("acme", "team:ops"))


def test_record_keys_seal_open_and_erase(tmp_path: Path) -> None:
    sealer = RecordSealer(KeyStore(tmp_path / "keys.db"))
    event = Memory(tenant="acme", agent_id="a", payload={"text": "call jane@example.org"})
    value = event.to_json()
    [(sealed, kid)] = sealer.seal([(MEMORIES.name, 0, 5, value)])
    assert kid == f"acme/{event.event_id}" and b"jane" not in (sealed or b"")
    assert sealer.open(kid, sealed) == value
    assert sealer.open("globex/" + str(event.event_id), sealed) is None  # bound to its kid
    assert sealer.keystore.erase_records("acme", [str(event.event_id)]) == 1
    assert sealer.open(kid, sealed) is None
    [(again, _)] = sealer.seal([(MEMORIES.name, 0, 5, value)])
    assert again is None  # an erased record is never sealed (kept) again
    assert record_ref(DEAD_LETTER.name, 0, 9, b"garbage").tenant == SYSTEM_TENANT
    assert (tmp_path / "keys.db").stat().st_mode & 0o077 == 0


def test_one_agent_cannot_spend_the_tenants_budget(tmp_path: Path) -> None:
    budget = PrivacyBudget(tmp_path / "dp.db", epsilon_per_tenant=1.0, agent_share=0.25)
    budget.spend("t", 0.25, agent_id="greedy")
    with pytest.raises(BudgetExceeded, match="greedy"):
        budget.spend("t", 0.01, agent_id="greedy")
    for agent in ("b", "c", "d"):
        budget.spend("t", 0.25, agent_id=agent)
    with pytest.raises(BudgetExceeded, match="tenant"):
        budget.spend("t", 0.01, agent_id="e")
    assert budget.spent("t") == pytest.approx(1.0) and budget.agent_spent("t", "e") == 0.0
