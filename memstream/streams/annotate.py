"""Tagging and linking in the model stage: what a memory is about, and what it relates to.

Tagging: a tenant with a taxonomy (models/taxonomy.py) gets each memory's likeliest tags
from a `TagModel` (models/tagging.py) fitted on its examples and on the memories its agents
tagged themselves with taxonomy tags (those are learned, not predicted). Linking: each
memory is linked to the tenant's recent memories that stand out against the rest
(models/linking.py: standard deviations above the typical candidate), among those every
reader of the new memory may see, so a link never names a memory hidden from its reader.
The recent window is this worker's (like the novelty pool): it starts empty after a
restart. Both reuse the model stage's embeddings and the text as stored (after privacy).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from uuid import UUID

import numpy as np

from memstream.logging import get_logger
from memstream.models.embedding import KnownVectors
from memstream.models.linking import Linker
from memstream.models.tagging import TagModel
from memstream.models.taxonomy import TaxonomyBook

log = get_logger("memstream.annotate")

AUTO_TAGS = 3
LINK_WINDOW = 2000
MAX_LINK_TENANTS = 1000
MAX_TAGGERS = 64
"""Tenants' tag models kept in memory (each is tags x 2^15 weights); others are refitted
from taxonomy.db when their tenant writes again."""


@dataclass
class _TenantTagger:
    generation: int
    model: TagModel
    learned_rowid: int = 0


class TaggingStage:
    def __init__(self, book: TaxonomyBook, embedder: object) -> None:
        self.book = book
        self.vectors = KnownVectors(embedder)  # type: ignore[arg-type]
        self._taggers: OrderedDict[str, _TenantTagger | None] = OrderedDict()

    def _tagger(self, tenant: str) -> _TenantTagger | None:
        generation = self.book.generation(tenant)
        current = self._taggers.get(tenant)
        if tenant in self._taggers:
            self._taggers.move_to_end(tenant)
        else:
            while len(self._taggers) >= MAX_TAGGERS:  # the least recently used model goes
                self._taggers.popitem(last=False)
        if generation == 0:
            self._taggers[tenant] = None
            return None
        if current is None or current.generation != generation:
            taxonomy = self.book.taxonomy(tenant)
            current = _TenantTagger(generation, TagModel(taxonomy, self.vectors))  # type: ignore[arg-type]
            self._taggers[tenant] = current
        learned, current.learned_rowid = self.book.learned_since(tenant, current.learned_rowid)
        if learned:
            current.model.learn_many((text, [tag]) for tag, text in learned)
        return current

    def annotate(
        self,
        tenants: Sequence[str],
        texts: Sequence[str],
        tags: Sequence[Sequence[str]],
        vectors: np.ndarray,
    ) -> list[list[tuple[str, float]]]:
        """Per memory: its predicted (tag, probability), best first; [] where the tenant has
        no taxonomy or the author tagged it with taxonomy tags (then it is learned)."""
        out: list[list[tuple[str, float]]] = [[] for _ in texts]
        self.vectors.remember(texts, vectors)  # the stage's: nothing is embedded twice
        by_tenant: dict[str, list[int]] = {}
        for i, tenant in enumerate(tenants):
            by_tenant.setdefault(tenant, []).append(i)
        for tenant, rows in by_tenant.items():
            tagger = self._tagger(tenant)
            if tagger is None:
                continue
            known = set(tagger.model.tags)
            learn = [(t, texts[i]) for i in rows for t in tags[i][:1] if t in known]
            taught = {i for i in rows if any(t in known for t in tags[i])}
            if learn:
                self.book.learn(tenant, tagger.generation, learn)
            ask = [i for i in rows if i not in taught]
            if ask:
                for i, ranked in zip(
                    ask, tagger.model.predict([texts[i] for i in ask], AUTO_TAGS), strict=True
                ):
                    out[i] = [(tag, round(p, 4)) for tag, p in ranked]
        self.vectors.forget()
        return out


def may_link(new_scope: str, new_agent: str, old_scope: str, old_agent: str) -> bool:
    """Whether every reader of the new memory may read the old one."""
    if old_scope in ("tenant", "public"):
        return True
    if old_scope.startswith("team:"):
        return new_scope == old_scope
    return old_scope == "private" and new_scope == "private" and old_agent == new_agent


@dataclass
class _Window:
    items: deque = field(default_factory=lambda: deque(maxlen=LINK_WINDOW))
    links: dict = field(default_factory=dict)  # memory id -> the links it was first given


class LinkingStage:
    """Links to earlier memories only (by time, then id), so a memory's links do not
    depend on what arrived after it; a memory seen before (a re-read after a crash, a
    re-import) keeps the links it was first given."""

    def __init__(self, linker: Linker | None = None) -> None:
        self.linker = linker or Linker()
        self._windows: OrderedDict[str, _Window] = OrderedDict()

    def link(
        self,
        tenants: Sequence[str],
        ids: Sequence[UUID],
        scopes: Sequence[str],
        agents: Sequence[str],
        texts: Sequence[str],
        vectors: np.ndarray,
        times: Sequence[float] | None = None,
    ) -> list[list[tuple[UUID, float]]]:
        """Per memory: (related memory id, score), best first; earlier memories of the batch
        count as candidates of later ones. `times`: the memories' times (epoch seconds;
        default: their ids' order)."""
        out: list[list[tuple[UUID, float]]] = []
        for i, tenant in enumerate(tenants):
            window = self._windows.get(tenant)
            if window is None:
                window = self._windows[tenant] = _Window()
                if len(self._windows) > MAX_LINK_TENANTS:
                    self._windows.popitem(last=False)
            self._windows.move_to_end(tenant)
            if ids[i] in window.links:
                out.append(window.links[ids[i]])
                continue
            at = (times[i] if times is not None else 0.0, str(ids[i]))
            candidates = [
                (mid, vec, text, agent)
                for mid, vec, text, agent, scope, when in window.items
                if (when, str(mid)) < at and may_link(scopes[i], agents[i], scope, agent)
            ]
            found = self.linker.link(vectors[i], texts[i], candidates, source=agents[i])  # type: ignore[arg-type]
            out.append(found)  # type: ignore[arg-type]
            if len(window.links) >= LINK_WINDOW:
                window.links.pop(window.items[0][0], None)
            window.links[ids[i]] = found
            window.items.append((ids[i], vectors[i], texts[i], agents[i], scopes[i], at[0]))
        return out
