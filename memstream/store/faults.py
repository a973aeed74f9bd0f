"""Store faults: which errors are the store's (retry) and which a record's (dead-letter),
the free-space guard of the Edge store, and the store's state for /healthz and /metrics.

A write that fails because the store or what it runs on failed (no space, I/O error,
read-only file system, unreachable server, timeout, overload) is retried with backoff for
as long as it takes, so no offset is committed past a memory that was neither stored nor
dead-lettered; only an error of one record while the store is healthy is that record's
dead letter (`store.sink.write_isolated`).

Qdrant Edge maps its files into memory: on a full disk the kernel answers a write to a
mapped page with SIGBUS, which kills the process, not with an error (measured on tmpfs and
ext4). So an `EdgeStore` refuses to write (`StoreFull`, errno ENOSPC) while its file
system has less than `min_free_bytes` free, or is read-only (`StoreReadOnly`, EROFS),
before it touches the shard.
"""

from __future__ import annotations

import errno
import os
import re
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Gauge

DEFAULT_MIN_FREE_BYTES = 64 * 1_048_576
"""Free space an Edge store keeps in reserve by default: a 500-memory batch takes about
2.5 MB (measured), WAL segments and payload indexes grow by a few MB at a time."""

STORE_UP = Gauge("memstream_store_up", "1 while the store takes writes, 0 while it fails")
STORE_FAILURES = Counter(
    "memstream_store_failures_total", "writes that failed because the store failed"
)
STORE_RETRIES = Counter("memstream_store_write_retries_total", "writes tried again after a backoff")

_ERRNOS = frozenset(
    {
        errno.ENOSPC,  # no space left on device
        errno.EDQUOT,  # disk quota exceeded
        errno.EIO,  # I/O error
        errno.EROFS,  # read-only file system
        errno.ENOMEM,
        errno.EMFILE,  # too many open files (process)
        errno.ENFILE,  # too many open files (system)
        errno.EAGAIN,
        errno.ETIMEDOUT,
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.EPIPE,
    }
)

_MESSAGES = re.compile(
    r"no space left|disk is full|disk full|quota exceeded|input/output error|i/o error"
    r"|read-only file system|readonly database|os error (?:5|28|30|122)\b|connection refused"
    r"|connection reset|connection aborted|timed out|timeout|service unavailable"
    r"|too many open files|unable to open database|database is locked|storage is full",
    re.IGNORECASE,
)
"""Words of errors that wrap an OS or network failure in their own type (the Rust store's
errors, sqlite's, a Qdrant server's 500 answer)."""

_RETRY_STATUS = frozenset({408, 429, 502, 503, 504, 507})
"""HTTP answers of a Qdrant server that say it, not the request, is failing."""


class StoreFull(OSError):
    """The store's file system has less free space than the store needs to write."""


class StoreReadOnly(OSError):
    """The store's file system is mounted read-only."""


def store_fault(exc: BaseException) -> bool:
    """True when `exc` (or an error it wraps) says the store or what it runs on failed,
    so the write must be retried, not dead-lettered; False says nothing either way."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if _is_fault(e):
            return True
        todo += [e.__cause__, e.__context__, getattr(e, "source", None)]  # qdrant_client wraps
    return False


def _is_fault(e: BaseException) -> bool:
    if isinstance(e, StoreFull | StoreReadOnly | ConnectionError | TimeoutError):
        return True
    if isinstance(e, OSError) and e.errno in _ERRNOS:
        return True
    if isinstance(e, sqlite3.OperationalError) and _MESSAGES.search(str(e)):
        return True
    name = type(e).__name__
    module = type(e).__module__
    if module.startswith("httpx") and name in _HTTPX_TRANSPORT:
        return True
    status = getattr(e, "status_code", None)
    if module.startswith("qdrant_client") and isinstance(status, int):
        if status in _RETRY_STATUS:
            return True
        return status >= 500 and bool(_MESSAGES.search(str(e)))
    code = getattr(e, "code", None)
    if module.startswith("grpc") and callable(code):
        try:
            return getattr(code(), "name", "") in {"UNAVAILABLE", "DEADLINE_EXCEEDED"}
        except Exception:
            return False
    return bool(_MESSAGES.search(str(e)[:2000]))


_HTTPX_TRANSPORT = frozenset(
    {
        "ConnectError",
        "ConnectTimeout",
        "ReadError",
        "ReadTimeout",
        "WriteError",
        "WriteTimeout",
        "PoolTimeout",
        "RemoteProtocolError",
        "NetworkError",
        "TimeoutException",
        "TransportError",
    }
)


def free_bytes(path: Path | str) -> int:
    """Bytes an unprivileged writer may still use on the file system holding `path`."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def ensure_writable(path: Path | str, min_free_bytes: int, need: int = 0) -> None:
    """StoreFull unless the file system of `path` has `min_free_bytes` + `need` free;
    StoreReadOnly while it is mounted read-only (as ext4 remounts itself on I/O errors)."""
    if min_free_bytes <= 0 and need <= 0:
        return
    st = os.statvfs(path)
    if st.f_flag & os.ST_RDONLY:
        raise StoreReadOnly(
            errno.EROFS, f"Read-only file system under {path}: the store cannot write"
        )
    free = st.f_bavail * st.f_frsize
    if free < min_free_bytes + need:
        raise StoreFull(
            errno.ENOSPC,
            f"No space left for the store: {free} bytes free under {path}, "
            f"{min_free_bytes + need} needed (MEMSTREAM_STORE_MIN_FREE_MB keeps a reserve)",
        )


def disk_usage(path: Path | str) -> int:
    """Bytes the files under `path` take on disk (allocated blocks, not apparent size)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                continue
    return total


class StoreStatus:
    """Whether the store takes writes, as the sink last found it. Written from the store
    thread, read from the event loop (/healthz, /metrics): every access holds a lock. With
    `metrics`, it also sets the process's `memstream_store_*` metrics (the worker's one)."""

    def __init__(self, *, metrics: bool = True) -> None:
        self._metrics = metrics
        self._lock = threading.Lock()
        self._up = True
        self._error: str | None = None
        self._since: datetime | None = None
        self._failures = 0
        self._retries = 0
        if metrics:
            STORE_UP.set(1)

    @property
    def up(self) -> bool:
        with self._lock:
            return self._up

    def failed(self, exc: BaseException) -> bool:
        """A write failed because the store failed; True if the store was up until now."""
        with self._lock:
            began = self._up
            self._up = False
            self._error = f"{type(exc).__name__}: {exc}"[:500]
            if began:
                self._since = datetime.now(UTC)
            self._failures += 1
        if self._metrics:
            STORE_FAILURES.inc()
            STORE_UP.set(0)
        return began

    def retried(self) -> None:
        with self._lock:
            self._retries += 1
        if self._metrics:
            STORE_RETRIES.inc()

    def succeeded(self) -> datetime | None:
        """A write went through; when the store was down until now, the instant it went."""
        with self._lock:
            if self._up:
                return None
            since, self._up, self._error, self._since = self._since, True, None, None
        if self._metrics:
            STORE_UP.set(1)
        return since

    def snapshot(self) -> dict[str, Any]:
        """What /healthz shows: `store` is `ok` or `unavailable` (with the last error and
        since when), with the worker's failed writes and retries so far."""
        with self._lock:
            return {
                "store": "ok" if self._up else "unavailable",
                "error": self._error,
                "since": self._since.isoformat() if self._since else None,
                "failures": self._failures,
                "retries": self._retries,
            }
