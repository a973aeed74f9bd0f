"""The distillation processor: `memstream.experience` in, student policies out.

Each configured team (`Settings.distill_teams`, "tenant/team") has a replay buffer
(`memstream.models.distill.ExperienceBuffer`). An experience event counts for a team when
it is of the team's tenant and shared with it: scope `team:<team>`, `tenant` or `public`
(never `private`). Its shape is checked against the team's (observation length, number of
actions): a mismatch is a `wrong_shape` dead letter. A cycle (replay the buffer, distil,
publish) runs after `every` new steps, or once a team's experience has paused for
`distill_idle_s`; the student goes to the tenant's model registry
(`<data_dir>/models/tenants/<tenant>/<model>`), with its lineage: the experience offsets
it covers, the teachers, the config and digests of its pairs and weights.
`rebuild_student` replays the same range into a new version.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from memstream.logging import get_logger
from memstream.models.distill import (
    DistillConfig,
    DistillResult,
    ExperienceBuffer,
    distil,
    pairs_digest,
)
from memstream.models.registry import ModelRegistry
from memstream.schemas.events import Experience
from memstream.schemas.topics import EXPERIENCE
from memstream.settings import DistillTeam
from memstream.streams.validate import InvalidEvent, validate_event

log = get_logger("memstream.distill")

STAGE = "distill"


class Trust(Protocol):
    def get(self, tenant: str, agent_id: str) -> float: ...

    def quarantined(self, tenant: str, agent_id: str) -> bool: ...


@dataclass(frozen=True)
class TeamSpec:
    """One distilled team, as the settings give it."""

    tenant: str
    team: str
    settings: DistillTeam

    @property
    def key(self) -> tuple[str, str]:
        return (self.tenant, self.team)

    @property
    def model(self) -> str:
        return self.settings.model or f"policy-{self.team}"

    @property
    def config(self) -> DistillConfig:
        s = self.settings
        return DistillConfig(
            hidden=s.hidden,
            epochs=s.epochs,
            learning_rate=s.learning_rate,
            entropy_weight=s.entropy_weight,
            temperature=s.temperature,
            episodes_per_teacher=s.episodes_per_teacher,
            seed=s.seed,
        )


def team_specs(teams: dict[str, DistillTeam]) -> list[TeamSpec]:
    """`Settings.distill_teams` as specs (ValueError on a key that is not tenant/team)."""
    specs = []
    for key, settings in sorted(teams.items()):
        tenant, sep, team = key.partition("/")
        if not sep or not tenant or not team:
            raise ValueError(f"distill team {key!r} is not tenant/team")
        specs.append(TeamSpec(tenant, team, settings))
    return specs


def student_registry(models_dir: Path, tenant: str, model: str) -> ModelRegistry:
    """Where a tenant's student `model` is published: one registry per tenant and name."""
    return ModelRegistry(Path(models_dir) / "tenants" / tenant, model)


@dataclass(frozen=True)
class Snapshot:
    """What one cycle fits: taken on the event loop, fitted in a thread."""

    spec: TeamSpec
    teachers: list[str]
    offsets: dict[str, int]
    event_ids: list[str]
    observations: Any
    distributions: Any


