"""The checkpoint that makes a replay resumable: the last offset stored per partition."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from memstream.logging import get_logger
from memstream.processors import RawMessage

log = get_logger("memstream.log.replay")


# --- checkpoint --------------------------------------------------------------------------------


@dataclass
class Checkpoint:
    """Per (topic, partition), the last offset whose record is in the store.

    `source` names what was replayed (archive path or bootstrap, topics, range): a
    checkpoint is only resumed by the same source, since offsets of another broker or
    archive mean something else."""

    path: Path
    source: dict[str, Any]
    offsets: dict[str, dict[int, int]] = field(default_factory=dict)
    complete: bool = False
    counts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Checkpoint | None:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning(
                "replay checkpoint unreadable; starting over", path=str(path), error=repr(exc)
            )
            return None
        return cls(
            path=path,
            source=dict(data.get("source", {})),
            offsets={
                topic: {int(p): int(o) for p, o in parts.items()}
                for topic, parts in data.get("offsets", {}).items()
            },
            complete=bool(data.get("complete", False)),
            counts={k: int(v) for k, v in data.get("counts", {}).items()},
        )

    def done(self, message: RawMessage) -> bool:
        """Whether this record was already stored by an earlier run."""
        last = self.offsets.get(message.topic, {}).get(message.partition)
        return last is not None and message.offset <= last

    def advance(self, messages: Iterable[RawMessage]) -> None:
        for message in messages:
            parts = self.offsets.setdefault(message.topic, {})
            if message.offset > parts.get(message.partition, -1):
                parts[message.partition] = message.offset

    def save(self) -> None:
        """Write the whole checkpoint atomically (temp file, fsync, rename)."""
        data = {
            "source": self.source,
            "offsets": {
                topic: {str(p): o for p, o in sorted(parts.items())}
                for topic, parts in sorted(self.offsets.items())
            },
            "complete": self.complete,
            "counts": self.counts,
            "updated_at": datetime.now(UTC).isoformat(),
        }
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".replay-checkpoint-")
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(data, handle, indent=1, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
