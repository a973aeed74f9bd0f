"""Every event kind by its `kind`, and the adapter that parses any of them."""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    Field,
    TypeAdapter,
)

from memstream.schemas.events.dead_letters import DeadLetter
from memstream.schemas.events.enrichment import (
    Conflict,
    Indexed,
    Links,
    PooledState,
    VerificationReport,
)
from memstream.schemas.events.envelope import Event
from memstream.schemas.events.experience import Experience
from memstream.schemas.events.memories import Deletion, Erasure, Feedback, Memory, Observation
from memstream.schemas.events.subscriptions import Delivery, Subscription

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
