from __future__ import annotations

import base64
import hashlib
import json

import pytest

from memstream.schemas import SCHEMA_VERSION, Memory, Observation
from memstream.schemas.topics import MEMORIES, OBSERVATIONS
from memstream.streams.validate import (
    DEAD_LETTER_KEEP_BYTES,
    REASONS,
    SYSTEM_TENANT,
    InvalidEvent,
    dead_letter,
    validate_event,
)

VALID = Memory(tenant="acme", agent_id="a1", payload={"text": "hello"}).to_json()
CURRENT = f'"{SCHEMA_VERSION}"'.encode()


def _reason(value: bytes | None, topic: str = MEMORIES.name, limit: int = 1_048_576) -> str:
    with pytest.raises(InvalidEvent) as info:
        validate_event(value, topic, limit)
    assert info.value.reason in REASONS
    return info.value.reason


def test_valid_memory_passes() -> None:
    event = validate_event(VALID, MEMORIES.name)
    assert event.kind == "memory"


def test_valid_observation_passes_on_its_topic() -> None:
    value = Observation(tenant="acme", agent_id="a1", payload={"text": "saw"}).to_json()
    assert validate_event(value, OBSERVATIONS.name).kind == "observation"
    assert _reason(value, MEMORIES.name) == "wrong_kind"


@pytest.mark.parametrize(
    "value, reason",
    [
        (None, "empty"),
        (b"", "empty"),
        (b"\xff\xfe\x00", "invalid_utf8"),
        (b'{"tenant": "caf\xe9"}', "invalid_utf8"),
        (b"{nope", "not_json"),
        (b"[1]", "not_object"),
        (b'"text"', "not_object"),
        (b"{}", "invalid_fields"),
        (VALID.replace(CURRENT, b'"7.3"'), "unsupported_schema_version"),
        (VALID.replace(b'"hello"', b"12"), "invalid_fields"),
    ],
)
def test_each_kind_of_bad_input_has_its_reason(value: bytes | None, reason: str) -> None:
    assert _reason(value) == reason


def test_oversize_is_checked_before_parsing() -> None:
    assert _reason(VALID, limit=len(VALID) - 1) == "oversize"
    assert validate_event(VALID, MEMORIES.name, len(VALID)).kind == "memory"


def test_minor_version_bump_is_accepted() -> None:
    assert validate_event(VALID.replace(CURRENT, b'"1.9"'), MEMORIES.name).kind == "memory"


def test_detail_names_the_missing_field() -> None:
    data = json.loads(VALID)
    del data["payload"]["text"]
    with pytest.raises(InvalidEvent) as info:
        validate_event(json.dumps(data).encode(), MEMORIES.name)
    assert "payload.text" in info.value.detail


def test_dead_letter_keeps_bytes_origin_and_tenant() -> None:
    bad = VALID.replace(b'"hello"', b"12")
    letter = dead_letter(
        reason="invalid_fields",
        detail="x",
        stage="validate",
        topic=MEMORIES.name,
        partition=2,
        offset=41,
        key=b"a1",
        value=bad,
    )
    p = letter.payload
    assert letter.tenant == "acme"
    assert [str(i) for i in letter.parent_ids] == [json.loads(bad)["event_id"]]
    assert base64.b64decode(p.original_value_b64 or "") == bad
    assert base64.b64decode(p.original_key_b64 or "") == b"a1"
    assert (p.origin_topic, p.origin_partition, p.origin_offset) == (MEMORIES.name, 2, 41)
    assert p.original_sha256 == hashlib.sha256(bad).hexdigest()
    assert not p.truncated


def test_dead_letter_of_garbage_goes_to_system_tenant_and_huge_values_are_cut() -> None:
    junk = b"\x00" * (DEAD_LETTER_KEEP_BYTES + 10)
    letter = dead_letter(
        reason="oversize",
        detail="x",
        stage="validate",
        topic=MEMORIES.name,
        partition=0,
        offset=0,
        key=None,
        value=junk,
    )
    assert letter.tenant == SYSTEM_TENANT
    assert letter.parent_ids == []
    assert letter.payload.truncated
    assert letter.payload.original_size == len(junk)
    assert len(base64.b64decode(letter.payload.original_value_b64 or "")) == DEAD_LETTER_KEEP_BYTES
    assert letter.payload.original_key_b64 is None


def test_null_value_dead_letter_has_no_value() -> None:
    letter = dead_letter(
        reason="empty",
        detail="x",
        stage="validate",
        topic=MEMORIES.name,
        partition=0,
        offset=0,
        key=b"k",
        value=None,
    )
    assert letter.payload.original_value_b64 is None
    assert letter.payload.original_size == 0
