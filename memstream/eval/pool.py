"""`memstream eval valuation --dataset F`: does the learned valuation pay on conversations it
never saw? Recall@k with the valuation as a ranking prior against without it, and what the
pool's admission bar keeps out and costs, in one run.

The feedback simulator (seeded, no model of its own): each conversation is a tenant whose
turns are memories (as in `eval retrieval`: speaker, session date and previous turn as
context, through the worker's privacy and model stages). An agent asks each question of a
training conversation with the pipeline's search, as deployed before anything was learned
(cold-start usefulness, default weights), and rates the top `FEEDBACK_K` memories it gets
back: `helped` if the memory is evidence for the question, `ignored` if not. The questions
are asked `ROUNDS` times in a seeded order, as agents ask again; the real `FeedbackLearner`
learns from those events and publishes a model version to a real registry, which the real
`HotSwapScorer` then serves to score the held-out conversations' memories. Evidence is read
only to produce the training conversations' feedback and to score the held-out answers.

Folds are by conversation (each held out once; with more than `MAX_FOLDS` conversations,
`MAX_FOLDS` seeded groups). The admission bar is chosen on the training conversations only:
the largest share of their memories (of `BAR_SHARES`) whose removal costs at most
`BAR_BUDGET` of their recall@k (measured by dropping those memories from the ranked lists),
its learned-usefulness quantile being the bar. On the held-out conversations the memories
under it are not written to the store at all, exactly as the sink does
(`memstream.models.admission`).
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from memstream.eval.locomo import LocomoData, Question, load_locomo, recall_at_k
from memstream.eval.retrieval import _privacy_stage, _slug, turn_memories
from memstream.eval.valuation import roc_auc
from memstream.models.admission import AdmissionBar
from memstream.models.embedding import Embedder, OnnxEmbedder
from memstream.models.feedback_learner import FeedbackLearner
from memstream.models.registry import HotSwapScorer, ModelRegistry
from memstream.retrieval import RankingWeights, Retriever
from memstream.schemas.events import Indexed
from memstream.store.base import Caller
from memstream.store.edge import EdgeStore
from memstream.store.sink import write_records
from memstream.store.token_vectors import TokenVectorStore
from memstream.streams.enrich import ModelStage

FEEDBACK_K = 10
"""Memories an asking agent looks at and rates."""
ROUNDS = 3
"""Times each training question is asked (agents ask again; the feedback repeats)."""
CANDIDATES = 50
"""Ranked list kept per training question, so a bar can be tried by dropping memories."""
BAR_SHARES = tuple(round(0.05 * i, 2) for i in range(1, 11))
BAR_BUDGET = 0.005
"""Training recall@k a bar may cost: half the acceptance's 0.01, for the step to new data."""
MAX_FOLDS = 5


@dataclass
class _Conversation:
    name: str
    tenant: str
    records: list[Indexed]
    questions: list[Question]


def _ranked(
    retriever: Retriever,
    question: Question,
    tenant: str,
    k: int,
    now: Any,
    dia_of: dict[str, str],
) -> tuple[list[str], list[str], list[Any]]:
    """(memory ids best first, dia ids best first; a merged duplicate stands for its copies)."""
    results = retriever.search(Caller(tenant, "evaluator"), question.question, k, now=now)
    ids: list[str] = []
    dias: list[str] = []
    for result in results:
        ids.append(str(result.memory.memory_id))
        dias.append(dia_of.get(str(result.memory.memory_id), ""))
        for p in result.memory.provenance:
            dias.append(dia_of.get(p["memory_id"], ""))
    return ids, dias, results


def _score(scorer: HotSwapScorer, records: Sequence[Indexed]) -> tuple[np.ndarray, str]:
    if not records:
        return np.zeros(0, dtype=np.float32), scorer.label
    features = np.array([r.payload.features for r in records], dtype=np.float32)
    scores, label = scorer.score(features)
    return np.clip(np.asarray(scores, dtype=np.float32), 0.0, 1.0), label


def _rescored(records: Sequence[Indexed], scores: np.ndarray, label: str) -> list[Indexed]:
    """The records as the worker would have written them had this model been served."""
    out = []
    for record, score in zip(records, scores, strict=True):
        models = dict(record.payload.models) | {"valuation": label}
        payload = record.payload.model_copy(update={"usefulness": float(score), "models": models})
        out.append(record.model_copy(update={"payload": payload}))
    return out


