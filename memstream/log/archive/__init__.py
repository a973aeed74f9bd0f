"""A durable archive of topics on local disk, outliving broker retention.

The log is the source of truth, but a broker keeps it only for its retention (and the
embedded Tansu broker only in memory), so the worker copies every record here and
`memstream replay` can rebuild projections from it after the broker has forgotten them.

Layout: `root/<topic>/<YYYY-MM-DD>/<HH>/seg-<partition>-<firstoffset>.jsonl.zst`, one
JSON line per record (`{"t","p","o","ts","k","v"}`, key and value base64), bucketed by
the UTC hour of the record's timestamp. A segment file is only ever replaced whole
(write `*.tmp`, fsync, rename), so a reader sees the old or the new version, never a torn
one. Writers are at-least-once, so readers de-duplicate by (topic, partition, offset).
Offsets are only comparable within one broker incarnation: a memory-only broker starts
again at 0, so a writer given an `epoch` (the cluster id of a persistent cluster, a fresh
id per start of a memory-only one) names its segments `...-<offset>.e-<epoch>.jsonl.zst`,
and readers keep the records of different epochs apart. Files are created readable by
their owner only. Records of topics that carry raw personal
data are stored encrypted with a key per record (`"e"` names it; see
`memstream.privacy.record_seal`), so that erasure reaches their archived copies.

Modules: `layout` (names and the record type), `writer`, `reader`.
"""

from memstream.log.archive.layout import HOUR_MS, SEGMENT_SUFFIX, TMP_SUFFIX, ArchivedRecord
from memstream.log.archive.reader import ArchiveReader
from memstream.log.archive.writer import ArchiveWriter

__all__ = [
    "HOUR_MS",
    "SEGMENT_SUFFIX",
    "TMP_SUFFIX",
    "ArchiveReader",
    "ArchiveWriter",
    "ArchivedRecord",
]
