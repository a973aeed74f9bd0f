"""`memstream eval pii`: how much personal data survives the scrubber, on labelled sentences.

Data: a JSON list of ``{full_text, spans: [{entity_type, entity_value, start_position,
end_position}], template_id}`` (the presidio-research synthetic format).

Matching rule (character coverage, whitespace ignored):

* a gold span is *found* when at least 50% of its non-whitespace characters lie inside
  predicted spans (any predicted type: for storage, a name redacted as ``<LOCATION>`` has not
  leaked). Several predicted spans may together cover it, and one long predicted span may
  cover several gold spans (an address block labelled as street, city and ZIP).
* a predicted span is *correct* when at least 50% of its non-whitespace characters lie inside
  gold spans.

Recall = found gold / gold; precision = correct predicted / predicted; F2 weights recall
four times as much as precision. Per gold type we report recall (type-agnostic, as above);
per predicted type, precision.

``leak_rate`` = share of gold non-whitespace characters that are still present in the stored
text after the ``redact`` policy. ``apply_policy`` returns the original-offset ranges it
replaced, so a gold character leaks exactly when no replaced range covers it. As a cross
check, ``verbatim_leaks`` counts gold values (3+ characters) still found verbatim in the
redacted output.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from memstream.privacy.detect import PiiDetector, PiiSpan, canonical
from memstream.privacy.policy import apply_policy

Detect = Callable[[list[str]], list[list[PiiSpan]]]


def load_pii(dataset: Path) -> list[dict[str, Any]]:
    """The labelled sentences; spans are checked against their text."""
    rows = json.loads(Path(dataset).read_text(encoding="utf-8"))
    for row in rows:
        for s in row["spans"]:
            if not 0 <= s["start_position"] <= s["end_position"] <= len(row["full_text"]):
                raise ValueError(f"span out of range in {row.get('template_id')}: {s}")
    return rows


def _chars(text: str, start: int, end: int) -> set[int]:
    return {i for i in range(start, end) if not text[i].isspace()}


def f_beta(precision: float, recall: float, beta: float = 2.0) -> float:
    """F-beta; beta=2 counts recall four times as much as precision."""
    b2 = beta * beta
    return (1 + b2) * precision * recall / (b2 * precision + recall) if precision + recall else 0.0


def score(rows: list[dict[str, Any]], predicted: list[list[PiiSpan]]) -> dict[str, Any]:
    """Span-level metrics and leak rate of ``predicted`` against the gold spans in ``rows``."""
    gold_n = gold_found = pred_n = pred_ok = 0
    gold_chars_total = gold_chars_leaked = 0
    verbatim = verbatim_total = 0
    by_gold: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # type -> [n, found]
    by_pred: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # type -> [n, correct]
    missed: list[dict[str, Any]] = []
    for row, spans in zip(rows, predicted, strict=True):
        text = row["full_text"]
        result = apply_policy(text, spans, "redact")
        covered: set[int] = set()
        for s in result.replaced:
            covered.update(range(s.start, s.end))
        gold_cover: set[int] = set()
        for g in row["spans"]:
            gold_cover.update(range(g["start_position"], g["end_position"]))
        for g in row["spans"]:
            chars = _chars(text, g["start_position"], g["end_position"])
            if not chars:
                continue
            etype = g["entity_type"]
            hit = len(chars & covered)
            found = hit * 2 >= len(chars)
            gold_n += 1
            gold_found += found
            by_gold[etype][0] += 1
            by_gold[etype][1] += found
            gold_chars_total += len(chars)
            gold_chars_leaked += len(chars) - hit
            if not found:
                missed.append({"type": etype, "value": g["entity_value"], "text": text})
            value = text[g["start_position"] : g["end_position"]].strip()
            if len(value) >= 3:
                verbatim_total += 1
                verbatim += value in (result.text or "")
        for s in spans:
            chars = _chars(text, s.start, s.end)
            if not chars:
                continue
            ok = len(chars & gold_cover) * 2 >= len(chars)
            pred_n += 1
            pred_ok += ok
            by_pred[s.entity_type][0] += 1
            by_pred[s.entity_type][1] += ok
    precision = pred_ok / pred_n if pred_n else 1.0
    recall = gold_found / gold_n if gold_n else 1.0
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f2": round(f_beta(precision, recall), 4),
        "gold_spans": gold_n,
        "predicted_spans": pred_n,
        "leak_rate": round(gold_chars_leaked / gold_chars_total, 4) if gold_chars_total else 0.0,
        "verbatim_leaks": verbatim,
        "verbatim_checked": verbatim_total,
        "recall_by_gold_type": {
            t: {"n": n, "recall": round(f / n, 4), "canonical": canonical(t)}
            for t, (n, f) in sorted(by_gold.items(), key=lambda kv: -kv[1][0])
        },
        "precision_by_predicted_type": {
            t: {"n": n, "precision": round(c / n, 4)}
            for t, (n, c) in sorted(by_pred.items(), key=lambda kv: -kv[1][0])
        },
        "missed_examples": missed[:25],
    }


def _timed(detect: Detect, texts: list[str]) -> tuple[list[list[PiiSpan]], float]:
    detect(texts[:8])  # warm-up: lazy model loading is not throughput
    t0 = time.perf_counter()
    out = detect(texts)
    dt = time.perf_counter() - t0
    return out, len(texts) / dt if dt > 0 else float("inf")


def _print(name: str, m: dict[str, Any]) -> None:
    print(f"\n== {name}: texts/s {m['texts_per_s']:.1f}")
    print(
        f"overall (any PII): precision {m['precision']:.3f}  recall {m['recall']:.3f}  "
        f"F2 {m['f2']:.3f}  leak_rate {m['leak_rate']:.4f}  "
        f"verbatim leaks {m['verbatim_leaks']}/{m['verbatim_checked']}  "
        f"(gold {m['gold_spans']}, predicted {m['predicted_spans']})"
    )
    print("  recall by gold type:")
    for t, v in m["recall_by_gold_type"].items():
        print(f"    {t:<18} n={v['n']:<5} recall {v['recall']:.3f}")
    print("  precision by predicted type:")
    for t, v in m["precision_by_predicted_type"].items():
        print(f"    {t:<18} n={v['n']:<5} precision {v['precision']:.3f}")


def run_pii_eval(
    dataset: Path,
    tier: str = "full",
    baseline: bool = True,
    show_missed: int = 0,
) -> dict[str, Any]:
    """Score the detector (``tier``) and, if ``baseline``, Presidio's default analyzer alone."""
    rows = load_pii(dataset)
    texts = [r["full_text"] for r in rows]
    detector = PiiDetector(tier)  # type: ignore[arg-type]
    systems: dict[str, Any] = {}
    predicted, tps = _timed(detector.detect_batch, texts)
    systems[f"memstream_{tier}"] = {**score(rows, predicted), "texts_per_s": round(tps, 1)}
    if baseline:
        from memstream.privacy.detect import build_analyzer, presidio_default_batch

        analyzer = build_analyzer(default_config=True)
        predicted, tps = _timed(lambda ts: presidio_default_batch(analyzer, ts), texts)
        systems["presidio_default"] = {**score(rows, predicted), "texts_per_s": round(tps, 1)}
    print(f"PII eval on {dataset} ({len(rows)} texts); match = >=50% of non-space chars covered")
    for name, m in systems.items():
        _print(name, m)
        for miss in m["missed_examples"][:show_missed]:
            print(f"    MISSED {miss['type']}: {miss['value']!r} in {miss['text'][:120]!r}")
    return {"dataset": str(dataset), "texts": len(rows), "systems": systems}


if __name__ == "__main__":  # pragma: no cover
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset", type=Path)
    p.add_argument("--tier", default="full", choices=["full", "fast"])
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--show-missed", type=int, default=0)
    a = p.parse_args()
    run_pii_eval(a.dataset, a.tier, baseline=not a.no_baseline, show_missed=a.show_missed)
