"""Tombstones: the memories deleted by their author, an admin or their time to live.

A deletion is an event on `memstream.erasures` (`Deletion`); the worker applies it to the
store and records one row per memory id here, in the data dir. A replay consults this file
and leaves those memories out, whether it re-processes the raw `memstream.memories` log or
copies `memstream.indexed`, so a deleted memory stays deleted after `replay --swap`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

from memstream.store.sqlite_file import SqliteFile

_SCHEMA = """
create table if not exists tombstones (
    memory_id text primary key,
    tenant text not null,
    reason text not null,
    event_id text not null,
    deleted_at text not null
)
"""

TOMBSTONES_FILE = "tombstones.db"


class Tombstones(SqliteFile):
    def __init__(self, path: Path) -> None:
        super().__init__(path, [_SCHEMA])

    def add(self, tenant: str, memory_ids: Iterable[UUID], reason: str, event_id: UUID) -> int:
        """Record the deletion of these memories (idempotent: a second one changes nothing)."""
        now = datetime.now(UTC).isoformat()
        rows = [(str(i), tenant, reason, str(event_id), now) for i in memory_ids]
        if not rows:
            return 0
        with self._write() as db:
            cur = db.executemany("insert or ignore into tombstones values (?, ?, ?, ?, ?)", rows)
            return cur.rowcount

    def deleted(self, tenant: str, memory_ids: Iterable[UUID | str]) -> set[str]:
        """Which of these ids (as strings) the tenant has deleted."""
        ids = [str(i) for i in memory_ids]
        if not ids:
            return set()
        found: set[str] = set()
        with self._lock:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                found |= {
                    row[0]
                    for row in self._db.execute(
                        f"select memory_id from tombstones where tenant = ? and memory_id in ({marks})",
                        (tenant, *chunk),
                    )
                }
        return found

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("select count(*) from tombstones").fetchone()[0])
