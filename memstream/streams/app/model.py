"""The model stage in the worker: each batch validated, screened by the privacy thread and
embedded by the model thread, sub-batch by sub-batch, then stored and announced."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import faust

from memstream.models.taxonomy import TAXONOMY_FILE, TaxonomyBook
from memstream.schemas.events import Memory, Observation
from memstream.schemas.topics import INDEXED, LINKS, VERDICTS
from memstream.settings import Settings
from memstream.streams import stage_metrics
from memstream.streams.annotate import LinkingStage, TaggingStage
from memstream.streams.app.outcomes import (
    MODEL_STAGE,
    Outcome,
    _processor_error,
    _rejection_reason,
    log,
)
from memstream.streams.app.privacy import Screened, protect, protect_in_child, protect_timed
from memstream.streams.app.sink import sink_and_match
from memstream.streams.app.validate import reject, validated
from memstream.streams.enrich import ModelStage, links_event, verification_report
from memstream.streams.privacy_stage import ErasedSubject, PrivacyStage, Protected
from memstream.streams.validate import InvalidEvent

if TYPE_CHECKING:
    from memstream.streams.app.wiring import Worker


def enrich_or_reject(
    stage: ModelStage, events: list[Memory | Observation], privacy: PrivacyStage | None = None
) -> list[Outcome]:
    """The batch through the privacy and model stages, one after the other (the worker
    overlaps the two on different sub-batches: `protect` then `embed_protected`)."""
    scrubbed, protected = protect(privacy, events)
    return embed_protected(stage, scrubbed, protected)


def embed_protected(
    stage: ModelStage, events: list[Memory | Observation], screened: list[Screened]
) -> list[Outcome]:
    """The model stage on the events the privacy stage kept; the others keep their
    rejection. If the batch fails, event by event."""
    kept = [i for i, p in enumerate(screened) if isinstance(p, Protected)]
    results: list[Outcome] = list(screened)  # type: ignore[arg-type]
    try:
        records = stage.process([events[i] for i in kept], protected=[screened[i] for i in kept])  # type: ignore[misc]
    except Exception:
        log.exception("model stage failed on a batch; retrying event by event", size=len(kept))
        records = []
        for i in kept:
            try:
                records.extend(stage.process([events[i]], protected=[screened[i]]))  # type: ignore[list-item]
            except Exception as exc:
                records.append(_processor_error(MODEL_STAGE, exc))  # type: ignore[arg-type]
    for i, record in zip(kept, records, strict=True):
        results[i] = record
    return results


def embed_timed(
    stage: ModelStage, events: list[Memory | Observation], screened: list[Screened]
) -> list[Outcome]:
    """`embed_protected`, timed as the model stage (in the model thread)."""
    with stage_metrics.timed("model", sum(isinstance(p, Protected) for p in screened)):
        return embed_protected(stage, events, screened)


def annotation_stages(settings: Settings, embedder: object) -> dict[str, Any]:
    """The model stage's tagging and linking stages, as the settings ask."""
    return {
        "tagging": TaggingStage(TaxonomyBook(settings.data_dir / TAXONOMY_FILE), embedder)
        if settings.tagging_enabled
        else None,
        "linking": LinkingStage() if settings.linking_enabled else None,
    }


async def handle_batch(w: Worker, messages: list[faust.types.Message]) -> None:
    """Every message of the batch ends stored (and on `indexed`) or dead-lettered with
    its reason: a failure of one event, at any stage, is that event's dead letter."""
    producer = w.app.producer
    loop = asyncio.get_running_loop()
    valid = await validated(w, messages)
    if not valid:
        return
    if not w.settings.model_stage_enabled:  # validate-only mode (benchmarks, debugging)
        for msg, parsed in valid:
            await producer.send(
                INDEXED.name, str(parsed.event_id).encode(), msg.value, None, None, None
            )
        return
    # Sub-batches through two threads: while the model thread embeds and stores one,
    # the privacy thread scans the next (its futures queue on its one thread, in order).
    size = w.settings.model_chunk_size
    chunks = [valid[i : i + size] for i in range(0, len(valid), size)]
    screening = [
        loop.run_in_executor(w.screening_executor, protect_in_child, [p for _, p in chunk])
        if w.in_child
        else loop.run_in_executor(
            w.screening_executor, protect_timed, w.privacy, [p for _, p in chunk]
        )
        for chunk in chunks
    ]
    for chunk, screened in zip(chunks, screening, strict=True):
        events, protected, scan_s = await screened
        stage_metrics.observe("privacy", len(chunk), scan_s)
        stage_metrics.count_outcomes("privacy", protected, _rejection_reason)
        for item in protected:
            if isinstance(item, Protected) and item.pii_types:
                stage_metrics.count_privacy(item.pii_types, item.action)
        results = await loop.run_in_executor(w.executor, embed_timed, w.stage, events, protected)
        stage_metrics.count_outcomes("model", results, _rejection_reason)
        await store_and_announce(w, chunk, results)


async def store_and_announce(
    w: Worker,
    valid: list[tuple[faust.types.Message, Memory | Observation]],
    results: list[Outcome],
) -> None:
    producer = w.app.producer
    # with the sink role here: the store first, then `indexed` (a crash in between
    # replays into the same points: ids are memory ids, nothing is lost or doubled);
    # without it, `indexed` is the hand-over to the sink processes
    await sink_and_match(w, results)
    for (msg, parsed), result in zip(valid, results, strict=True):
        if isinstance(result, InvalidEvent):
            await reject(w, result, result.stage or MODEL_STAGE, msg)
            continue
        if isinstance(result, ErasedSubject):
            log.info(
                "memory of an erased subject not kept",
                event_id=str(parsed.event_id),
                tenant=parsed.tenant,
            )
            w.services.counts["erased"] = w.services.counts.get("erased", 0) + 1
            continue
        # The producer directly, not Topic.send: Faust's per-message bookkeeping
        # (FutureMessage, attachments, sensors) cost more than validating. Faust
        # still flushes this producer before every offset commit.
        await producer.send(
            INDEXED.name, str(parsed.event_id).encode(), result.to_json(), None, None, None
        )
        annotated = links_event(result)
        if annotated is not None:
            await producer.send(
                LINKS.name, str(parsed.event_id).encode(), annotated.to_json(), None, None, None
            )
        report = verification_report(result)
        if report is not None:
            await producer.send(
                VERDICTS.name, str(parsed.event_id).encode(), report.to_json(), None, None, None
            )
