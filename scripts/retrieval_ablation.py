"""Recall@5 of ranking variants on each LoCoMo conversation separately.

A ranking change is kept only when it helps on every conversation, not just on the pooled
average (docs/retrieval.md). Each variant runs the real `memstream eval retrieval` pipeline
with other `RankingWeights`:

    .venv/bin/python scripts/retrieval_ablation.py ../shared/data/locomo_dev.json
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from pathlib import Path

from memstream.eval.retrieval import run_retrieval_eval
from memstream.models.embedding import OnnxEmbedder
from memstream.retrieval.ranking import RankingWeights

VARIANTS = {
    "default": RankingWeights(),
    "no rerank": RankingWeights(rerank_window=0),
    "no rerank, subject 1.0": RankingWeights(rerank_window=0, subject=1.0),
    "no rerank, subject 1.5": RankingWeights(rerank_window=0, subject=1.5),
    "rerank, lexical 1.0": RankingWeights(lexical_with_late=1.0),
    "rerank window 15": RankingWeights(rerank_window=15),
    "rerank window 50": RankingWeights(rerank_window=50),
}


def main(dataset: Path) -> None:
    logging.disable(logging.WARNING)
    embedder = OnnxEmbedder()
    samples = json.loads(dataset.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for sample in samples:
            path = Path(tmp) / f"{sample['sample_id']}.json"
            path.write_text(json.dumps([sample]))
            files[sample["sample_id"]] = path
        for name, weights in VARIANTS.items():
            row = [
                f"{conv} {run_retrieval_eval(path, (5,), embedder, weights)['overall']['recall@5']:.3f}"
                for conv, path in files.items()
            ]
            print(f"{name:26s} " + "  ".join(row), flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
