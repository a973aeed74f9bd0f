from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from pydantic import ValidationError

from memstream.schemas import (
    EVENT_MODELS_ALL,
    Memory,
    any_event_adapter,
    new_event_id,
)
from memstream.schemas.export import render_schemas, stale_schemas

ROOT = Path(__file__).resolve().parents[2]


def test_event_ids_are_uuid7_and_time_ordered() -> None:
    ids = [new_event_id() for _ in range(50)]
    assert all(i.version == 7 for i in ids)
    assert ids == sorted(ids, key=lambda u: u.bytes[:6])


def test_memory_round_trips_through_json() -> None:
    memory = Memory(
        tenant="acme", agent_id="a1", scope="team:ops", payload={"text": "hi", "tags": ["x"]}
    )
    again = any_event_adapter.validate_json(memory.to_json())
    assert again == memory
    assert isinstance(again, Memory)


@pytest.mark.parametrize(
    "change, field",
    [
        ({"event_id": str(uuid4())}, "event_id"),  # v4, not v7
        ({"ts": "2026-01-01T00:00:00"}, "ts"),  # naive time
        ({"scope": "everyone"}, "scope"),
        ({"tenant": "has space"}, "tenant"),
        ({"schema_version": "2.0"}, "schema_version"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_envelope_rejects_bad_fields_naming_them(change: dict, field: str) -> None:
    data = json.loads(Memory(tenant="acme", agent_id="a1", payload={"text": "hi"}).to_json())
    data.update(change)
    with pytest.raises(ValidationError) as info:
        Memory.model_validate(data)
    assert field in str(info.value)


def test_ts_is_normalised_to_utc() -> None:
    data = json.loads(Memory(tenant="acme", agent_id="a1", payload={"text": "hi"}).to_json())
    data["ts"] = "2026-01-01T02:00:00+02:00"
    memory = Memory.model_validate(data)
    assert memory.ts == datetime.fromisoformat("2026-01-01T00:00:00+00:00")
    assert memory.ts.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


def test_every_kind_has_a_model_and_a_schema_file() -> None:
    assert set(EVENT_MODELS_ALL) == {
        "observation",
        "memory",
        "feedback",
        "subscription",
        "delivery",
        "erasure",
        "deletion",
        "indexed",
        "dead_letter",
        "verification",
        "links",
        "conflict",
        "pooled_state",
        "experience",
    }
    assert set(render_schemas()) == {f"{kind}.schema.json" for kind in EVENT_MODELS_ALL}


def test_committed_json_schemas_are_up_to_date() -> None:
    stale = stale_schemas(ROOT / "schemas")
    assert not stale, f"stale schema files {stale}: run `memstream schemas export`"


def test_stale_schema_is_detected(tmp_path: Path) -> None:
    from memstream.schemas.export import export_schemas

    export_schemas(tmp_path)
    assert stale_schemas(tmp_path) == []
    (tmp_path / "memory.schema.json").write_text("{}")
    (tmp_path / "gone.schema.json").write_text("{}")
    assert stale_schemas(tmp_path) == ["memory.schema.json", "gone.schema.json"]


def test_feedback_needs_a_known_outcome() -> None:
    from memstream.schemas import Feedback

    with pytest.raises(ValidationError, match="outcome"):
        Feedback(tenant="t", agent_id="a", payload={"memory_id": UUID(int=1), "outcome": "meh"})
