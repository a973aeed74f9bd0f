"""What the HTTP SDK's calls answer: the API's answer models, under the SDK's names."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel

from memstream.schemas.answers import MemoryView, SearchResult, SubscriptionView

Outcome = Literal["used", "helped", "wrong", "ignored"]


# --- results -----------------------------------------------------------------------------------


# the API's own answer models (schemas/answers.py), under the names the SDK gives them
SearchHit = SearchResult
MemoryRecord = MemoryView
SubscriptionInfo = SubscriptionView


class DeliveredMemory(BaseModel):
    """One pushed memory: `cursor` resumes after it."""

    cursor: str
    subscription_id: str
    memory_id: UUID
    text: str
    score: float
    source_agent: str
    memory_scope: str
    tags: list[str] = []
    topic: str | None = None
    redacted: bool = False

    @classmethod
    def from_api(cls, cursor: str, data: dict[str, Any]) -> DeliveredMemory:
        payload = data.get("payload", data)
        fields = {k: payload[k] for k in cls.model_fields if k in payload and k != "cursor"}
        return cls(cursor=cursor, **fields)


class ImportSummary(BaseModel):
    accepted: int
    dead_lettered: int
    rows: list[dict[str, Any]]
