"""Texts/s of the privacy tiers now against an earlier commit, interleaved on one machine:

    .venv/bin/python scripts/privacy_speed_vs_rev.py 7ef5dcc --repeats 3

Each repeat runs `memstream bench privacy` at REV (a temporary git worktree) and in this
tree, one after the other, so the ratio is taken inside one run; the result goes to
benchmarks/results/privacy-vs-<rev>-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def bench(cwd: Path, dataset: str, texts: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "memstream",
            "bench",
            "privacy",
            "--dataset",
            dataset,
            "--texts",
            str(texts),
            "--json",
            "--no-save",
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("rev")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--texts", type=int, default=800)
    parser.add_argument("--dataset", default=str(ROOT.parent / "shared/data/pii_dev.json"))
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {"then": [], "now": []}
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "tree"
        subprocess.run(
            ["git", "worktree", "add", "-f", str(old), args.rev],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        try:
            for _ in range(args.repeats):
                runs["then"].append(bench(old, args.dataset, args.texts))
                runs["now"].append(bench(ROOT, args.dataset, args.texts))
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(old)],
                cwd=ROOT,
                check=False,
                capture_output=True,
            )

    def median(side: str, tier: str) -> float:
        values = sorted(r[tier]["texts_per_s"] for r in runs[side])
        return values[len(values) // 2]

    result = {
        "rev": args.rev,
        "texts": args.texts,
        "dataset": args.dataset,
        "median_texts_per_s": {
            tier: {"then": median("then", tier), "now": median("now", tier)}
            for tier in ("full", "fast")
        },
        "ratio_now_to_then": {
            tier: round(median("now", tier) / median("then", tier), 3) for tier in ("full", "fast")
        },
        "runs": runs,
    }
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = ROOT / "benchmarks" / "results" / f"privacy-vs-{args.rev}-{stamp}.json"
    record = {
        "command": "python scripts/privacy_speed_vs_rev.py " + " ".join(sys.argv[1:]),
        "result": result,
    }
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
