"""The topic catalogue: every topic memstream reads or writes, in one place.

`ensure_topics` creates them idempotently at start-up. Compaction is asked for only where
the broker supports it (Tansu 0.6 does not), so the same code runs on every broker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

MAX_EVENT_BYTES = 1_048_576
"""Default largest event the pipeline accepts (1 MiB); larger ones are dead-lettered."""

BROKER_MESSAGE_BYTES = 8 * 1_048_576
"""What the broker itself accepts on memstream topics, so an oversize event reaches the
worker (and the dead-letter topic, with its bytes) instead of vanishing in a produce error."""


@dataclass(frozen=True)
class TopicSpec:
    """One topic: its name, what its key holds, its partition count and its cleanup policy."""

    name: str
    key: str
    description: str
    partitions: int = 3
    cleanup_policy: Literal["delete", "compact"] = "delete"
    config: dict[str, str] = field(default_factory=dict)

    def broker_config(
        self, supports_compaction: bool, replication_factor: int = 1
    ) -> dict[str, str]:
        """Topic configs to create it with. Replicated topics get `min.insync.replicas`
        of 2 (unless the spec sets it), so an `acks=all` write is on two brokers before it
        is acknowledged and survives losing either of them."""
        config = {"max.message.bytes": str(BROKER_MESSAGE_BYTES), **self.config}
        if self.cleanup_policy == "compact" and supports_compaction:
            config["cleanup.policy"] = "compact"
        if replication_factor > 1:
            config.setdefault("min.insync.replicas", str(min(2, replication_factor)))
        return config


OBSERVATIONS = TopicSpec("memstream.observations", "agent id", "raw observations")
MEMORIES = TopicSpec("memstream.memories", "agent id", "memories agents want to share")
FEEDBACK = TopicSpec("memstream.feedback", "memory id", "usefulness outcomes")
SUBSCRIPTIONS = TopicSpec(
    "memstream.subscriptions", "subscription id", "standing queries", cleanup_policy="compact"
)
INDEXED = TopicSpec("memstream.indexed", "memory id", "what the pipeline stored")
DELIVERIES = TopicSpec("memstream.deliveries", "tenant/agent id", "memories pushed to subscribers")
ERASURES = TopicSpec(
    "memstream.erasures",
    "subject id or memory id",
    "right-to-be-forgotten requests and memory deletions (author, admin, expiry)",
)
DEAD_LETTER = TopicSpec(
    "memstream.dead-letter", "original key", "rejected events with reason and origin offset"
)
VERDICTS = TopicSpec(
    "memstream.verdicts", "memory id", "verifiers' reports: memories verified or refuted"
)
LINKS = TopicSpec(
    "memstream.links", "memory id", "each memory's links to related ones and predicted tags"
)
CONFLICTS = TopicSpec(
    "memstream.conflicts", "tenant/subject", "a memory superseded by one with another value"
)
POOLED = TopicSpec("memstream.pooled", "tenant/team", "teams' pooled memory states")
EXPERIENCE = TopicSpec(
    "memstream.experience",
    "agent id",
    "learning agents' steps (observation, action, reward, action distribution) to distil",
)

CATALOGUE: tuple[TopicSpec, ...] = (
    OBSERVATIONS,
    MEMORIES,
    FEEDBACK,
    SUBSCRIPTIONS,
    INDEXED,
    DELIVERIES,
    ERASURES,
    DEAD_LETTER,
    VERDICTS,
    LINKS,
    CONFLICTS,
    POOLED,
    EXPERIENCE,
)
TOPICS: dict[str, TopicSpec] = {spec.name: spec for spec in CATALOGUE}

INPUT_KINDS: dict[str, str] = {OBSERVATIONS.name: "observation", MEMORIES.name: "memory"}
"""Which event kind each pipeline input topic carries."""

VALIDATED_KINDS: dict[str, str] = {**INPUT_KINDS, EXPERIENCE.name: "experience"}
"""Every topic whose events `validate_event` checks, and the kind it carries."""
