"""The shared memory pool as the model stage sees it: recent vectors per tenant.

Novelty (1 - max cosine to what the tenant already holds) and near-duplicate detection need
the tenant's existing vectors. This in-process pool keeps the newest `capacity` per tenant
and at most `max_total` over all tenants (the tenants added to least recently go first), so
a worker's memory stays bounded however many memories and tenants it sees; it starts empty
after a restart and is not shared between worker processes, so novelty is measured against
what this worker has seen recently.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from memstream.models.compression import WordSet


@dataclass
class _TenantVectors:
    buffer: np.ndarray  # rows [0, n) are the vectors, oldest first; grows by doubling
    n: int = 0
    ids: list[str] = field(default_factory=list)
    scopes: list[str] = field(default_factory=list)
    words: list[WordSet] = field(default_factory=list)

    @property
    def vectors(self) -> np.ndarray:
        return self.buffer[: self.n]

    def append(self, vectors: np.ndarray) -> None:
        need = self.n + len(vectors)
        if need > len(self.buffer):
            grown = np.empty(
                (max(need, 2 * len(self.buffer), 64), self.buffer.shape[1]), np.float32
            )
            grown[: self.n] = self.buffer[: self.n]
            self.buffer = grown
        self.buffer[self.n : need] = vectors
        self.n = need

    def drop_oldest(self, count: int) -> None:
        count = min(count, self.n)
        if count <= 0:
            return
        self.buffer[: self.n - count] = self.buffer[count : self.n]
        self.n -= count
        del self.ids[:count], self.scopes[:count], self.words[:count]


class VectorPool:
    def __init__(self, dim: int = 384, capacity: int = 10_000, max_total: int = 20_000) -> None:
        self.dim = dim
        self.capacity = capacity
        self.max_total = max_total
        self._tenants: OrderedDict[str, _TenantVectors] = OrderedDict()
        self._total = 0

    def __len__(self) -> int:
        return self._total

    def get(self, tenant: str) -> tuple[np.ndarray, list[str], list[str], list[WordSet]]:
        """(vectors, ids, scopes, word sets) of the tenant, oldest first."""
        entry = self._tenants.get(tenant)
        if entry is None:
            return np.zeros((0, self.dim), dtype=np.float32), [], [], []
        return entry.vectors, entry.ids, entry.scopes, entry.words

    def add(
        self,
        tenant: str,
        vectors: np.ndarray,
        ids: list[str],
        scopes: list[str],
        words: list[WordSet],
    ) -> None:
        if not ids:
            return
        entry = self._tenants.get(tenant)
        if entry is None:
            entry = self._tenants[tenant] = _TenantVectors(np.empty((0, self.dim), np.float32))
        self._tenants.move_to_end(tenant)
        before = entry.n
        entry.append(vectors.astype(np.float32, copy=False))
        entry.ids.extend(ids)
        entry.scopes.extend(scopes)
        entry.words.extend(words)
        entry.drop_oldest(entry.n - self.capacity)
        self._total += entry.n - before
        while self._total > self.max_total:
            oldest_tenant, oldest = next(iter(self._tenants.items()))
            if oldest_tenant == tenant:  # only this tenant left: its oldest go
                drop = self._total - self.max_total
                oldest.drop_oldest(drop)
                self._total -= drop
                break
            self._total -= oldest.n
            del self._tenants[oldest_tenant]