def run_pool_eval(
    dataset: Path,
    k: int = 5,
    seed: int = 0,
    pii_policy: str = "worker",
    embedder: Embedder | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """See the module docstring. `pii_policy` as in `eval retrieval` (`worker`: the
    worker's privacy stage as configured)."""
    say = progress or (lambda line: print(f"[valuation] {line}", file=sys.stderr, flush=True))
    data: LocomoData = load_locomo(dataset)
    embedder = embedder or OnnxEmbedder()
    memories, dia_of, asked_at = turn_memories(data)
    rng = np.random.default_rng(seed)
    weights = RankingWeights()
    without = replace(weights, usefulness=0.0)
    from memstream.streams.app import enrich_or_reject

    with tempfile.TemporaryDirectory(prefix="memstream-eval-pool-") as tmp:
        root = Path(tmp)
        kept_tokens = TokenVectorStore(root / "token_vectors.db")
        cold = HotSwapScorer(ModelRegistry(root / "cold", "valuation"))
        stage = ModelStage(embedder, cold, token_store=kept_tokens)
        privacy = _privacy_stage(root, pii_policy)
        by_tenant: dict[str, list[Indexed]] = {}
        for start in range(0, len(memories), 256):
            batch = memories[start : start + 256]
            for result in enrich_or_reject(stage, batch, privacy):  # type: ignore[arg-type]
                if isinstance(result, Indexed):
                    by_tenant.setdefault(result.tenant, []).append(result)
            say(f"ingested {min(start + 256, len(memories))}/{len(memories)} turns")
        conversations = []
        for name in sorted({t.conversation for t in data.turns}):
            tenant = f"locomo-{_slug(name)}"
            questions = [q for q in data.questions if q.conversation == name and q.evidence]
            conversations.append(_Conversation(name, tenant, by_tenant.get(tenant, []), questions))
        if len(conversations) < 2:
            raise ValueError(f"{dataset}: needs at least 2 conversations (train and held out)")
        order = rng.permutation(len(conversations))
        n_folds = min(len(conversations), MAX_FOLDS)
        folds = [sorted(int(i) for i in order[f::n_folds]) for f in range(n_folds)]

        recall: dict[str, list[float]] = {
            "with_prior": [],
            "without": [],
            "admission": [],
            "admission_without_prior": [],
        }
        by_fold: list[dict[str, Any]] = []
        auc_labels: list[bool] = []
        auc_learned: list[float] = []
        auc_cold: list[float] = []
        kept_out_total = 0
        held_out_total = 0
        for f, held in enumerate(folds):
            train = [c for i, c in enumerate(conversations) if i not in held]
            test = [conversations[i] for i in held]
            say(f"fold {f + 1}/{n_folds}: train on {[c.name for c in train]}")
            fold_dir = root / f"fold-{f}"
            # 1. training conversations in a pool served by the cold start; agents ask, rate
            train_store = EdgeStore(fold_dir / "train")
            try:
                train_records = [r for c in train for r in c.records]
                write_records(train_store, train_records)
                train_store.optimize()
                retriever = Retriever(train_store, embedder, weights, kept_tokens=kept_tokens)
                lists: list[tuple[list[str], Question, str]] = []
                for conv in train:
                    for q in conv.questions:
                        ids, _, _ = _ranked(
                            retriever, q, conv.tenant, CANDIDATES, asked_at[q.conversation], dia_of
                        )
                        lists.append((ids, q, conv.tenant))
            finally:
                train_store.close()
            registry = ModelRegistry(fold_dir / "models", "valuation")
            learner = FeedbackLearner(registry, publish_every=10**9, min_labels=0, resume=False)
            for record in train_records:
                learner.remember(str(record.event_id), np.asarray(record.payload.features))
            events = 0
            for _ in range(ROUNDS):
                for n in rng.permutation(len(lists)):
                    ids, q, _ = lists[int(n)]
                    evidence = set(q.evidence)
                    for memory_id in ids[:FEEDBACK_K]:
                        helped = dia_of.get(memory_id, "") in evidence
                        learner.learn(memory_id, "helped" if helped else "ignored", None)
                        events += 1
            version = learner.publish()
            learned = HotSwapScorer(registry)
            learned.refresh()
            # 2. the bar, on the training conversations only
            train_scores, _ = _score(learned, train_records)
            score_of = {
                str(r.event_id): s for r, s in zip(train_records, train_scores, strict=True)
            }
            base = float(np.mean([_recall(ids, q, dia_of, k) for ids, q, _ in lists]))
            chosen_share, chosen_bar, chosen_cost = 0.0, None, 0.0
            tried = []
            for share in BAR_SHARES:
                bar = float(np.quantile(train_scores, share))
                kept = [
                    _recall([i for i in ids if score_of.get(i, 1.0) >= bar], q, dia_of, k)
                    for ids, q, _ in lists
                ]
                cost = base - float(np.mean(kept))
                tried.append({"share": share, "bar": round(bar, 4), "recall_cost": round(cost, 4)})
                if cost <= BAR_BUDGET:
                    chosen_share, chosen_bar, chosen_cost = share, bar, cost
            # 3. held-out conversations, scored by the served model; with and without the bar
            test_records = [r for c in test for r in c.records]
            test_scores, label = _score(learned, test_records)
            cold_scores, _ = _score(cold, test_records)
            scored = _rescored(test_records, test_scores, label)
            admission = AdmissionBar(chosen_bar) if chosen_bar is not None else None
            admitted, kept_out = admission.split(scored) if admission else (scored, [])
            kept_out_total += len(kept_out)
            held_out_total += len(scored)
            full_store = EdgeStore(fold_dir / "held-out")
            pool_store = EdgeStore(fold_dir / "held-out-admitted")
            fold_recall: dict[str, list[float]] = {m: [] for m in recall}
            try:
                write_records(full_store, scored)
                write_records(pool_store, admitted)
                full_store.optimize()
                pool_store.optimize()
                modes = {
                    "with_prior": Retriever(full_store, embedder, weights, kept_tokens=kept_tokens),
                    "without": Retriever(full_store, embedder, without, kept_tokens=kept_tokens),
                    "admission": Retriever(pool_store, embedder, weights, kept_tokens=kept_tokens),
                    "admission_without_prior": Retriever(
                        pool_store, embedder, without, kept_tokens=kept_tokens
                    ),
                }
                position = {str(r.event_id): i for i, r in enumerate(test_records)}
                for conv in test:
                    for q in conv.questions:
                        now = asked_at[q.conversation]
                        for mode, retr in modes.items():
                            ids, dias, _ = _ranked(retr, q, conv.tenant, k, now, dia_of)
                            fold_recall[mode].append(recall_at_k(dias, q.evidence, k))
                            if mode == "without":  # what agents would rate: AUC of each scorer
                                for memory_id in ids[:FEEDBACK_K]:
                                    i = position[memory_id]
                                    auc_labels.append(dia_of.get(memory_id, "") in set(q.evidence))
                                    auc_learned.append(float(test_scores[i]))
                                    auc_cold.append(float(cold_scores[i]))
            finally:
                full_store.close()
                pool_store.close()
            for mode, values in fold_recall.items():
                recall[mode].extend(values)
            by_fold.append(
                {
                    "train": [c.name for c in train],
                    "held_out": [c.name for c in test],
                    "feedback_events": events,
                    "model_version": version,
                    "bar": None if chosen_bar is None else round(chosen_bar, 4),
                    "bar_train_share": chosen_share,
                    "bar_train_recall_cost": round(chosen_cost, 4),
                    "bars_tried_on_train": tried,
                    "held_out_memories": len(scored),
                    "kept_out": round(len(kept_out) / max(len(scored), 1), 4),
                    "questions": len(fold_recall["without"]),
                    **{
                        f"recall@{k}.{mode}": round(float(np.mean(v)), 4) if v else None
                        for mode, v in fold_recall.items()
                    },
                }
            )
            say(
                f"fold {f + 1}/{n_folds}: held out {[c.name for c in test]}: kept out "
                f"{by_fold[-1]['kept_out']:.2f}, recall@{k} without "
                f"{by_fold[-1][f'recall@{k}.without']}, with prior "
                f"{by_fold[-1][f'recall@{k}.with_prior']}, admission "
                f"{by_fold[-1][f'recall@{k}.admission']}"
            )

    def mean(values: list[float]) -> float:
        return round(float(np.mean(values)), 4) if values else float("nan")

    labels = np.array(auc_labels, dtype=bool)
    both = labels.any() and not labels.all()
    kept_out_share = round(kept_out_total / max(held_out_total, 1), 4)
    admission_recall = mean(recall["admission"])
    with_prior = mean(recall["with_prior"])
    return {
        f"recall@{k}": {"with_prior": with_prior, "without": mean(recall["without"])},
        "admission": {
            "kept_out": kept_out_share,
            f"recall@{k}": admission_recall,
            f"recall@{k}_without_prior": mean(recall["admission_without_prior"]),
            "recall_lost": round(with_prior - admission_recall, 4),
            "bar_met": bool(kept_out_share >= 0.25 and with_prior - admission_recall <= 0.01),
        },
        "prior_does_not_lower_recall": bool(with_prior >= mean(recall["without"])),
        "valuation_auc_on_held_out_feedback": {
            "learned": round(roc_auc(labels, np.array(auc_learned)), 4) if both else None,
            "cold_start": round(roc_auc(labels, np.array(auc_cold)), 4) if both else None,
            "events": int(labels.size),
            "helped_share": round(float(labels.mean()), 4) if labels.size else None,
        },
        "folds": by_fold,
        "questions": len(recall["without"]),
        "memories": len(memories),
        "k": k,
        "feedback": {
            "rated_per_question": FEEDBACK_K,
            "rounds": ROUNDS,
            "outcomes": "helped if the memory is evidence for the question, else ignored",
        },
        "bar_rule": f"largest share of {list(BAR_SHARES)} of the training memories costing at "
        f"most {BAR_BUDGET} training recall@{k}; its learned-usefulness quantile is the bar",
        "ranking_weights": vars(weights),
        "embedding_model": embedder.version,
        "pii_policy": pii_policy,
        "seed": seed,
        "dataset": str(dataset),
    }


def _recall(ids: list[str], question: Question, dia_of: dict[str, str], k: int) -> float:
    return recall_at_k([dia_of.get(i, "") for i in ids], question.evidence, k)
