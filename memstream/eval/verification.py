"""`memstream eval verification`: the verifiers on generated true and false claims.

Claims of five families (arithmetic in symbols, arithmetic in words, inequalities,
algebraic identities, stated solutions of linear equations) are generated from a seed,
half true and half false (a false one is its true twin with one number or coefficient
changed), and written into ordinary memory sentences. Accuracy counts a claim right when
the memory's status is `verified` for a true claim and `refuted` for a false one; a memory
with no verdict counts wrong. With `benign`, ordinary texts (no claims) are checked too:
any verdict on them is a false flag.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from memstream.verification import verify_text

TEMPLATES = (
    "Checked the numbers for the report: {claim}.",
    "Note for the team: {claim}, so the budget line stays.",
    "{claim} according to the calculator run this morning",
    "While reviewing the ticket I confirmed that {claim}.",
    "Quick fact from the planning call: {claim}.",
)


def _arithmetic(rng: random.Random, true: bool) -> str:
    a, b = rng.randint(2, 999), rng.randint(2, 99)
    op = rng.choice("+-*")
    value = {"+": a + b, "-": a - b, "*": a * b}[op]
    if not true:
        value += rng.choice([-1, 1]) * rng.randint(1, 9)
    return f"{a} {op} {b} = {value}"


def _words(rng: random.Random, true: bool) -> str:
    a, b = rng.randint(2, 99), rng.randint(2, 12)
    name, value = rng.choice(
        [("plus", a + b), ("minus", a - b), ("times", a * b), ("divided by", a / b)]
    )
    if not true:
        value += rng.choice([-1, 1]) * rng.randint(1, 5)
    shown = f"{value:g}" if isinstance(value, float) and value == round(value, 4) else value
    if isinstance(shown, float):  # a long quotient: state it as a fraction
        shown = f"{round(value * b)}/{b}" if true else f"{round(value * b) + 1}/{b}"
    return f"{a} {name} {b} equals {shown}"


def _inequality(rng: random.Random, true: bool) -> str:
    base, exponent = rng.randint(2, 9), rng.randint(2, 5)
    power = base**exponent
    bound = power - rng.randint(1, 20)
    relation = ">" if true else "<"
    return f"{base}^{exponent} {relation} {bound}"


def _identity(rng: random.Random, true: bool) -> str:
    p, q = rng.randint(1, 9), rng.randint(1, 9)
    linear, constant = p + q, p * q
    if not true:
        if rng.random() < 0.5:
            linear += rng.choice([-1, 1])
        else:
            constant += rng.choice([-1, 1]) * rng.randint(1, 3)
    variable = rng.choice("xyt")
    return f"({variable} + {p})({variable} + {q}) = {variable}^2 + {linear}{variable} + {constant}"


def _solution(rng: random.Random, true: bool) -> str:
    a, x, c = rng.randint(2, 9), rng.randint(-9, 12), rng.randint(1, 30)
    stated = x if true else x + rng.choice([-2, -1, 1, 2])
    return f"solving {a}x + {c} = {a * x + c} gives x = {stated}"


FAMILIES: dict[str, Callable[[random.Random, bool], str]] = {
    "arithmetic": _arithmetic,
    "words": _words,
    "inequality": _inequality,
    "identity": _identity,
    "solution": _solution,
}


def generate_claims(n: int = 240, seed: int = 0) -> list[dict[str, Any]]:
    """`n` memories, half with a true claim and half with a false one, families in turn;
    no two share their set of words (the pipeline would merge them as duplicates)."""
    rng = random.Random(seed)
    names = list(FAMILIES)
    memories = []
    seen: set[frozenset[str]] = set()
    for i in range(n):
        family = names[(i // 2) % len(names)]
        true = i % 2 == 0
        while True:
            claim = FAMILIES[family](rng, true)
            text = rng.choice(TEMPLATES).format(claim=claim)
            words = frozenset(re.findall(r"\w+", text.lower()))
            if words not in seen:
                seen.add(words)
                break
        memories.append({"text": text, "claim": claim, "true": true, "family": family})
    return memories


def run_verification_eval(
    n: int = 240, seed: int = 0, benign: Path | None = None
) -> dict[str, Any]:
    memories = generate_claims(n, seed)
    started = time.perf_counter()
    statuses = [verify_text(m["text"]).status for m in memories]
    elapsed = time.perf_counter() - started
    correct = [
        status == ("verified" if m["true"] else "refuted")
        for m, status in zip(memories, statuses, strict=True)
    ]
    families: dict[str, dict[str, float]] = {}
    for name in FAMILIES:
        picked = [c for m, c in zip(memories, correct, strict=True) if m["family"] == name]
        families[name] = {"claims": len(picked), "accuracy": sum(picked) / max(1, len(picked))}
    false_ones = [s for m, s in zip(memories, statuses, strict=True) if not m["true"]]
    true_ones = [s for m, s in zip(memories, statuses, strict=True) if m["true"]]
    result: dict[str, Any] = {
        "claims": n,
        "seed": seed,
        "accuracy": sum(correct) / n,
        "false_claims_refuted": sum(s == "refuted" for s in false_ones) / max(1, len(false_ones)),
        "false_claims_not_refuted": sum(s != "refuted" for s in false_ones),
        "true_claims_verified": sum(s == "verified" for s in true_ones) / max(1, len(true_ones)),
        "true_claims_refuted": sum(s == "refuted" for s in true_ones),
        "no_verdict": sum(s is None for s in statuses),
        "families": families,
        "ms_per_memory": 1000 * elapsed / n,
    }
    if benign is not None:
        texts = [row["text"] for row in json.loads(benign.read_text())]
        flagged = [t for t in texts if verify_text(t).verdicts]
        result["benign"] = {
            "dataset": str(benign),
            "texts": len(texts),
            "with_a_verdict": len(flagged),
            "examples": flagged[:5],
        }
    return result
