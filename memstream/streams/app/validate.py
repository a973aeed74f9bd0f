"""The validate stage in the worker: each message parsed and checked, deleted memories left
out, and every rejection dead-lettered with its reason."""

from __future__ import annotations

from typing import TYPE_CHECKING

import faust

from memstream.schemas.events import Memory, Observation
from memstream.streams import stage_metrics
from memstream.streams.app.outcomes import VALIDATE_STAGE, _processor_error, log
from memstream.streams.validate import InvalidEvent, dead_letter, validate_event

if TYPE_CHECKING:
    from memstream.streams.app.wiring import Worker


async def reject(w: Worker, err: InvalidEvent, stage_name: str, msg: faust.types.Message) -> None:
    where = {"topic": msg.topic, "partition": msg.partition, "offset": msg.offset}
    letter = dead_letter(
        reason=err.reason,
        detail=err.detail,
        stage=stage_name,
        key=msg.key,
        value=msg.value,
        **where,
    )
    await w.dead.send(key=msg.key, value=letter.to_json())
    w.services.note_dead_letter(letter.tenant)
    log.warning(
        "event rejected",
        stage=stage_name,
        reason=err.reason,
        detail=err.detail,
        **where,
        dead_letter_id=str(letter.event_id),
        event_id=str(letter.parent_ids[0]) if letter.parent_ids else None,
        tenant=letter.tenant,
    )


def without_deleted(
    w: Worker,
    valid: list[tuple[faust.types.Message, Memory | Observation]],
) -> list[tuple[faust.types.Message, Memory | Observation]]:
    """Leave out events whose memory was deleted already (a deletion that overtook its
    memory, a re-read after a crash, a re-import): the tombstone wins."""
    by_tenant: dict[str, list[str]] = {}
    for _, parsed in valid:
        by_tenant.setdefault(parsed.tenant, []).append(str(parsed.event_id))
    gone = {
        (tenant, i) for tenant, ids in by_tenant.items() for i in w.tombstones.deleted(tenant, ids)
    }
    if not gone:
        return valid
    log.info("deleted memories not stored again", count=len(gone))
    return [(m, p) for m, p in valid if (p.tenant, str(p.event_id)) not in gone]


async def validated(
    w: Worker, messages: list[faust.types.Message]
) -> list[tuple[faust.types.Message, Memory | Observation]]:
    """The batch's valid events not deleted yet; the others dead-lettered."""
    valid = []
    rejected: list[str] = []
    with stage_metrics.timed("validate", len(messages)):
        checked = []
        for msg in messages:
            try:
                checked.append(
                    (msg, validate_event(msg.value, msg.topic, w.settings.max_event_bytes))
                )
            except InvalidEvent as err:
                checked.append((msg, err))
            except Exception as exc:  # a bug in validation: still this event's alone
                checked.append((msg, _processor_error(VALIDATE_STAGE, exc)))
    for msg, parsed in checked:
        if isinstance(parsed, InvalidEvent):
            rejected.append(parsed.reason)
            await reject(w, parsed, VALIDATE_STAGE, msg)
            continue
        valid.append((msg, parsed))
    for reason in rejected:
        stage_metrics.STAGE_EVENTS.labels("validate", reason).inc()
    if valid:
        stage_metrics.STAGE_EVENTS.labels("validate", "ok").inc(len(valid))
    return without_deleted(w, valid)
