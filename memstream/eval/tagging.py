"""`memstream eval tagging`: tag memories by example, scored against the tags they carry.

Dataset (JSON): `{"source": str, "taxonomy": {tag: [example texts]}, "items": [{"text",
"tags": [gold tags]}]}`. An item counts as correct at k when one of its first k predicted
tags is among its gold tags.

Runs in one go:
- `top1` / `top3`: the cold model (`TagModel` fitted on the taxonomy only) - the headline,
  because a new tenant starts with nothing else;
- `baseline`: nearest example by MiniLM cosine (each tag scored by its most similar
  example), and `other_baselines`: the MiniLM centroid of each tag's examples;
- `online`: prequential - predict each item, then learn the tag the agent gave it, refit
  every `online_every` learned items (what a stream processor would see);
- `taxonomy_cv`: 10-fold cross-validation on the taxonomy examples alone, the figure the
  hyper-parameters were chosen on (no item's gold tag is ever used to choose anything).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from memstream.models.embedding import Embedder, KnownVectors, load_embedder
from memstream.models.tagging import TagModel, cross_validate


def load_tagging(path: Path) -> tuple[str, dict[str, list[str]], list[dict[str, Any]]]:
    """(source, taxonomy, items) of a tagging dataset, checked for the documented shape."""
    data = json.loads(Path(path).read_text())
    taxonomy = {str(tag): [str(x) for x in examples] for tag, examples in data["taxonomy"].items()}
    items = [{"text": str(i["text"]), "tags": [str(t) for t in i["tags"]]} for i in data["items"]]
    return str(data.get("source", "")), taxonomy, items


def _hits(ranked: list[str], gold: list[str]) -> tuple[bool, bool]:
    return bool(ranked[:1]) and ranked[0] in gold, any(t in gold for t in ranked[:3])


def _rates(hits: list[tuple[bool, bool]]) -> dict[str, float]:
    n = max(1, len(hits))
    return {
        "top1": round(sum(h[0] for h in hits) / n, 4),
        "top3": round(sum(h[1] for h in hits) / n, 4),
    }


def _similarity_baselines(
    taxonomy: dict[str, list[str]], items: list[dict[str, Any]], embedder: Embedder
) -> tuple[list[list[str]], list[list[str]]]:
    """Tag rankings by nearest example and by centroid, both on MiniLM cosine."""
    tags = list(taxonomy)
    examples = [x for t in tags for x in taxonomy[t]]
    owner = np.array([c for c, t in enumerate(tags) for _ in taxonomy[t]])
    ex = embedder.embed(examples)
    it = embedder.embed([i["text"] for i in items])
    sims = it @ ex.T
    nearest = np.full((len(items), len(tags)), -np.inf)
    for c in range(len(tags)):
        nearest[:, c] = sims[:, owner == c].max(axis=1)
    centroids = np.stack([ex[owner == c].mean(axis=0) for c in range(len(tags))])
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    central = it @ centroids.T

    def rank(scores: np.ndarray) -> list[list[str]]:
        return [[tags[c] for c in np.argsort(-row, kind="stable")[:3]] for row in scores]

    return rank(nearest), rank(central)


def run_tagging_eval(
    dataset: Path,
    online_every: int = 50,
    *,
    embedder: Embedder | None = None,
    cv_folds: int = 10,
) -> dict[str, Any]:
    """Cold, baseline and prequential-online tagging accuracy on one dataset (JSON-able)."""
    started = time.perf_counter()
    source, taxonomy, items = load_tagging(dataset)
    texts = [i["text"] for i in items]
    golds = [i["tags"] for i in items]
    # every text of the run embedded in one batch up front, so timings show the model
    cached = KnownVectors(embedder or load_embedder())
    unique = list(dict.fromkeys([x for ex in taxonomy.values() for x in ex] + texts))
    embed_started = time.perf_counter()
    cached.remember(unique, cached.inner.embed(unique))
    embed_seconds = time.perf_counter() - embed_started

    fit_started = time.perf_counter()
    model = TagModel(taxonomy, cached, refit_every=online_every)
    fit_seconds = time.perf_counter() - fit_started
    predict_started = time.perf_counter()
    cold = [[t for t, _ in ranked] for ranked in model.predict(texts, k=3)]
    predict_seconds = time.perf_counter() - predict_started
    cold_hits = [_hits(r, g) for r, g in zip(cold, golds, strict=True)]

    nearest, central = _similarity_baselines(taxonomy, items, cached)

    online_started = time.perf_counter()
    online_model = TagModel(taxonomy, cached, refit_every=online_every)
    online_hits = []
    for text, gold in zip(texts, golds, strict=True):
        ranked = [t for t, _ in online_model.predict([text], k=3)[0]]
        online_hits.append(_hits(ranked, gold))
        online_model.learn(text, gold)
    online_seconds = time.perf_counter() - online_started

    per_tag: dict[str, dict[str, Any]] = {}
    for tag in list(taxonomy) + sorted({t for g in golds for t in g} - set(taxonomy)):
        mine = [h for h, g in zip(cold_hits, golds, strict=True) if tag in g]
        predicted = [g for r, g in zip(cold, golds, strict=True) if r and r[0] == tag]
        per_tag[tag] = {
            "items": len(mine),
            "in_taxonomy": tag in taxonomy,
            **_rates(mine),
            "predicted_top1": len(predicted),
            "precision_top1": round(sum(tag in g for g in predicted) / len(predicted), 4)
            if predicted
            else None,
        }

    n = max(1, len(items))
    cv = cross_validate(taxonomy, cached, folds=cv_folds) if cv_folds > 1 else None
    ceiling = _supervised_ceiling(taxonomy, texts, golds, cached) if len(items) >= 50 else None
    seconds = time.perf_counter() - started
    return {
        "dataset": str(dataset),
        "source": source,
        "items": len(items),
        "tags": len(taxonomy),
        "examples_per_tag": round(sum(len(x) for x in taxonomy.values()) / len(taxonomy), 2),
        **_rates(cold_hits),
        "baseline": {
            "name": "nearest-example MiniLM",
            **_rates([_hits(r, g) for r, g in zip(nearest, golds, strict=True)]),
        },
        "other_baselines": {
            "centroid MiniLM": _rates([_hits(r, g) for r, g in zip(central, golds, strict=True)])
        },
        "online": {
            **_rates(online_hits),
            "protocol": "predict, then learn the agent's own tag (prequential)",
            "refit_every": online_every,
            "refits": online_model.refits,
            "examples_at_end": online_model.examples,
            "ms_per_item": round(1000 * online_seconds / n, 3),
        },
        "taxonomy_cv": None if cv is None else {**cv, "folds": cv_folds},
        "supervised_ceiling": ceiling,
        "per_tag": per_tag,
        "model": {
            "name": "TagModel: softmax regression on hashed n-grams (tf-idf) + 0.5 x MiniLM",
            "embed_weight": model.embed_weight,
            "l2": model.l2,
            "steps": model.steps,
            "lr": model.lr,
            "hash_bits": model.hash_bits,
            "balanced": model.balanced,
            "chosen_by": "10-fold cross-validation on the taxonomy examples only",
        },
        "seconds": round(seconds, 3),
        "embed_seconds": round(embed_seconds, 3),
        "fit_seconds": round(fit_seconds, 3),
        "ms_per_item": round(1000 * predict_seconds / n, 3),
        "embed_ms_per_item": round(1000 * embed_seconds / max(1, len(unique)), 3),
    }


def _supervised_ceiling(
    taxonomy: dict[str, list[str]], texts: list[str], golds: list[list[str]], embedder: Any
) -> dict[str, Any]:
    """How far the same model gets when most of the items' own tags are given: 5-fold
    cross-validation, each fold fitted on the taxonomy plus the other four folds' items.
    A diagnostic of the data and the model family (how learnable the tags are at all),
    never the headline: the cold figures above use no item's tag."""
    order = np.random.default_rng(0).permutation(len(texts))
    hits = []
    for fold in np.array_split(order, 5):
        held = set(fold.tolist())
        model = TagModel(taxonomy, embedder, refit_every=10**9)
        model.learn_many((texts[i], golds[i]) for i in order if i not in held)
        for i, ranked in zip(fold, model.predict([texts[i] for i in fold], k=3), strict=True):
            hits.append(_hits([t for t, _ in ranked], golds[i]))
    return {
        **_rates(hits),
        "protocol": "5-fold cross-validation: taxonomy + 4/5 of the items' tags, tested on the rest",
    }


def summarise(result: dict[str, Any]) -> str:
    """A few human-readable lines of a `run_tagging_eval` result."""
    base, online = result["baseline"], result["online"]
    lines = [
        f"tagging eval on {result['dataset']} ({result['items']} items, {result['tags']} tags)",
        f"  cold TagModel        top1 {result['top1']:.3f}  top3 {result['top3']:.3f}",
        f"  {base['name']:<20} top1 {base['top1']:.3f}  top3 {base['top3']:.3f}",
        f"  online (every {online['refit_every']:>3})   top1 {online['top1']:.3f}  top3 {online['top3']:.3f}",
    ]
    if result.get("taxonomy_cv"):
        cv = result["taxonomy_cv"]
        lines.append(
            f"  taxonomy {cv['folds']}-fold CV  top1 {cv['top1']:.3f}  top3 {cv['top3']:.3f}"
        )
    lines.append(
        f"  took {result['seconds']:.1f} s; {result['ms_per_item']:.2f} ms/item to predict "
        f"(+{result['embed_ms_per_item']:.2f} ms/item to embed), "
        f"{online['ms_per_item']:.2f} ms/item online"
    )
    return "\n".join(lines)
