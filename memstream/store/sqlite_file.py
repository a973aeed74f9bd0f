"""A small SQLite file shared by several processes: key store, privacy budget, tokens.

WAL mode with a busy timeout, so readers in one process never block writers in another, and
writes as `BEGIN IMMEDIATE` transactions, exclusive across threads (a lock) and processes.
The files are readable by their owner only: they hold keys and token hashes.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

BUSY_TIMEOUT_MS = 10_000


def _private_file(path: Path) -> None:
    """Create `path` readable by its owner only, or take such rights from an older one;
    SQLite gives its -wal and -shm files the database file's mode.

    An existing file is never opened here: POSIX drops all of a process's locks on a file
    when any of its descriptors for that file closes, so opening and closing the database
    while this process holds a connection to it would drop that connection's locks. Another
    process's last connection would then think itself the last one and delete the WAL,
    and every later commit of ours would go to a deleted file (seen as keys written by the
    worker that no other process could read)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
        return
    os.close(fd)  # a new, empty file: no connection of ours can have it open yet


class SqliteFile:
    def __init__(self, path: Path, schema: Iterable[str], pragmas: Iterable[str] = ()) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        _private_file(path)
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

    def rows(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        """The rows of one read (WAL: never blocks a writer in another process)."""
        return self._db.execute(sql, args).fetchall()

    def rows_since(
        self, table: str, columns: str, after: int
    ) -> tuple[list[tuple[object, ...]], int]:
        """The rows appended to `table` after rowid `after` (by any process), oldest first,
        and the last rowid among them (`after` when none): how a reader follows a file that
        another process appends to."""
        rows = self.rows(
            f"select rowid, {columns} from {table} where rowid > ? order by rowid", (after,)
        )
        return [row[1:] for row in rows], int(rows[-1][0]) if rows else after  # type: ignore[call-overload]

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """One write transaction, exclusive across threads and processes (for classes that
        hold a file rather than are one)."""
        return self._write()

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
