"""`memstream eval retrieval --mode knowledge`: consolidated facts against raw memories.

Both modes answer each LoCoMo question from the same store and the same hybrid ranking:
`episodic` returns the top k memories, `knowledge` consolidates the top candidates into
facts (memstream/retrieval/modes.py) and returns ceil(k / 2) of them. Recall of evidence is
by provenance: an evidence turn is found when a returned item is it (episodic) or names it
among its members (knowledge). Items and characters returned are reported beside it, since
a fact holds more words than one memory.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from memstream.eval.locomo import CATEGORY_NAMES, load_locomo
from memstream.eval.retrieval import _privacy_stage, _slug, ingest, turn_memories
from memstream.models.embedding import Embedder, OnnxEmbedder
from memstream.models.registry import HotSwapScorer, ModelRegistry
from memstream.retrieval.modes import candidates_for, consolidate, knowledge_items, resolve_mode
from memstream.retrieval.ranking import RankingWeights
from memstream.retrieval.search import Retriever
from memstream.store.base import Caller
from memstream.store.token_vectors import TokenVectorStore
from memstream.streams.enrich import ModelStage


def _found(ids: list[str], evidence: tuple[str, ...]) -> float:
    return len(set(ids) & set(evidence)) / len(set(evidence)) if evidence else 0.0


def run_modes_eval(
    dataset: Path,
    k: int = 5,
    embedder: Embedder | None = None,
    weights: RankingWeights | None = None,
    pii_policy: str = "worker",
) -> dict[str, Any]:
    from memstream.store.edge import EdgeStore

    data = load_locomo(dataset)
    embedder = embedder or OnnxEmbedder()
    memories, dia_of, asked_at = turn_memories(data)
    rows: dict[str, list[tuple[float, int, int]]] = defaultdict(list)
    by_category: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    with tempfile.TemporaryDirectory(prefix="memstream-eval-") as tmp:
        store = EdgeStore(Path(tmp) / "store")
        try:
            kept = TokenVectorStore(Path(tmp) / "token_vectors.db")
            registry = ModelRegistry(Path(tmp) / "models", "valuation")
            stage = ModelStage(embedder, HotSwapScorer(registry), token_store=kept)
            ingest(store, stage, memories, privacy=_privacy_stage(Path(tmp), pii_policy))
            retriever = Retriever(store, embedder, weights, kept_tokens=kept)
            for question in data.questions:
                caller = Caller(f"locomo-{_slug(question.conversation)}", "evaluator")
                now = asked_at[question.conversation]
                wide = retriever.search(caller, question.question, candidates_for(k), now=now)
                episodic = wide[:k]
                facts = consolidate(wide, k)

                def ids_of(hits: list) -> list[str]:
                    out = []
                    for hit in hits:
                        out.append(dia_of.get(str(hit.memory.memory_id), ""))
                        out += [dia_of.get(p["memory_id"], "") for p in hit.memory.provenance]
                    return out

                ep = _found(ids_of(episodic), question.evidence)
                kn = _found(ids_of([m for f in facts for m in f.members]), question.evidence)
                rows["episodic"].append(
                    (ep, len(episodic), sum(len(h.memory.text) for h in episodic))
                )
                rows["knowledge"].append((kn, len(facts), sum(len(f.text) for f in facts)))
                auto = resolve_mode(question.question, "auto")
                rows["auto"].append(rows[auto][-1])
                name = f"{question.category}-{CATEGORY_NAMES[question.category]}"
                by_category[name][0].append(ep)
                by_category[name][1].append(kn)
        finally:
            store.close()

    def summary(values: list[tuple[float, int, int]]) -> dict[str, float]:
        recall, items, chars = (np.array(v, dtype=float) for v in zip(*values, strict=True))
        return {
            "recall_of_evidence": round(float(recall.mean()), 4),
            "items_returned": round(float(items.mean()), 3),
            "chars_returned": round(float(chars.mean()), 1),
        }

    episodic, knowledge = summary(rows["episodic"]), summary(rows["knowledge"])
    return {
        "k": k,
        "episodic": episodic,
        "knowledge": knowledge,
        "auto": summary(rows["auto"])
        | {
            "knowledge_share": round(
                sum(resolve_mode(q.question, "auto") == "knowledge" for q in data.questions)
                / max(1, len(data.questions)),
                4,
            )
        },
        "knowledge_items_per_request": knowledge_items(k),
        "fewer_items_at_equal_or_better_recall": knowledge["items_returned"]
        < episodic["items_returned"]
        and knowledge["recall_of_evidence"] >= episodic["recall_of_evidence"],
        "by_category": {
            name: {
                "episodic": round(float(np.mean(v[0])), 4),
                "knowledge": round(float(np.mean(v[1])), 4),
                "questions": len(v[0]),
            }
            for name, v in sorted(by_category.items())
        },
        "questions": len(data.questions),
        "memories": len(memories),
        "pii_policy": pii_policy,
        "dataset": str(dataset),
        "embedding_model": embedder.version,
    }
