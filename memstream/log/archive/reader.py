"""Reading an archive back in (topic, partition, offset) order, each record once."""

from __future__ import annotations

import base64
import heapq
import json
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import zstandard

from memstream.log.archive.layout import (
    _DATE,
    _HOUR,
    _SEGMENT,
    _TOPIC,
    SEGMENT_SUFFIX,
    ArchivedRecord,
    _hour_overlaps,
)
from memstream.logging import get_logger

log = get_logger("memstream.log.archive")


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
