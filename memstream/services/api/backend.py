"""What the HTTP API needs from the worker behind it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from memstream.retrieval.ranking import ScoredMemory
from memstream.schemas.answers import ModelVersion
from memstream.schemas.events import Event
from memstream.store.base import Caller

Publish = Callable[[str, Event, str], Awaitable[None]]
"""Puts one event on a topic under a key (size-checked)."""


class Backend(Protocol):
    """What the API needs from the process it runs in (the worker, in the embedded stack)."""

    bootstrap: str

    async def publish(self, topic: str, event: Event, key: str) -> None: ...

    async def search(
        self,
        caller: Caller,
        query: str,
        k: int,
        topics: list[str] | None = None,
        tags: list[str] | None = None,
        as_of: datetime | None = None,
    ) -> list[ScoredMemory]: ...

    async def page(
        self, caller: Caller, limit: int, start: UUID | None, **narrow: Any
    ) -> tuple[list[Any], UUID | None]: ...

    async def history(self, caller: Caller, memory_id: UUID) -> list[Any]: ...

    async def topics(self, caller: Caller) -> dict[str, int]: ...

    async def delete(self, tenant: str, agent_id: str, ids: list[UUID], reason: str) -> UUID: ...

    def subscriptions_of(self, caller: Caller) -> list[dict[str, Any]]: ...

    async def dead_letter_row(
        self, caller: Caller, source: str, line: int, data: str, reason: str, detail: str
    ) -> None: ...

    async def stats(self, caller: Caller) -> dict[str, Any]: ...

    def subscription_owner(self, subscription_id: str) -> tuple[str, str] | None: ...

    async def private_counts(
        self, caller: Caller, field: str, epsilon: float
    ) -> dict[str, int]: ...

    def visible_text(self, memory: Any, caller: Caller) -> str: ...

    async def visible(self, caller: Caller, memory_id: UUID) -> Any | None: ...

    def reveal(self, sealed: dict[str, Any], tenant: str, caller: Caller) -> tuple[str, bool]: ...

    async def erase(self, tenant: str, values: list[str]) -> list[dict[str, str]]: ...

    async def cache_publish(
        self, caller: Caller, task: str, result: str, verification: str, scope: str
    ) -> Any: ...

    async def cache_lookup(self, caller: Caller, task: str) -> Any: ...

    async def standing(self, caller: Caller, agent_id: str) -> Any: ...

    def pooled_state(self, caller: Caller, team: str) -> Any: ...

    def student(
        self, caller: Caller, name: str, version: int | None, include_model: bool
    ) -> ModelVersion | None: ...

    async def taxonomy(self, caller: Caller, taxonomy: dict[str, list[str]] | None) -> Any: ...

    async def balances(self, caller: Caller, everyone: bool) -> list[Any] | None: ...
