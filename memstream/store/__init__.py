"""Vector store backends: Qdrant Edge in-process (default) and Qdrant server.

`open_store` picks one from a URL or a path:

- `http://...` / `https://...`: a Qdrant server (`QdrantServerStore`, alias `memories`);
- `:memory:`: qdrant-client local mode, pure Python (tests and small data only);
- `qdrant-local:<dir>`: the same, persisted to SQLite under `<dir>`: the server code
  path with its files on a disk of one's choosing (tests, the store-fault bench);
- anything else: a directory of versioned Edge shards (`CollectionSet`) served through
  `LiveStore`, which follows the alias when a replay swaps in a new version; `memories_v1`
  is created on first use. Its writes raise `StoreFull` while the disk has less than
  `min_free_bytes` free (see `memstream.store.faults`).
"""

from __future__ import annotations

from pathlib import Path

from memstream.store.base import Caller, Hit, MemoryStore, Sparse, StoredMemory
from memstream.store.collections import CollectionSet
from memstream.store.edge import EdgeStore
from memstream.store.faults import DEFAULT_MIN_FREE_BYTES
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


LOCAL_PREFIX = "qdrant-local:"


def open_store(
    url_or_path: str,
    *,
    dim: int = 384,
    api_key: str | None = None,
    min_free_bytes: int = DEFAULT_MIN_FREE_BYTES,
    shards: int = 1,
    replicas: int = 1,
) -> MemoryStore:
    """A store for `url_or_path` (see the module docstring); close it when done."""
    if url_or_path.startswith(("http://", "https://")):
        from qdrant_client import QdrantClient

        return QdrantServerStore(
            QdrantClient(url=url_or_path, api_key=api_key),
            dim=dim,
            close_client=True,
            shards=shards,
            replicas=replicas,
        )
    if url_or_path == ":memory:":
        from qdrant_client import QdrantClient

        return QdrantServerStore(QdrantClient(":memory:"), dim=dim, close_client=True)
    if url_or_path.startswith(LOCAL_PREFIX):
        from qdrant_client import QdrantClient

        path = Path(url_or_path[len(LOCAL_PREFIX) :]).expanduser()
        return QdrantServerStore(QdrantClient(path=str(path)), dim=dim, close_client=True)
    from memstream.store.live import LiveStore

    root = Path(url_or_path).expanduser()
    return LiveStore(CollectionSet(root, dim=dim, min_free_bytes=min_free_bytes))  # type: ignore[return-value]
