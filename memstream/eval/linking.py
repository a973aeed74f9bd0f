"""`memstream eval linking`: does each memory get linked to the memories it belongs with?

Data: LoCoMo format (`memstream.eval.locomo`). Each conversation is one tenant; its turns
arrive in order and each new turn is linked to earlier turns of the same conversation.
Ground truth: two turns that are evidence for the same question are related (every pair of
the distinct evidence turns of questions with two or more). Links are undirected pairs.

LoCoMo marks only the relations some question needed, so most sensible links (two turns
about the same trip that no question asks about) count as false: `precision` is a lower
bound. `precision_evidence_only` counts only links whose both ends are evidence of some
question, where the labels are closer to complete.

Compared in the same run, on the same turns:
- `linker`: `memstream.models.linking.Linker` at `bar` (default: its own 3-sigma bar);
- `nearest_neighbours`: plain MiniLM cosine of memory texts, the top `max_links` above a
  cosine bar. The bar is matched: the cosine at which it makes as many links as the
  linker (a quantile of the scores, no labels used), so precision and recall compare at
  equal cost; `nearest_neighbours_top_k` is the same without any bar.
- `sweep`: both at a few bars each (z units for the linker, cosine for the baseline).
"""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from memstream.eval.locomo import LocomoData, Turn, load_locomo
from memstream.models.embedding import Embedder, load_embedder
from memstream.models.linking import Linker

LINKER_SWEEP = (2.0, 2.5, 3.0, 3.5, 4.0)
COSINE_SWEEP = (0.4, 0.5, 0.6, 0.7, 0.8)

Pair = tuple[str, str, str]  # (conversation, dia id, dia id), ids sorted


def _pair(conversation: str, a: str, b: str) -> Pair:
    return (conversation, *sorted((a, b)))  # type: ignore[return-value]


def gold_pairs(data: LocomoData) -> set[Pair]:
    """Pairs of distinct evidence turns of the same question (questions with >= 2)."""
    pairs: set[Pair] = set()
    for q in data.questions:
        evidence = sorted(set(q.evidence))
        for a, b in itertools.combinations(evidence, 2):
            pairs.add(_pair(q.conversation, a, b))
    return pairs


def _score(
    links: set[Pair], gold: set[Pair], evidence: set[tuple[str, str]], memories: int
) -> dict[str, Any]:
    hits = len(links & gold)
    precision = hits / len(links) if links else 0.0
    recall = hits / len(gold) if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    labelled = [p for p in links if (p[0], p[1]) in evidence and (p[0], p[2]) in evidence]
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "links": len(links),
        "correct": hits,
        "links_per_memory": round(len(links) / max(1, memories), 3),
        "precision_evidence_only": round(sum(p in gold for p in labelled) / len(labelled), 4)
        if labelled
        else None,
    }


def _stream(
    data: LocomoData, vectors: np.ndarray, linker: Linker
) -> tuple[list[tuple[float, Pair]], list[tuple[float, Pair]], float]:
    """Every memory's top `max_links` candidates as (score, pair), for the linker and for
    raw cosine, with the linker's seconds per memory; bars are applied afterwards."""
    by_conv: dict[str, list[int]] = defaultdict(list)
    for i, turn in enumerate(data.turns):
        by_conv[turn.conversation].append(i)
    scored: list[tuple[float, Pair]] = []
    cosine: list[tuple[float, Pair]] = []
    seconds = 0.0
    for conv, ids in by_conv.items():
        turns: list[Turn] = [data.turns[i] for i in ids]
        for pos in range(1, len(ids)):
            new = turns[pos]
            candidates = [
                (turns[j].dia_id, vectors[ids[j]], turns[j].memory_text, turns[j].speaker)
                for j in range(pos)
            ]
            started = time.perf_counter()
            s = linker.scores(vectors[ids[pos]], new.memory_text, candidates, source=new.speaker)
            seconds += time.perf_counter() - started
            for j in np.argsort(-s, kind="stable")[: linker.max_links]:
                if np.isfinite(s[j]):
                    scored.append((float(s[j]), _pair(conv, new.dia_id, turns[j].dia_id)))
            cos = vectors[ids[:pos]] @ vectors[ids[pos]]
            for j in np.argsort(-cos, kind="stable")[: linker.max_links]:
                cosine.append((float(cos[j]), _pair(conv, new.dia_id, turns[j].dia_id)))
    return scored, cosine, seconds / max(1, len(data.turns))


def _above(rows: list[tuple[float, Pair]], bar: float) -> set[Pair]:
    return {pair for score, pair in rows if score >= bar}


