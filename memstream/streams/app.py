"""The Faust app: validate -> model stage -> `indexed`, rejects to `dead-letter`; the learner.

Topics carry raw bytes (`value_serializer="raw"`) so that undecodable input reaches our own
`validate_event` instead of crashing Faust's codec. Events are taken in batches
(`Stream.take_events`: up to `batch_size` events or `batch_window_ms`), validated, then
embedded, valued and compressed as one batch in a worker thread. Outputs go to the
producer before the batch is acked, and Faust flushes the producer before it commits
offsets, so delivery is at-least-once.
"""

from __future__ import annotations

import asyncio
import atexit
import multiprocessing
import os
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any
from uuid import UUID

import faust
from pydantic import Field, TypeAdapter, ValidationError

from memstream.logging import get_logger
from memstream.models.admission import admission_bar
from memstream.models.embedding import load_embedder
from memstream.models.feedback_learner import FeedbackLearner
from memstream.models.ledger import Ledger
from memstream.models.registry import HotSwapScorer, ModelRegistry
from memstream.models.reputation import ReputationBook
from memstream.models.taxonomy import TAXONOMY_FILE, TaxonomyBook
from memstream.privacy.keystore import KeyStore
from memstream.schemas.events import (
    Deletion,
    Delivery,
    Erasure,
    Feedback,
    Indexed,
    Memory,
    Observation,
)
from memstream.schemas.topics import (
    CATALOGUE,
    CONFLICTS,
    DEAD_LETTER,
    DELIVERIES,
    ERASURES,
    EXPERIENCE,
    FEEDBACK,
    INDEXED,
    INPUT_KINDS,
    LINKS,
    POOLED,
    VERDICTS,
)
from memstream.services.runtime import WorkerServices, attach_api, attach_health
from memstream.settings import Settings
from memstream.store.conflicts import resolve_conflicts
from memstream.store.faults import StoreStatus
from memstream.store.sink import call_retrying, open_when_available, write_isolated
from memstream.store.token_vectors import TokenVectorStore
from memstream.store.tombstones import TOMBSTONES_FILE, Tombstones
from memstream.streams import stage_metrics
from memstream.streams.annotate import LinkingStage, TaggingStage
from memstream.streams.distill import DistillationStage, fit_and_publish, take, team_specs
from memstream.streams.enrich import ModelStage, links_event, verification_report
from memstream.streams.faust_app import LowLatencyApp
from memstream.streams.plugins import attach_archive, attach_processors
from memstream.streams.privacy_stage import (
    ErasedSubject,
    PrivacyStage,
    Protected,
    load_master_key,
    without_secrets,
)
from memstream.streams.team_pool import TeamPoolStage
from memstream.streams.validate import InvalidEvent, dead_letter, validate_event

log = get_logger("memstream.worker")

VALIDATE_STAGE = "validate"
MODEL_STAGE = "model"
SINK_STAGE = "sink"
LEARNER_STAGE = "learner"
CONSUMER_METADATA_MAX_AGE_MS = 10_000


def broker_urls(bootstrap: str) -> list[str]:
    """`h1:p1,h2:p2` -> Faust's `["kafka://h1:p1", "kafka://h2:p2"]`."""
    return [f"kafka://{host.strip()}" for host in bootstrap.split(",") if host.strip()]


Outcome = Indexed | InvalidEvent | ErasedSubject
"""What the privacy and model stages make of one event: a record to store, a rejection to
dead-letter, or an event of an erased subject, which is neither."""


def enrich_or_reject(
    stage: ModelStage, events: list[Memory | Observation], privacy: PrivacyStage | None = None
) -> list[Outcome]:
    """The batch through the privacy and model stages, one after the other (the worker
    overlaps the two on different sub-batches: `protect` then `embed_protected`)."""
    scrubbed, protected = protect(privacy, events)
    return embed_protected(stage, scrubbed, protected)


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


def privacy_executor(settings: Settings) -> Executor:
    """Where the PII scan runs: a process of its own (`MEMSTREAM_PRIVACY_PROCESS`, the
    default), so that its Python-heavy work (spaCy, Presidio, the name resolver) never holds
    the GIL the model thread needs; else a thread. The child opens the same key store file
    (SQLite, shared across processes), so its seals and the API's reveals agree."""
    if settings.pii_enabled and settings.privacy_process:
        return ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_privacy_child,
            initargs=(settings.model_dump_json(),),
        )
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="memstream-privacy")


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


