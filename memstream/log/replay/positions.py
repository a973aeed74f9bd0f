"""Where a replay starts and stops: log positions, and the topics it reads."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from memstream.processors import RawMessage
from memstream.schemas.topics import INDEXED, INPUT_KINDS

CHECKPOINT_FILE = "replay-checkpoint.json"
INPUT_TOPICS: tuple[str, ...] = tuple(INPUT_KINDS)
REPLAYABLE: tuple[str, ...] = (*INPUT_TOPICS, INDEXED.name)
"""Topics whose records a replay writes into the store."""


class ReplayError(Exception):
    """A replay cannot start as asked (bad range, no broker for processors, ...)."""


# --- positions ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Position:
    """Where a range starts or stops: an offset (every partition), a time, or the edge of
    the log (both None: the beginning for a start, the end for a stop)."""

    offset: int | None = None
    time_ms: int | None = None

    @property
    def edge(self) -> bool:
        return self.offset is None and self.time_ms is None

    def describe(self) -> str:
        if self.offset is not None:
            return str(self.offset)
        if self.time_ms is not None:
            return datetime.fromtimestamp(self.time_ms / 1000, UTC).isoformat()
        return "edge"


def parse_position(text: str | int | datetime | None) -> Position:
    """`beginning`/`end`/None, an offset (`1200`), or an ISO time (`2026-11-25T10:00Z`)."""
    if text is None or isinstance(text, Position):
        return text or Position()
    if isinstance(text, datetime):
        when = text if text.tzinfo else text.replace(tzinfo=UTC)
        return Position(time_ms=int(when.timestamp() * 1000))
    if isinstance(text, int):
        if text < 0:
            raise ReplayError(f"an offset must be >= 0, not {text}")
        return Position(offset=text)
    value = text.strip()
    if value.lower() in ("", "beginning", "earliest", "start", "end", "latest"):
        return Position()
    if value.isdigit():
        return Position(offset=int(value))
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ReplayError(
            f"{text!r} is not `beginning`, `end`, an offset or an ISO time "
            "(e.g. 2026-11-25T10:00:00Z)"
        ) from None
    return parse_position(when)


def in_range(message: RawMessage, start: Position, stop: Position) -> bool:
    """Whether a record lies in [start, stop) (offsets per partition, times in ms)."""
    if start.offset is not None and message.offset < start.offset:
        return False
    if stop.offset is not None and message.offset >= stop.offset:
        return False
    ts = message.timestamp_ms
    if ts is not None:
        if start.time_ms is not None and ts < start.time_ms:
            return False
        if stop.time_ms is not None and ts >= stop.time_ms:
            return False
    return True
