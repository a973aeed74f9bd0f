"""`create_app`: the Faust app, the parts every stage shares (`Worker`), and the agents,
timers and routes each role registers."""

from __future__ import annotations

import atexit
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import faust

from memstream.models.admission import admission_bar
from memstream.models.embedding import load_embedder
from memstream.models.ledger import Ledger
from memstream.models.registry import HotSwapScorer, ModelRegistry
from memstream.models.reputation import ReputationBook
from memstream.models.taxonomy import TAXONOMY_FILE, TaxonomyBook
from memstream.privacy.keystore import KeyStore
from memstream.schemas.topics import (
    CATALOGUE,
    CONFLICTS,
    DEAD_LETTER,
    DELIVERIES,
    INPUT_KINDS,
    LINKS,
    POOLED,
    VERDICTS,
)
from memstream.services.runtime import WorkerServices, attach_api, attach_health
from memstream.settings import Settings
from memstream.store.faults import StoreStatus
from memstream.store.sink import open_when_available
from memstream.store.token_vectors import TokenVectorStore
from memstream.store.tombstones import TOMBSTONES_FILE, Tombstones
from memstream.streams import stage_metrics
from memstream.streams.app.agents import (
    attach_distill,
    attach_from_indexed,
    attach_learner,
    attach_pipeline,
)
from memstream.streams.app.model import annotation_stages
from memstream.streams.app.outcomes import log
from memstream.streams.app.privacy import build_privacy_stage, privacy_executor
from memstream.streams.app.sink import _Optimizer, attach_sink
from memstream.streams.distill import team_specs
from memstream.streams.enrich import ModelStage
from memstream.streams.faust_app import LowLatencyApp
from memstream.streams.plugins import attach_archive, attach_processors
from memstream.streams.privacy_stage import PrivacyStage
from memstream.streams.team_pool import TeamPoolStage

CONSUMER_METADATA_MAX_AGE_MS = 10_000


def broker_urls(bootstrap: str) -> list[str]:
    """`h1:p1,h2:p2` -> Faust's `["kafka://h1:p1", "kafka://h2:p2"]`."""
    return [f"kafka://{host.strip()}" for host in bootstrap.split(",") if host.strip()]


DERIVED_TOPICS = frozenset(
    {DELIVERIES.name, VERDICTS.name, LINKS.name, CONFLICTS.name, POOLED.name}
)
"""Topics a replay derives again from the others: not archived. Deliveries also hold
personal values in clear for cleared recipients, which no archive should keep."""


def archived_topics() -> list[str]:
    """The catalogue but the derived topics."""
    return [t.name for t in CATALOGUE if t.name not in DERIVED_TOPICS]


@dataclass
class Worker:
    """What the stages of one worker share: the app and its topics, the settings and
    roles, the stores, the stages and the threads they run in."""

    app: faust.App
    settings: Settings
    roles: Any
    raw: dict[str, str]
    window: float
    sources: Any
    dead: Any
    services: WorkerServices
    stage: ModelStage | None
    privacy: PrivacyStage | None
    executor: ThreadPoolExecutor
    screening_executor: Executor
    in_child: bool
    query_executor: ThreadPoolExecutor
    store: Any
    store_status: StoreStatus
    optimizer: _Optimizer
    admission: Any
    keystore: KeyStore
    tombstones: Tombstones
    token_store: TokenVectorStore
    registry: ModelRegistry
    reputation: ReputationBook
    ledger: Ledger
    ledger_tenants: frozenset[str]


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
    w = Worker(
        app=app,
        settings=settings,
        roles=roles,
        raw=raw,
        window=window,
        sources=sources,
        dead=dead,
        services=services,
        stage=stage,
        privacy=privacy,
        executor=executor,
        screening_executor=screening_executor,
        in_child=in_child,
        query_executor=query_executor,
        store=store,
        store_status=store_status,
        optimizer=optimizer,
        admission=admission,
        keystore=keystore,
        tombstones=tombstones,
        token_store=token_store,
        registry=registry,
        reputation=reputation,
        ledger=ledger,
        ledger_tenants=ledger_tenants,
    )

    if roles.reads_indexed():
        attach_from_indexed(w)
    if roles.model:
        attach_pipeline(w)
    if roles.sink:
        attach_sink(w)

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
        attach_distill(w)
    if roles.sink and settings.learner_enabled:
        attach_learner(w)
    return app
