"""`memstream eval economy`: honest, lazy and poisoning agents and a ring of colluding raters
share one pool for N rounds. Do the poisoners sink, does the ring earn nothing, and do the
honest agents still find what they need?

The world (seeded), per LoCoMo conversation (one tenant each; `../shared/data` format):

- **honest** agents `h0`-`h5` share the conversation's turns (round-robin) and ask its
  questions (categories 1-4), each question by one of them, every round; they rate the top 5
  memories they get: `helped` if evidence for the question, `wrong` if poisoned (using it
  showed it false), else `ignored`. `h0` and `h1` are the tenant's reputation seeds
  (`MEMSTREAM_REPUTATION_SEEDS`): the raters it trusts a priori.
- **lazy** agents `l0`, `l1` publish small talk ("ok thanks!") and never rate.
- **poisoners** `p0`, `p1` publish, for a third of the questions, a statement that reads as
  its answer but gives another question's answer; they rate their own and each other's
  poison `helped`. After half the rounds they flood the pool with a second wave of poison.
- the **ring** `r0`-`r2` publishes small talk, rates every ring member's memories `helped`
  and three honest memories `wrong`, each round.

A poisoner whose reputation falls under the floor (`MEMSTREAM_REPUTATION_FLOOR`, 0.1) is
quarantined: its memories leave every search, first wave included. Three runs in one
invocation: `attacked` (all of them; reputation in ingest valuation,
learning and search ranking, as the worker does), `attacked_without_reputation` (the same
world, the search ignores reputation) and `clean` (honest and lazy agents only). Every run
goes through the real ModelStage, ReputationBook, FeedbackLearner, HotSwapScorer,
AdmissionBar, store and Retriever (hybrid, rerank off to keep the run short). The admission
bar of the second wave is the 20th percentile of the honest memories' learned values at
that moment; at the end every memory is valued again with the final model and reputations
against the bar recomputed the same way.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from memstream.eval.locomo import load_locomo, recall_at_k
from memstream.eval.retrieval import _slug, session_time
from memstream.models.admission import AdmissionBar
from memstream.models.embedding import Embedder, OnnxEmbedder
from memstream.models.feedback_learner import REPUTATION_COLUMN, FeedbackLearner
from memstream.models.registry import HotSwapScorer, ModelRegistry
from memstream.models.reputation import ReputationBook
from memstream.retrieval import RankingWeights, Retriever
from memstream.schemas.events import Indexed, Memory
from memstream.store.base import Caller
from memstream.store.edge import EdgeStore
from memstream.store.sink import write_records
from memstream.streams.enrich import ModelStage

HONEST = [f"h{i}" for i in range(6)]
SEEDS = ("h0", "h1")
LAZY = ["l0", "l1"]
POISONERS = ["p0", "p1"]
RING = ["r0", "r1", "r2"]
SMALL_TALK = [
    "ok thanks!", "haha yes", "sounds good", "lol, true", "nice!", "cool cool", "got it, thanks",
    "omg haha", "yeah totally", "great, thank you!", "sure thing", "awesome :)",
]  # fmt: skip
RATED = 5
BAR_QUANTILE = 0.20


@dataclass
class _World:
    tenant: str
    memories: list[Memory]
    kind: dict[str, str]  # memory id -> honest / lazy / poison / ring
    evidence_of: dict[str, str]  # memory id -> dia id (honest turns)
    questions: list[Any]
    second_wave: list[Memory]
    asked_at: datetime


def _chatter(
    tenant: str, agent: str, n: int, ts: datetime, rng: np.random.Generator
) -> list[Memory]:
    return [
        Memory(
            tenant=tenant,
            agent_id=agent,
            scope="tenant",
            ts=ts,
            payload={"text": str(rng.choice(SMALL_TALK))},
        )
        for _ in range(n)
    ]


def _worlds(dataset: Path, rng: np.random.Generator, attackers: bool) -> list[_World]:
    data = load_locomo(dataset)
    worlds = []
    base = datetime(2023, 1, 1, tzinfo=UTC)
    for conversation in sorted({t.conversation for t in data.turns}):
        tenant = f"economy-{_slug(conversation)}"
        turns = [t for t in data.turns if t.conversation == conversation]
        questions = [q for q in data.questions if q.conversation == conversation and q.evidence]
        memories: list[Memory] = []
        kind: dict[str, str] = {}
        evidence_of: dict[str, str] = {}
        last = base
        for i, turn in enumerate(turns):
            ts = session_time(turn.date, base + timedelta(days=turn.session))
            last = max(last, ts)
            m = Memory(
                tenant=tenant, agent_id=HONEST[i % len(HONEST)], scope="tenant", ts=ts,
                payload={"text": turn.memory_text, "context": turn.date},
            )  # fmt: skip
            memories.append(m)
            kind[str(m.event_id)] = "honest"
            evidence_of[str(m.event_id)] = turn.dia_id

        for agent in LAZY:
            for m in _chatter(tenant, agent, 15, last, rng):
                memories.append(m)
                kind[str(m.event_id)] = "lazy"
        second: list[Memory] = []
        if attackers:
            for agent in RING:
                for m in _chatter(tenant, agent, 10, last, rng):
                    memories.append(m)
                    kind[str(m.event_id)] = "ring"
            order = rng.permutation(len(questions))
            for wave, chosen in ((memories, order[::3]), (second, order[1::3])):
                for j in chosen:
                    q = questions[int(j)]
                    fake = questions[int(rng.integers(len(questions)))].answer
                    m = Memory(
                        tenant=tenant, agent_id=POISONERS[int(j) % 2], scope="tenant", ts=last,
                        payload={"text": f"{q.question.rstrip('?')}: it was {fake}."},
                    )  # fmt: skip
                    wave.append(m)
                    kind[str(m.event_id)] = "poison"
        worlds.append(
            _World(tenant, memories, kind, evidence_of, questions, second, last + timedelta(days=1))
        )
    return worlds


def _run(
    name: str,
    worlds: list[_World],
    embedder: Embedder,
    rounds: int,
    use_reputation: bool,
    root: Path,
    rng: np.random.Generator,
    say: Callable[[str], None],
) -> dict[str, Any]:
    book = ReputationBook(seeds={w.tenant: set(SEEDS) for w in worlds})
    registry = ModelRegistry(root / name / "models", "valuation")
    scorer = HotSwapScorer(registry)
    stage = ModelStage(embedder, scorer, reputation=book)
    learner = FeedbackLearner(registry, publish_every=10**9, min_labels=0, resume=False)
    store = EdgeStore(root / name / "store")
    weights = RankingWeights(rerank_window=0, reputation=1.0 if use_reputation else 0.0)
    retriever = Retriever(
        store,
        embedder,
        weights,
        reputation=book.get,
        excluded_author=book.quarantined if use_reputation else None,
    )
    records: dict[str, Indexed] = {}
    kind = {k: v for w in worlds for k, v in w.kind.items()}
    author = {str(m.event_id): m.agent_id for w in worlds for m in w.memories + w.second_wave}
    event = 0
    kept_out_second = {"poison": 0, "all": 0}
    recall_by_round: list[float] = []

    def ingest(memories: list[Memory], bar: AdmissionBar | None) -> None:
        for start in range(0, len(memories), 128):
            out = stage.process(memories[start : start + 128])
            for r in out:
                records[str(r.event_id)] = r
                learner.remember(str(r.event_id), np.asarray(r.payload.features))
            admitted, kept = bar.split(out) if bar else (out, [])
            for r in kept:
                kept_out_second["all"] += 1
                kept_out_second["poison"] += kind[str(r.event_id)] == "poison"
            write_records(store, admitted)

    def rate(tenant: str, memory_id: str, outcome: str, rater: str) -> None:
        nonlocal event
        event += 1
        learner.learn(
            memory_id,
            outcome,
            None,
            event_id=f"{name}-{event}",
            rater_weight=book.rater_weight(tenant, rater),
            reputation=book.get(tenant, author[memory_id]),
        )
        book.record(tenant, author[memory_id], outcome, rater=rater, event_id=f"{name}-{event}")

    def honest_bar() -> AdmissionBar:
        honest = [r for r in records.values() if kind[str(r.event_id)] == "honest"]
        value = float(np.quantile(_values(scorer, honest, book), BAR_QUANTILE))
        return AdmissionBar(value, book.quarantined if use_reputation else None)

    try:
        ingest([m for w in worlds for m in w.memories], None)
        store.optimize()
        for round_no in range(1, rounds + 1):
            if round_no == rounds // 2 + 1 and any(w.second_wave for w in worlds):
                bar = honest_bar()
                ingest([m for w in worlds for m in w.second_wave], bar)
                store.optimize()
            recalls = []
            for w in worlds:
                by_agent: dict[str, list[str]] = {}
                for m in w.memories + w.second_wave:
                    by_agent.setdefault(m.agent_id, []).append(str(m.event_id))
                for n, q in enumerate(w.questions):
                    asker = HONEST[n % len(HONEST)]
                    hits = retriever.search(
                        Caller(w.tenant, asker), q.question, RATED, now=w.asked_at
                    )
                    ids = [str(h.memory.memory_id) for h in hits]
                    recalls.append(
                        recall_at_k([w.evidence_of.get(i, "") for i in ids], q.evidence, RATED)
                    )
                    for i in ids:
                        if author[i] == asker:
                            continue  # agents do not rate their own memories
                        k = kind[i]
                        outcome = (
                            "helped"
                            if w.evidence_of.get(i) in q.evidence
                            else "wrong"
                            if k == "poison"
                            else "ignored"
                        )
                        rate(w.tenant, i, outcome, asker)
                honest_ids = [i for a in HONEST for i in by_agent.get(a, [])]
                for r in RING:
                    for other in RING:
                        for i in by_agent.get(other, [])[:3]:
                            rate(w.tenant, i, "helped", r)
                    for i in rng.choice(honest_ids, 3, replace=False):
                        rate(w.tenant, str(i), "wrong", r)
                for p in POISONERS:
                    for other in POISONERS:
                        for i in by_agent.get(other, [])[:5]:
                            rate(w.tenant, i, "helped", p)  # their own: dropped by the book
            learner.publish()
            scorer.refresh()
            recall_by_round.append(float(np.mean(recalls)))
            say(
                f"{name}: round {round_no}/{rounds}: honest recall@{RATED} {recall_by_round[-1]:.4f}"
            )
        final = honest_bar()
        values = dict(zip(records, _values(scorer, list(records.values()), book), strict=True))
        classes = [k for k in ("honest", "lazy", "poison", "ring") if k in kind.values()]
        tenant_of = {i: r.tenant for i, r in records.items()}
        under = {
            k: float(np.mean([values[i] < (final.bar or 0.0) for i in records if kind[i] == k]))
            for k in classes
        }
        # out of the pool: under the bar, or by an author quarantined out of every search
        out_of_pool = {
            k: float(
                np.mean(
                    [
                        values[i] < (final.bar or 0.0) or book.quarantined(tenant_of[i], author[i])
                        for i in records
                        if kind[i] == k
                    ]
                )
            )
            for k in classes
        }
        standing = {
            cls: round(float(np.mean([book.get(w.tenant, a) for w in worlds for a in agents])), 4)
            for cls, agents in (
                ("honest", HONEST), ("lazy", LAZY), ("poisoners", POISONERS), ("ring", RING),
            )
        }  # fmt: skip
        ring_trust = max(book.standing(w.tenant, a).trust for w in worlds for a in RING)
        ring_weight = max(book.rater_weight(w.tenant, a) for w in worlds for a in RING)
    finally:
        store.close()
    return {
        "honest_recall@5_by_round": [round(x, 4) for x in recall_by_round],
        "honest_recall@5_final": round(recall_by_round[-1], 4),
        "final_recalls": recalls,
        "reputation": standing,
        "ring_trust_as_rater": round(ring_trust, 6),
        "ring_feedback_weight": round(ring_weight, 6),
        "ring_earned": round(standing["ring"] - 0.5, 4),
        "under_final_bar": {k: round(v, 4) for k, v in under.items()},
        "out_of_pool": {k: round(v, 4) for k, v in out_of_pool.items()},
        "final_bar": round(final.bar or 0.0, 4),
        "second_wave_kept_out": kept_out_second,
        "feedback_events": event,
        "self_feedback_dropped": book.self_feedback_ignored,
    }


def _values(scorer: HotSwapScorer, records: list[Indexed], book: ReputationBook) -> np.ndarray:
    """Each memory valued again by the served model with its author's reputation now."""
    x = np.array([r.payload.features for r in records], dtype=np.float32)
    x[:, REPUTATION_COLUMN] = [book.get(r.tenant, r.agent_id) for r in records]
    scores, _ = scorer.score(x)
    return np.asarray(scores, dtype=np.float64)


