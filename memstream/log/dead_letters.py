"""Operate on `memstream.dead-letter`: list rejected events and send them through again.

A dead letter keeps the original key and value (base64) and where they came from, so once
the cause is fixed (a plug-in bug, a schema change) `replay_dead_letters` re-publishes the
original bytes to the origin topic with the original key and the pipeline (or the
processor's own group) handles them again. The pipeline is idempotent (ids are memory
ids), so replaying a dead letter twice stores nothing twice; each replay that fails again
adds a new dead letter.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

from pydantic import ValidationError

from memstream.broker.security import kafka_client_kwargs
from memstream.logging import get_logger
from memstream.processors import RawMessage
from memstream.schemas.events import DeadLetter
from memstream.schemas.topics import DEAD_LETTER

log = get_logger("memstream.log.dead_letters")


def letter_id(partition: int, offset: int) -> str:
    """How a dead letter is named on the command line: `<partition>:<offset>`."""
    return f"{partition}:{offset}"


def parse_row(message: RawMessage) -> dict[str, Any]:
    """One consumed dead-letter record as a table row; unreadable ones keep their position
    and say why, so nothing on the topic is hidden."""
    row: dict[str, Any] = {
        "id": letter_id(message.partition, message.offset),
        "partition": message.partition,
        "offset": message.offset,
        "timestamp_ms": message.timestamp_ms,
        "size": len(message.value or b""),
    }
    try:
        letter = DeadLetter.model_validate_json(message.value or b"")
    except ValidationError as exc:
        row.update(
            event_id=None,
            reason="unreadable",
            stage=None,
            origin_topic=None,
            origin_partition=None,
            origin_offset=None,
            tenant=None,
            detail=f"not a dead letter: {exc.errors(include_url=False)[:1]}",
            original_size=None,
            truncated=None,
            replayable=False,
        )
        return row
    p = letter.payload
    row.update(
        event_id=str(letter.event_id),
        original_event_id=str(letter.parent_ids[0]) if letter.parent_ids else None,
        reason=p.reason,
        stage=p.stage,
        origin_topic=p.origin_topic,
        origin_partition=p.origin_partition,
        origin_offset=p.origin_offset,
        tenant=letter.tenant,
        detail=p.detail,
        original_size=p.original_size,
        truncated=p.truncated,
        replayable=not p.truncated and p.original_value_b64 is not None,
    )
    return row


def matches(row: dict[str, Any], reason: str | None = None, stage: str | None = None) -> bool:
    """Filter on reason and stage (exact; a stage ending in `*` is a prefix, e.g.
    `processor:*`)."""
    if reason is not None and row.get("reason") != reason:
        return False
    if stage is not None:
        value = row.get("stage") or ""
        if stage.endswith("*"):
            return value.startswith(stage[:-1])
        return value == stage
    return True


async def read_dead_letters(bootstrap: str, *, idle_s: float | None = None) -> list[RawMessage]:
    """Every record of the dead-letter topic, from the beginning to the current end."""
    from memstream.log.replay import KafkaRange

    records: list[RawMessage] = []
    async for batch in KafkaRange(bootstrap, [DEAD_LETTER.name], idle_s=idle_s).batches():
        records.extend(batch)
    records.sort(key=lambda m: (m.timestamp_ms or 0, m.partition, m.offset))
    return records


def list_dead_letters(
    bootstrap: str,
    limit: int | None = 100,
    reason: str | None = None,
    stage: str | None = None,
    *,
    idle_s: float | None = None,
) -> list[dict[str, Any]]:
    """The newest `limit` dead letters matching `reason` / `stage` (None: all), oldest
    first. Rows: id (`partition:offset`), offset, reason, stage, origin
    topic/partition/offset, tenant, detail, size, replayable, ..."""
    rows = [parse_row(m) for m in asyncio.run(read_dead_letters(bootstrap, idle_s=idle_s))]
    rows = [row for row in rows if matches(row, reason, stage)]
    return rows[-limit:] if limit else rows


def select(
    letters: Iterable[tuple[RawMessage, dict[str, Any]]],
    ids: Sequence[str] | None = None,
    reason: str | None = None,
    stage: str | None = None,
) -> list[tuple[RawMessage, dict[str, Any]]]:
    """The dead letters named by `ids` (`partition:offset`, a bare offset that must then be
    unique, or the dead letter's event id) and matching the filters."""
    letters = list(letters)
    chosen = letters
    if ids:
        wanted: set[tuple[int, int]] = set()
        for raw in ids:
            text = str(raw).strip()
            found = _resolve(letters, text)
            if not found:
                raise LookupError(f"no dead letter {text!r}")
            if len(found) > 1:
                names = ", ".join(letter_id(m.partition, m.offset) for m, _ in found)
                raise LookupError(f"offset {text} is ambiguous ({names}); use partition:offset")
            wanted.add((found[0][0].partition, found[0][0].offset))
        chosen = [(m, r) for m, r in letters if (m.partition, m.offset) in wanted]
    return [(m, r) for m, r in chosen if matches(r, reason, stage)]


def _resolve(
    letters: list[tuple[RawMessage, dict[str, Any]]], text: str
) -> list[tuple[RawMessage, dict[str, Any]]]:
    if ":" in text:
        partition, _, offset = text.partition(":")
        if partition.isdigit() and offset.isdigit():
            p, o = int(partition), int(offset)
            return [(m, r) for m, r in letters if m.partition == p and m.offset == o]
    if text.isdigit():
        return [(m, r) for m, r in letters if m.offset == int(text)]
    try:
        event_id = str(UUID(text))
    except ValueError:
        return []
    return [(m, r) for m, r in letters if r.get("event_id") == event_id]


def original_of(message: RawMessage) -> tuple[str, bytes | None, bytes] | None:
    """(origin topic, original key, original value) of a dead letter, or None when its
    bytes were not kept whole (truncated, no value, unreadable)."""
    try:
        letter = DeadLetter.model_validate_json(message.value or b"")
    except ValidationError:
        return None
    p = letter.payload
    if p.truncated or p.original_value_b64 is None:
        return None
    key = base64.b64decode(p.original_key_b64) if p.original_key_b64 is not None else None
    return p.origin_topic, key, base64.b64decode(p.original_value_b64)


async def replay_dead_letters_async(
    bootstrap: str,
    ids: Sequence[str] | None = None,
    *,
    reason: str | None = None,
    stage: str | None = None,
    idle_s: float | None = None,
) -> int:
    """Re-publish the original bytes of the dead letters named by `ids` (`partition:offset`
    or dead-letter event ids) or matching `reason` / `stage` to their origin topics with
    their original keys; truncated ones are skipped with a warning. Returns how many."""
    from aiokafka import AIOKafkaProducer

    if not ids and reason is None and stage is None:
        raise ValueError("name dead letters (ids) or a filter (reason, stage); refusing all")
    messages = await read_dead_letters(bootstrap, idle_s=idle_s)
    chosen = select([(m, parse_row(m)) for m in messages], ids, reason, stage)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        max_request_size=16 * 1_048_576,
        **kafka_client_kwargs(),
    )
    await producer.start()
    sent = 0
    try:
        pending = []
        for message, row in chosen:
            original = original_of(message)
            if original is None:
                log.warning(
                    "dead letter not replayable (original truncated or missing); skipped",
                    id=row["id"],
                    reason=row.get("reason"),
                    original_size=row.get("original_size"),
                )
                continue
            topic, key, value = original
            pending.append(await producer.send(topic, value, key=key))
            sent += 1
        if pending:
            await asyncio.gather(*pending)
    finally:
        await producer.stop()
    log.info("dead letters re-published", count=sent, chosen=len(chosen))
    return sent


def replay_dead_letters(bootstrap: str, ids: Sequence[str] | None = None, **filters: Any) -> int:
    """`replay_dead_letters_async` (same arguments) in a new event loop."""
    return asyncio.run(replay_dead_letters_async(bootstrap, ids, **filters))


__all__ = [
    "letter_id",
    "list_dead_letters",
    "matches",
    "original_of",
    "parse_row",
    "replay_dead_letters",
    "replay_dead_letters_async",
    "select",
]
