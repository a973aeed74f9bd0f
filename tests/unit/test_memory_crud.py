"""Memory CRUD pieces without a broker (issue 15): import rows, derived ids, tombstones,
paging and expiry in the Edge store, the SDK's SSE parsing and error mapping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import httpx
import numpy as np
import pytest

from memstream.schemas.events import new_event_id
from memstream.sdk.http import (
    Forbidden,
    InvalidRequest,
    NotFound,
    RateLimited,
    _raise_for,
    _SseParser,
)
from memstream.services.import_rows import BadRow, derived_id, memory_from_row, parse_line
from memstream.store.base import Caller, Sparse, StoredMemory
from memstream.store.edge import EdgeStore
from memstream.store.tombstones import Tombstones

ADA = Caller("acme", "ada", frozenset({"red"}))
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def test_derived_ids_are_uuid7_fixed_by_tenant_and_source() -> None:
    ts = datetime(2026, 6, 1, tzinfo=UTC)
    a = derived_id("acme", "row-1", ts)
    assert a.version == 7 and a == derived_id("acme", "row-1", ts)
    assert a != derived_id("other", "row-1", ts) and a != derived_id("acme", "row-2", ts)
    # an exported UUIDv7 keeps its time, so supersedes links map like the rows they name
    source = new_event_id()
    assert derived_id("b", str(source), ts).int >> 80 == source.int >> 80


def test_rows_become_memories_of_the_importer() -> None:
    row = {
        "memory_id": "r1",
        "text": "hello",
        "tags": ["x"],
        "scope": "team:red",
        "ts": "2026-06-01T10:00:00Z",
        "agent_id": "someone",
    }
    memory = memory_from_row(row, ADA, now=NOW)
    assert (memory.tenant, memory.agent_id, memory.scope) == ("acme", "ada", "team:red")
    assert memory.ts == datetime(2026, 6, 1, 10, tzinfo=UTC)
    assert memory.payload.metadata == {"imported_from_agent": "someone"}
    assert memory.event_id == memory_from_row(row, ADA, now=NOW + timedelta(days=1)).event_id
    plain = {"text": "no id, no time"}
    assert (
        memory_from_row(plain, ADA, now=NOW).event_id
        == memory_from_row(plain, ADA, now=NOW + timedelta(days=1)).event_id
    )
    mem0 = memory_from_row(
        {
            "id": "m1",
            "memory": "likes tea",
            "user_id": "u7",
            "categories": ["food"],
            "created_at": "2026-05-01T00:00:00+00:00",
        },
        ADA,
        now=NOW,
    )
    assert mem0.payload.text == "likes tea" and mem0.payload.tags == ["food"]
    assert mem0.payload.metadata == {"mem0": {"user_id": "u7"}}


@pytest.mark.parametrize(
    "line, reason",
    [
        ("{nope", "not_json"),
        ("[1]", "not_an_object"),
        ('{"tags": []}', "missing_text"),
        ('{"text": "x", "what": 1}', "unknown_fields"),
        ('{"text": "x", "ts": "soon"}', "invalid_time"),
        ('{"text": "x", "ts": "2099-01-01T00:00:00Z"}', "invalid_time"),
        ('{"text": "x", "scope": "team:blue"}', "forbidden_scope"),
        ('{"text": "x", "tags": "one"}', "invalid_fields"),
        ('{"text": "x", "metadata": [1]}', "invalid_fields"),
    ],
)
def test_bad_rows_name_their_reason(line: str, reason: str) -> None:
    with pytest.raises(BadRow) as bad:
        memory_from_row(parse_line(line), ADA, now=NOW)
    assert bad.value.reason == reason and bad.value.detail


def test_tombstones_are_per_tenant_and_idempotent(tmp_path: Path) -> None:
    marks = Tombstones(tmp_path / "t.db")
    ids = [new_event_id() for _ in range(3)]
    assert marks.add("acme", ids[:2], "deleted", new_event_id()) == 2
    assert marks.add("acme", ids[:2], "deleted", new_event_id()) == 0
    assert marks.deleted("acme", ids) == {str(i) for i in ids[:2]}
    assert marks.deleted("other", ids) == set()


def _memory(i: int, **kw: object) -> StoredMemory:
    fields: dict = {"scope": "tenant", "agent_id": "ada"} | kw
    return StoredMemory(
        memory_id=new_event_id(),
        tenant="acme",
        text=f"text {i}",
        ts=NOW,
        recorded_at=NOW,
        **fields,
    )


def test_edge_pages_in_creation_order_and_hides_expired(tmp_path: Path) -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    memories = [_memory(i, topic="a" if i % 2 else "b") for i in range(5)]
    memories.append(_memory(5, expires_at=past))
    memories.append(_memory(6, scope="private", agent_id="bob"))
    with EdgeStore(tmp_path / "s") as store:
        store.upsert(memories, np.eye(7, 384, dtype=np.float32), [Sparse([1], [1.0])] * 7)
        first, cursor = store.page(ADA, 3)
        second, end = store.page(ADA, 3, cursor)
        assert [m.text for m in first + second] == [f"text {i}" for i in range(5)]
        assert end is None
        assert [m.text for m in store.page(ADA, 10, topic="a")[0]] == ["text 1", "text 3"]
        assert store.get(ADA, [memories[5].memory_id]) == []
        assert store.expired_ids(datetime.now(UTC), 10) == [("acme", memories[5].memory_id)]
        hits = store.search(ADA, dense=np.eye(7, 384, dtype=np.float32)[5], limit=10)
        assert memories[5].memory_id not in {h.memory.memory_id for h in hits}


def test_sse_parser_and_error_mapping() -> None:
    parser = _SseParser()
    lines = [": heartbeat", "id: 1:4", 'data: {"a": 1}', ""]
    assert [parser.feed(line) for line in lines][-1] == ("1:4", '{"a": 1}')

    def response(status: int, body: dict, **headers: str) -> httpx.Response:
        return httpx.Response(status, json=body, headers=headers)

    for status, kind in ((403, Forbidden), (404, NotFound), (422, InvalidRequest)):
        with pytest.raises(kind):
            _raise_for(response(status, {"error": "no"}))
    with pytest.raises(RateLimited) as limited:
        _raise_for(response(429, {"error": "slow down"}, **{"Retry-After": "3"}))
    assert limited.value.retry_after == 3.0
    assert isinstance(UUID(int=1), UUID)
