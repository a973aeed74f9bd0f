"""Memories and what acts on them: observations, memories (and their facts), feedback, erasures and deletions."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from pydantic import (
    Field,
    StringConstraints,
)

from memstream.schemas.events.envelope import Event, Metadata, Slug, Tag, Text, Timestamp, _Model


class ObservationPayload(_Model):
    """Something an agent saw or did; raw material that may become memories."""

    text: Text
    topic: str | None = Field(default=None, max_length=128)
    tags: list[Tag] = Field(default_factory=list, max_length=32)
    metadata: Metadata = Field(default_factory=dict)


class FactPayload(_Model):
    """A memory's claim about one attribute of one subject: a newer memory with the same
    subject and attribute and another value supersedes it (memstream.retrieval.facts)."""

    subject: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    attribute: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    value: Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class MemoryPayload(_Model):
    """A memory an agent wants to share with the agents allowed to see it.

    `context` is text around the memory that helps find it but is not part of it (the
    preceding message of a conversation, the session date): it is indexed lexically,
    never embedded or delivered as the memory itself. `supersedes` names older memories
    this one replaces; they stay stored, with their validity closed (bi-temporal)."""

    text: Text
    context: str | None = Field(default=None, max_length=8192)
    supersedes: list[UUID] = Field(default_factory=list, max_length=64)
    topic: str | None = Field(default=None, max_length=128)
    tags: list[Tag] = Field(default_factory=list, max_length=32)
    metadata: Metadata = Field(default_factory=dict)
    valid_from: Timestamp | None = None
    valid_to: Timestamp | None = None
    fact: FactPayload | None = Field(
        default=None,
        description="the subject, attribute and value this memory states; when unset the "
        "pipeline reads it from sentences like 'the <attribute> of <subject> is <value>'",
    )
    expires_at: Timestamp | None = Field(
        default=None,
        description="when the memory expires: it leaves search and deliveries at once, and "
        "a deletion event on the log removes it (set from `ttl` by the API)",
    )


class FeedbackPayload(_Model):
    """How useful a memory turned out to be for the agent that used it."""

    memory_id: UUID
    outcome: Literal["used", "helped", "wrong", "ignored"]
    score: float | None = Field(default=None, ge=0.0, le=1.0)
    note: str | None = Field(default=None, max_length=2048)


class ErasurePayload(_Model):
    """Right to be forgotten: remove everything about `subject_id`."""

    subject_id: Slug
    reason: str | None = Field(default=None, max_length=1024)


class DeletionPayload(_Model):
    """Memories removed by their author, an admin or their time to live. On the log, so a
    replay honours it: the worker records a tombstone per id, and a replay skips them."""

    memory_ids: list[UUID] = Field(min_length=1, max_length=1000)
    reason: Literal["deleted", "expired", "imported_over"] = "deleted"


class Observation(Event):
    kind: Literal["observation"] = "observation"
    payload: ObservationPayload


class Memory(Event):
    kind: Literal["memory"] = "memory"
    payload: MemoryPayload


class Feedback(Event):
    kind: Literal["feedback"] = "feedback"
    payload: FeedbackPayload


class Erasure(Event):
    kind: Literal["erasure"] = "erasure"
    payload: ErasurePayload


class Deletion(Event):
    kind: Literal["deletion"] = "deletion"
    payload: DeletionPayload