class DistillationStage:
    """The teams' buffers, the topic position they cover, and the cycles that publish."""

    def __init__(
        self,
        specs: Iterable[TeamSpec],
        models_dir: Path,
        trust: Trust | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.specs = {spec.key: spec for spec in specs}
        self.models_dir = Path(models_dir)
        self.trust = trust
        self._clock = clock
        self.buffers = {
            key: ExperienceBuffer(spec.settings.episodes_per_teacher)
            for key, spec in self.specs.items()
        }
        self.offsets: dict[int, int] = {}  # partition -> next offset, all events read
        self.pending: dict[tuple[str, str], int] = {}
        self.last_seen: dict[tuple[str, str], float] = {}
        self.by_model = {(s.tenant, s.model): s for s in self.specs.values()}

    def teams_of(self, event: Experience) -> list[TeamSpec]:
        if event.scope == "private":
            return []
        if event.scope.startswith("team:"):
            spec = self.specs.get((event.tenant, event.scope[5:]))
            return [spec] if spec is not None else []
        return [s for s in self.specs.values() if s.tenant == event.tenant]

    def read(self, partition: int, offset: int) -> None:
        """Note that the message at (partition, offset) was read, whatever became of it."""
        self.offsets[partition] = max(self.offsets.get(partition, 0), offset + 1)

    def accept(self, event: Experience, partition: int, offset: int) -> InvalidEvent | None:
        """Put the event in its teams' buffers; the rejection if its shape is not theirs."""
        self.read(partition, offset)
        specs = self.teams_of(event)
        step = event.payload
        for spec in specs:
            want = (spec.settings.observation_dim, spec.settings.actions)
            got = (len(step.observation), len(step.distribution))
            if got != want:
                return InvalidEvent(
                    "wrong_shape",
                    f"team {spec.team!r} distils observations of {want[0]} values and "
                    f"{want[1]} actions; this step has {got[0]} and {got[1]}",
                    STAGE,
                )
        now = self._clock()
        for spec in specs:
            added = self.buffers[spec.key].add(
                event.agent_id,
                step.episode,
                step.step,
                str(event.event_id),
                step.observation,
                step.distribution,
            )
            if added:
                self.pending[spec.key] = self.pending.get(spec.key, 0) + 1
                self.last_seen[spec.key] = now
        return None

    def due(self, idle_s: float | None = None) -> list[tuple[str, str]]:
        """Teams to distil now: `every` new steps, or (with `idle_s`) paused that long."""
        now = self._clock()
        return [
            key
            for key, count in self.pending.items()
            if count
            and (
                count >= self.specs[key].settings.every
                or (idle_s is not None and now - self.last_seen.get(key, now) >= idle_s)
            )
        ]

    def teachers(self, spec: TeamSpec) -> list[str]:
        """The team's trusted teachers now: the configured ones, else by reputation."""
        seen = sorted(self.buffers[spec.key].teachers)
        if spec.settings.teachers:
            return sorted(set(spec.settings.teachers) & set(seen))
        if self.trust is None:
            return seen
        return [
            agent
            for agent in seen
            if not self.trust.quarantined(spec.tenant, agent)
            and self.trust.get(spec.tenant, agent) >= spec.settings.min_reputation
        ]

    def snapshot(self, key: tuple[str, str], teachers: list[str] | None = None) -> Snapshot:
        """The pairs a cycle fits (and marks the team's pending steps as taken)."""
        spec = self.specs[key]
        chosen = self.teachers(spec) if teachers is None else sorted(teachers)
        observations, distributions, ids = self.buffers[key].pairs(chosen)
        self.pending[key] = 0
        offsets = {str(p): o for p, o in sorted(self.offsets.items())}
        return Snapshot(spec, chosen, offsets, ids, observations, distributions)

    def registry(self, spec: TeamSpec) -> ModelRegistry:
        return student_registry(self.models_dir, spec.tenant, spec.model)


def fit_and_publish(
    snapshot: Snapshot, registry: ModelRegistry, extra: dict[str, Any] | None = None
) -> int | None:
    """Distil the snapshot and publish the student; None when there is nothing to fit
    or the current version was fitted on exactly these pairs (nothing new)."""
    if not snapshot.event_ids:
        return None
    digest = pairs_digest(snapshot.event_ids)
    current = registry.current_version()
    if current is not None and not extra:
        try:
            if registry.metadata(current).get("lineage", {}).get("pairs_sha256") == digest:
                return None
        except (OSError, ValueError):
            pass
    config = snapshot.spec.config
    result = distil(snapshot.observations, snapshot.distributions, config)
    return publish_student(registry, snapshot, result, digest, extra or {})


def publish_student(
    registry: ModelRegistry,
    snapshot: Snapshot,
    result: DistillResult,
    digest: str,
    extra: dict[str, Any],
) -> int:
    spec = snapshot.spec
    weights = result.policy.weights_sha256()
    lineage = {
        "topic": EXPERIENCE.name,
        "offsets": snapshot.offsets,
        "teachers": snapshot.teachers,
        "pairs": result.pairs,
        "pairs_sha256": digest,
        "config": spec.config.to_dict(),
        **extra,
    }
    metadata = {
        "kind": "student_policy",
        "tenant": spec.tenant,
        "team": spec.team,
        "observation_dim": result.policy.observation_dim,
        "actions": result.policy.actions,
        "weights_sha256": weights,
        "kl": result.kl,
        "entropy": result.entropy,
        "lineage": lineage,
    }
    onnx_meta = {"team": spec.team, "weights_sha256": weights, "pairs_sha256": digest}
    version = registry.publish(result.policy.to_onnx(onnx_meta), metadata)
    log.info(
        "student published",
        tenant=spec.tenant,
        team=spec.team,
        model=registry.name,
        version=version,
        pairs=result.pairs,
        teachers=len(snapshot.teachers),
        kl=round(result.kl, 5),
    )
    return version


def take(
    stage: DistillationStage, value: bytes | None, partition: int, offset: int, max_bytes: int
) -> InvalidEvent | None:
    """One raw message of the experience topic into the stage; its rejection, if any."""
    try:
        event = validate_event(value, EXPERIENCE.name, max_bytes)
    except InvalidEvent as err:
        stage.read(partition, offset)
        return err
    return stage.accept(event, partition, offset)  # type: ignore[arg-type]


def rebuild_student(
    messages: Iterable[tuple[int, int, bytes | None]],
    spec: TeamSpec,
    lineage: dict[str, Any],
    models_dir: Path,
    *,
    max_bytes: int,
    source_version: int,
) -> tuple[int | None, Snapshot]:
    """Replay experience messages (partition, offset, value) below `lineage["offsets"]`
    into a fresh buffer, fit with the lineage's teachers and config, publish it as a new
    version; (the new version or None if nothing was fitted, what was fitted)."""
    spec = TeamSpec(spec.tenant, spec.team, spec.settings.model_copy(update=lineage["config"]))
    stage = DistillationStage([spec], models_dir)
    limits = {int(p): int(o) for p, o in lineage["offsets"].items()}
    for partition, offset, value in messages:
        if offset < limits.get(partition, 0):
            take(stage, value, partition, offset, max_bytes)
    snapshot = stage.snapshot(spec.key, teachers=list(lineage["teachers"]))
    version = fit_and_publish(snapshot, stage.registry(spec), {"rebuilt_from": source_version})
    return version, snapshot


async def read_experience(
    bootstrap: str, offsets: dict[str, int], settings: Any = None
) -> list[tuple[int, int, bytes | None]]:
    """The experience topic's messages below `offsets` (partition -> next offset), read
    from the broker from the start of each partition."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from memstream.broker.security import kafka_client_kwargs

    limits = {int(p): int(o) for p, o in offsets.items() if int(o) > 0}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **kafka_client_kwargs(settings),
    )
    await consumer.start()
    out: list[tuple[int, int, bytes | None]] = []
    try:
        parts = [TopicPartition(EXPERIENCE.name, p) for p in sorted(limits)]
        if not parts:
            return out
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        left = set(parts)
        while left:
            batch = await consumer.getmany(*left, timeout_ms=1000)
            for tp, records in batch.items():
                for record in records:
                    if record.offset < limits[tp.partition]:
                        out.append((tp.partition, record.offset, record.value))
            for tp in list(left):
                if await consumer.position(tp) >= limits[tp.partition]:
                    left.discard(tp)
            if not batch:
                ends = await consumer.end_offsets(list(left))
                short = [tp for tp in left if ends[tp] < limits[tp.partition]]
                if short:
                    raise RuntimeError(
                        "the experience topic ends before the lineage's offsets on partitions "
                        f"{sorted(tp.partition for tp in short)}: was it truncated?"
                    )
    finally:
        await consumer.stop()
    return out
