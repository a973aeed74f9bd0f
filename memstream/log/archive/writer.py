"""Appending records to segment files, durably (write, fsync, rename)."""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

from memstream.log.archive.layout import (
    _EPOCH,
    _TOPIC,
    HOUR_MS,
    SEGMENT_SUFFIX,
    TMP_SUFFIX,
    _hour_dir,
)
from memstream.logging import get_logger

log = get_logger("memstream.log.archive")


def _b64(data: bytes | None) -> str:
    return "null" if data is None else f'"{base64.b64encode(data).decode("ascii")}"'


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

    def __exit__(self, *exc_info: object) -> None:
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
