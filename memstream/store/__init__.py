"""Vector store backends: Qdrant Edge in-process (default) and Qdrant server.

`open_store` picks one from a URL or a path:

- `http://...` / `https://...`: a Qdrant server (`QdrantServerStore`, alias `memories`);
- `:memory:`: qdrant-client local mode, pure Python (tests and small data only);
- anything else: a directory of versioned Edge shards (`CollectionSet`) served through
  `LiveStore`, which follows the alias when a replay swaps in a new version; `memories_v1`
  is created on first use.
"""

from __future__ import annotations

from pathlib import Path

from memstream.store.base import Caller, Hit, MemoryStore, Sparse, StoredMemory
from memstream.store.collections import CollectionSet
from memstream.store.edge import EdgeStore
from memstream.store.server import QdrantServerStore

__all__ = [
    "Caller",
    "CollectionSet",
    "EdgeStore",
    "Hit",
    "MemoryStore",
    "QdrantServerStore",
    "Sparse",
    "StoredMemory",
    "open_store",
]


def open_store(url_or_path: str, *, dim: int = 384, api_key: str | None = None) -> MemoryStore:
    """A store for `url_or_path` (see the module docstring); close it when done."""
    if url_or_path.startswith(("http://", "https://")):
        from qdrant_client import QdrantClient

        return QdrantServerStore(
            QdrantClient(url=url_or_path, api_key=api_key), dim=dim, close_client=True
        )
    if url_or_path == ":memory:":
        from qdrant_client import QdrantClient

        return QdrantServerStore(QdrantClient(":memory:"), dim=dim, close_client=True)
    from memstream.store.live import LiveStore

    return LiveStore(CollectionSet(Path(url_or_path).expanduser(), dim=dim))  # type: ignore[return-value]
