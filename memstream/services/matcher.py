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

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import numpy as np

from memstream.logging import get_logger
from memstream.schemas.events import Delivery, DeliveryPayload, Indexed, Subscription
from memstream.store.base import Caller

log = get_logger("memstream.matcher")

Redactor = Callable[[Indexed, Caller], tuple[str, bool]]
"""(text the recipient may see, whether anything was redacted)."""

Method = Literal["auto", "int8", "float32", "scan"]

BLOCK = 32_768
"""Subscriptions per step of the first pass: its scores (BLOCK x 64 int32 = 8 MB) stay in
cache while they are compared with the thresholds."""
INT8_MIN = 131_072
"""Tenants with at least this many subscriptions get the int8 first pass (measured on a
shared 2-core machine: 0.9-2.2x the float32 pass at 400k-1M subscriptions across runs,
about even at 100k and less)."""
SUB_LEVELS = 127
"""Subscription codes are in [-127, 127], stored as uint8 with an offset of 128."""
QUERY_LEVELS = 63
"""Memory codes are in [-63, 63]: x86 integer GEMM kernels without VNNI add pairs of
u8 x s8 products in int16, and 2 * 255 * 63 < 2**15 keeps that sum from saturating."""
_U = 2.0**-24  # float32 unit roundoff


def _gamma(n: int) -> float:
    """|fl(x . y) - x . y| <= gamma_n |x| . |y| <= gamma_n ||x|| ||y|| for float32 dot
    products of length n, in any summation order (Higham, Accuracy and Stability, 3.1)."""
    return n * _U / (1.0 - n * _U)


def plain_text(record: Indexed, caller: Caller) -> tuple[str, bool]:
    return record.payload.text, False


@dataclass
class _Entry:
    subscription: Subscription
    caller: Caller
    window_start: float = 0.0
    sent_in_window: int = 0


# --- the int8 first pass ------------------------------------------------------------------------


class _Int8Gemm:
    """`(a - 128) @ b` in exact int32 arithmetic on ONNX Runtime's MatMulInteger: `a` is
    (n, dim) uint8 (subscription codes + 128), `b` is (dim, m) int8 (memory codes)."""

    def __init__(self, dim: int) -> None:
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        from memstream.models.providers import session_options

        graph = helper.make_graph(
            [helper.make_node("MatMulInteger", ["a", "b", "a_zero"], ["y"])],
            "matcher_int8",
            [
                helper.make_tensor_value_info("a", TensorProto.UINT8, [None, dim]),
                helper.make_tensor_value_info("b", TensorProto.INT8, [dim, None]),
            ],
            [helper.make_tensor_value_info("y", TensorProto.INT32, [None, None])],
            initializer=[numpy_helper.from_array(np.array(128, dtype=np.uint8), "a_zero")],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        import onnxruntime as ort

        # spin=False: the worker's model thread shares the cores with this one
        self.session = ort.InferenceSession(
            model.SerializeToString(),
            sess_options=session_options(spin=False),
            providers=["CPUExecutionProvider"],
        )

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"a": a, "b": b})[0]

    def exact(self, dim: int) -> bool:
        """Whether this machine's kernel is exact on the extremes of the code ranges (a
        saturating kernel would otherwise drop matches silently)."""
        rng = np.random.default_rng(0)
        a = rng.integers(1, 256, (600, dim)).astype(np.uint8)
        a[:3], a[3:6] = 255, 1  # +127 and -127 after the offset
        for m in (1, 7, 64):
            b = rng.integers(-QUERY_LEVELS, QUERY_LEVELS + 1, (dim, m)).astype(np.int8)
            b[:, 0] = QUERY_LEVELS
            if m > 1:
                b[:, 1] = -QUERY_LEVELS
            want = (a.astype(np.int64) - 128) @ b.astype(np.int64)
            if not np.array_equal(self(a, b).astype(np.int64), want):
                return False
        return True


_engines: dict[int, _Int8Gemm | None] = {}
_engines_lock = threading.Lock()


def int8_engine(dim: int) -> _Int8Gemm | None:
    """The int8 GEMM for `dim`, or None when onnxruntime is missing or not exact here."""
    with _engines_lock:
        if dim not in _engines:
            engine: _Int8Gemm | None
            try:
                engine = _Int8Gemm(dim)
                if not engine.exact(dim):
                    log.warning("int8 GEMM is not exact on this machine; matching in float32")
                    engine = None
            except Exception as err:  # no onnxruntime: float32 BLAS does the first pass
                log.info("int8 GEMM unavailable; matching in float32", error=str(err))
                engine = None
            _engines[dim] = engine
        return _engines[dim]


# --- one tenant's subscriptions -----------------------------------------------------------------


