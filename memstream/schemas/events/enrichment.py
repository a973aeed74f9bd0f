"""What the pipeline derives from memories: indexed memories, links, verification reports, conflicts, team pooled states."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from pydantic import (
    Field,
)

from memstream.schemas.events.envelope import Event, Metadata, Tag, Timestamp, _Model
from memstream.schemas.events.memories import FactPayload


class VerdictPayload(_Model):
    """One checked claim (memstream.verification)."""

    claim: str
    status: Literal["verified", "refuted"]
    verifier: str
    detail: str = ""


class TagScore(_Model):
    tag: str
    score: float = Field(ge=0.0, le=1.0)


class LinkPayload(_Model):
    memory_id: UUID
    score: float = Field(description="standard deviations above the typical candidate")


class IndexedPayload(_Model):
    """What the pipeline stored for one memory or observation: the source, enriched.

    The envelope keeps the source event's id (the memory id), tenant, agent, scope and time,
    so a re-processed event produces the same record and the same store point."""

    source_kind: Literal["memory", "observation"]
    text: str
    context: str | None = None
    supersedes: list[UUID] = Field(default_factory=list)
    topic: str | None = None
    tags: list[Tag] = Field(default_factory=list)
    metadata: Metadata = Field(default_factory=dict)
    valid_from: Timestamp | None = None
    valid_to: Timestamp | None = None
    expires_at: Timestamp | None = None
    vector_codec: str = Field(description="how vector_b64 is encoded, e.g. rlm4-384-v1")
    vector_b64: str = Field(description="the compressed embedding, base64")
    usefulness: float = Field(ge=0.0, le=1.0, description="predicted usefulness")
    novelty: float = Field(ge=0.0, le=1.0, description="1 - max cosine to the tenant's pool")
    features: list[float] = Field(description="valuation features, for the feedback learner")
    duplicate_of: UUID | None = Field(
        default=None, description="older memory of the same tenant and scope this one repeats"
    )
    models: dict[str, str] = Field(description="model versions: embedding, valuation, codec")
    sealed: dict[str, Any] | None = Field(
        default=None, description="personal values sealed per subject (memstream.privacy.shred)"
    )
    subjects: list[str] = Field(default_factory=list, description="subject ids of sealed values")
    pii_types: list[str] = Field(default_factory=list, description="personal data types found")
    pii_action: str | None = Field(default=None, description="policy applied: seal, redact, ...")
    verification: Literal["verified", "refuted"] | None = Field(
        default=None,
        description="the verifiers' outcome: refuted when a checked claim is false (never "
        "pushed to subscribers); None when nothing in it was checkable",
    )
    verdicts: list[VerdictPayload] = Field(default_factory=list)
    fact: FactPayload | None = None
    auto_tags: list[TagScore] = Field(
        default_factory=list, description="tags predicted from the tenant's taxonomy"
    )
    links: list[LinkPayload] = Field(default_factory=list, description="related memories")


class LinksPayload(_Model):
    """A memory's links to related memories, published on `memstream.links`."""

    memory_id: UUID
    links: list[LinkPayload]
    auto_tags: list[TagScore] = Field(default_factory=list)


class VerificationPayload(_Model):
    """The verifiers' report on one memory, published on `memstream.verdicts`."""

    memory_id: UUID
    status: Literal["verified", "refuted"]
    verdicts: list[VerdictPayload]


class ConflictPayload(_Model):
    """Two memories state different values for one subject's attribute: the newer (by valid
    time) supersedes the older, which stays queryable as of its time."""

    subject: str
    attribute: str
    superseded_id: UUID
    superseded_value: str
    superseding_id: UUID
    superseding_value: str
    changed_at: Timestamp = Field(description="valid time of the superseding memory")


class PooledStatePayload(_Model):
    """A team's pooled memory state (memstream.models.team_state), after an update."""

    team: str
    members: list[str] = Field(description="agent ids, in the order of `influence`")
    influence: list[float] = Field(description="mean attention weight of each member")
    vector_b64: str = Field(description="the pooled state, float32 little-endian, base64")
    dim: int
    updated_by: UUID = Field(description="the memory whose arrival updated the state")
    model: str


class Indexed(Event):
    kind: Literal["indexed"] = "indexed"
    payload: IndexedPayload


class VerificationReport(Event):
    kind: Literal["verification"] = "verification"
    payload: VerificationPayload


class Links(Event):
    kind: Literal["links"] = "links"
    payload: LinksPayload


class Conflict(Event):
    kind: Literal["conflict"] = "conflict"
    payload: ConflictPayload


class PooledState(Event):
    kind: Literal["pooled_state"] = "pooled_state"
    payload: PooledStatePayload
