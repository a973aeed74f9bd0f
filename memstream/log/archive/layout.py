"""Where the archive keeps what: segment names, hour directories, the record type."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

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


def _hour_dir(hour: int) -> str:
    return datetime.fromtimestamp(hour * 3600, UTC).strftime("%Y-%m-%d/%H")


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
