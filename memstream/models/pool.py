"""The shared memory pool as the model stage sees it: recent vectors per tenant.

Novelty (1 - max cosine to what the tenant already holds) and near-duplicate detection need
the tenant's existing vectors. This in-process pool keeps the newest `capacity` per tenant;
it starts empty after a restart and is not shared between worker processes, so until the
store backs it (issue 5) novelty is measured against what this worker has seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class _TenantVectors:
    vectors: np.ndarray
    ids: list[str] = field(default_factory=list)
    scopes: list[str] = field(default_factory=list)
    words: list[frozenset[tuple[int, bool]]] = field(default_factory=list)


class VectorPool:
    def __init__(self, dim: int = 384, capacity: int = 50_000) -> None:
        self.dim = dim
        self.capacity = capacity
        self._tenants: dict[str, _TenantVectors] = {}

    def get(
        self, tenant: str
    ) -> tuple[np.ndarray, list[str], list[str], list[frozenset[tuple[int, bool]]]]:
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
        words: list[frozenset[tuple[int, bool]]],
    ) -> None:
        entry = self._tenants.get(tenant)
        if entry is None:
            entry = self._tenants[tenant] = _TenantVectors(np.zeros((0, self.dim), np.float32))
        entry.vectors = np.vstack([entry.vectors, vectors.astype(np.float32)])[-self.capacity :]
        entry.ids = (entry.ids + ids)[-self.capacity :]
        entry.scopes = (entry.scopes + scopes)[-self.capacity :]
        entry.words = (entry.words + words)[-self.capacity :]