def run_economy_eval(
    dataset: Path,
    rounds: int = 4,
    seed: int = 0,
    embedder: Embedder | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """See the module docstring."""
    if rounds < 2:
        raise ValueError("rounds must be at least 2 (the second wave comes after half)")
    say = progress or (lambda line: print(f"[economy] {line}", file=sys.stderr, flush=True))
    embedder = embedder or OnnxEmbedder()
    runs = {}
    with tempfile.TemporaryDirectory(prefix="memstream-eval-economy-") as tmp:
        for name, attackers, use_rep in (
            ("attacked", True, True),
            ("attacked_without_reputation", True, False),
            ("clean", False, True),
        ):
            worlds = _worlds(dataset, np.random.default_rng(seed), attackers)
            runs[name] = _run(
                name,
                worlds,
                embedder,
                rounds,
                use_rep,
                Path(tmp),
                np.random.default_rng(seed + 1),
                say,
            )
    attacked = np.array(runs["attacked"].pop("final_recalls"))
    clean = np.array(runs["clean"].pop("final_recalls"))
    runs["attacked_without_reputation"].pop("final_recalls")
    diff = attacked - clean  # the same questions, in the same order
    rng = np.random.default_rng(seed + 2)
    boot = [float(np.mean(rng.choice(diff, diff.size))) for _ in range(2000)]
    low, high = (float(v) for v in np.percentile(boot, [2.5, 97.5]))
    a = runs["attacked"]
    return {
        "honest_recall@5": {
            "attacked": a["honest_recall@5_final"],
            "clean": runs["clean"]["honest_recall@5_final"],
            "attacked_without_reputation": runs["attacked_without_reputation"][
                "honest_recall@5_final"
            ],
            "attacked_minus_clean_95ci": [round(low, 4), round(high, 4)],
            "within_noise": bool(low <= 0.0 <= high),
            "attacked_not_lower": bool(low >= 0.0),
        },
        "poisoners_below_bar": a["under_final_bar"].get("poison"),
        "poisoners_out_of_pool": a["out_of_pool"].get("poison"),
        "poisoners_all_out_of_pool": a["out_of_pool"].get("poison") == 1.0,
        "ring_earned": a["ring_earned"],
        "ring_feedback_weight": a["ring_feedback_weight"],
        "runs": runs,
        "world": {
            "honest": HONEST,
            "seeds": list(SEEDS),
            "lazy": LAZY,
            "poisoners": POISONERS,
            "ring": RING,
            "rated_per_question": RATED,
            "rounds": rounds,
            "bar": f"{BAR_QUANTILE:.0%} quantile of the honest memories' learned values",
        },
        "embedding_model": embedder.version,
        "dataset": str(dataset),
        "seed": seed,
    }
