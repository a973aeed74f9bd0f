"""`memstream eval retrieval --ablation`: each step of the retrieval pipeline on and off,
on one store, pooled and on each conversation separately, with its search time.

The turns are ingested once, as `memstream eval retrieval` does (the worker's privacy
policy by default, token vectors kept at ingest); then every variant asks all questions
through its own `Retriever` over that store. A step is kept in the default only when it
helps on every conversation, not only on the pooled figure (docs/retrieval.md), and only
when what it costs in search time is worth its recall. The rows are cumulative up to the
default, then single changes to it.
"""

from __future__ import annotations

import gc
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from memstream.eval.locomo import CATEGORY_NAMES, load_locomo, recall_at_k
from memstream.eval.retrieval import _privacy_stage, _slug, ingest, ranked_turns, turn_memories
from memstream.models.embedding import Embedder, OnnxEmbedder
from memstream.models.registry import HotSwapScorer, ModelRegistry
from memstream.retrieval import RankingWeights, Retriever
from memstream.store.base import Caller
from memstream.store.token_vectors import TokenVectorStore
from memstream.streams.enrich import ModelStage

K = 5


@dataclass(frozen=True)
class Variant:
    name: str
    weights: RankingWeights = field(default_factory=RankingWeights)
    mode: str = "hybrid"
    strip_names: bool = True


FIRST_STAGE = RankingWeights(rerank_window=0)
VARIANTS = (
    Variant("BM25 over turn + context", mode="lexical"),
    Variant("dense MiniLM-L6 alone", mode="dense"),
    Variant(
        "z-score fusion of the two", RankingWeights(subject=0.0, rerank_window=0), strip_names=False
    ),
    Variant("+ subject boost 2.0", FIRST_STAGE, strip_names=False),
    Variant("+ dense query without the name", FIRST_STAGE),
    Variant("+ late-interaction rerank of the top 30", RankingWeights(lexical_with_late=1.0)),
    Variant("+ lexical at half weight in the rerank (default)", RankingWeights()),
    Variant("default, subject boost 1.0", RankingWeights(subject=1.0)),
    Variant("default, rerank window 15", RankingWeights(rerank_window=15)),
    Variant("default, rerank window 50", RankingWeights(rerank_window=50)),
    Variant("default, recency weight 0", RankingWeights(recency=0.0)),
)


def run_retrieval_ablation(
    dataset: Path,
    variants: tuple[Variant, ...] = VARIANTS,
    embedder: Embedder | None = None,
    query_embedder: Embedder | None = None,
    pii_policy: str = "worker",
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """One row per variant: recall@5 pooled, per conversation and per category, and the
    search time per question (p50, p99, ms). `progress(done, total)` after each question
    of each variant."""
    from memstream.store.edge import EdgeStore

    data = load_locomo(dataset)
    if embedder is None:  # the worker's two sessions, as in `memstream eval retrieval`
        embedder = OnnxEmbedder(spin=False)
        query_embedder = query_embedder or OnnxEmbedder(threads=1)
    query_embedder = query_embedder or embedder
    memories, dia_of, asked_at = turn_memories(data)
    rows = []
    with tempfile.TemporaryDirectory(prefix="memstream-ablation-") as tmp:
        registry = ModelRegistry(Path(tmp) / "models", "valuation")
        store = EdgeStore(Path(tmp) / "store")
        kept = TokenVectorStore(Path(tmp) / "token_vectors.db")
        try:
            stage = ModelStage(embedder, HotSwapScorer(registry), token_store=kept)
            ingest(store, stage, memories, privacy=_privacy_stage(Path(tmp), pii_policy))
            gc.collect()
            gc.freeze()  # as the worker does once started
            total, done = len(variants) * len(data.questions), 0
            for variant in variants:
                retriever = Retriever(
                    store,
                    query_embedder,
                    variant.weights,
                    kept_tokens=kept,
                    strip_names=variant.strip_names,
                )
                by_conversation: dict[str, list[float]] = defaultdict(list)
                by_category: dict[int, list[float]] = defaultdict(list)
                latency = []
                for question in data.questions:
                    caller = Caller(f"locomo-{_slug(question.conversation)}", "evaluator")
                    started = time.perf_counter()
                    results = retriever.search(
                        caller,
                        question.question,
                        10,
                        now=asked_at[question.conversation],
                        mode=variant.mode,
                    )
                    latency.append(time.perf_counter() - started)
                    value = recall_at_k(ranked_turns(results, dia_of), question.evidence, K)
                    by_conversation[question.conversation].append(value)
                    by_category[question.category].append(value)
                    done += 1
                    if progress is not None:
                        progress(done, total)
                pooled = [v for values in by_conversation.values() for v in values]
                rows.append(
                    {
                        "variant": variant.name,
                        f"recall@{K}": round(float(np.mean(pooled)), 4),
                        "by_conversation": {
                            c: round(float(np.mean(v)), 4) for c, v in by_conversation.items()
                        },
                        "by_category": {
                            f"{c}-{CATEGORY_NAMES[c]}": round(float(np.mean(v)), 4)
                            for c, v in sorted(by_category.items())
                        },
                        "search_ms": {
                            "p50": round(1000 * float(np.percentile(latency, 50)), 1),
                            "p99": round(1000 * float(np.percentile(latency, 99)), 1),
                        },
                    }
                )
        finally:
            gc.unfreeze()
            store.close()
    return {
        "rows": rows,
        "questions": len(data.questions),
        "memories": len(memories),
        "pii_policy": pii_policy,
        "embedding_model": embedder.version,
        "dataset": str(dataset),
    }


def ablation_table(result: dict[str, Any]) -> str:
    """The rows as the markdown table docs/retrieval.md carries."""
    conversations = list(result["rows"][0]["by_conversation"])
    categories = list(result["rows"][0]["by_category"])
    head = ["variant", f"recall@{K}", *conversations, *(c.split("-", 1)[1] for c in categories)]
    lines = ["| " + " | ".join([*head, "p50 / p99 ms"]) + " |", "|" + "---|" * (len(head) + 1)]
    for row in result["rows"]:
        cells = [row["variant"], f"{row[f'recall@{K}']:.3f}"]
        cells += [f"{row['by_conversation'][c]:.3f}" for c in conversations]
        cells += [f"{row['by_category'][c]:.3f}" for c in categories]
        cells.append(f"{row['search_ms']['p50']:.0f} / {row['search_ms']['p99']:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
