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
per predicted type, precision. `by_category` scores direct identifiers (sealed by default)
and quasi-identifiers apart, each against its own predictions (`score_category`), and
`benign` the share of ordinary text the worker's policy would rewrite.

``leak_rate`` = share of gold non-whitespace characters that are still present in the stored
text after the ``redact`` policy. ``apply_policy`` returns the original-offset ranges it
replaced, so a gold character leaks exactly when no replaced range covers it. As a cross
check, ``verbatim_leaks`` counts gold values (3+ characters) still found verbatim in the
redacted output.
"""

from __future__ import annotations

import json
import sys
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


# --- by category -------------------------------------------------------------------------------

_ADDRESS_PARTS = frozenset({"ADDRESS", "LOCATION", "ZIP_CODE"})


def score_category(
    rows: list[dict[str, Any]], predicted: list[list[PiiSpan]], types: frozenset[str]
) -> dict[str, Any]:
    """Recall, leak rate and precision for one category of types (canonical names).

    Gold spans of the category are *found* and *leak* as above, against the predictions of
    the category only (what the policy seals). A predicted span is correct when half its
    characters lie in gold spans of the category; an ADDRESS also counts the place and
    postcode spans next to the street, since an address is all of them together (the data
    labels them apart)."""
    gold_n = found_n = pred_n = pred_ok = 0
    chars_total = chars_leaked = 0
    by_type: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    missed = []
    for row, spans in zip(rows, predicted, strict=True):
        text = row["full_text"]
        mine = [s for s in spans if s.entity_type in types]
        covered: set[int] = set()
        for s in mine:
            covered.update(range(s.start, s.end))
        gold_cover: set[int] = set()
        address_cover: set[int] = set()
        for g in row["spans"]:
            span = range(g["start_position"], g["end_position"])
            if canonical(g["entity_type"]) in types:
                gold_cover.update(span)
            if canonical(g["entity_type"]) in _ADDRESS_PARTS:
                address_cover.update(span)
        for g in row["spans"]:
            if canonical(g["entity_type"]) not in types:
                continue
            chars = _chars(text, g["start_position"], g["end_position"])
            if not chars:
                continue
            hit = len(chars & covered)
            found = hit * 2 >= len(chars)
            gold_n += 1
            found_n += found
            chars_total += len(chars)
            chars_leaked += len(chars) - hit
            by_type[g["entity_type"]][0] += 1
            by_type[g["entity_type"]][1] += found
            if not found:
                missed.append({"type": g["entity_type"], "value": g["entity_value"]})
        for s in mine:
            chars = _chars(text, s.start, s.end)
            if not chars:
                continue
            ref = gold_cover | address_cover if s.entity_type == "ADDRESS" else gold_cover
            pred_n += 1
            pred_ok += len(chars & ref) * 2 >= len(chars)
    return {
        "recall": round(found_n / gold_n, 4) if gold_n else 1.0,
        "precision": round(pred_ok / pred_n, 4) if pred_n else 1.0,
        "leak_rate": round(chars_leaked / chars_total, 4) if chars_total else 0.0,
        "gold_spans": gold_n,
        "predicted_spans": pred_n,
        "recall_by_gold_type": {
            t: {"n": n, "recall": round(f / n, 4)}
            for t, (n, f) in sorted(by_type.items(), key=lambda kv: -kv[1][0])
        },
        "missed_examples": missed[:15],
    }


def load_benign(path: Path) -> list[str]:
    """Texts with no personal data: `[{"text": ...}]` (benign_dev.json) or strings."""
    rows = json.loads(Path(path).read_text(encoding="utf-8"))
    return [r["text"] if isinstance(r, dict) else str(r) for r in rows]


def altered(texts: list[str], predicted: list[list[PiiSpan]]) -> dict[str, Any]:
    """Share of texts, and of characters, the spans would rewrite (the policy's placeholders
    replace every character of a span)."""
    changed = chars = total = 0
    examples = []
    for text, spans in zip(texts, predicted, strict=True):
        total += len(text)
        if not spans:
            continue
        covered: set[int] = set()
        for s in spans:
            covered.update(range(s.start, s.end))
        changed += 1
        chars += len(covered)
        if len(examples) < 15:
            examples.append({"text": text[:160], "spans": [text[s.start : s.end] for s in spans]})
    return {
        "texts_altered": round(changed / len(texts), 4) if texts else 0.0,
        "chars_altered": round(chars / total, 4) if total else 0.0,
        "texts": len(texts),
        "examples": examples,
    }


def _report(name: str, m: dict[str, Any]) -> None:
    out = sys.stderr
    print(f"\n== {name}: texts/s {m.get('texts_per_s', 0):.1f}", file=out)
    for category in ("direct", "quasi"):
        c = m["by_category"][category]
        print(
            f"  {category:<7} recall {c['recall']:.3f}  precision {c['precision']:.3f}  "
            f"leak_rate {c['leak_rate']:.4f}  (gold {c['gold_spans']}, predicted "
            f"{c['predicted_spans']})",
            file=out,
        )
    if "benign" in m:
        b = m["benign"]
        print(
            f"  ordinary text: {b['texts_altered']:.1%} of texts and {b['chars_altered']:.2%} "
            "of characters altered",
            file=out,
        )


def run_pii_eval(
    dataset: Path,
    tier: str = "full",
    baseline: bool = True,
    benign: Path | None = None,
) -> dict[str, Any]:
    """The detector under the worker's default settings (what it seals: the direct
    identifiers, plus every secret) against Presidio's default analyzer, per category and
    overall; with `benign`, the share of ordinary text each would alter. The report goes to
    stderr; the result is returned (the CLI prints it as JSON)."""
    from memstream.privacy.categories import DIRECT, QUASI
    from memstream.privacy.secrets import find_secrets
    from memstream.settings import Settings

    rows = load_pii(dataset)
    texts = [r["full_text"] for r in rows]
    benign_texts = load_benign(benign) if benign is not None else []
    settings = Settings()
    from memstream.privacy.policy import PrivacyPolicy

    sealed = PrivacyPolicy(sealed=settings.pii_sealed).sealed_types()
    detector = PiiDetector(tier)  # type: ignore[arg-type]

    def memstream_detect(batch: list[str]) -> list[list[PiiSpan]]:
        return [
            found + find_secrets(t)
            for t, found in zip(batch, detector.detect_batch(batch), strict=True)
        ]

    systems: dict[str, Any] = {}
    candidates: list[tuple[str, Detect, frozenset[str] | None]] = [
        (f"memstream_{tier}", memstream_detect, sealed)
    ]
    if baseline:
        from memstream.privacy.detect import build_analyzer, presidio_default_batch

        analyzer = build_analyzer(default_config=True)
        candidates.append(
            ("presidio_default", lambda ts: presidio_default_batch(analyzer, ts), None)
        )
    for name, detect, policy_types in candidates:
        predicted, tps = _timed(detect, texts)
        result = {**score(rows, predicted), "texts_per_s": round(tps, 1)}
        result["by_category"] = {
            "direct": score_category(rows, predicted, DIRECT),
            "quasi": score_category(rows, predicted, QUASI),
        }
        if benign_texts:
            found = detect(benign_texts)
            if policy_types is not None:  # what the worker would rewrite
                found = [
                    [
                        s
                        for s in f
                        if s.entity_type in policy_types or s.entity_type.startswith("SECRET")
                    ]
                    for f in found
                ]
            result["benign"] = altered(benign_texts, found)
        systems[name] = result
    print(f"PII eval on {dataset} ({len(rows)} texts)", file=sys.stderr)
    for name, m in systems.items():
        _report(name, m)
    return {
        "dataset": str(dataset),
        "texts": len(rows),
        "benign_dataset": str(benign) if benign is not None else None,
        "sealed_by_default": sorted(sealed),
        "systems": systems,
    }
