"""The event envelope, common to every kind, and the field types and ids events share.

Every message on a memstream topic is one of these, as UTF-8 JSON. The envelope is the
same for all kinds; `kind` picks the payload model. `schema_version` is `MAJOR.MINOR`:
a worker accepts its own major version and sends any other to the dead-letter topic.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

import uuid_utils
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)
from pydantic_core import PydanticCustomError

SCHEMA_VERSION = "1.1"
SCHEMA_MAJOR = 1

MAX_TEXT_CHARS = 262_144
"""Longest text in one event; the byte limit of the topic (1 MiB by default) also applies."""

Slug = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$")]
"""Tenant, agent, team and subject ids: printable, no spaces, at most 128 characters."""

Scope = Annotated[
    str, StringConstraints(pattern=r"^(private|tenant|public|team:[A-Za-z0-9_.-]{1,64})$")
]
"""Who may see a memory: `private` (its agent), `team:<name>`, `tenant` or `public`."""

Tag = Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT_CHARS)]

MAX_METADATA_DEPTH = 16
"""Deepest nesting of `metadata` (the object itself is level 1). Qdrant Edge keeps payloads
in its WAL and cannot reopen a shard holding one nested ~126 levels deep (FIELD-NOTES)."""
MAX_METADATA_BYTES = 65_536
"""Largest `metadata`, as compact JSON."""
MAX_METADATA_KEY_CHARS = 256
_INT64 = 2**63


def _metadata_error(kind: str, message: str, **context: Any) -> PydanticCustomError:
    return PydanticCustomError(f"metadata_{kind}", message, context)


def _check_json_value(value: Any, depth: int, path: str) -> None:
    """Raise unless `value` is plain JSON that every store and serializer can hold: at most
    MAX_METADATA_DEPTH levels, finite numbers in int64 range, strings that are valid UTF-8."""
    if depth > MAX_METADATA_DEPTH:
        raise _metadata_error(
            "too_deep",
            "metadata is nested more than {max} levels deep (at {path})",
            max=MAX_METADATA_DEPTH,
            path=path,
        )
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise _metadata_error("key", "metadata keys must be strings (at {path})", path=path)
            if len(key) > MAX_METADATA_KEY_CHARS:
                raise _metadata_error(
                    "key",
                    "metadata key longer than {max} characters (at {path})",
                    max=MAX_METADATA_KEY_CHARS,
                    path=path,
                )
            _check_string(key, path)
            _check_json_value(item, depth + 1, f"{path}.{key[:32]}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_json_value(item, depth + 1, f"{path}[{i}]")
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int):
        if not -_INT64 <= value < _INT64:
            raise _metadata_error(
                "number", "metadata integer out of the 64-bit range (at {path})", path=path
            )
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise _metadata_error(
                "number",
                "metadata numbers must be finite, not {value} (at {path})",
                value=repr(value),
                path=path,
            )
    elif isinstance(value, str):
        _check_string(value, path)
    else:
        raise _metadata_error(
            "type",
            "metadata holds a {type}, not a JSON value (at {path})",
            type=type(value).__name__,
            path=path,
        )


def _check_string(value: str, path: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _metadata_error(
            "unicode", "metadata string is not valid Unicode (lone surrogate at {path})", path=path
        ) from None


def _check_metadata(value: dict[str, Any]) -> dict[str, Any]:
    _check_json_value(value, 1, "metadata")
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    if size > MAX_METADATA_BYTES:
        raise _metadata_error(
            "too_large",
            "metadata is {size} bytes as JSON; at most {max} are allowed",
            size=size,
            max=MAX_METADATA_BYTES,
        )
    return value


Metadata = Annotated[dict[str, Any], AfterValidator(_check_metadata)]
"""Free-form JSON an agent attaches to an event, bounded so that nothing that passes
validation can break the store, its WAL, a search or a serializer."""


def new_event_id() -> UUID:
    """A fresh UUIDv7: time-ordered, so ids sort by creation time."""
    return UUID(str(uuid_utils.uuid7()))


def derived_id(tenant: str, source_id: str, ts: datetime) -> UUID:
    """A UUIDv7 fixed by (tenant, source id). Its time bits are the source id's own when
    that is a UUIDv7 (a memstream export: so a `supersedes` link maps to the same id as the
    row it names), else `ts` (the row's own time), so ids still sort by creation. The
    random bits hash tenant and source id."""
    digest = hashlib.sha256(f"{tenant}\x00{source_id}".encode()).digest()
    try:
        source = UUID(source_id)
        ms = source.int >> 80 if source.version == 7 else int(ts.timestamp() * 1000)
    except ValueError:
        ms = int(ts.timestamp() * 1000)
    ms = max(0, min(ms, 2**48 - 1))
    rand_a = int.from_bytes(digest[:2], "big") & 0x0FFF
    rand_b = int.from_bytes(digest[2:10], "big") & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    return UUID(int=value)


def utc_now() -> datetime:
    return datetime.now(UTC)


def _require_uuid7(value: UUID) -> UUID:
    if value.version != 7:
        raise PydanticCustomError(
            "uuid_version", "event_id must be a UUIDv7, got version {v}", {"v": value.version}
        )
    return value


def _require_aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise PydanticCustomError("timezone_required", "ts must carry a timezone (UTC preferred)")
    return value.astimezone(UTC)


EventId = Annotated[UUID, AfterValidator(_require_uuid7)]
Timestamp = Annotated[datetime, AfterValidator(_require_aware)]


class _Model(BaseModel):
    # no NaN or infinity in any float field: JSON cannot carry them and the store refuses them
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Event(_Model):
    """The envelope common to every kind."""

    schema_version: str = Field(default=SCHEMA_VERSION, pattern=r"^\d+\.\d+$")
    event_id: EventId = Field(default_factory=new_event_id)
    tenant: Slug
    agent_id: Slug
    ts: Timestamp = Field(default_factory=utc_now)
    scope: Scope = "tenant"
    kind: str
    payload: Any
    trace_id: str | None = Field(default=None, max_length=128)
    parent_ids: list[UUID] = Field(default_factory=list, max_length=64)

    @field_validator("schema_version")
    @classmethod
    def _known_major(cls, value: str) -> str:
        major = int(value.split(".", 1)[0])
        if major != SCHEMA_MAJOR:
            raise PydanticCustomError(
                "schema_version_unsupported",
                "schema_version {got} has major {major}; this worker reads major {ours}",
                {"got": value, "major": major, "ours": SCHEMA_MAJOR},
            )
        return value

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()
