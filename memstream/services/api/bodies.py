"""Request and answer bodies of the HTTP API (extra fields are refused)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from memstream.schemas.events import FactPayload, Metadata, SubscriptionFilters, Tag, Text
from memstream.schemas.events import Scope as ScopeStr
from memstream.schemas.topics import MAX_EVENT_BYTES


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


MAX_TTL_S = 10 * 365 * 86400


class MemoryIn(_Body):
    text: Text
    scope: ScopeStr = "tenant"
    tags: list[Tag] = Field(default_factory=list, max_length=32)
    metadata: Metadata = Field(default_factory=dict)
    topic: str | None = Field(default=None, max_length=128)
    context: str | None = Field(default=None, max_length=8192)
    supersedes: list[UUID] = Field(default_factory=list, max_length=64)
    fact: FactPayload | None = Field(
        default=None,
        description="the subject, attribute and value it states: a later memory with another "
        "value for them supersedes it (read from the text when unset)",
    )
    ttl: float | None = Field(
        default=None,
        gt=0,
        le=MAX_TTL_S,
        description="seconds the memory lives: then it leaves search and deliveries, and a "
        "deletion event removes it",
    )


class TaxonomyIO(_Body):
    tags: dict[str, list[str]] = Field(description="tag -> a few example texts")


class ImportRow(_Body):
    line: int = Field(ge=1)
    data: str = Field(max_length=MAX_EVENT_BYTES)
    size: int | None = Field(
        default=None,
        ge=0,
        description="set by a client that sent only the start of a row "
        "too large for one request: its real size in bytes (the row is dead-lettered)",
    )


class ImportIn(_Body):
    rows: list[ImportRow] = Field(min_length=1, max_length=1000)
    source: str = Field(default="import", max_length=256)
    default_scope: ScopeStr = "tenant"


class ImportOutcome(BaseModel):
    line: int
    status: Literal["accepted", "dead_letter"]
    memory_id: UUID | None = None
    reason: str | None = None
    detail: str | None = None


class ImportResult(BaseModel):
    accepted: int
    dead_lettered: int
    rows: list[ImportOutcome]


class ObservationIn(_Body):
    text: Text
    scope: ScopeStr = "private"
    tags: list[Tag] = Field(default_factory=list, max_length=32)
    metadata: Metadata = Field(default_factory=dict)
    topic: str | None = Field(default=None, max_length=128)


class FeedbackIn(_Body):
    memory_id: UUID
    outcome: Literal["used", "helped", "wrong", "ignored"]
    score: float | None = Field(default=None, ge=0.0, le=1.0)
    note: str | None = Field(default=None, max_length=2048)


class SubscriptionIn(_Body):
    query: Text
    min_score: float = Field(default=0.5, ge=-1.0, le=1.0)
    filters: SubscriptionFilters = Field(default_factory=SubscriptionFilters)
    max_per_minute: int = Field(default=60, ge=1, le=100_000)
    expires_at: datetime | None = None
    include_own: bool = False


class ErasureIn(_Body):
    values: list[Annotated[str, Field(min_length=1, max_length=1024)]] = Field(
        min_length=1, max_length=64, description="personal values: a name, an e-mail, ..."
    )


class Accepted(BaseModel):
    event_id: UUID


class CachedResultIn(_Body):
    task: str = Field(min_length=1, max_length=4096, description="the task, as the agent put it")
    result: str = Field(max_length=65536)
    verification: Literal["verified", "unverified", "failed"] = "unverified"
    scope: ScopeStr = "tenant"


class Reputation(BaseModel):
    tenant: str
    agent_id: str
    reputation: float = Field(description="0-1; 0.5 where no trusted rater has rated it")
    trust: float = Field(description="its weight as a rater, relative to the most trusted")
    ratings_received: int = Field(description="feedback events on its memories, by others")
    weighted_good: float
    weighted_bad: float
    seeded: bool = Field(description="a rater the tenant trusts a priori")


class LedgerBalance(BaseModel):
    agent_id: str
    balance: float
    earned: float
    spent: float
    entries: int


class LedgerView(BaseModel):
    tenant: str
    balances: list[LedgerBalance]


class CacheLookupIn(_Body):
    task: str = Field(min_length=1, max_length=4096)


class SubscriptionCreated(BaseModel):
    subscription_id: str


class TokenView(BaseModel):
    token_id: str
    tenant: str
    agent_id: str
    teams: list[str]
    clearance: list[str]
    created_at: datetime
    revoked: bool
    expires_at: datetime | None
    scopes: list[str]


# --- identity ----------------------------------------------------------------------------------
