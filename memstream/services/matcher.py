"""Standing subscriptions and the reverse search: which subscriptions does a new memory match?

Subscriptions are rebuilt from `memstream.subscriptions` (the log is the source of truth;
a later event for the same id replaces or, with `active=false`, removes it). They are held
per tenant as a matrix of unit query vectors, so matching one memory is one matrix-vector
product over its tenant's subscriptions (10k x 384: about 0.1 ms), then the exact filters
and the per-subscriber privacy filter for those over their threshold only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from memstream.schemas.events import Delivery, DeliveryPayload, Indexed, Subscription
from memstream.store.base import Caller

Redactor = Callable[[Indexed, Caller], tuple[str, bool]]
"""(text the recipient may see, whether anything was redacted)."""


def plain_text(record: Indexed, caller: Caller) -> tuple[str, bool]:
    return record.payload.text, False


@dataclass
class _Entry:
    subscription: Subscription
    vector: np.ndarray
    caller: Caller
    window_start: float = 0.0
    sent_in_window: int = 0


@dataclass
class _TenantIndex:
    entries: list[_Entry] = field(default_factory=list)
    matrix: np.ndarray | None = None
    min_scores: np.ndarray | None = None
    dirty: bool = False

    def rebuild(self) -> None:
        """Lazily, on the next match: loading N subscriptions then costs one stack, not N."""
        if self.dirty:
            self.matrix = np.vstack([e.vector for e in self.entries]) if self.entries else None
            self.min_scores = np.array([e.subscription.payload.min_score for e in self.entries])
            self.dirty = False


class SubscriptionIndex:
    """Active subscriptions by tenant; `match` turns an indexed memory into deliveries."""

    def __init__(self, dim: int = 384, clock: Callable[[], float] = time.monotonic) -> None:
        self.dim = dim
        self._clock = clock
        self._tenants: dict[str, _TenantIndex] = {}
        self._where: dict[str, str] = {}  # subscription id -> tenant

    def __len__(self) -> int:
        return len(self._where)

    def upsert(self, subscription: Subscription, vector: np.ndarray) -> None:
        """Add or replace; `active=False` removes. `vector` is the query's unit embedding."""
        sub_id = subscription.payload.subscription_id
        self.remove(sub_id)
        if not subscription.payload.active:
            return
        p = subscription.payload
        caller = Caller(
            subscription.tenant,
            subscription.agent_id,
            frozenset(p.teams),
            frozenset(p.clearance),
        )
        index = self._tenants.setdefault(subscription.tenant, _TenantIndex())
        index.entries.append(_Entry(subscription, np.asarray(vector, dtype=np.float32), caller))
        index.dirty = True
        self._where[sub_id] = subscription.tenant

    def remove(self, subscription_id: str) -> bool:
        tenant = self._where.pop(subscription_id, None)
        if tenant is None:
            return False
        index = self._tenants[tenant]
        index.entries = [
            e for e in index.entries if e.subscription.payload.subscription_id != subscription_id
        ]
        index.dirty = True
        return True

    def match(
        self,
        record: Indexed,
        vector: np.ndarray,
        now: datetime | None = None,
        redact: Redactor = plain_text,
    ) -> list[Delivery]:
        """Deliveries of `record` to every subscription it matches and whose subscriber may
        see it: same tenant, visible scope, not its own memory unless asked, filters, score
        at least `min_score`, not expired, under `max_per_minute`."""
        index = self._tenants.get(record.tenant)
        if index is None:
            return []
        index.rebuild()
        if index.matrix is None or index.min_scores is None:
            return []
        now = now or datetime.now(UTC)
        scores = index.matrix @ np.asarray(vector, dtype=np.float32)
        payload = record.payload
        out = []
        # only subscriptions over their threshold reach the per-subscription checks
        for position in np.flatnonzero(scores >= index.min_scores):
            entry, score = index.entries[position], scores[position]
            sub = entry.subscription.payload
            if sub.expires_at is not None and sub.expires_at <= now:
                continue
            if not entry.caller.may_see(record.tenant, record.scope, record.agent_id):
                continue
            if record.agent_id == entry.caller.agent_id and not sub.include_own:
                continue
            f = sub.filters
            if (f.topics and payload.topic not in f.topics) or (
                f.tags and not set(f.tags) & set(payload.tags)
            ):
                continue
            if (f.source_agents and record.agent_id not in f.source_agents) or (
                f.scopes and record.scope not in f.scopes
            ):
                continue
            if not self._take_token(entry, sub.max_per_minute):
                continue
            text, redacted = redact(record, entry.caller)
            out.append(
                Delivery(
                    tenant=record.tenant,
                    agent_id=entry.caller.agent_id,
                    scope="private",
                    parent_ids=[record.event_id],
                    payload=DeliveryPayload(
                        subscription_id=sub.subscription_id,
                        recipient=entry.caller.agent_id,
                        memory_id=record.event_id,
                        text=text,
                        score=float(score),
                        source_agent=record.agent_id,
                        memory_scope=record.scope,
                        tags=list(payload.tags),
                        topic=payload.topic,
                        redacted=redacted,
                        sealed=payload.sealed,
                        expires_at=payload.expires_at,
                    ),
                )
            )
        return out

    def _take_token(self, entry: _Entry, per_minute: int) -> bool:
        """A fixed one-minute window per subscription: at most `per_minute` deliveries."""
        now = self._clock()
        if now - entry.window_start >= 60.0:
            entry.window_start, entry.sent_in_window = now, 0
        if entry.sent_in_window >= per_minute:
            return False
        entry.sent_in_window += 1
        return True
