"""The live version of a set of Qdrant Edge collections, following the alias.

`memstream replay --into new --swap` builds `memories_v<N+1>` while the worker serves
`v<N>`, then moves the alias. `LiveStore` notices (one stat of the ALIAS file per
`check_every_s`), opens the new version and closes the old one, so the worker serves and
writes the new version without a restart. The worker calls the store from one thread only,
so the swap needs no lock. If the new version cannot be opened yet (the replay still holds
its write lock), the old one keeps serving and the swap is retried.
"""

from __future__ import annotations

import time
from typing import Any

from memstream.logging import get_logger
from memstream.store.collections import CollectionSet
from memstream.store.edge import EdgeStore

log = get_logger("memstream.store")


class LiveStore:
    def __init__(self, collections: CollectionSet, check_every_s: float = 1.0) -> None:
        self.collections = collections
        self.check_every_s = check_every_s
        self.version = collections.ensure_live()
        self._store = collections.open(self.version)
        self._checked = time.monotonic()

    @property
    def store(self) -> EdgeStore:
        """The live version's store, after following the alias if it moved."""
        now = time.monotonic()
        if now - self._checked >= self.check_every_s:
            self._checked = now
            version = self.collections.live_version()
            if version is not None and version != self.version:
                self._follow(version)
        return self._store

    def _follow(self, version: int) -> None:
        try:
            new = self.collections.open(version)
        except Exception as exc:  # still locked by the replay: keep serving the old one
            log.warning(
                "alias moved but the new version is not ready", version=version, error=str(exc)
            )
            return
        old, self._store, self.version = self._store, new, version
        old.close()
        log.info("store follows the alias", version=version)

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> LiveStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        # every MemoryStore method goes to the live version
        return getattr(self.store, name)
