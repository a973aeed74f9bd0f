"""The worker's agents beside the sink's: the pipeline, records from `indexed`, the
distillation of learning agents' experience, and the feedback learner."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import faust
from pydantic import ValidationError

from memstream.models.feedback_learner import FeedbackLearner
from memstream.schemas.events import Delivery, Feedback, Indexed
from memstream.schemas.topics import DELIVERIES, EXPERIENCE, FEEDBACK, INDEXED
from memstream.streams.app.model import handle_batch
from memstream.streams.app.outcomes import LEARNER_STAGE, _processor_error, log, loop_run
from memstream.streams.app.sink import handle_indexed
from memstream.streams.app.validate import reject
from memstream.streams.distill import DistillationStage, fit_and_publish, take, team_specs
from memstream.streams.validate import InvalidEvent

if TYPE_CHECKING:
    from memstream.streams.app.wiring import Worker


def attach_pipeline(w: Worker) -> None:
    """The model role's pipeline agent over the input topics."""
    app, settings = w.app, w.settings

    @app.agent(w.sources, name="memstream.pipeline")
    async def pipeline(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.batch_size, within=w.window):
            try:
                await handle_batch(w, [event.message for event in events])
            except Exception:
                # Not an event's fault (those become dead letters above): the producer or
                # the broker failed. Faust acks a batch whose handler raised, and would then
                # commit past events neither stored nor dead-lettered; exiting first keeps
                # the offsets where they are, and a restarted worker re-reads the batch.
                log.critical("pipeline batch failed; exiting so that nothing is acked")
                os._exit(70)


def attach_from_indexed(w: Worker) -> None:
    """The agent that stores and/or matches records another process's model stage wrote."""
    app, settings = w.app, w.settings

    @app.agent(app.topic(INDEXED.name, **w.raw), name="memstream.from-indexed")
    async def from_indexed(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.batch_size, within=w.window):
            try:
                await handle_indexed(w, [event.message for event in events])
            except Exception:  # not an event's fault: see `pipeline`
                log.critical("indexed batch failed; exiting so that nothing is acked")
                os._exit(70)


def attach_distill(w: Worker) -> None:
    """Experience of learning agents into their teams' buffers; cycles publish students."""
    app, settings = w.app, w.settings
    distiller = DistillationStage(
        team_specs(settings.distill_teams), settings.data_dir / "models", w.reputation
    )
    w.services.distiller = distiller
    # its own thread: a cycle fits for seconds and must not hold up ingest or queries
    distill_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memstream-distill")

    async def run_cycles(due: list[tuple[str, str]]) -> None:
        for key in due:
            snapshot = distiller.snapshot(key)
            registry = distiller.registry(snapshot.spec)
            try:
                await loop_run(distill_executor, fit_and_publish, snapshot, registry)
            except Exception:  # derived: the next cycle tries again; nothing is lost
                log.exception("distillation cycle failed", tenant=key[0], team=key[1])

    @app.agent(app.topic(EXPERIENCE.name, **w.raw), name="memstream.distill")
    async def distill(stream: faust.StreamT) -> None:
        """Experience of learning agents into their teams' buffers (bad steps are
        dead-lettered with their reason); a cycle publishes a student."""
        async for events in stream.take_events(settings.batch_size, within=w.window):
            for event in events:
                msg = event.message
                try:
                    error = take(
                        distiller,
                        msg.value,
                        msg.partition,
                        msg.offset,
                        settings.max_event_bytes,
                    )
                except Exception as exc:
                    error = _processor_error("distill", exc)
                if error is not None:
                    await reject(w, error, "distill", msg)
            await run_cycles(distiller.due())

    @app.timer(interval=1.0)
    async def distill_when_idle() -> None:
        await run_cycles(distiller.due(idle_s=settings.distill_idle_s))


def attach_learner(w: Worker) -> None:
    """The feedback learner, the authors' reputation and the ledger of the tenants that
    keep one."""
    app, settings, ledger, ledger_tenants = w.app, w.settings, w.ledger, w.ledger_tenants
    reputation = w.reputation
    learner = FeedbackLearner(
        w.registry,
        publish_every=settings.learner_publish_every,
        min_labels=settings.learner_min_labels,
    )
    authors: dict[str, tuple[str, str]] = {}

    learned_topics = [INDEXED.name, FEEDBACK.name] + ([DELIVERIES.name] if ledger_tenants else [])

    @app.agent(app.topic(*learned_topics, **w.raw), name="memstream.learner")
    async def learn(stream: faust.StreamT) -> None:
        """Remember each indexed memory's features and author; learn from feedback; keep
        the ledger of the tenants that have one."""
        async for event in stream.events():
            msg = event.message
            try:
                if msg.topic == DELIVERIES.name:
                    delivery = Delivery.model_validate_json(msg.value or b"")
                    if delivery.tenant in ledger_tenants:
                        ledger.delivery(
                            str(delivery.event_id), delivery.tenant, delivery.payload.recipient
                        )
                    continue
                if msg.topic == INDEXED.name:
                    record = Indexed.model_validate_json(msg.value)
                    memory_id = str(record.event_id)
                    learner.remember(memory_id, record.payload.features)
                    authors[memory_id] = (record.tenant, record.agent_id)
                    if len(authors) > learner.cache_size:
                        authors.pop(next(iter(authors)))
                    continue
                feedback = Feedback.model_validate_json(msg.value or b"")
            except (ValidationError, ValueError) as exc:
                await reject(w, InvalidEvent("invalid_fields", str(exc)[:2000]), LEARNER_STAGE, msg)
                continue
            memory_id = str(feedback.payload.memory_id)
            author = authors.get(memory_id)
            if author is None or author[0] != feedback.tenant:
                # only feedback from the memory's own tenant teaches anything: an id
                # of another tenant's memory (or an unknown one) is ignored
                continue
            try:
                learner.learn(
                    memory_id,
                    feedback.payload.outcome,
                    feedback.payload.score,
                    event_id=str(feedback.event_id),
                    rater_weight=reputation.rater_weight(feedback.tenant, feedback.agent_id),
                    reputation=reputation.get(*author),
                )
                if feedback.tenant in ledger_tenants:
                    ledger.feedback(
                        str(feedback.event_id),
                        feedback.tenant,
                        feedback.agent_id,
                        author[1],
                        feedback.payload.outcome,
                    )
                reputation.record(
                    *author,
                    feedback.payload.outcome,
                    rater=feedback.agent_id,
                    event_id=str(feedback.event_id),
                )
            except Exception as exc:
                await reject(w, _processor_error(LEARNER_STAGE, exc), LEARNER_STAGE, msg)