def _erase(
    keystore: KeyStore,
    store: object,
    tenant: str,
    subject_id: str,
    token_store: TokenVectorStore | None = None,
) -> int:
    """Delete the subject's key, its memories, the record keys of those memories (so
    their raw copies in the archive go too) and their kept token vectors; returns how many
    memories were deleted."""
    keystore.erase(tenant, subject_id)
    ids = store.delete_subject(tenant, subject_id)  # type: ignore[attr-defined]
    keystore.erase_records(tenant, [str(i) for i in ids])
    if token_store is not None:
        token_store.delete_memories(ids)
    return len(ids)


removal_adapter: TypeAdapter[Erasure | Deletion] = TypeAdapter(
    Annotated[Erasure | Deletion, Field(discriminator="kind")]
)
"""What `memstream.erasures` carries: subject erasures and memory deletions."""


def _delete(
    tombstones: Tombstones,
    keystore: KeyStore,
    store: object,
    deletion: Deletion,
    token_store: TokenVectorStore | None = None,
) -> int:
    """Apply a deletion: tombstones first (so a memory still in the pipeline is not stored
    after it, and a replay leaves it out), then the store, the record keys of the archived
    raw copies and the kept token vectors; returns how many points were deleted."""
    ids = list(deletion.payload.memory_ids)
    tombstones.add(deletion.tenant, ids, deletion.payload.reason, deletion.event_id)
    deleted = store.delete(deletion.tenant, ids)  # type: ignore[attr-defined]
    keystore.erase_records(deletion.tenant, [str(i) for i in ids])
    if token_store is not None:
        token_store.delete_memories(ids)
    return int(deleted)


class _Reaper:
    """Publishes a deletion for each memory whose time to live has ended (search and
    deliveries already leave it out from that instant). Each id is asked for once a minute
    at most, until its deletion has been applied."""

    def __init__(self, store: object, every_s: float = 60.0) -> None:
        self.store = store
        self.every_s = every_s
        self.asked: dict[UUID, float] = {}

    def due(self, now: datetime, limit: int = 500) -> dict[str, list[UUID]]:
        """Expired memory ids to delete now, per tenant."""
        clock = time.monotonic()
        self.asked = {i: t for i, t in self.asked.items() if clock - t < self.every_s}
        out: dict[str, list[UUID]] = {}
        for tenant, memory_id in self.store.expired_ids(now, limit):  # type: ignore[attr-defined]
            if memory_id not in self.asked:
                self.asked[memory_id] = clock
                out.setdefault(tenant, []).append(memory_id)
        return out


DERIVED_TOPICS = frozenset(
    {DELIVERIES.name, VERDICTS.name, LINKS.name, CONFLICTS.name, POOLED.name}
)
"""Topics a replay derives again from the others: not archived. Deliveries also hold
personal values in clear for cleared recipients, which no archive should keep."""


def archived_topics() -> list[str]:
    """The catalogue but the derived topics."""
    return [t.name for t in CATALOGUE if t.name not in DERIVED_TOPICS]


def annotation_stages(settings: Settings, embedder: object) -> dict[str, Any]:
    """The model stage's tagging and linking stages, as the settings ask."""
    return {
        "tagging": TaggingStage(TaxonomyBook(settings.data_dir / TAXONOMY_FILE), embedder)
        if settings.tagging_enabled
        else None,
        "linking": LinkingStage() if settings.linking_enabled else None,
    }


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


class _Optimizer:
    """Builds the store's indexes every `every` new points, or once writes have paused for
    `idle_s` with some pending, in the model thread (Qdrant Edge's optimize() blocks
    searches and writes for its whole run: seconds at 20k points). Never on a timer while
    memories keep coming, where it would stall every search and push behind it; until then
    the new points are searched by brute force, which stays fast at that size."""

    def __init__(self, store: object, every: int = 20_000, idle_s: float = 5.0) -> None:
        self.store = store
        self.every = every
        self.idle_s = idle_s
        self.pending = 0
        self.last_write = time.monotonic()

    def maybe_optimize(self, written: int) -> None:
        """After a write: optimize if `every` points are pending."""
        self.pending += written
        if written:
            self.last_write = time.monotonic()
        if self.pending >= self.every:
            self._optimize()

    def maybe_optimize_idle(self) -> None:
        """From a timer: optimize pending points once writes have paused."""
        if self.pending and time.monotonic() - self.last_write >= self.idle_s:
            self._optimize()

    def _optimize(self) -> None:
        try:
            self.store.optimize()  # type: ignore[attr-defined]
        except Exception:  # searches stay correct (brute force) without the indexes
            log.exception("store optimize failed; will try again later")
        self.pending = 0