class _TenantIndex:
    """Rows `0 .. size-1` of the arrays are slots; a removed subscription's slot keeps a
    threshold of +inf (it can never match) until the next compaction."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.entries: list[_Entry | None] = []
        self.slot_of: dict[str, int] = {}
        self.size = 0
        self.dead = 0
        self.vectors = np.zeros((8, dim), dtype=np.float32)
        self.thresholds = np.full(8, np.inf)
        # per slot, filled lazily up to `prepared` (and the int8 codes up to `coded`)
        self.norms = np.zeros(8)  # ||s||, rounded up
        self.prepared = 0
        self.codes = np.zeros((0, dim), dtype=np.uint8)  # s / scale, rounded, + 128
        self.scale = np.zeros(0)
        self.err = np.zeros(0)  # ||s - scale * code||, rounded up
        self.coded = 0

    @property
    def live(self) -> int:
        return self.size - self.dead

    def add(self, entry: _Entry, vector: np.ndarray) -> None:
        if self.size == len(self.thresholds):
            self._resize(2 * self.size)
        slot = self.size
        self.vectors[slot] = vector
        self.thresholds[slot] = entry.subscription.payload.min_score
        self.entries.append(entry)
        self.slot_of[entry.subscription.payload.subscription_id] = slot
        self.size += 1

    def remove(self, subscription_id: str) -> None:
        slot = self.slot_of.pop(subscription_id)
        self.entries[slot] = None
        self.thresholds[slot] = np.inf
        self.dead += 1
        if self.dead >= 64 and 2 * self.dead >= self.size:
            self._compact()

    def _resize(self, capacity: int) -> None:
        n = self.size
        vectors = np.zeros((capacity, self.dim), dtype=np.float32)
        vectors[:n] = self.vectors[:n]
        thresholds = np.full(capacity, np.inf)
        thresholds[:n] = self.thresholds[:n]
        norms = np.zeros(capacity)
        norms[:n] = self.norms[:n]
        self.vectors, self.thresholds, self.norms = vectors, thresholds, norms

    def _compact(self) -> None:
        """Drop the tombstones, keeping the order (O(size), after size/2 removals)."""
        keep = np.array([i for i, e in enumerate(self.entries) if e is not None], dtype=np.int64)
        self.entries = [self.entries[i] for i in keep]
        self.slot_of = {
            e.subscription.payload.subscription_id: i
            for i, e in enumerate(self.entries)
            if e is not None
        }
        self.prepared = int(np.searchsorted(keep, self.prepared))
        self.coded = int(np.searchsorted(keep, self.coded))
        coded = keep[: self.coded]  # slots added since the last match have no codes yet
        self.codes, self.scale, self.err = self.codes[coded], self.scale[coded], self.err[coded]
        capacity = max(8, len(keep))
        vectors = np.zeros((capacity, self.dim), dtype=np.float32)
        vectors[: len(keep)] = self.vectors[keep]
        thresholds = np.full(capacity, np.inf)
        thresholds[: len(keep)] = self.thresholds[keep]
        norms = np.zeros(capacity)
        norms[: len(keep)] = self.norms[keep]
        self.vectors, self.thresholds, self.norms = vectors, thresholds, norms
        self.size, self.dead = len(keep), 0

    def _prepare(self, int8: bool) -> None:
        """Norms (and int8 codes) of the slots added since the last match, in chunks, in
        float32: every rounding there is covered by rounding the bounds up (a relative
        1e-4 and 1e-6 absolute, against float32 errors of about 384 * 2**-24 = 2.3e-5)."""
        step = 65_536
        for a in range(self.prepared, self.size, step):
            b = min(self.size, a + step)
            v = self.vectors[a:b]
            self.norms[a:b] = np.sqrt(np.einsum("ij,ij->i", v, v)) * (1 + 1e-4) + 1e-6
        self.prepared = self.size
        if not int8:
            return
        if self.codes.shape[0] < self.size:
            capacity = len(self.thresholds)
            codes = np.full((capacity, self.dim), 128, dtype=np.uint8)
            codes[: self.coded] = self.codes[: self.coded]
            scale, err = np.ones(capacity), np.zeros(capacity)
            scale[: self.coded], err[: self.coded] = (
                self.scale[: self.coded],
                self.err[: self.coded],
            )
            self.codes, self.scale, self.err = codes, scale, err
        for a in range(self.coded, self.size, step):
            b = min(self.size, a + step)
            v = self.vectors[a:b]
            peak = np.abs(v).max(axis=1).astype(np.float64)
            scale = np.where(peak > 0, peak / SUB_LEVELS, 1.0)
            code = np.clip(np.rint(v / scale[:, None].astype(np.float32)), -SUB_LEVELS, SUB_LEVELS)
            residual = v - scale[:, None].astype(np.float32) * code
            self.codes[a:b] = (code + 128).astype(np.uint8)
            self.scale[a:b] = scale.astype(np.float32)  # the scale the residual was taken with
            self.err[a:b] = np.sqrt(np.einsum("ij,ij->i", residual, residual)) * (1 + 1e-4) + 1e-6
        self.coded = self.size

    def search(self, q: np.ndarray, method: Method) -> list[tuple[np.ndarray, np.ndarray]]:
        """(slots, scores) of every subscription at or over its threshold, per row of `q`
        ((m, dim) float32, finite), slots ascending (= the order they were added in)."""
        m, n = q.shape[0], self.size
        if method == "scan":  # as before issue 17: one matrix-vector product per memory
            out = []
            for v in q:
                scores = self.vectors[:n] @ v
                slots = np.flatnonzero(scores >= self.thresholds[:n])
                out.append((slots, scores[slots].astype(np.float64)))
            return out
        engine = None
        if method == "int8" or (method == "auto" and self.live >= INT8_MIN):
            engine = int8_engine(self.dim)
        self._prepare(int8=engine is not None)
        q64 = q.astype(np.float64)
        qnorm = np.sqrt((q64 * q64).sum(axis=1)) * (1 + 1e-9)
        nu = float(qnorm.max()) if m else 0.0
        qt = np.ascontiguousarray(q.T)
        gamma = _gamma(self.dim)
        hits: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        pending: list[np.ndarray] = []
        if engine is not None:
            peak = float(np.abs(q64).max()) if q64.size else 0.0
            beta = peak / QUERY_LEVELS if peak > 0 else 1.0
            qcode = np.clip(np.rint(q64 / beta), -QUERY_LEVELS, QUERY_LEVELS)
            residual = q64 - beta * qcode
            eta = float(np.sqrt((residual * residual).sum(axis=1)).max()) * (1 + 1e-9) + 1e-12
            b = np.ascontiguousarray(qcode.T.astype(np.int8))
        for a in range(0, n, BLOCK):
            z = min(n, a + BLOCK)
            if engine is not None:
                y = engine(self.codes[a:z], b)  # (block, m) int32, exact
                # |q.s - beta*scale*y| <= |q| err + eta |s| + eta err (module docstring);
                # a removed slot's threshold is inf and its bound nan: it never passes
                err = self.err[a:z]
                slack = nu * err + eta * (self.norms[a:z] + err)
                with np.errstate(invalid="ignore"):
                    bound = (self.thresholds[a:z] - slack) / (beta * self.scale[a:z])
                    bound = np.floor(bound - 1e-9 * (1.0 + np.abs(bound)))
            else:
                y = self.vectors[a:z] @ qt  # (block, m) float32
                bound = self.thresholds[a:z] - gamma * nu * self.norms[a:z]
            rows = np.flatnonzero(y.max(axis=1) >= bound)
            if rows.size and engine is None:  # the float32 scores are there already
                hits.append(self._decide(y[rows], rows + a, q, qnorm))
            elif rows.size:
                pending.append(rows + a)
        if pending:
            # exact float32 scores of the candidate rows for every memory, after the int8
            # pass (so BLAS and ONNX Runtime threads do not take turns on the cores)
            slots = np.concatenate(pending)
            for a in range(0, slots.size, BLOCK):
                part = slots[a : a + BLOCK]
                hits.append(self._decide(self.vectors[part] @ qt, part, q, qnorm))
        out_j, out_i, out_s = (
            (np.concatenate(x) for x in zip(*hits, strict=True))
            if hits
            else (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0))
        )
        order = np.lexsort((out_j, out_i))
        i, j, scores = out_i[order], out_j[order], out_s[order]
        cuts = np.searchsorted(i, np.arange(m + 1))
        return [(j[cuts[k] : cuts[k + 1]], scores[cuts[k] : cuts[k + 1]]) for k in range(m)]

    def _decide(
        self, scores: np.ndarray, slots: np.ndarray, q: np.ndarray, qnorm: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(slot, memory, score) of the pairs that reach their threshold, from float32
        scores (len(slots), m) and their rounding bound; float64 where that is too close."""
        t = self.thresholds[slots]
        err = _gamma(self.dim) * float(qnorm.max()) * self.norms[slots]
        r, i = np.nonzero(scores >= (t - err)[:, None])
        approx = scores[r, i].astype(np.float64)
        t, err = t[r], err[r]
        sure = approx >= t + err
        if not sure.all():
            open_ = np.flatnonzero(~sure)  # too close to call in float32
            exact = np.einsum(
                "ij,ij->i", q[i[open_]].astype(np.float64), self.vectors[slots[r[open_]]]
            )
            approx[open_] = exact
            sure[open_] = exact >= t[open_]
        return slots[r[sure]], i[sure], approx[sure]


# --- the index ----------------------------------------------------------------------------------


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
