"""The disk that fills up: a tmpfs mount and the ballast file that eats its free space."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from memstream.schemas.topics import (
    ERASURES,
    FEEDBACK,
    INDEXED,
    MEMORIES,
    OBSERVATIONS,
)
from memstream.store.faults import free_bytes

BACKENDS = ("edge", "server")
AGENTS = 8
TMPFS_MB = 192
"""Qdrant Edge on a tmpfs takes about 26 MB for an empty shard, and loading one maps (and
so allocates) its sparse files: about 110 MB for a few hundred points (on ext4: nothing)."""
MIN_FREE_MB = 16
WORKER_TOPICS = (MEMORIES.name, OBSERVATIONS.name, ERASURES.name, INDEXED.name, FEEDBACK.name)
METRICS = (
    "memstream_store_up",
    "memstream_store_failures_total",
    "memstream_store_write_retries_total",
    "memstream_memories_indexed_total",
    "memstream_dead_letters_total",
)


class MountUnavailable(RuntimeError):
    """A tmpfs cannot be mounted here (not root, no CAP_SYS_ADMIN, no `mount`)."""


def _say_stderr(message: str) -> None:
    print(f"[store-faults {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def tmpfs(path: Path, size_mb: int) -> Iterator[Path]:
    """A tmpfs of `size_mb` MiB mounted at `path` for the duration (MountUnavailable if
    this machine does not allow it)."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "tmpfs", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as err:
        raise MountUnavailable(f"cannot run mount: {err}") from err
    if done.returncode != 0:
        raise MountUnavailable(
            f"cannot mount a tmpfs at {path} (needs root or CAP_SYS_ADMIN): "
            f"{(done.stderr or done.stdout).strip()}"
        )
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


class Ballast:
    """A file that takes a file system's free space away, and gives it back."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "ballast"

    def fill(self, leave_bytes: int = 0) -> str | None:
        """Grow the ballast until at most `leave_bytes` are free (0: until the file system
        refuses, ENOSPC); returns the error that stopped it, if any."""
        stopped: str | None = None
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for chunk in (1 << 20, 1 << 16, 1 << 12, 1 << 9, 1):
                block = b"\0" * chunk
                try:
                    while leave_bytes <= 0 or free_bytes(self.directory) - chunk >= leave_bytes:
                        os.write(fd, block)
                except OSError as err:
                    stopped = f"{type(err).__name__}: {err}"
        finally:
            os.close(fd)
        return stopped

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
