"""Recall modes: `episodic` (the memories themselves), `knowledge` (consolidated facts with
provenance links), `auto` (a rule on the query).

Consolidation is extractive and runs at query time over the hybrid search's candidates:
the candidates of one episode (same tenant, written within `window` of each other: one
conversation session, one incident) form one fact, whose text is its members' own words in
the order they were written and whose provenance is the members' ids. A fact is ranked by
its members' ranks (sum of 1 / (1 + rank)), so an episode several good candidates come
from ranks above a lone near-miss. Knowledge mode returns ceil(k / 2) facts for a request
of k. Nothing is stored: the facts are as fresh as the memories, an erased or superseded
memory leaves them at once, and access is the search's (every member is a memory the
caller may see). `Consolidator` is the seam for another method (an LLM processor).

`auto`: `episodic` when the query asks for a specific value (it has a number, a quoted
phrase, or asks when / what date / what time / how many / how much), else `knowledge`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, Protocol
from uuid import UUID

from memstream.retrieval.ranking import ScoredMemory

Mode = Literal["episodic", "knowledge", "auto"]
MODES: tuple[str, ...] = ("episodic", "knowledge", "auto")
EPISODE_WINDOW = timedelta(hours=2)
MAX_MEMBERS = 4
CANDIDATES_PER_ITEM = 4
_SPECIFIC = re.compile(
    r"\d|\"[^\"]+\"|\b(?:when|what date|what time|which day|which year|how many|how much)\b",
    re.I,
)


@dataclass(frozen=True)
class KnowledgeItem:
    """One consolidated fact: its text, its members (best first), its score."""

    text: str
    provenance: tuple[UUID, ...]
    score: float
    members: tuple[ScoredMemory, ...] = field(repr=False, default=())

    @property
    def memory_id(self) -> UUID:
        return self.provenance[0]


class Consolidator(Protocol):
    def consolidate(self, ranked: list[ScoredMemory]) -> list[KnowledgeItem]:
        """Facts from ranked candidates, best first."""
        ...


def _when(hit: ScoredMemory) -> datetime:
    return hit.memory.valid_from or hit.memory.ts


@dataclass(frozen=True)
class EpisodeConsolidator:
    """Candidates of one episode (written within `window` of each other) become one fact."""

    window: timedelta = EPISODE_WINDOW
    max_members: int = MAX_MEMBERS

    def consolidate(self, ranked: list[ScoredMemory]) -> list[KnowledgeItem]:
        groups: list[list[tuple[int, ScoredMemory]]] = []
        for rank, hit in enumerate(ranked):
            for group in groups:
                first = group[0][1]
                if (
                    len(group) < self.max_members
                    and first.memory.tenant == hit.memory.tenant
                    and abs(_when(first) - _when(hit)) <= self.window
                ):
                    group.append((rank, hit))
                    break
            else:
                groups.append([(rank, hit)])
        items = []
        for group in groups:
            score = sum(1.0 / (1 + rank) for rank, _ in group)
            in_order = sorted(group, key=lambda rh: (_when(rh[1]), str(rh[1].memory.memory_id)))
            items.append(
                KnowledgeItem(
                    text=" \u2026 ".join(h.memory.text for _, h in in_order),
                    provenance=tuple(h.memory.memory_id for _, h in group),
                    score=score,
                    members=tuple(h for _, h in group),
                )
            )
        return sorted(items, key=lambda item: -item.score)


def resolve_mode(query: str, mode: Mode) -> Literal["episodic", "knowledge"]:
    """`auto` by the documented rule; the others as asked."""
    if mode != "auto":
        return mode
    return "episodic" if _SPECIFIC.search(query) else "knowledge"


def knowledge_items(k: int) -> int:
    """How many facts knowledge mode returns for a request of k."""
    return max(1, math.ceil(k / 2))


def candidates_for(k: int) -> int:
    """How many episodic candidates knowledge mode consolidates for a request of k."""
    return CANDIDATES_PER_ITEM * knowledge_items(k)


def consolidate(
    ranked: list[ScoredMemory], k: int, consolidator: Consolidator | None = None
) -> list[KnowledgeItem]:
    """The best `knowledge_items(k)` facts from the ranked candidates."""
    return (consolidator or EpisodeConsolidator()).consolidate(ranked)[: knowledge_items(k)]
