"""Standing subscriptions and the reverse search: which subscriptions does a new memory match?

Subscriptions are rebuilt from `memstream.subscriptions` (the log is the source of truth;
a later event for the same id replaces or, with `active=false`, removes it). Each tenant's
are rows of one growing float32 matrix of unit query vectors: an upsert appends a row, a
removal leaves a tombstone, and the matrix is compacted once half of it is tombstones, so
loading N subscriptions from the log costs O(N) and no step is ever a full rebuild.

Matching is exact: every subscription whose score (the dot product of the memory's and the
query's float32 vectors) is at least its own `min_score` is found; the per-subscription
checks (expiry, visibility, filters, rate limit) and the recipient's privacy filter then run
on those only. `match_many` matches a batch of memories at once (the pipeline hands over up
to 64), so the subscriptions are read once per batch instead of once per memory:

1. A first pass over the tenant's subscriptions in blocks gives every (memory, subscription)
   pair an approximate score with a proven error bound. For tenants of `INT8_MIN` or more
   subscriptions it is an int8 matrix product on ONNX Runtime's integer GEMM (exact int32
   arithmetic on codes of both vectors; the bound comes from each vector's own rounding
   error, ~0.03 for MiniLM vectors); below that, or without onnxruntime, float32 BLAS
   with its rounding bound. A pair can match only if its approximate score is within its
   bound of the threshold, so no match is ever dropped here.
2. Those candidates are rescored exactly (float32 with its rounding bound, float64 where
   that leaves the comparison open) and compared with their own threshold.

There is no sublinear step (clusters, trees): with text embeddings, cluster radii are as
large as the distances between unrelated texts, so a Cauchy-Schwarz bound prunes nothing
(measured on simulated subscriptions made from real MiniLM embeddings; docs/performance.md),
and an approximate index would miss matches. `method="scan"` keeps the matcher as it was
before (one float32 matrix-vector product per memory), for comparison.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import numpy as np

from memstream.schemas.events import Delivery, DeliveryPayload, Indexed, Subscription
from memstream.services.int8_gemm import QUERY_LEVELS, SUB_LEVELS, int8_engine
from memstream.services.tenant_index import BLOCK, INT8_MIN, Method, _Entry, _TenantIndex
from memstream.store.base import Caller

Redactor = Callable[[Indexed, Caller], tuple[str, bool]]
"""(text the recipient may see, whether anything was redacted)."""


__all__ = [
    "BLOCK",
    "INT8_MIN",
    "QUERY_LEVELS",
    "SUB_LEVELS",
    "Method",
    "Redactor",
    "SubscriptionIndex",
    "int8_engine",
    "plain_text",
]


def plain_text(record: Indexed, caller: Caller) -> tuple[str, bool]:
    return record.payload.text, False


class SubscriptionIndex:
    """Active subscriptions by tenant; `match` / `match_many` turn indexed memories into
    deliveries. `method`: "auto" (int8 first pass for tenants of `INT8_MIN` subscriptions or
    more, float32 below), "int8", "float32", or "scan" (the matcher before issue 17)."""

    def __init__(
        self,
        dim: int = 384,
        clock: Callable[[], float] = time.monotonic,
        method: Method = "auto",
    ) -> None:
        self.dim = dim
        self.method: Method = method
        self._clock = clock
        self._tenants: dict[str, _TenantIndex] = {}
        self._where: dict[str, str] = {}  # subscription id -> tenant

    def __len__(self) -> int:
        return len(self._where)

    def upsert(self, subscription: Subscription, vector: np.ndarray) -> None:
        """Add or replace; `active=False` removes. `vector` is the query's unit embedding."""
        sub_id = subscription.payload.subscription_id
        if subscription.payload.active:
            vector = np.asarray(vector, dtype=np.float32).reshape(-1)
            if vector.shape != (self.dim,) or not np.isfinite(vector).all():
                raise ValueError(f"a subscription vector must be {self.dim} finite numbers")
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
        index = self._tenants.get(subscription.tenant)
        if index is None:
            index = self._tenants[subscription.tenant] = _TenantIndex(self.dim)
        index.add(_Entry(subscription, caller), vector)
        self._where[sub_id] = subscription.tenant

    def remove(self, subscription_id: str) -> bool:
        tenant = self._where.pop(subscription_id, None)
        if tenant is None:
            return False
        index = self._tenants[tenant]
        index.remove(subscription_id)
        if not index.live:
            del self._tenants[tenant]
        return True

    def over_threshold(
        self, tenant: str, vectors: np.ndarray | Sequence[np.ndarray]
    ) -> list[list[tuple[str, float]]]:
        """Per memory vector: (subscription id, score) of every subscription of `tenant`
        whose score reaches its `min_score`, before any other check."""
        q, ok = self._queries(vectors)
        index = self._tenants.get(tenant)
        if index is None or not q.shape[0]:
            return [[] for _ in range(q.shape[0])]
        out = []
        for good, (slots, scores) in zip(ok, index.search(q, self.method), strict=True):
            entries = index.entries
            out.append(
                [
                    (entries[s].subscription.payload.subscription_id, float(x))  # type: ignore[union-attr]
                    for s, x in zip(slots.tolist(), scores.tolist(), strict=True)
                ]
                if good
                else []
            )
        return out

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
        return self.match_many([record], [vector], now, redact)[0]

    def match_many(
        self,
        records: Sequence[Indexed],
        vectors: np.ndarray | Sequence[np.ndarray],
        now: datetime | None = None,
        redact: Redactor = plain_text,
    ) -> list[list[Delivery]]:
        """`match` for a batch: one list of deliveries per record, in order, the same as
        calling `match` on each in turn (rate limits included), with the subscriptions of
        each tenant read once for the whole batch."""
        q, ok = self._queries(vectors)
        if q.shape[0] != len(records):
            raise ValueError(f"{len(records)} records but {q.shape[0]} vectors")
        out: list[list[Delivery]] = [[] for _ in records]
        by_tenant: dict[str, list[int]] = {}
        for k, record in enumerate(records):
            if record.payload.verification == "refuted":
                continue  # a false claim is never pushed (it is on `memstream.verdicts`)
            if ok[k] and record.tenant in self._tenants:
                by_tenant.setdefault(record.tenant, []).append(k)
        if not by_tenant:
            return out
        now = now or datetime.now(UTC)
        found: dict[int, tuple[_TenantIndex, np.ndarray, np.ndarray]] = {}
        for tenant, ks in by_tenant.items():
            index = self._tenants[tenant]
            for k, (slots, scores) in zip(ks, index.search(q[ks], self.method), strict=True):
                found[k] = (index, slots, scores)
        for k in sorted(found):  # in record order, so rate limits apply as one by one
            index, slots, scores = found[k]
            for slot, score in zip(slots.tolist(), scores.tolist(), strict=True):
                entry = index.entries[slot]
                if entry is not None:
                    delivery = self._deliver(records[k], entry, score, now, redact)
                    if delivery is not None:
                        out[k].append(delivery)
        return out

    def _queries(self, vectors: np.ndarray | Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(m, dim) float32 memory vectors, and which are usable (a non-finite one matches
        nothing, as before)."""
        if isinstance(vectors, np.ndarray):
            q = np.asarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        elif len(vectors):
            q = np.stack([np.asarray(v, dtype=np.float32).reshape(self.dim) for v in vectors])
        else:
            q = np.zeros((0, self.dim), dtype=np.float32)
        ok = np.isfinite(q).all(axis=1)
        if not ok.all():
            q = np.where(ok[:, None], q, np.float32(0.0))
        return np.ascontiguousarray(q), ok

    def _deliver(
        self, record: Indexed, entry: _Entry, score: float, now: datetime, redact: Redactor
    ) -> Delivery | None:
        """The per-subscription checks for a subscription over its threshold."""
        payload = record.payload
        sub = entry.subscription.payload
        if sub.expires_at is not None and sub.expires_at <= now:
            return None
        if not entry.caller.may_see(record.tenant, record.scope, record.agent_id):
            return None
        if record.agent_id == entry.caller.agent_id and not sub.include_own:
            return None
        f = sub.filters
        if (f.topics and payload.topic not in f.topics) or (
            f.tags and not set(f.tags) & set(payload.tags)
        ):
            return None
        if (f.source_agents and record.agent_id not in f.source_agents) or (
            f.scopes and record.scope not in f.scopes
        ):
            return None
        if not self._take_token(entry, sub.max_per_minute):
            return None
        text, redacted = redact(record, entry.caller)
        return Delivery(
            tenant=record.tenant,
            agent_id=entry.caller.agent_id,
            scope="private",
            parent_ids=[record.event_id],
            payload=DeliveryPayload(
                subscription_id=sub.subscription_id,
                recipient=entry.caller.agent_id,
                memory_id=record.event_id,
                text=text,
                score=score,
                source_agent=record.agent_id,
                memory_scope=record.scope,
                tags=list(payload.tags),
                topic=payload.topic,
                redacted=redacted,
                sealed=payload.sealed,
                expires_at=payload.expires_at,
            ),
        )

    def _take_token(self, entry: _Entry, per_minute: int) -> bool:
        """A fixed one-minute window per subscription: at most `per_minute` deliveries."""
        now = self._clock()
        if now - entry.window_start >= 60.0:
            entry.window_start, entry.sent_in_window = now, 0
        if entry.sent_in_window >= per_minute:
            return False
        entry.sent_in_window += 1
        return True
