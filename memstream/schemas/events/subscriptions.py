"""Standing queries and the memories pushed to their subscribers."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    Field,
)

from memstream.schemas.events.envelope import Event, Scope, Slug, Tag, Text, Timestamp, _Model


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


class Subscription(Event):
    kind: Literal["subscription"] = "subscription"
    payload: SubscriptionPayload


class Delivery(Event):
    kind: Literal["delivery"] = "delivery"
    payload: DeliveryPayload
