"""Bulk import and export over the HTTP API (`memstream import`, `memstream export`).

An import reads a JSONL file and sends its lines in batches (at most `MAX_BATCH_ROWS` rows
and `MAX_BATCH_BYTES` bytes, under the API's body limit); the API turns each row into a
memory with an id derived from (tenant, row id), so importing a file twice changes nothing,
and dead-letters a bad row with its line number. Rows larger than one request are sent
alone and dead-lettered by the API with their size. An export writes every memory the
token may see as one JSON object per line, in the format an import reads back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from memstream.sdk.http import HttpClient

MAX_BATCH_ROWS = 500
MAX_BATCH_BYTES = 512 * 1024


@dataclass
class ImportReport:
    """What an import did, line by line where it failed."""

    file: str
    lines: int = 0
    accepted: int = 0
    dead_lettered: int = 0
    skipped_blank: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self, max_failures: int = 100) -> dict[str, Any]:
        return {
            "file": self.file,
            "lines": self.lines,
            "accepted": self.accepted,
            "dead_lettered": self.dead_lettered,
            "skipped_blank": self.skipped_blank,
            "failures": self.failures[:max_failures],
            "failures_not_shown": max(0, len(self.failures) - max_failures),
        }


def _batches(handle: IO[str], report: ImportReport) -> Iterator[list[tuple[int, str]]]:
    batch: list[tuple[int, str]] = []
    size = 0
    for number, line in enumerate(handle, start=1):
        report.lines = number
        text = line.rstrip("\n").rstrip("\r")
        if not text.strip():
            report.skipped_blank += 1
            continue
        cost = len(text.encode()) + 64
        if batch and (len(batch) >= MAX_BATCH_ROWS or size + cost > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append((number, text))
        size += cost
    if batch:
        yield batch


def import_file(
    client: HttpClient,
    path: Path,
    *,
    default_scope: str = "tenant",
    on_progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Send every line of `path`; `on_progress(bytes read so far)` after each batch."""
    report = ImportReport(file=str(path))
    with path.open(encoding="utf-8", errors="replace") as handle:
        for batch in _batches(handle, report):
            summary = client.import_lines(batch, source=path.name, default_scope=default_scope)
            report.accepted += summary.accepted
            report.dead_lettered += summary.dead_lettered
            report.failures += [r for r in summary.rows if r["status"] != "accepted"]
            if on_progress is not None:
                on_progress(handle.buffer.tell() if hasattr(handle, "buffer") else 0)
    return report


def export_rows(client: HttpClient, out: IO[str], *, topic: str | None = None) -> int:
    """Write every memory the token may see to `out` as JSONL; returns how many."""
    import json

    count = 0
    for row in client.export(topic=topic):
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
        count += 1
    return count
