"""The validate stage: raw Kafka bytes in, a typed event or a reasoned rejection out.

Pure functions with no broker, so every rejection path is unit-tested; the Faust agent in
`memstream.streams.app` only moves bytes between topics around them.
"""

from __future__ import annotations

import base64
import hashlib
from uuid import UUID

from pydantic import TypeAdapter, ValidationError
from pydantic_core import from_json

from memstream.schemas.events import (
    EVENT_MODELS,
    DeadLetter,
    DeadLetterPayload,
    Event,
    Slug,
)
from memstream.schemas.topics import MAX_EVENT_BYTES, VALIDATED_KINDS

SYSTEM_TENANT = "memstream-system"
"""Tenant of dead letters whose own tenant cannot be read."""

DEAD_LETTER_KEEP_BYTES = 4 * 1_048_576
"""Original bytes kept in a dead letter; longer values are cut and marked `truncated`."""

REASONS = (
    "empty",
    "oversize",
    "invalid_utf8",
    "not_json",
    "not_object",
    "unsupported_schema_version",
    "wrong_kind",
    "invalid_fields",
    "processor_error",
    "store_error",
    "pii_dropped",
    "wrong_shape",
)
"""Every `reason` code a dead letter can carry."""


class InvalidEvent(ValueError):
    """Why an event was rejected: a code from REASONS and a message naming the field."""

    def __init__(self, reason: str, detail: str, stage: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.stage = stage  # where it was rejected, when not the stage that reports it

    def __reduce__(self) -> tuple[type[InvalidEvent], tuple[str, str, str | None]]:
        """Picklable as itself: the privacy stage may run in another process."""
        return (InvalidEvent, (self.reason, self.detail, self.stage))


def _describe(err: ValidationError, limit: int = 5) -> str:
    parts = []
    for item in err.errors(include_url=False)[:limit]:
        loc = ".".join(str(p) for p in item["loc"]) or "<root>"
        parts.append(f"{loc}: {item['msg']}")
    more = err.error_count() - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def validate_event(value: bytes | None, topic: str, max_bytes: int = MAX_EVENT_BYTES) -> Event:
    """Parse and check one raw value from `topic`; raise InvalidEvent with the reason."""
    if not value:
        raise InvalidEvent("empty", "the message has no value")
    if len(value) > max_bytes:
        raise InvalidEvent("oversize", f"{len(value)} bytes is over the limit of {max_bytes}")
    kind = VALIDATED_KINDS.get(topic)
    if kind is None:
        raise InvalidEvent("wrong_kind", f"topic {topic} is not a pipeline input")
    try:
        return EVENT_MODELS[kind].model_validate_json(value)
    except ValidationError as err:
        raise _classify(err, value, kind) from None


def _classify(err: ValidationError, value: bytes, kind: str) -> InvalidEvent:
    types = {item["type"] for item in err.errors(include_url=False)}
    if "json_invalid" in types:
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as exc:
            return InvalidEvent("invalid_utf8", f"not UTF-8: {exc.reason} at byte {exc.start}")
        return InvalidEvent("not_json", _describe(err))
    if "model_type" in types and any(not item["loc"] for item in err.errors()):
        return InvalidEvent("not_object", "the value is JSON but not an object")
    if "schema_version_unsupported" in types:
        return InvalidEvent("unsupported_schema_version", _describe(err))
    if any(item["loc"] == ("kind",) for item in err.errors()):
        return InvalidEvent("wrong_kind", f"this topic carries kind {kind!r}; {_describe(err)}")
    return InvalidEvent("invalid_fields", _describe(err))


_slug = TypeAdapter(Slug)
_uuid = TypeAdapter(UUID)


def _readable_fields(value: bytes | None) -> tuple[str, list[UUID]]:
    """(tenant, [event id]) of a rejected value, where it is readable and well formed."""
    tenant, parents = SYSTEM_TENANT, []
    try:
        # jiter, not json.loads: bounded recursion, so a value nested 100k levels deep is
        # unreadable here instead of a RecursionError that would sink the batch
        data = from_json(value or b"")
    except ValueError:
        return tenant, parents
    if isinstance(data, dict):
        try:
            tenant = _slug.validate_python(data.get("tenant"))
        except ValidationError:
            pass
        try:
            parents = [_uuid.validate_python(data.get("event_id"))]
        except ValidationError:
            pass
    return tenant, parents


def dead_letter(
    *,
    reason: str,
    detail: str,
    stage: str,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
) -> DeadLetter:
    """The dead-letter event for a rejected message, carrying its bytes (base64) and origin.

    Its `tenant` and `parent_ids` are the original's where they can be read, so a tenant
    can find its own rejects and trace them to the event id it published.
    """
    from memstream.privacy.secrets import scrub_bytes

    raw = value or b""
    # the original is kept for re-drive, but never a secret in it (keys, tokens, passwords)
    kept = scrub_bytes(raw[:DEAD_LETTER_KEEP_BYTES]) or b""
    readable = len(raw) <= DEAD_LETTER_KEEP_BYTES
    try:
        tenant, parents = _readable_fields(value) if readable else (SYSTEM_TENANT, [])
    except Exception:  # never let the reader of a bad value sink the rest of its batch
        tenant, parents = SYSTEM_TENANT, []
    return DeadLetter(
        tenant=tenant,
        agent_id=stage,
        scope="tenant",
        parent_ids=parents,
        payload=DeadLetterPayload(
            reason=reason,
            detail=detail,
            stage=stage,
            origin_topic=topic,
            origin_partition=partition,
            origin_offset=offset,
            original_key_b64=base64.b64encode(key).decode() if key is not None else None,
            original_value_b64=base64.b64encode(kept).decode() if value is not None else None,
            original_size=len(raw),
            original_sha256=hashlib.sha256(raw).hexdigest(),
            truncated=len(raw) > DEAD_LETTER_KEEP_BYTES,
        ),
    )