def run_linking_eval(
    dataset: Path,
    bar: float | None = None,
    *,
    max_links: int = 5,
    embedder: Embedder | None = None,
    linker: Linker | None = None,
) -> dict[str, Any]:
    """Link precision/recall/F1 of memstream's linker and of plain nearest neighbours."""
    started = time.perf_counter()
    data = load_locomo(Path(dataset))
    linker = linker or Linker(max_links=max_links)
    if bar is not None:
        linker.bar = bar
    max_links = linker.max_links
    gold = gold_pairs(data)
    evidence = {(q.conversation, e) for q in data.questions for e in q.evidence}
    embed_started = time.perf_counter()
    vectors = np.asarray(
        (embedder or load_embedder()).embed([t.memory_text for t in data.turns]), dtype=np.float32
    )
    embed_seconds = time.perf_counter() - embed_started
    scored, cosine, linker_seconds = _stream(data, vectors, linker)
    memories = len(data.turns)

    ours = _above(scored, linker.bar)
    # Matched baseline: plain NN's best len(ours) links (ties broken by stream order), so
    # both make the same number of links; the cosine of the last one is its bar.
    best = sorted(cosine, key=lambda row: -row[0])[: len(ours)]
    matched = {pair for _, pair in best}
    matched_bar = best[-1][0] if best else float("inf")
    return {
        "dataset": str(dataset),
        "conversations": len(data.conversations()),
        "memories": memories,
        "gold_pairs": len(gold),
        "questions_with_pairs": sum(len(set(q.evidence)) >= 2 for q in data.questions),
        "max_links": max_links,
        "bar": linker.bar,
        "bar_rule": "linker score in standard deviations above the memory's typical candidate; "
        "3.0 = three-sigma rule, fixed a priori (not fitted to the gold pairs)"
        if bar is None
        else "given by the caller",
        "linker": {
            "name": "memstream Linker: z(cosine) + 0.5 z(shared rare words) + 0.5 same speaker",
            **_score(ours, gold, evidence, memories),
            "lexical_weight": linker.lexical_weight,
            "source_weight": linker.source_weight,
        },
        "nearest_neighbours": {
            "name": "MiniLM cosine, top max_links above a cosine bar matched to the linker's "
            "link count",
            "cosine_bar": round(matched_bar, 4) if np.isfinite(matched_bar) else None,
            **_score(matched, gold, evidence, memories),
        },
        "nearest_neighbours_top_k": {
            "name": f"MiniLM cosine, top {max_links} of every memory, no bar",
            **_score({p for _, p in cosine}, gold, evidence, memories),
        },
        "sweep": {
            "linker": [
                {"bar": b, **_score(_above(scored, b), gold, evidence, memories)}
                for b in LINKER_SWEEP
            ],
            "nearest_neighbours": [
                {"cosine_bar": b, **_score(_above(cosine, b), gold, evidence, memories)}
                for b in COSINE_SWEEP
            ],
        },
        "seconds": round(time.perf_counter() - started, 3),
        "embed_ms_per_memory": round(1000 * embed_seconds / max(1, memories), 3),
        "link_ms_per_memory": round(1000 * linker_seconds, 3),
        "locomo_stats": data.stats,
    }


def summarise(result: dict[str, Any]) -> str:
    """A few human-readable lines of a `run_linking_eval` result."""
    lines = [
        f"linking eval on {result['dataset']}: {result['memories']} memories, "
        f"{result['gold_pairs']} gold pairs, bar {result['bar']}",
    ]
    for key in ("linker", "nearest_neighbours", "nearest_neighbours_top_k"):
        r = result[key]
        lines.append(
            f"  {key:<25} P {r['precision']:.3f}  R {r['recall']:.3f}  F1 {r['f1']:.3f}  "
            f"links/memory {r['links_per_memory']:.2f}"
        )
    lines.append("  sweep (linker z bar | cosine bar):")
    for a, b in zip(result["sweep"]["linker"], result["sweep"]["nearest_neighbours"], strict=True):
        lines.append(
            f"    z {a['bar']:.1f}: P {a['precision']:.3f} R {a['recall']:.3f} "
            f"l/m {a['links_per_memory']:.2f}   |   cos {b['cosine_bar']:.2f}: "
            f"P {b['precision']:.3f} R {b['recall']:.3f} l/m {b['links_per_memory']:.2f}"
        )
    lines.append(
        f"  took {result['seconds']:.1f} s; {result['link_ms_per_memory']:.2f} ms/memory to link "
        f"(+{result['embed_ms_per_memory']:.2f} ms/memory to embed)"
    )
    return "\n".join(lines)
