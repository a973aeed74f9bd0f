"""Settings from `MEMSTREAM_*` environment variables, then `memstream.toml`, then defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from memstream.schemas.topics import MAX_EVENT_BYTES

FETCH_MAX_WAIT_MS = 100
"""Every memstream consumer's `fetch_max_wait_ms` (aiokafka's default is 500, Faust's 1500):
a quiet topic costs one fetch per 100 ms per broker; a memory waits at most that long to be
read, on brokers that hold a fetch for its whole wait (Tansu) as on Apache Kafka."""


def _seed_pair(entry: str) -> tuple[str, str]:
    """(tenant, agent) of one `reputation_seeds` entry, `tenant/agent`."""
    tenant, sep, agent = entry.partition("/")
    if not sep or not tenant or not agent:
        raise ValueError(f"reputation seed {entry!r} is not tenant/agent")
    return tenant, agent


class DistillTeam(BaseModel):
    """A team whose learning agents' experience is distilled into a student policy."""

    model_config = ConfigDict(extra="forbid")

    observation_dim: int = Field(ge=1, le=1024, description="length of every observation")
    actions: int = Field(ge=2, le=256, description="number of actions (distribution length)")
    model: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$",
        description="name the student is served under (GET /v1/models/{name}); "
        "default policy-<team>",
    )
    teachers: list[str] = Field(
        default_factory=list,
        description="agents whose experience is distilled; empty = every agent of the team "
        "with reputation >= min_reputation (and not quarantined)",
    )
    min_reputation: float = Field(default=0.5, ge=0, le=1)
    every: int = Field(default=2000, ge=1, description="new steps that start a distillation cycle")
    hidden: int = Field(default=16, ge=1, le=1024)
    epochs: int = Field(default=300, ge=1, le=100_000)
    learning_rate: float = Field(default=0.01, gt=0)
    entropy_weight: float = Field(default=0.01, ge=0)
    temperature: float = Field(default=0.25, gt=0)
    episodes_per_teacher: int = Field(default=20, ge=1, le=10_000)
    seed: int = Field(default=0, ge=0)


