"""`memstream bench privacy`: texts/s of the PII detector per tier.

Realistic inputs: sentences sampled from a labelled PII file when given (the eval format),
else generated agent-memory sentences, about a third of which carry personal data.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from memstream.privacy.detect import PiiDetector

_NAMES = ["Alice Martin", "Kofi Mensah", "Priya Raman", "Jonas Weber", "Li Na", "Sofia Rossi"]
_CITIES = ["Lisbon", "Osaka", "Denver", "Nairobi", "Oslo", "Hamburg"]
_PLAIN = [
    "The deployment pipeline finished in {n} minutes after the cache was warmed.",
    "User prefers concise answers and dark mode in the dashboard.",
    "The quarterly report needs a chart of latency percentiles per region.",
    "Retry the ingestion job with a smaller batch size if memory is tight.",
    "We agreed to review the retrieval metrics again next sprint.",
]
_PII = [
    "{name} asked to be called back on +44 20 7946 0{n:03d} after lunch.",
    "Send the invoice to {email} and copy the finance team.",
    "{name} moved to {n} Harbour Street, {city} last month.",
    "Customer {name} (DOB 0{d}/1{d}/1987) reported a failed card payment.",
    "Meeting with {name} from Contoso in {city} on Tuesday at 10:30.",
]


def generated_texts(n: int, seed: int = 7) -> list[str]:
    """``n`` synthetic memory sentences, a mix of plain and PII-bearing ones."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        name = rng.choice(_NAMES)
        values = {
            "name": name,
            "email": name.lower().replace(" ", ".") + "@example.com",
            "city": rng.choice(_CITIES),
            "n": rng.randint(1, 999),
            "d": rng.randint(1, 9),
        }
        pool = _PII if rng.random() < 0.35 else _PLAIN
        out.append(rng.choice(pool).format(**values))
    return out


def run_privacy_bench(
    texts: int = 500, dataset: Path | None = None, tiers: tuple[str, ...] = ("full", "fast")
) -> dict[str, Any]:
    """Texts/s per tier on ``texts`` inputs (after one warm-up batch that loads models)."""
    if dataset is not None:
        rows = json.loads(Path(dataset).read_text(encoding="utf-8"))
        pool = [r["full_text"] for r in rows]
        rng = random.Random(7)
        inputs = [rng.choice(pool) for _ in range(texts)]
    else:
        inputs = generated_texts(texts)
    chars = sum(len(t) for t in inputs)
    result: dict[str, Any] = {"texts": texts, "chars": chars, "source": str(dataset or "generated")}
    from memstream.privacy.secrets import find_secrets

    for tier in tiers:
        detector = PiiDetector(tier)  # type: ignore[arg-type]
        detector.detect_batch(inputs[:16])
        find_secrets(inputs[0])
        t0 = time.perf_counter()
        # what the worker's privacy stage runs per text: the detector and the secret scan
        found = detector.detect_batch(inputs)
        found = [f + find_secrets(t) for t, f in zip(inputs, found, strict=True)]
        dt = time.perf_counter() - t0
        result[tier] = {
            "texts_per_s": round(texts / dt, 1),
            "kchars_per_s": round(chars / dt / 1000, 1),
            "seconds": round(dt, 3),
            "spans": sum(len(f) for f in found),
        }
        print(
            f"{tier:>5}: {texts / dt:8.1f} texts/s  {chars / dt / 1000:8.1f} kchars/s  ({dt:.2f} s)",
            file=sys.stderr,
        )
    return result


if __name__ == "__main__":  # pragma: no cover
    run_privacy_bench(dataset=Path(sys.argv[1]) if len(sys.argv) > 1 else None)
