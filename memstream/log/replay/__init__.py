"""`memstream replay`: rebuild a store version from the log (a topic range or the archive).

The log is the source of truth, so any projection can be rebuilt from it. A replay writes
into a NEW collection version (`memories_v<N>`) while the live one keeps serving, then
optionally swaps the alias (`--swap`). It is:

- **idempotent**: point ids are memory ids, so replaying a range twice changes nothing;
- **resumable**: `replay-checkpoint.json` in the target version directory records the last
  offset stored per (topic, partition), written atomically after the shard is flushed, at
  most every `checkpoint_every_s` (2 s; flushing after every batch cost 60% of the time of
  an `indexed` replay); the same command run again continues after it (`restart=True`
  ignores it) and redoes at most those seconds of work, harmlessly (idempotent);
- **broker-free** from an archive; plug-in processors (`processors=[...]`) need a broker to
  send their outputs to.

Sources: records of `memstream.memories` / `memstream.observations` go through the whole
pipeline with the worker's own functions (validate, privacy, embed, value, compress,
store; the privacy stage uses the data dir's keystore and master key, so run the replay
with the worker's `MEMSTREAM_DATA_DIR`); records of `memstream.indexed` are
written as they are (no re-embedding: the fast path). Invalid records are counted as
rejected; a replay sends no dead letters of its own (the live pipeline already did).

A running worker's store (`memstream.store.live.LiveStore`) follows the alias within a
second of `--swap`. Duplicates are found against the replay's own in-memory pool,
so after a resume a duplicate of a memory stored before the crash is kept on its own.

Modules: `positions` (ranges), `checkpoint`, `sources` (archive and broker ranges),
`pipeline` (writing a store version), `plugin_outputs`, `run` (the replay), `books`
(the reputation book and ledger rebuilt).
"""

from memstream.log.replay.books import rebuild_books, replay_books
from memstream.log.replay.checkpoint import Checkpoint
from memstream.log.replay.pipeline import ReplayStats, _Pipeline
from memstream.log.replay.positions import (
    CHECKPOINT_FILE,
    INPUT_TOPICS,
    REPLAYABLE,
    Position,
    ReplayError,
    in_range,
    parse_position,
)
from memstream.log.replay.run import replay, replay_async
from memstream.log.replay.sources import KafkaRange, count_archive_range, read_archive_range

__all__ = [
    "CHECKPOINT_FILE",
    "INPUT_TOPICS",
    "REPLAYABLE",
    "Checkpoint",
    "KafkaRange",
    "Position",
    "ReplayError",
    "ReplayStats",
    "_Pipeline",
    "count_archive_range",
    "in_range",
    "parse_position",
    "read_archive_range",
    "rebuild_books",
    "replay",
    "replay_async",
    "replay_books",
]
