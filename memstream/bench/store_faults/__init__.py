"""`memstream bench store-faults`: the store's disk fills up under a steady stream; is
anything lost?

One `memstream worker` (its own consumer group, its store on a small tmpfs of its own)
indexes memories published at a steady rate by an idempotent `acks=all` producer; each
send is either acknowledged (its future resolved) or failed. Once the worker has indexed
some, a ballast file fills the store's file system; the worker's /healthz and /metrics are
sampled while the disk stays full (`fault_s`); then the ballast is deleted and the backlog
must drain. With `kill`, the worker is SIGKILLed while the store is failing and a new one
started (same group, same store) once the disk is free: what the first one had not
written must be re-read, i.e. it never committed past it.

Backends: `edge` (Qdrant Edge, the default store) and `server` (the Qdrant server code
path, `QdrantServerStore`, on qdrant-client's local mode persisted to SQLite under the
tmpfs: `MEMSTREAM_STORE=qdrant-local:<dir>`; no Qdrant server binary is available here).
Edge maps its files into memory, where a write on a full disk is a SIGBUS that kills the
process; the worker refuses to write below `MEMSTREAM_STORE_MIN_FREE_MB` instead. So for
`edge` the disk is filled in two steps: first to below that reserve (the worker's next
write is refused: ENOSPC from the guard), then, once /healthz says so, to the last byte.
For `server` it is filled to the last byte at once (SQLite: "database or disk is full").

Counted once the worker has drained and stopped: published, acknowledged, indexed
(acknowledged ids found both in the worker's store and on `memstream.indexed`),
duplicated (store points beyond distinct ids; ids seen more than once on
`memstream.indexed`: at-least-once may re-announce after a re-read, and on a shared
broker another worker indexes the same events), dead-lettered (acknowledged ids on
`memstream.dead-letter`, with reasons) and lost (acknowledged, neither indexed nor
dead-lettered). Mounting a tmpfs needs root (CAP_SYS_ADMIN).
"""

from __future__ import annotations

from memstream.bench.store_faults.disk import Ballast, MountUnavailable, tmpfs
from memstream.bench.store_faults.scenario import run_store_faults

__all__ = [
    "Ballast",
    "MountUnavailable",
    "run_store_faults",
    "tmpfs",
]
