"""A small SQLite file shared by several processes: key store, privacy budget, tokens.

WAL mode with a busy timeout, so readers in one process never block writers in another, and
writes as `BEGIN IMMEDIATE` transactions, exclusive across threads (a lock) and processes.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

BUSY_TIMEOUT_MS = 10_000


class SqliteFile:
    def __init__(self, path: Path, schema: Iterable[str], pragmas: Iterable[str] = ()) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(
            path, check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000
        )
        self._db.execute(f"pragma busy_timeout={BUSY_TIMEOUT_MS}")
        self._db.execute("pragma journal_mode=wal")
        for pragma in pragmas:
            self._db.execute(f"pragma {pragma}")
        self._lock = threading.Lock()
        with self._write() as db:
            for stmt in schema:
                db.execute(stmt)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, exclusive across threads and processes."""
        with self._lock:
            self._db.execute("begin immediate")
            try:
                yield self._db
            except BaseException:
                self._db.execute("rollback")
                raise
            self._db.execute("commit")