class Settings(BaseSettings):
    """Everything a memstream process can be told. Field `x` is env var `MEMSTREAM_X`."""

    model_config = SettingsConfigDict(
        env_prefix="MEMSTREAM_", toml_file="memstream.toml", extra="ignore"
    )

    kafka_bootstrap: str | None = Field(
        default=None, description="host:port[,...] of an existing cluster; unset = embedded broker"
    )
    broker_kind: Literal["tansu", "kafka"] = Field(
        default="kafka",
        description="broker `memstream up` starts when kafka_bootstrap is unset: kafka "
        "(Apache Kafka, its log under <data_dir>/kafka) or tansu (memory only)",
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        description="how every memstream Kafka client (worker, API, SDK, admin) connects",
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        default="SCRAM-SHA-512", description="SASL mechanism for SASL_PLAINTEXT / SASL_SSL"
    )
    kafka_sasl_username: str | None = Field(default=None, description="SASL principal name")
    kafka_sasl_password: SecretStr | None = Field(default=None, description="SASL password")
    kafka_ssl_cafile: Path | None = Field(
        default=None, description="PEM CA that signed the brokers' certificates; unset = system"
    )
    kafka_ssl_certfile: Path | None = Field(
        default=None, description="PEM client certificate (mutual TLS), with kafka_ssl_keyfile"
    )
    kafka_ssl_keyfile: Path | None = Field(default=None, description="PEM client private key")
    kafka_ssl_key_password: SecretStr | None = Field(
        default=None, description="password of an encrypted kafka_ssl_keyfile"
    )
    kafka_ssl_check_hostname: bool = Field(
        default=True, description="verify the broker's name against its certificate"
    )
    broker_epoch: str | None = Field(
        default=None,
        description="names this broker incarnation in archive segments; `memstream up` sets "
        "it (the cluster id, or a fresh id per start of a memory-only broker); unset = the "
        "cluster id the broker reports",
    )
    data_dir: Path = Field(default=Path(".memstream"), description="state of the embedded stack")
    partitions: int = Field(default=3, ge=1, description="partitions of topics created at start")
    replication_factor: int = Field(default=1, ge=1)
    max_event_bytes: int = Field(default=MAX_EVENT_BYTES, ge=1024)
    consumer_group: str = Field(default="memstream-worker")
    batch_size: int = Field(default=500, ge=1, description="events per validate batch")
    batch_window_ms: int = Field(default=50, ge=1, description="longest wait to fill a batch")
    privacy_process: bool = Field(
        default=True,
        description="run the PII scan in a process of its own (else a thread): it then "
        "never holds the GIL the embedding needs",
    )
    privacy_processes: int = Field(
        default=1,
        ge=1,
        le=64,
        description="PII scan processes (with privacy_process): chunks of a batch are "
        "scanned side by side; raise it on a machine with more cores (each process holds "
        "its own spaCy and Presidio, about 325 MB). On 2 cores a second one took the worker "
        "from 0.97x to 1.02x of the serial loop and made searches under ingest slower, so "
        "the default is one",
    )
    model_chunk_size: int = Field(
        default=64,
        ge=1,
        description="events per sub-batch of the model stage: the PII scan of one overlaps "
        "the embedding of the one before",
    )
    producer_linger_ms: int = Field(
        default=5, ge=0, description="how long a worker's producer waits to fill a batch"
    )
    session_timeout_s: float = Field(
        default=10.0, ge=1, description="consumer group session timeout (Tansu always gets 4 s)"
    )
    embedder: Literal["minilm", "static"] = Field(
        default="minilm", description="static = distilled model for fast unit tests only"
    )
    onnx_provider: Literal["auto", "cuda", "cpu"] = Field(
        default="auto", description="auto: CUDA when onnxruntime-gpu sees a GPU, else CPU"
    )
    duplicate_cosine: float = Field(
        default=0.95, ge=0.5, le=1.0, description="near-duplicates at or above are merged"
    )
    valuation_check_s: float = Field(
        default=5.0, ge=0, description="how often the worker looks for a new valuation model"
    )
    model_stage_enabled: bool = Field(
        default=True,
        description="false: validate only and forward events unchanged (to measure that stage)",
    )
    learner_enabled: bool = Field(default=True, description="run the feedback learner agent")
    learner_min_labels: int = Field(
        default=1000, ge=0, description="labels before the first learned model is published"
    )
    learner_publish_every: int = Field(default=200, ge=1, description="labels per new version")
    store: str | None = Field(
        default=None,
        description="Qdrant URL (http://...), ':memory:', 'qdrant-local:<dir>' (qdrant-client "
        "local mode, tests only), or a directory for embedded Qdrant Edge; unset = "
        "<data_dir>/store",
    )
    store_min_free_mb: float = Field(
        default=64.0,
        ge=0,
        description="free space an Edge store keeps: below it writes wait (retried, never "
        "dead-lettered) until space is freed; a write on a full disk would kill the worker "
        "(SIGBUS: the shard is memory-mapped). 0 = no check",
    )
    store_shards: int = Field(
        default=1, ge=1, description="Qdrant server: shards of a new collection (shard_number)"
    )
    store_replicas: int = Field(
        default=1, ge=1, description="Qdrant server: copies of each shard (replication_factor)"
    )
    recency_half_life_days: float = Field(default=90.0, gt=0)
    recency_weight: float = Field(default=0.5, ge=0)
    usefulness_weight: float = Field(default=0.1, ge=0)
    reputation_weight: float = Field(
        default=1.0,
        ge=0,
        description="search: + weight x log(2 x author's reputation): no effect while nobody "
        "is rated, up to -3.9 for an author whose memories proved wrong, +0.66 at most",
    )
    cache_bar: float = Field(
        default=0.90,
        gt=0,
        le=1,
        description="semantic result cache: cosine a cached task needs to stand for the asked "
        "one, before the value test (memstream eval cache measures other bars)",
    )
    reputation_seeds: list[str] = Field(
        default_factory=list,
        description="raters trusted a priori, as tenant/agent (JSON list in the env var): "
        "reputation flows from them (EigenTrust), so a ring of agents that only rate each "
        "other earns nothing; none = every agent pre-trusted alike, and rings are not resisted",
    )
    ledger_tenants: list[str] = Field(
        default_factory=list,
        description="tenants that keep a credit ledger (JSON list; off for every other "
        "tenant): deliveries and used/helped feedback cost the reader, helped/used feedback "
        "earns the author (docs/models.md, Ledger)",
    )
    ledger_initial_credit: float = Field(default=100.0, ge=0)
    ledger_delivery_cost: float = Field(default=1.0, ge=0)
    ledger_use_cost: float = Field(default=1.0, ge=0)
    ledger_helped_reward: float = Field(default=3.0, ge=0)
    ledger_used_reward: float = Field(default=1.0, ge=0)
    reputation_floor: float = Field(
        default=0.1,
        ge=0,
        le=0.5,
        description="in a tenant with reputation seeds, an author whose reputation falls "
        "under this has its memories left out of searches (quarantined); 0 = never",
    )
    admission_bar: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="shared memories whose learned usefulness is under this stay on the log "
        "but out of the store (never under the cold-start heuristic, never private ones); "
        "`memstream eval valuation --dataset F` picks one on training conversations and "
        "measures it on others. Unset = admit everything",
    )
    dense_weight: float = Field(default=0.5, ge=0)
    rerank_window: int = Field(
        default=30,
        ge=0,
        description="top search candidates re-scored by late interaction (MiniLM token "
        "vectors, computed at query time; eval retrieval: search p50 32 ms, p99 207 ms on 2 "
        "CPU cores, against 13 / 42 ms without); 0 = off",
    )
    pii_enabled: bool = Field(default=True, description="scan for personal data before storing")
    pii_tier: Literal["full", "fast"] = Field(
        default="full", description="full: Presidio + spaCy + patterns; fast: patterns only"
    )
    pii_default_action: Literal["seal", "redact", "pseudonymize", "drop", "allow"] = "seal"
    pii_topic_actions: dict[str, Literal["seal", "redact", "pseudonymize", "drop", "allow"]] = (
        Field(default_factory=dict, description='per memory topic, e.g. {"health": "drop"}')
    )
    pii_sealed: list[str] = Field(
        default_factory=lambda: ["direct"],
        description="what the PII action applies to: categories (direct, quasi) and/or entity "
        'types, e.g. ["direct", "LOCATION"]; the rest is kept as ordinary content',
    )
    pii_tenant_sealed: dict[str, list[str]] = Field(
        default_factory=dict, description='more to seal for a tenant, e.g. {"acme": ["quasi"]}'
    )
    pii_topic_sealed: dict[str, list[str]] = Field(
        default_factory=dict, description='more to seal on a topic, e.g. {"hr": ["quasi"]}'
    )
    master_key: str | None = Field(
        default=None,
        description="hex secret for pseudonyms and subject ids; else <data_dir>/master.key",
    )
    processors_enabled: bool = Field(
        default=True, description="run installed plug-in processors in the worker"
    )
    tagging_enabled: bool = Field(
        default=True,
        description="tag memories by example for tenants with a taxonomy (PUT /v1/taxonomy)",
    )
    linking_enabled: bool = Field(
        default=True, description="link each memory to the related ones in the model stage"
    )
    distill_teams: dict[str, DistillTeam] = Field(
        default_factory=dict,
        description='teams whose experience is distilled, as "tenant/team" -> its settings '
        '(JSON in the env var), e.g. {"acme/pilots": {"observation_dim": 4, "actions": 2}}; '
        "docs/distillation.md",
    )
    distill_idle_s: float = Field(
        default=5.0,
        gt=0,
        description="a team with new experience is distilled once none has come for this long",
    )
    lag_interval_s: float = Field(
        default=5.0,
        ge=0,
        description="seconds between reads of every consumer group's lag from the broker "
        "(the memstream_consumer_lag_records gauge); 0 = off",
    )
    archive_enabled: bool = Field(
        default=True, description="archive every catalogue topic under <data_dir>/archive"
    )
    dp_epsilon_per_tenant: float = Field(
        default=1.0, gt=0, description="lifetime differential-privacy budget of each tenant"
    )
    dp_agent_share: float = Field(
        default=0.25,
        gt=0,
        le=1,
        description="the most of its tenant's budget one agent may spend (a share of it)",
    )
    rate_limit_per_s: float = Field(
        default=100.0,
        ge=0,
        description="requests per second each API token may make on average; 0 = no limit",
    )
    rate_limit_burst: int = Field(
        default=200, ge=1, description="requests a token may make at once above that rate"
    )
    web_port: int = Field(default=8700, description="HTTP API port of `memstream up`")
    api_host: str = Field(default="127.0.0.1", description="where the HTTP API listens")
    serve: bool = Field(default=False, description="serve the HTTP API from the worker")
    role: str = Field(
        default="all",
        description="what `memstream worker` does: all, or a comma-separated set of model, "
        "sink, match, api (memstream/streams/roles.py)",
    )
    log_level: str = Field(default="INFO")
    log_format: Literal["json", "console"] = Field(default="json")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @field_validator("reputation_seeds")
    @classmethod
    def _seeds_are_tenant_agent(cls, value: list[str]) -> list[str]:
        for entry in value:
            _seed_pair(entry)
        return value

    @field_validator("role")
    @classmethod
    def _known_roles(cls, value: str) -> str:
        from memstream.streams.roles import Roles

        return Roles.parse(value).label

    def ledger_rules(self):  # -> memstream.models.ledger.LedgerRules
        """`LedgerRules` from the `ledger_<field>` settings, one per field of the dataclass."""
        from dataclasses import fields

        from memstream.models.ledger import LedgerRules

        return LedgerRules(
            **{f.name: getattr(self, f"ledger_{f.name}") for f in fields(LedgerRules)}
        )

    def reputation_seed_map(self) -> dict[str, set[str]]:
        """`reputation_seeds` as tenant -> agents."""
        seeds: dict[str, set[str]] = {}
        for entry in self.reputation_seeds:
            tenant, agent = _seed_pair(entry)
            seeds.setdefault(tenant, set()).add(agent)
        return seeds

    def worker_roles(self):  # -> memstream.streams.roles.Roles
        from memstream.streams.roles import Roles

        return Roles.parse(self.role)

    def kafka_security(self):  # -> memstream.broker.security.KafkaSecurity
        """These settings' Kafka connection security, checked (KafkaSecurity)."""
        from memstream.broker.security import KafkaSecurity

        return KafkaSecurity(
            protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            username=self.kafka_sasl_username,
            password=self.kafka_sasl_password,
            ca_file=self.kafka_ssl_cafile,
            cert_file=self.kafka_ssl_certfile,
            key_file=self.kafka_ssl_keyfile,
            key_password=self.kafka_ssl_key_password,
            check_hostname=self.kafka_ssl_check_hostname,
        )

    def store_location(self) -> str:
        return self.store or str(self.data_dir / "store")

    def ranking_weights(self):  # -> memstream.retrieval.RankingWeights
        from memstream.retrieval.ranking import RankingWeights

        return RankingWeights(
            dense=self.dense_weight,
            recency=self.recency_weight,
            half_life_days=self.recency_half_life_days,
            usefulness=self.usefulness_weight,
            rerank_window=self.rerank_window,
            reputation=self.reputation_weight,
        )
