"""A second handle on a shared SQLite file must not drop the first one's locks.

`_private_file` used to open and close the database to set its mode. POSIX releases every
lock a process holds on a file when any of its descriptors for it closes, so a worker that
opened the key store twice (privacy stage, then archive) lost its locks; the next process
to close a connection believed itself the last, deleted the WAL, and the worker's later
commits (record keys) went to a deleted file that no other process could read: the CI flake
of test_hostile's archive test ("archived copy found, key missing")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from memstream.privacy.keystore import KeyStore


def _in_another_process(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_a_second_handle_keeps_the_first_ones_commits_visible_to_other_processes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "keys.db"
    first = KeyStore(path)
    first.record_keys([("acme", "before")])
    KeyStore(path)  # a second handle in the same process (the archive's)
    # another process opens and closes a connection (a CLI command, a test)
    _in_another_process(
        f"import sqlite3; c = sqlite3.connect({str(path)!r}); "
        "c.execute('select count(*) from record_keys').fetchall(); c.close()"
    )
    first.record_keys([("acme", "after")])
    seen = _in_another_process(
        f"from memstream.privacy.keystore import KeyStore; "
        f"print(KeyStore(__import__('pathlib').Path({str(path)!r})).record_key('acme', 'after') is not None)"
    )
    assert seen == "True"
    assert (path.stat().st_mode & 0o777) == 0o600
