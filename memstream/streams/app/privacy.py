"""The privacy stage in the worker: secrets dropped, then the PII scan, in a child process
or a thread of its own."""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor

from memstream.models.providers import allowed_cores
from memstream.privacy.keystore import KeyStore
from memstream.schemas.events import Memory, Observation
from memstream.settings import Settings
from memstream.streams.app.outcomes import MODEL_STAGE, _processor_error, log
from memstream.streams.privacy_stage import (
    ErasedSubject,
    PrivacyStage,
    Protected,
    load_master_key,
    without_secrets,
)
from memstream.streams.validate import InvalidEvent

Screened = Protected | InvalidEvent | ErasedSubject


def protect(
    privacy: PrivacyStage | None, events: list[Memory | Observation]
) -> tuple[list[Memory | Observation], list[Screened]]:
    """Secrets dropped (for every reader, whatever the policy), then the privacy stage:
    the events as the model stage may see them and, per event, its protected text or why
    it is not kept. If the batch fails, event by event, so one bad event is one rejection."""
    try:
        return _protect(privacy, events)
    except Exception:
        log.exception("privacy stage failed on a batch; retrying event by event", size=len(events))
    kept: list[Memory | Observation] = []
    results: list[Screened] = []
    for event in events:
        try:
            one, screened = _protect(privacy, [event])
        except Exception as exc:
            one, screened = [event], [_processor_error(MODEL_STAGE, exc)]
        kept.extend(one)
        results.extend(screened)
    return kept, results


def _protect(
    privacy: PrivacyStage | None, events: list[Memory | Observation]
) -> tuple[list[Memory | Observation], list[Screened]]:
    events = [without_secrets(e) for e in events]
    if privacy is None:
        return events, [Protected.unscanned(e) for e in events]
    return events, list(privacy.process(events))


_CHILD_PRIVACY: PrivacyStage | None = None
"""The privacy stage of a privacy child process (`privacy_executor`)."""


def _start_privacy_child(settings_json: str) -> None:
    global _CHILD_PRIVACY
    settings = Settings.model_validate_json(settings_json)
    _CHILD_PRIVACY = build_privacy_stage(settings)
    _CHILD_PRIVACY.process([])  # load the models now, not on the first batch


def protect_in_child(events: list[Memory | Observation]) -> tuple[list, list[Screened], float]:
    """`protect` with the child process's privacy stage, and the seconds it took."""
    started = time.perf_counter()
    kept, screened = protect(_CHILD_PRIVACY, events)
    return kept, screened, time.perf_counter() - started


def protect_timed(
    privacy: PrivacyStage | None, events: list[Memory | Observation]
) -> tuple[list, list[Screened], float]:
    """`protect` in this process, and the seconds it took."""
    started = time.perf_counter()
    kept, screened = protect(privacy, events)
    return kept, screened, time.perf_counter() - started


def privacy_process_count(settings: Settings) -> int:
    """How many PII scan processes (`MEMSTREAM_PRIVACY_PROCESSES`), never more than the
    cores this worker may use."""
    return max(1, min(settings.privacy_processes, allowed_cores() or os.cpu_count() or 1))


def privacy_executor(settings: Settings) -> Executor:
    """Where the PII scan runs: processes of their own (`MEMSTREAM_PRIVACY_PROCESS`, the
    default), so that its Python-heavy work (spaCy, Presidio, the name resolver) never holds
    the GIL the model thread needs, and so that chunks of a batch are scanned side by side
    (`privacy_process_count`, one by default); else a thread. Each child opens the same key
    store file (SQLite, shared across processes), so its seals and the API's reveals agree.
    The pool starts a second process only when two chunks wait at once."""
    if settings.pii_enabled and settings.privacy_process:
        return ProcessPoolExecutor(
            max_workers=privacy_process_count(settings),
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_privacy_child,
            initargs=(settings.model_dump_json(),),
        )
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="memstream-privacy")


def build_privacy_stage(settings: Settings, keystore: KeyStore | None = None) -> PrivacyStage:
    from memstream.privacy.detect import PiiDetector
    from memstream.privacy.policy import PrivacyPolicy

    policy = PrivacyPolicy(
        default_action=settings.pii_default_action,
        topics=settings.pii_topic_actions,
        sealed=settings.pii_sealed,
        tenant_sealed=settings.pii_tenant_sealed,
        topic_sealed=settings.pii_topic_sealed,
    )
    return PrivacyStage(
        PiiDetector(settings.pii_tier),
        policy,
        load_master_key(settings.data_dir, settings.master_key),
        keystore or KeyStore(settings.data_dir / "keys.db"),
    )
