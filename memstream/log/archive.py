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
"""

from __future__ import annotations

import base64
import heapq
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from types import TracebackType

import zstandard

from memstream.logging import get_logger

log = get_logger("memstream.log.archive")

HOUR_MS = 3_600_000
SEGMENT_SUFFIX = ".jsonl.zst"
TMP_SUFFIX = ".tmp"

_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
"""Kafka's own rule for topic names, which also makes them safe directory names."""
_SEGMENT = re.compile(r"^seg-(\d+)-(\d+)(?:-r\d+)?(?:\.e-([A-Za-z0-9_-]{1,64}))?\.jsonl\.zst$")
_EPOCH = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_HOUR = re.compile(r"^\d{2}$")


@dataclass(frozen=True, slots=True)
class ArchivedRecord:
    """One record as it was on the topic."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    sealed_with: str | None = None
    """Kid of the record key `value` is encrypted with (`memstream.privacy.record_seal`);
    None for a record kept as it was on the topic."""


def _b64(data: bytes | None) -> str:
    return "null" if data is None else f'"{base64.b64encode(data).decode("ascii")}"'


def _hour_dir(hour: int) -> str:
    return datetime.fromtimestamp(hour * 3600, UTC).strftime("%Y-%m-%d/%H")


def _mkdirs(path: Path) -> None:
    """`path` and its missing parents, each readable by its owner only."""
    if path.is_dir():
        return
    _mkdirs(path.parent)
    path.mkdir(mode=0o700, exist_ok=True)


def _fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@dataclass(slots=True)
class _Segment:
    path: Path
    first_offset: int
    last_offset: int
    opened_at: float
    pending: list[str] = field(default_factory=list)
    frames: bytearray = field(default_factory=bytearray)
    records: int = 0
    raw_bytes: int = 0


class ArchiveWriter:
    """Appends records to segment files; not thread-safe (one writer per process).

    Appended records are in memory until `flush()` (or the segment closes): call `flush()`
    before committing the consumer offsets that cover them, and a crash loses nothing
    that the consumer will not read again. Each flush adds one zstd frame to every open
    segment and rewrites it atomically; a segment closes after `max_records` records,
    `max_bytes` of JSON or `max_age_s` seconds, and is immutable from then on.
    """

    def __init__(
        self,
        root: Path | str,
        *,
        max_records: int = 50_000,
        max_age_s: float = 300.0,
        max_bytes: int = 64 * 1_048_576,
        max_open: int = 256,
        level: int = 3,
        fsync: bool = True,
        epoch: str | None = None,
    ) -> None:
        if max_records < 1 or max_age_s <= 0 or max_bytes < 1 or max_open < 1:
            raise ValueError("max_records, max_age_s, max_bytes and max_open must be positive")
        if epoch is not None and not _EPOCH.match(epoch):
            raise ValueError(f"an epoch is 1-64 of [A-Za-z0-9_-], not {epoch!r}")
        self.epoch = epoch
        self.root = Path(root)
        self.max_records = max_records
        self.max_age_s = max_age_s
        self.max_bytes = max_bytes
        self.max_open = max_open
        self.fsync = fsync
        self._compressor = zstandard.ZstdCompressor(level=level, write_checksum=True)
        self._open: dict[tuple[str, int, int], _Segment] = {}
        self._hour_dirs: dict[int, str] = {}
        self._last_rotate = time.monotonic()
        self._closed = False
        self.records_written = 0
        self.segments_closed = 0

    def __enter__(self) -> ArchiveWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def append(
        self,
        topic: str,
        partition: int,
        offset: int,
        timestamp_ms: int | None,
        key: bytes | None,
        value: bytes | None,
        sealed_with: str | None = None,
    ) -> None:
        """Add one record; a missing or negative timestamp is taken as now. `sealed_with`
        names the record key `value` is encrypted with, when it is."""
        if self._closed:
            raise RuntimeError("the archive writer is closed")
        if not _TOPIC.match(topic):
            raise ValueError(f"not a Kafka topic name: {topic!r}")
        if timestamp_ms is None or timestamp_ms < 0:
            timestamp_ms = time.time_ns() // 1_000_000
        hour = timestamp_ms // HOUR_MS
        slot = (topic, partition, hour)
        now = time.monotonic()
        segment = self._open.get(slot)
        if segment is not None and offset <= segment.last_offset:
            # a rewind (rebalance, restart): a new segment keeps offsets rising in each file
            self._close(slot)
            segment = None
        if segment is None:
            segment = self._new_segment(slot, offset, now)
        sealed = "" if sealed_with is None else f',"e":{json.dumps(sealed_with)}'
        line = (
            f'{{"t":"{topic}","p":{partition},"o":{offset},"ts":{timestamp_ms},'
            f'"k":{_b64(key)},"v":{_b64(value)}{sealed}}}\n'
        )
        segment.pending.append(line)
        segment.records += 1
        segment.raw_bytes += len(line)
        segment.last_offset = offset
        self.records_written += 1
        if (
            segment.records >= self.max_records
            or segment.raw_bytes >= self.max_bytes
            or now - segment.opened_at >= self.max_age_s
        ):
            self._close(slot)
        if now - self._last_rotate >= 1.0:
            self.rotate(now)

    def _new_segment(self, slot: tuple[str, int, int], offset: int, now: float) -> _Segment:
        if len(self._open) >= self.max_open:
            oldest = min(self._open, key=lambda s: self._open[s].opened_at)
            self._close(oldest)
        topic, partition, hour = slot
        hour_dir = self._hour_dirs.get(hour)
        if hour_dir is None:
            hour_dir = self._hour_dirs[hour] = _hour_dir(hour)
        directory = self.root / topic / hour_dir
        tag = f".e-{self.epoch}" if self.epoch else ""
        path = directory / f"seg-{partition}-{offset}{tag}{SEGMENT_SUFFIX}"
        retry = 0
        while path.exists():  # a replay from the same offset after a restart: keep both
            retry += 1
            path = directory / f"seg-{partition}-{offset}-r{retry}{tag}{SEGMENT_SUFFIX}"
        segment = _Segment(path=path, first_offset=offset, last_offset=offset - 1, opened_at=now)
        self._open[slot] = segment
        return segment

    def _write(self, segment: _Segment) -> None:
        """Seal the pending records into a frame and replace the file with all its frames."""
        if not segment.pending:
            return
        data = "".join(segment.pending).encode()
        segment.frames += self._compressor.compress(data)
        segment.pending.clear()
        _mkdirs(segment.path.parent)
        tmp = segment.path.with_name(segment.path.name + TMP_SUFFIX)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(segment.frames)
            handle.flush()
            if self.fsync:
                os.fsync(handle.fileno())
        os.replace(tmp, segment.path)
        if self.fsync:
            _fsync_dir(segment.path.parent)

    def _close(self, slot: tuple[str, int, int]) -> None:
        segment = self._open.pop(slot)
        self._write(segment)
        self.segments_closed += 1

    def flush(self) -> None:
        """Make every appended record durable; segments stay open for more."""
        for segment in self._open.values():
            self._write(segment)

    def rotate(self, now: float | None = None) -> int:
        """Close the segments open for `max_age_s` or longer; call it when idle too, since
        records are only durable once flushed. Returns how many closed."""
        now = time.monotonic() if now is None else now
        self._last_rotate = now
        due = [s for s, seg in self._open.items() if now - seg.opened_at >= self.max_age_s]
        for slot in due:
            self._close(slot)
        return len(due)

    def close(self) -> None:
        """Flush and close every segment; the writer cannot be used after."""
        if self._closed:
            return
        for slot in list(self._open):
            self._close(slot)
        self._closed = True


@dataclass(frozen=True, slots=True)
class _SegmentFile:
    path: Path
    partition: int
    first_offset: int
    epoch: str = ""
    hour: str = ""


class ArchiveReader:
    """Reads an archive in (topic, partition, offset) order, each record once.

    A segment that cannot be read (corrupt, truncated, not JSON) is skipped with a
    warning and listed in `skipped`; `*.tmp` files (writes a crash interrupted) are
    ignored. Memory use is about one segment per partition being merged.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.skipped: list[tuple[Path, str]] = []
        self._decompressor = zstandard.ZstdDecompressor()

    def topics(self) -> list[str]:
        """The archived topics, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(
            entry.name
            for entry in self.root.iterdir()
            if entry.is_dir() and _TOPIC.match(entry.name) and self._has_segments(entry)
        )

    @staticmethod
    def _has_segments(directory: Path) -> bool:
        return any(_SEGMENT.match(p.name) for p in directory.rglob(f"*{SEGMENT_SUFFIX}"))

    def segments(
        self, topic: str, since_ms: int | None = None, until_ms: int | None = None
    ) -> list[Path]:
        """The segment files of `topic` whose hour can hold records in [since, until)."""
        return [s.path for s in self._segment_files(topic, since_ms, until_ms)]

    def _segment_files(
        self, topic: str, since_ms: int | None, until_ms: int | None
    ) -> list[_SegmentFile]:
        base = self.root / topic
        if not _TOPIC.match(topic) or not base.is_dir():
            return []
        found = []
        for date_dir in base.iterdir():
            if not (date_dir.is_dir() and _DATE.match(date_dir.name)):
                continue
            for hour_dir in date_dir.iterdir():
                if not (hour_dir.is_dir() and _HOUR.match(hour_dir.name)):
                    continue
                if not _hour_overlaps(date_dir.name, hour_dir.name, since_ms, until_ms):
                    continue
                for path in hour_dir.iterdir():
                    match = _SEGMENT.match(path.name)
                    if match and path.is_file():
                        found.append(
                            _SegmentFile(
                                path,
                                int(match[1]),
                                int(match[2]),
                                match[3] or "",
                                f"{date_dir.name}/{hour_dir.name}",
                            )
                        )
        found.sort(key=lambda s: (s.partition, s.first_offset, s.path.name))
        return found

    def read(
        self,
        topic: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
    ) -> Iterator[ArchivedRecord]:
        """Records of `topic` (all topics when None) with `since_ms <= ts < until_ms`."""
        for name in [topic] if topic is not None else self.topics():
            files = self._segment_files(name, since_ms, until_ms)
            # offsets are only comparable within one broker incarnation (epoch): each
            # epoch's records are distinct from every other's, oldest epoch first
            by_epoch: dict[str, dict[int, list[_SegmentFile]]] = {}
            first_hour: dict[str, str] = {}
            for segment in files:
                by_epoch.setdefault(segment.epoch, {}).setdefault(segment.partition, []).append(
                    segment
                )
                first_hour[segment.epoch] = min(first_hour.get(segment.epoch, "~"), segment.hour)
            for epoch in sorted(by_epoch, key=lambda e: (first_hour[e], e)):
                by_partition = by_epoch[epoch]
                for partition in sorted(by_partition):
                    yield from self._merge(
                        name, partition, by_partition[partition], since_ms, until_ms
                    )

    def count(
        self, topic: str | None = None, since_ms: int | None = None, until_ms: int | None = None
    ) -> int:
        """How many distinct records `read` would yield."""
        return sum(1 for _ in self.read(topic, since_ms, until_ms))

    def _merge(
        self,
        topic: str,
        partition: int,
        files: list[_SegmentFile],
        since_ms: int | None,
        until_ms: int | None,
    ) -> Iterator[ArchivedRecord]:
        """A k-way merge of one partition's segments (each rising in offset), opening a
        segment only once the merge reaches its first offset, dropping repeats."""
        heap: list[tuple[int, int, Iterator[ArchivedRecord], ArchivedRecord]] = []
        index = 0
        last: int | None = None
        while heap or index < len(files):
            while index < len(files) and (not heap or files[index].first_offset <= heap[0][0]):
                records = self._load(files[index], topic, partition, since_ms, until_ms)
                iterator = iter(records)
                first = next(iterator, None)
                if first is not None:
                    heapq.heappush(heap, (first.offset, index, iterator, first))
                index += 1
            if not heap:
                continue
            offset, order, iterator, record = heapq.heappop(heap)
            if offset != last:
                last = offset
                yield record
            following = next(iterator, None)
            if following is not None:
                heapq.heappush(heap, (following.offset, order, iterator, following))

    def _load(
        self,
        segment: _SegmentFile,
        topic: str,
        partition: int,
        since_ms: int | None,
        until_ms: int | None,
    ) -> list[ArchivedRecord]:
        """One segment's records in offset order, or [] (and a warning) if unreadable."""
        try:
            text = self._decompress(segment.path.read_bytes())
            records = []
            b64decode = base64.b64decode
            for line in text.splitlines():
                if not line:
                    continue
                row = json.loads(line)
                if row["t"] != topic or row["p"] != partition:
                    raise ValueError(f"holds a record of {row['t']}[{row['p']}]")
                ts = row["ts"]
                if (since_ms is not None and ts < since_ms) or (
                    until_ms is not None and ts >= until_ms
                ):
                    continue
                key, value = row["k"], row["v"]
                records.append(
                    ArchivedRecord(
                        topic,
                        partition,
                        int(row["o"]),
                        int(ts),
                        None if key is None else b64decode(key, validate=True),
                        None if value is None else b64decode(value, validate=True),
                        row.get("e"),
                    )
                )
        except (OSError, zstandard.ZstdError, ValueError, KeyError, TypeError) as exc:
            self.skipped.append((segment.path, repr(exc)))
            log.warning(
                "archive segment unreadable; skipped", path=str(segment.path), error=repr(exc)
            )
            return []
        if any(a.offset > b.offset for a, b in pairwise(records)):
            records.sort(key=lambda r: r.offset)
        return records

    def _decompress(self, data: bytes) -> bytes:
        """All frames of a segment; a frame cut short raises instead of reading as less."""
        parts = []
        while data:
            decoder = self._decompressor.decompressobj()
            parts.append(decoder.decompress(data))
            if not decoder.eof:
                raise ValueError("truncated zstd frame")
            data = decoder.unused_data
        return b"".join(parts)


def _hour_overlaps(date: str, hour: str, since_ms: int | None, until_ms: int | None) -> bool:
    if since_ms is None and until_ms is None:
        return True
    try:
        start = int(
            datetime.strptime(f"{date} {hour}", "%Y-%m-%d %H").replace(tzinfo=UTC).timestamp()
        )
    except ValueError:
        return True  # read it and filter record by record
    start_ms = start * 1000
    if until_ms is not None and start_ms >= until_ms:
        return False
    return not (since_ms is not None and start_ms + HOUR_MS <= since_ms)


__all__ = ["ArchiveReader", "ArchiveWriter", "ArchivedRecord"]
