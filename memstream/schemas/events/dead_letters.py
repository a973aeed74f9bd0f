"""Events the pipeline rejected, kept with why and where they came from."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
)

from memstream.schemas.events.envelope import Event, _Model


class DeadLetterPayload(_Model):
    """An event the pipeline rejected, with why and where it came from; nothing is dropped."""

    reason: str = Field(description="machine-readable code, e.g. not_json, invalid_fields")
    detail: str = Field(description="human-readable explanation naming the offending field")
    stage: str = Field(description="the processor that rejected it")
    origin_topic: str
    origin_partition: int
    origin_offset: int
    original_key_b64: str | None = None
    original_value_b64: str | None = None
    original_size: int
    original_sha256: str
    truncated: bool = False


class DeadLetter(Event):
    kind: Literal["dead_letter"] = "dead_letter"
    payload: DeadLetterPayload
