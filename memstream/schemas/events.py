"""The event envelope and one model per event kind (pydantic v2).

Every message on a memstream topic is one of these, as UTF-8 JSON. The envelope is the
same for all kinds; `kind` picks the payload model. `schema_version` is `MAJOR.MINOR`:
a worker accepts its own major version and sends any other to the dead-letter topic.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import uuid_utils
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    field_validator,
    model_validator,
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


# --- payloads ----------------------------------------------------------------------------------


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


class SubscriptionFilters(_Model):
    topics: list[str] = Field(default_factory=list)
    tags: list[Tag] = Field(default_factory=list)
    source_agents: list[Slug] = Field(default_factory=list)
    scopes: list[Scope] = Field(default_factory=list)


class SubscriptionPayload(_Model):
    """A standing query: deliver new memories like this one to me. `active=False` cancels it."""

    subscription_id: Slug
    query: Text | Annotated[list[float], Field(min_length=1, max_length=4096)]
    filters: SubscriptionFilters = Field(default_factory=SubscriptionFilters)
    min_score: float = Field(default=0.5, ge=-1.0, le=1.0)
    max_per_minute: int = Field(default=60, ge=1, le=100_000)
    expires_at: Timestamp | None = None
    include_own: bool = False
    active: bool = True
    teams: list[str] = Field(
        default_factory=list, description="the subscriber's teams, from its token (set by the API)"
    )
    clearance: list[str] = Field(
        default_factory=list, description="the subscriber's clearances, e.g. pii (set by the API)"
    )


class DeliveryPayload(_Model):
    """A memory pushed to one subscriber, already filtered for what it may see."""

    subscription_id: Slug
    recipient: Slug
    memory_id: UUID
    text: str
    score: float
    source_agent: Slug
    memory_scope: Scope
    tags: list[Tag] = Field(default_factory=list)
    topic: str | None = None
    redacted: bool = Field(default=False, description="PII was replaced for this recipient")
    expires_at: Timestamp | None = Field(
        default=None, description="the memory's expiry: the gateway drops it after that"
    )
    sealed: dict[str, Any] | None = Field(
        default=None,
        description="personal values sealed per subject (memstream.privacy.shred): on the "
        "topic the text holds placeholders only; the gateway reveals them to a reader with "
        "the pii clearance, so erasing a subject shreds its deliveries too",
    )


class ErasurePayload(_Model):
    """Right to be forgotten: remove everything about `subject_id`."""

    subject_id: Slug
    reason: str | None = Field(default=None, max_length=1024)


class DeletionPayload(_Model):
    """Memories removed by their author, an admin or their time to live. On the log, so a
    replay honours it: the worker records a tombstone per id, and a replay skips them."""

    memory_ids: list[UUID] = Field(min_length=1, max_length=1000)
    reason: Literal["deleted", "expired", "imported_over"] = "deleted"


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


MAX_OBSERVATION_DIM = 1024
MAX_ACTIONS = 256
DISTRIBUTION_TOLERANCE = 1e-3
"""How far an experience's action distribution may sum from 1 (float32 rounding)."""


class ExperiencePayload(_Model):
    """One step of a learning agent: what it saw, what it did, what it got, and the action
    distribution its policy gave (the teacher signal the distillation processor fits)."""

    episode: int = Field(ge=0, lt=_INT64, description="the agent's episode number")
    step: int = Field(ge=0, lt=2**31, description="the step within the episode, from 0")
    observation: list[float] = Field(min_length=1, max_length=MAX_OBSERVATION_DIM)
    action: int = Field(ge=0, description="index of the action taken")
    reward: float
    done: bool = Field(default=False, description="the episode ended with this step")
    distribution: list[float] = Field(
        min_length=2,
        max_length=MAX_ACTIONS,
        description="the policy's probability of each action; sums to 1",
    )

    @model_validator(mode="after")
    def _a_distribution(self) -> ExperiencePayload:
        if any(p < 0.0 or p > 1.0 for p in self.distribution):
            raise PydanticCustomError(
                "distribution_range", "distribution holds a probability outside [0, 1]"
            )
        total = math.fsum(self.distribution)
        if abs(total - 1.0) > DISTRIBUTION_TOLERANCE:
            raise PydanticCustomError(
                "distribution_sum",
                "distribution sums to {total}, not 1 (tolerance {tolerance})",
                {"total": round(total, 6), "tolerance": DISTRIBUTION_TOLERANCE},
            )
        if self.action >= len(self.distribution):
            raise PydanticCustomError(
                "action_range",
                "action {action} is not one of the distribution's {n} actions",
                {"action": self.action, "n": len(self.distribution)},
            )
        return self


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


# --- events ------------------------------------------------------------------------------------


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


class Observation(Event):
    kind: Literal["observation"] = "observation"
    payload: ObservationPayload


class Memory(Event):
    kind: Literal["memory"] = "memory"
    payload: MemoryPayload


class Feedback(Event):
    kind: Literal["feedback"] = "feedback"
    payload: FeedbackPayload


class Subscription(Event):
    kind: Literal["subscription"] = "subscription"
    payload: SubscriptionPayload


class Delivery(Event):
    kind: Literal["delivery"] = "delivery"
    payload: DeliveryPayload


class Erasure(Event):
    kind: Literal["erasure"] = "erasure"
    payload: ErasurePayload


class Deletion(Event):
    kind: Literal["deletion"] = "deletion"
    payload: DeletionPayload


class Indexed(Event):
    kind: Literal["indexed"] = "indexed"
    payload: IndexedPayload


class DeadLetter(Event):
    kind: Literal["dead_letter"] = "dead_letter"
    payload: DeadLetterPayload


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


class Experience(Event):
    kind: Literal["experience"] = "experience"
    payload: ExperiencePayload


EVENT_MODELS: dict[str, type[Event]] = {
    model.model_fields["kind"].default: model
    for model in (
        Observation,
        Memory,
        Feedback,
        Subscription,
        Delivery,
        Erasure,
        Deletion,
        Indexed,
        DeadLetter,
        VerificationReport,
        Links,
        Conflict,
        PooledState,
        Experience,
    )
}

AnyEvent = Annotated[
    Observation
    | Memory
    | Feedback
    | Subscription
    | Delivery
    | Erasure
    | Deletion
    | Indexed
    | DeadLetter
    | VerificationReport
    | Links
    | Conflict
    | PooledState
    | Experience,
    Field(discriminator="kind"),
]
any_event_adapter: TypeAdapter[AnyEvent] = TypeAdapter(AnyEvent)
