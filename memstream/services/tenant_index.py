"""One tenant's subscriptions as a matrix, searched with a proven error bound."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from memstream.schemas.events import Subscription
from memstream.services.int8_gemm import QUERY_LEVELS, SUB_LEVELS, int8_engine
from memstream.store.base import Caller

Method = Literal["auto", "int8", "float32", "scan"]

BLOCK = 32_768
"""Subscriptions per step of the first pass: its scores (BLOCK x 64 int32 = 8 MB) stay in
cache while they are compared with the thresholds."""
INT8_MIN = 131_072
"""Tenants with at least this many subscriptions get the int8 first pass (measured on a
shared 2-core machine: 0.9-2.2x the float32 pass at 400k-1M subscriptions across runs,
about even at 100k and less)."""
_U = 2.0**-24  # float32 unit roundoff


def _gamma(n: int) -> float:
    """|fl(x . y) - x . y| <= gamma_n |x| . |y| <= gamma_n ||x|| ||y|| for float32 dot
    products of length n, in any summation order (Higham, Accuracy and Stability, 3.1)."""
    return n * _U / (1.0 - n * _U)


@dataclass
class _Entry:
    subscription: Subscription
    caller: Caller
    window_start: float = 0.0
    sent_in_window: int = 0


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
