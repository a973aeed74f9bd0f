"""Rank store candidates: z-score fusion of lexical and dense scores, then recency,
usefulness and subject boosts; in the rerank stage, a late-interaction score too.

Why z-scores and not RRF: on LoCoMo turns BM25 is the stronger signal (recall@5 0.57 vs
0.37 for MiniLM) and RRF weighs both ranks equally, which pulled hybrid below BM25 alone
(0.49); standardising each score over the candidates and adding dense at half weight kept
BM25's lead and added dense's semantic matches (0.68). Recency is `2^(-age / half-life)`
so a newer version of a fact tends to outrank an older one, and usefulness is the valuation
model's score; both are small next to relevance by default. A question about someone
("What pets does Melanie have?") is best answered by what that agent wrote, so memories
by an agent the query names get two standard deviations of relevance on top: nearly a
filter, but not one, since others write about them too. The retriever also embeds the
query without the name (see `search.py`). On LoCoMo the two lifted recall@5 from 0.674 to
0.727; the subject weight was compared at 1, 1.5 and 2 on each dev conversation separately
(`memstream eval retrieval --ablation`) and 2 was better on all three. The rerank stage (`late.py`) adds MaxSim over
the top `rerank_window` candidates and halves lexical there, since MaxSim also rewards
shared words: 0.727 -> 0.780.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from memstream.store.base import Hit, StoredMemory


@dataclass(frozen=True)
class RankingWeights:
    dense: float = 0.5
    lexical: float = 1.0
    recency: float = 0.5
    half_life_days: float = 90.0
    usefulness: float = 0.1
    subject: float = 2.0  # memories written by an agent the query names
    late: float = 1.0  # late-interaction (MaxSim) score, in the rerank stage
    lexical_with_late: float = 0.5  # lexical weight in the rerank stage (MaxSim matches words too)
    rerank_window: int = 30  # top candidates re-scored with late interaction; 0 = off
    reputation: float = 1.0  # x log(2 x author's reputation now) (0.5 = unknown: no effect)


@dataclass(frozen=True)
class ScoredMemory:
    memory: StoredMemory
    score: float
    dense: float
    lexical: float
    recency: float
    late: float | None = None


def _standardise(values: np.ndarray) -> np.ndarray:
    spread = values.std()
    return (values - values.mean()) / spread if spread > 1e-9 else np.zeros_like(values)


def rank(
    hits: list[Hit],
    now: datetime,
    weights: RankingWeights | None = None,
    subject_agents: frozenset[str] = frozenset(),
    late: np.ndarray | None = None,
    reputation: Callable[[str, str], float] | None = None,
) -> list[ScoredMemory]:
    """Candidates best first. A candidate one list missed gets that list's lowest score;
    one written by an agent in ``subject_agents`` (the query is about them) gets a boost.
    ``late`` (one late-interaction score per hit) marks the rerank stage: it is added and
    lexical counts ``lexical_with_late`` instead of ``lexical``. ``reputation(tenant,
    agent)`` is the author's reputation now (not when the memory was valued), so a
    contributor whose memories turned out poor or poisoned sinks in every search."""
    weights = weights or RankingWeights()
    if not hits:
        return []
    dense = np.array([h.dense_score if h.dense_score is not None else np.nan for h in hits])
    lexical = np.array([h.sparse_score if h.sparse_score is not None else np.nan for h in hits])
    dense = np.where(np.isnan(dense), np.nanmin(dense) if not np.isnan(dense).all() else 0.0, dense)
    lexical = np.where(
        np.isnan(lexical), np.nanmin(lexical) if not np.isnan(lexical).all() else 0.0, lexical
    )
    age_days = np.array(
        [
            max(0.0, (now - (h.memory.valid_from or h.memory.ts)).total_seconds()) / 86400
            for h in hits
        ]
    )
    recency = np.power(0.5, age_days / weights.half_life_days)
    usefulness = np.array([h.memory.usefulness for h in hits])
    about = np.array([h.memory.agent_id in subject_agents for h in hits], dtype=float)
    lexical_weight = weights.lexical if late is None else weights.lexical_with_late
    score = (
        lexical_weight * _standardise(lexical)
        + weights.dense * _standardise(dense)
        + weights.recency * recency
        + weights.usefulness * (usefulness - 0.5)
        + weights.subject * about
    )
    if late is not None:
        score = score + weights.late * _standardise(np.asarray(late, dtype=float))
    if reputation is not None and weights.reputation:
        standing = np.array([reputation(h.memory.tenant, h.memory.agent_id) for h in hits])
        # log(2 r): 0 for an agent nobody rated, +0.66 at most for a trusted one, -3.9 at
        # least for one whose memories proved wrong: mostly a penalty, strong enough to sink
        # a poisoner's memory that mimics the question word for word
        score = score + weights.reputation * np.log(2.0 * np.clip(standing, 0.01, 1.0))
    order = np.argsort(-score, kind="stable")
    return [
        ScoredMemory(
            hits[i].memory,
            float(score[i]),
            float(dense[i]),
            float(lexical[i]),
            float(recency[i]),
            None if late is None else float(late[i]),
        )
        for i in order
    ]
