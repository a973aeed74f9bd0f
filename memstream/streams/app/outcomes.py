"""What a stage makes of one event, the stage names, and the small pieces every stage uses."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from memstream.logging import get_logger
from memstream.schemas.events import Indexed
from memstream.streams.privacy_stage import ErasedSubject
from memstream.streams.validate import InvalidEvent

log = get_logger("memstream.worker")

VALIDATE_STAGE = "validate"
MODEL_STAGE = "model"
SINK_STAGE = "sink"
LEARNER_STAGE = "learner"

Outcome = Indexed | InvalidEvent | ErasedSubject
"""What the privacy and model stages make of one event: a record to store, a rejection to
dead-letter, or an event of an erased subject, which is neither."""


def _rejection_reason(outcome: object) -> str | None:
    """The reason a stage dropped an event; None for one it passed on."""
    if isinstance(outcome, InvalidEvent):
        return outcome.reason
    if isinstance(outcome, ErasedSubject):
        return "erased_subject"
    return None


async def loop_run(executor: ThreadPoolExecutor, fn, *args):  # type: ignore[no-untyped-def]
    return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)


def _processor_error(stage_name: str, exc: BaseException) -> InvalidEvent:
    return InvalidEvent("processor_error", f"{stage_name}: {type(exc).__name__}: {exc}"[:2000])
