"""Rows in and out: memstream's export format, mem0's, and the memory events they become.

An export row is one JSON object per line (JSONL) holding what a reader needs to bring a
memory back: `memory_id`, `text`, `scope`, `tags`, `topic`, `metadata`, `ts`,
`valid_from`, `valid_to`, `expires_at`, `supersedes`, `agent_id`. An import turns each
row into a memory event of the importing token's tenant and agent, with an id derived from
(tenant, the row's id): importing the same file twice writes the same points (the store is
idempotent by id), and two tenants importing one file never share a point.

mem0's export (`Memory.get_all()`'s `results`, one per line) maps as: `memory` -> text,
`id` -> the source id, `created_at` -> ts, `categories` -> tags, `metadata` kept, and
`user_id` / `agent_id` / `run_id` / `hash` kept under `metadata.mem0`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from memstream.schemas.events import Memory, MemoryPayload, derived_id
from memstream.store.base import Caller, StoredMemory

MEMSTREAM_FIELDS = frozenset(
    {
        "memory_id",
        "text",
        "scope",
        "tags",
        "topic",
        "metadata",
        "ts",
        "valid_from",
        "valid_to",
        "expires_at",
        "supersedes",
        "agent_id",
        "context",
    }
)


class BadRow(ValueError):
    """A row that cannot become a memory; `reason` is a machine-readable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _time(value: Any, field: str) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        if isinstance(value, (int, float)):
            when = datetime.fromtimestamp(value, UTC)
        else:
            when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise BadRow(
            "invalid_time", f"{field}: {str(value)[:64]!r} is not an ISO 8601 time"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def parse_line(line: str) -> dict[str, Any]:
    """The JSON object on one line (BadRow otherwise)."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise BadRow("not_json", f"not JSON: {err.msg} at column {err.colno}") from None
    if not isinstance(row, dict):
        raise BadRow("not_an_object", f"a row must be a JSON object, not {type(row).__name__}")
    return row


def _from_mem0(row: dict[str, Any]) -> dict[str, Any]:
    metadata = dict(row.get("metadata") or {})
    mem0 = {k: row[k] for k in ("user_id", "agent_id", "run_id", "hash") if row.get(k)}
    if mem0:
        metadata["mem0"] = mem0
    return {
        "memory_id": row.get("id"),
        "text": row.get("memory"),
        "tags": row.get("categories") or [],
        "metadata": metadata,
        "ts": row.get("created_at"),
        "valid_from": row.get("created_at"),
    }


def memory_from_row(
    row: dict[str, Any],
    caller: Caller,
    *,
    default_scope: str = "tenant",
    now: datetime | None = None,
) -> Memory:
    """The memory event a row becomes for `caller` (BadRow naming the field otherwise)."""
    now = now or datetime.now(UTC)
    if "memory" in row and "text" not in row:
        row = _from_mem0(row)
    unknown = sorted(set(row) - MEMSTREAM_FIELDS)
    if unknown:
        raise BadRow("unknown_fields", f"unknown fields: {', '.join(unknown)[:200]}")
    text = row.get("text")
    if not isinstance(text, str) or not text.strip():
        raise BadRow("missing_text", "text: a non-empty string is required")
    given_ts = _time(row.get("ts"), "ts")
    ts = given_ts or now
    if ts > now + timedelta(minutes=5):
        raise BadRow("invalid_time", "ts: in the future")
    source_id = row.get("memory_id")
    if source_id is not None and not isinstance(source_id, str | int):
        raise BadRow("invalid_fields", "memory_id: a string is required")
    # without an id the text stands for it, so a re-import is still idempotent; without a
    # time the id's time bits are the epoch (it then sorts first), never the import's time
    source = str(source_id) if source_id is not None else f"text:{text}"
    id_time = given_ts or datetime.fromtimestamp(0, UTC)
    scope = row.get("scope") or default_scope
    if scope.startswith("team:") and scope[5:] not in caller.teams:
        raise BadRow("forbidden_scope", f"scope {scope!r}: the importing agent is not in that team")
    raw_metadata = row.get("metadata") or {}
    if not isinstance(raw_metadata, dict):
        raise BadRow("invalid_fields", "metadata: an object is required")
    metadata = dict(raw_metadata)
    author = row.get("agent_id")
    if author and author != caller.agent_id:
        metadata.setdefault("imported_from_agent", str(author)[:128])
    if not isinstance(row.get("supersedes") or [], list):
        raise BadRow("invalid_fields", "supersedes: a list of memory ids is required")
    supersedes = [derived_id(caller.tenant, str(s), id_time) for s in row.get("supersedes") or []]
    try:
        return Memory(
            event_id=derived_id(caller.tenant, source, id_time),
            tenant=caller.tenant,
            agent_id=caller.agent_id,
            scope=scope,
            ts=ts,
            payload=MemoryPayload(
                text=text,
                context=row.get("context"),
                topic=row.get("topic"),
                tags=row.get("tags") or [],
                metadata=metadata,
                valid_from=_time(row.get("valid_from"), "valid_from"),
                valid_to=_time(row.get("valid_to"), "valid_to"),
                expires_at=_time(row.get("expires_at"), "expires_at"),
                supersedes=supersedes,
            ),
        )
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise BadRow("invalid_fields", f"{field}: {first['msg']}") from None


def export_row(memory: StoredMemory, text: str) -> dict[str, Any]:
    """One export line for a memory, with the text its reader may see."""
    metadata = {k: v for k, v in memory.metadata.items() if k != "context"}
    return {
        "memory_id": str(memory.memory_id),
        "text": text,
        "context": memory.metadata.get("context"),
        "scope": memory.scope,
        "tags": list(memory.tags),
        "topic": memory.topic,
        "metadata": metadata,
        "ts": memory.ts.isoformat(),
        "valid_from": memory.valid_from.isoformat() if memory.valid_from else None,
        "valid_to": memory.valid_to.isoformat() if memory.valid_to else None,
        "expires_at": memory.expires_at.isoformat() if memory.expires_at else None,
        "supersedes": list(memory.supersedes),
        "agent_id": memory.agent_id,
    }