def create_app(settings: Settings, bootstrap: str, *, tansu: bool = False) -> faust.App:
    """A Faust app wired to `bootstrap` with the pipeline and learner agents registered.

    Tansu holds JoinGroup for half the session timeout, so against it the session is 4 s
    and heartbeats 1 s (FIELD-NOTES); Apache Kafka refuses sessions under 6 s by default.
    """
    session_timeout = 4.0 if tansu else settings.session_timeout_s
    roles = settings.worker_roles()
    app = LowLatencyApp(
        roles.consumer_group(settings.consumer_group),
        broker=broker_urls(bootstrap),
        broker_credentials=settings.kafka_security().faust_credentials(),
        store="memory://",
        autodiscover=False,
        web_enabled=False,
        topic_allow_declare=False,  # the catalogue creates topics (memstream.streams.admin)
        topic_disable_leader=True,
        broker_session_timeout=session_timeout,
        broker_heartbeat_interval=min(3.0, session_timeout / 4),
        broker_commit_every=1000,
        broker_commit_interval=1.0,
        # the model stage may hold a batch for seconds; that is not a stuck consumer
        broker_max_poll_interval=300.0,
        producer_acks=-1,
        # Faust's default linger of 0 sends one produce request per event: the stage then
        # waits on the network per event (measured: 17.7k requests for 20k events).
        producer_linger=settings.producer_linger_ms / 1000,
        producer_max_batch_size=256 * 1024,
        producer_max_request_size=16 * 1_048_576,
        consumer_max_fetch_size=16 * 1_048_576,
        consumer_auto_offset_reset="earliest",
        # aiokafka does not refresh metadata when a ListOffsets answers "not the leader"
        # (a partition's position is looked up after every rebalance): after a broker was
        # partitioned away (SIGSTOP, `memstream bench faults --fault pause`) the worker
        # kept asking the old leader until the next periodic refresh, 5 minutes by
        # default, and indexed nothing meanwhile. A short metadata age bounds that stall.
        consumer_metadata_max_age_ms=CONSUMER_METADATA_MAX_AGE_MS,
        stream_buffer_maxsize=max(4096, settings.batch_size * 2),
    )
    raw = {"key_serializer": "raw", "value_serializer": "raw"}
    sources = app.topic(*INPUT_KINDS, **raw)
    dead = app.topic(DEAD_LETTER.name, **raw)
    window = settings.batch_window_ms / 1000

    registry = ModelRegistry(settings.data_dir / "models", "valuation")
    reputation = ReputationBook(
        settings.data_dir / "reputation.db",
        seeds=settings.reputation_seed_map(),
        floor=settings.reputation_floor,
    )
    token_store = TokenVectorStore(settings.data_dir / "token_vectors.db")
    stage: ModelStage | None = None
    if roles.model:
        # the ingest session sleeps when idle: the PII scan runs beside it on the same cores
        embedder = load_embedder(settings.embedder, settings.onnx_provider, spin=False)
        stage = ModelStage(
            embedder,
            HotSwapScorer(registry, check_every_s=settings.valuation_check_s),
            reputation=reputation,
            duplicate_cosine=settings.duplicate_cosine,
            token_store=token_store,
            **annotation_stages(settings, embedder),
        )
        providers = getattr(stage.embedder, "providers", None) or ["none"]
        stage_metrics.MODEL_INFO.labels(stage.embedder.version, providers[0]).set(1)
        log.info(
            "model stage ready",
            embedding=stage.embedder.version,
            providers=getattr(stage.embedder, "providers", None),
            valuation=stage.scorer.label,
        )
    keystore = KeyStore(settings.data_dir / "keys.db")
    tombstones = Tombstones(settings.data_dir / TOMBSTONES_FILE)
    privacy = build_privacy_stage(settings, keystore) if settings.pii_enabled else None
    # Three paths, each its own thread, so that none waits behind another: the PII scan
    # (spaCy, one core), the model stage with the store writes (ONNX), and queries (search,
    # API reads) with their own small ONNX session.
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memstream-model")
    screening_executor = privacy_executor(settings)
    in_child = isinstance(screening_executor, ProcessPoolExecutor)
    query_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memstream-query")
    serve_api = roles.api and (settings.serve or not roles.everything)
    if stage is None:  # queries and subscriptions still need the embedding
        # spin=False: spinning ONNX threads starve the store's own search threads (search
        # p50 38 -> 17 ms measured in `memstream eval retrieval`)
        query_embedder = load_embedder(settings.embedder, settings.onnx_provider, spin=False)
    elif serve_api and settings.embedder == "minilm":
        query_embedder = load_embedder(settings.embedder, settings.onnx_provider, threads=1)
    else:
        query_embedder = stage.embedder
    from memstream.store import open_store

    # a store that fails (a server not up yet, a full disk) is waited for, with backoff;
    # the model and match roles never touch it
    store = (
        open_when_available(
            lambda: open_store(
                settings.store_location(),
                min_free_bytes=int(settings.store_min_free_mb * 1_048_576),
                shards=settings.store_shards,
                replicas=settings.store_replicas,
            )
        )
        if roles.needs_store
        else None
    )
    store_status = StoreStatus()  # the sink's view of the store, for /healthz and /metrics
    optimizer = _Optimizer(store)
    admission = admission_bar(settings.admission_bar, reputation.quarantined)
    app.memstream_store = store  # type: ignore[attr-defined]
    services = WorkerServices(
        app,
        bootstrap,
        store,  # type: ignore[arg-type]  # None only where no route or stage reads it
        query_embedder,
        query_executor,
        settings.ranking_weights(),
        privacy,
        model_executor=executor,
        kept_tokens=token_store,
        store_status=store_status,
    )
    services.reputation = reputation
    ledger = Ledger(
        settings.data_dir / "ledger.db", settings.ledger_rules(), reputation.rater_weight
    )
    ledger_tenants = frozenset(settings.ledger_tenants)
    services.ledger = ledger
    services.team_pool = TeamPoolStage() if roles.sink else None
    services.taxonomies = TaxonomyBook(settings.data_dir / TAXONOMY_FILE)
    services.ledger_tenants = ledger_tenants
    services.students = {
        (spec.tenant, spec.model): spec for spec in team_specs(settings.distill_teams)
    }
    services.models_dir = settings.data_dir / "models"
    app.memstream_services = services  # type: ignore[attr-defined]
    if store is not None:
        atexit.register(store.close)  # flushes the shard when the worker exits
    log.info("worker roles", roles=roles.label, group=app.conf.id)

    async def reject(err: InvalidEvent, stage_name: str, msg: faust.types.Message) -> None:
        letter = dead_letter(
            reason=err.reason,
            detail=err.detail,
            stage=stage_name,
            topic=msg.topic,
            partition=msg.partition,
            offset=msg.offset,
            key=msg.key,
            value=msg.value,
        )
        await dead.send(key=msg.key, value=letter.to_json())
        services.note_dead_letter(letter.tenant)
        log.warning(
            "event rejected",
            stage=stage_name,
            reason=err.reason,
            detail=err.detail,
            topic=msg.topic,
            partition=msg.partition,
            offset=msg.offset,
            dead_letter_id=str(letter.event_id),
            event_id=str(letter.parent_ids[0]) if letter.parent_ids else None,
            tenant=letter.tenant,
        )

    def without_deleted(
        valid: list[tuple[faust.types.Message, Memory | Observation]],
    ) -> list[tuple[faust.types.Message, Memory | Observation]]:
        """Leave out events whose memory was deleted already (a deletion that overtook its
        memory, a re-read after a crash, a re-import): the tombstone wins."""
        by_tenant: dict[str, list[str]] = {}
        for _, parsed in valid:
            by_tenant.setdefault(parsed.tenant, []).append(str(parsed.event_id))
        gone = {
            (tenant, i)
            for tenant, ids in by_tenant.items()
            for i in tombstones.deleted(tenant, ids)
        }
        if not gone:
            return valid
        log.info("deleted memories not stored again", count=len(gone))
        return [(m, p) for m, p in valid if (p.tenant, str(p.event_id)) not in gone]

    async def handle_batch(messages: list[faust.types.Message]) -> None:
        """Every message of the batch ends stored (and on `indexed`) or dead-lettered with
        its reason: a failure of one event, at any stage, is that event's dead letter."""
        producer = app.producer
        loop = asyncio.get_running_loop()
        valid = []
        rejected: list[str] = []
        with stage_metrics.timed("validate", len(messages)):
            checked = []
            for msg in messages:
                try:
                    checked.append(
                        (msg, validate_event(msg.value, msg.topic, settings.max_event_bytes))
                    )
                except InvalidEvent as err:
                    checked.append((msg, err))
                except Exception as exc:  # a bug in validation: still this event's alone
                    checked.append((msg, _processor_error(VALIDATE_STAGE, exc)))
        for msg, parsed in checked:
            if isinstance(parsed, InvalidEvent):
                rejected.append(parsed.reason)
                await reject(parsed, VALIDATE_STAGE, msg)
                continue
            valid.append((msg, parsed))
        for reason in rejected:
            stage_metrics.STAGE_EVENTS.labels("validate", reason).inc()
        if valid:
            stage_metrics.STAGE_EVENTS.labels("validate", "ok").inc(len(valid))
        valid = without_deleted(valid)
        if not valid:
            return
        if not settings.model_stage_enabled:  # validate-only mode (benchmarks, debugging)
            for msg, parsed in valid:
                await producer.send(
                    INDEXED.name, str(parsed.event_id).encode(), msg.value, None, None, None
                )
            return
        # Sub-batches through two threads: while the model thread embeds and stores one,
        # the privacy thread scans the next (its futures queue on its one thread, in order).
        size = settings.model_chunk_size
        chunks = [valid[i : i + size] for i in range(0, len(valid), size)]
        screening = [
            loop.run_in_executor(screening_executor, protect_in_child, [p for _, p in chunk])
            if in_child
            else loop.run_in_executor(
                screening_executor, protect_timed, privacy, [p for _, p in chunk]
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
            results = await loop.run_in_executor(executor, embed_timed, stage, events, protected)
            stage_metrics.count_outcomes("model", results, _rejection_reason)
            await store_and_announce(chunk, results)

    async def store_and_announce(
        valid: list[tuple[faust.types.Message, Memory | Observation]], results: list[Outcome]
    ) -> None:
        producer = app.producer
        # with the sink role here: the store first, then `indexed` (a crash in between
        # replays into the same points: ids are memory ids, nothing is lost or doubled);
        # without it, `indexed` is the hand-over to the sink processes
        await sink_and_match(results)
        for (msg, parsed), result in zip(valid, results, strict=True):
            if isinstance(result, InvalidEvent):
                await reject(result, result.stage or MODEL_STAGE, msg)
                continue
            if isinstance(result, ErasedSubject):
                log.info(
                    "memory of an erased subject not kept",
                    event_id=str(parsed.event_id),
                    tenant=parsed.tenant,
                )
                services.counts["erased"] = services.counts.get("erased", 0) + 1
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

    async def sink_and_match(results: list[Outcome]) -> None:
        """This process's share of the stored records: into the store (sink role; a record
        the store refuses becomes a `store_error` in `results`), then matched against the
        subscriptions (match role)."""
        loop = asyncio.get_running_loop()
        positions = [i for i, r in enumerate(results) if isinstance(r, Indexed)]
        if admission is not None and positions:
            # kept out of the pool: on the log still, but neither stored nor pushed
            admitted = [i for i in positions if admission.admits(results[i])]  # type: ignore[arg-type]
            if len(admitted) < len(positions):
                services.note_kept_out(len(positions) - len(admitted))
                positions = admitted
        if not positions:
            return
        if roles.sink:
            stored = [results[i] for i in positions]
            # while the store fails, this retries (with backoff) until it returns: the batch
            # is not acked meanwhile, so no offset is committed past an unwritten memory
            with stage_metrics.timed("sink", len(stored)):
                outcomes = await loop.run_in_executor(
                    executor, partial(write_isolated, store, stored, status=store_status)
                )
            stage_metrics.count_outcomes(
                "sink", outcomes, lambda e: None if e is None else "store_error"
            )
            for i, error in zip(positions, outcomes, strict=True):
                if error is not None:
                    results[i] = InvalidEvent(
                        "store_error", f"{type(error).__name__}: {error}"[:2000], SINK_STAGE
                    )
            written = [results[i] for i in positions if isinstance(results[i], Indexed)]
            await loop.run_in_executor(executor, optimizer.maybe_optimize, len(written))
            conflicts = await loop.run_in_executor(
                executor, partial(call_retrying, store, resolve_conflicts, store, written)
            )
            for conflict in conflicts:
                key = f"{conflict.tenant}/{conflict.payload.subject}"[:256].encode()
                await app.producer.send(CONFLICTS.name, key, conflict.to_json(), None, None, None)
            services.note_conflicts(len(conflicts))
            try:  # derived: a fault here must never hold up the store's batch
                pooled = await loop.run_in_executor(executor, services.team_pool.update, written)
            except Exception:
                log.exception("pooled team state not updated for a batch", size=len(written))
                pooled = []
            for state in pooled:
                key = f"{state.tenant}/{state.payload.team}".encode()
                await app.producer.send(POOLED.name, key, state.to_json(), None, None, None)
        else:
            written = [results[i] for i in positions]
        if roles.match:
            fresh = [r for r in written if r.payload.duplicate_of is None]
            with stage_metrics.timed("match", len(fresh)):
                deliveries = await loop.run_in_executor(executor, services.match, fresh)
            await services.send_deliveries(deliveries)
        else:
            services.note_indexed(len(written))

    async def handle_indexed(messages: list[faust.types.Message]) -> None:
        """Records the model stage wrote to `indexed` elsewhere: stored and/or matched here;
        one that does not parse or that the store refuses is dead-lettered with its reason."""
        results: list[Outcome] = []
        for msg in messages:
            try:
                results.append(Indexed.model_validate_json(msg.value or b""))
            except (ValidationError, ValueError) as exc:
                results.append(InvalidEvent("invalid_fields", str(exc)[:2000], SINK_STAGE))
        await sink_and_match(results)
        for msg, result in zip(messages, results, strict=True):
            if isinstance(result, InvalidEvent):
                await reject(result, result.stage or SINK_STAGE, msg)

    if roles.reads_indexed():

        @app.agent(app.topic(INDEXED.name, **raw), name="memstream.from-indexed")
        async def from_indexed(stream: faust.StreamT) -> None:
            async for events in stream.take_events(settings.batch_size, within=window):
                try:
                    await handle_indexed([event.message for event in events])
                except Exception:  # not an event's fault: see `pipeline`
                    log.critical("indexed batch failed; exiting so that nothing is acked")
                    os._exit(70)

    if roles.model:

        @app.agent(sources, name="memstream.pipeline")
        async def pipeline(stream: faust.StreamT) -> None:
            async for events in stream.take_events(settings.batch_size, within=window):
                try:
                    await handle_batch([event.message for event in events])
                except Exception:
                    # Not an event's fault (those become dead letters above): the producer or
                    # the broker failed. Faust acks a batch whose handler raised, and would then
                    # commit past events neither stored nor dead-lettered; exiting first keeps
                    # the offsets where they are, and a restarted worker re-reads the batch.
                    log.critical("pipeline batch failed; exiting so that nothing is acked")
                    os._exit(70)

    if roles.sink:

        @app.agent(app.topic(ERASURES.name, **raw), name="memstream.erasure")
        async def erase(stream: faust.StreamT) -> None:
            """Right to be forgotten: delete the subject's key (its sealed values become noise
            everywhere, replays included) and its memories in the store."""
            async for event in stream.events():
                msg = event.message
                try:
                    removal = removal_adapter.validate_json(msg.value or b"")
                except ValidationError as exc:
                    await reject(InvalidEvent("invalid_fields", str(exc)[:2000]), "erasure", msg)
                    continue
                if isinstance(removal, Deletion):
                    try:
                        deleted = await loop_run(  # a store outage delays it (no dead letter)
                            executor,
                            partial(call_retrying, store, _delete, status=store_status),
                            tombstones,
                            keystore,
                            store,
                            removal,
                            token_store,
                        )
                    except Exception as exc:
                        await reject(_processor_error("deletion", exc), "deletion", msg)
                        continue
                    log.info(
                        "memories deleted",
                        tenant=removal.tenant,
                        reason=removal.payload.reason,
                        requested=len(removal.payload.memory_ids),
                        deleted=deleted,
                    )
                    continue
                erasure = removal
                tenant, subject = erasure.tenant, erasure.payload.subject_id
                try:
                    deleted = await loop_run(
                        executor,
                        partial(call_retrying, store, _erase, status=store_status),
                        keystore,
                        store,
                        tenant,
                        subject,
                        token_store,
                    )
                except Exception as exc:  # dead-lettered, so an operator can re-drive it
                    await reject(_processor_error("erasure", exc), "erasure", msg)
                    continue
                log.info(
                    "subject erased", tenant=tenant, subject_id=subject, memories_deleted=deleted
                )

        @app.timer(interval=1.0)
        async def optimize_when_idle() -> None:
            await loop_run(executor, optimizer.maybe_optimize_idle)

        reaper = _Reaper(store)

        @app.timer(interval=30.0)
        async def count_store_points() -> None:
            try:
                stage_metrics.STORE_POINTS.set(await loop_run(query_executor, store.count))
            except Exception:  # a failing store is reported by /healthz and its own metrics
                pass

        @app.timer(interval=1.0)
        async def reap_expired() -> None:
            """Time to live: a deletion event on the log for each expired memory."""
            try:
                due = await loop_run(query_executor, reaper.due, datetime.now(UTC))
                for tenant, ids in due.items():
                    await services.delete(tenant, "memstream-ttl", ids, "expired")
            except Exception:  # the next tick tries again; search already hides them
                log.exception("expiry sweep failed")

    if roles.match or roles.api:

        @app.task
        async def subscriptions() -> None:
            await services.follow_subscriptions()

    if settings.lag_interval_s > 0 and not tansu:  # Tansu's end offsets are wrong
        from memstream.streams.lag import LagMonitor

        lag_monitor = LagMonitor(bootstrap)

        @app.timer(interval=settings.lag_interval_s)
        async def read_consumer_lag() -> None:
            await lag_monitor.refresh()

    if serve_api:
        attach_api(app, services, settings)
    elif not roles.everything:  # probes and scrapes reach every role (deploy/k8s)
        attach_health(app, services, settings)

    if roles.sink and settings.processors_enabled:
        attach_processors(app, settings, dead, None)  # None: plug-ins get their own thread
    if roles.sink and settings.archive_enabled:
        attach_archive(app, settings, settings.data_dir / "archive", archived_topics())

    if roles.sink:
        distiller = DistillationStage(
            team_specs(settings.distill_teams), settings.data_dir / "models", reputation
        )
        services.distiller = distiller
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

        @app.agent(app.topic(EXPERIENCE.name, **raw), name="memstream.distill")
        async def distill(stream: faust.StreamT) -> None:
            """Experience of learning agents into their teams' buffers (bad steps are
            dead-lettered with their reason); a cycle publishes a student."""
            async for events in stream.take_events(settings.batch_size, within=window):
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
                        await reject(error, "distill", msg)
                await run_cycles(distiller.due())

        @app.timer(interval=1.0)
        async def distill_when_idle() -> None:
            await run_cycles(distiller.due(idle_s=settings.distill_idle_s))

    if roles.sink and settings.learner_enabled:
        learner = FeedbackLearner(
            registry,
            publish_every=settings.learner_publish_every,
            min_labels=settings.learner_min_labels,
        )
        authors: dict[str, tuple[str, str]] = {}

        learned_topics = [INDEXED.name, FEEDBACK.name] + (
            [DELIVERIES.name] if ledger_tenants else []
        )

        @app.agent(app.topic(*learned_topics, **raw), name="memstream.learner")
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
                    await reject(
                        InvalidEvent("invalid_fields", str(exc)[:2000]), LEARNER_STAGE, msg
                    )
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
                    await reject(_processor_error(LEARNER_STAGE, exc), LEARNER_STAGE, msg)

    return app
