"""The ONNX embedder against sentence-transformers' vectors for the same model.

Reference vectors: tests/fixtures/minilm_reference.npy, made by
scripts/make_embedding_fixture.py (sentence-transformers 6.2.0, torch 2.15.0).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from memstream.models.embedding import OnnxEmbedder

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="module")
def embedder() -> OnnxEmbedder:
    return OnnxEmbedder(prefer="cpu")


def test_matches_reference_on_100_sentences(embedder: OnnxEmbedder) -> None:
    sentences = json.loads((FIXTURES / "embedding_sentences.json").read_text())["sentences"]
    reference = np.load(FIXTURES / "minilm_reference.npy")
    assert len(sentences) == reference.shape[0] == 100
    ours = embedder.embed(sentences)
    cosines = (ours * reference).sum(axis=1) / np.linalg.norm(reference, axis=1)
    assert cosines.min() >= 0.999, f"worst sentence {int(cosines.argmin())}: {cosines.min():.6f}"


def test_vectors_are_unit_length_and_batch_independent(embedder: OnnxEmbedder) -> None:
    texts = [
        "short",
        "a much longer sentence about the staging database in eu-west-2",
        "mid length text",
    ]
    together = embedder.embed(texts)
    alone = np.vstack([embedder.embed([t]) for t in texts])
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    assert np.allclose(together, alone, atol=1e-5)


def test_long_text_is_truncated_not_rejected(embedder: OnnxEmbedder) -> None:
    vector = embedder.embed(["word " * 5000])
    assert vector.shape == (1, 384) and np.isfinite(vector).all()


def test_empty_batch(embedder: OnnxEmbedder) -> None:
    assert embedder.embed([]).shape == (0, 384)


def test_provider_is_read_back_from_the_session(embedder: OnnxEmbedder) -> None:
    assert embedder.providers[-1] == "CPUExecutionProvider"


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores to restrict a process to 1")
def test_onnx_pool_is_sized_to_the_cores_the_process_may_use() -> None:
    """Under `taskset -c 0` ONNX Runtime would start a thread per machine core and pin
    them; the worker's sessions ask for as many threads as cores it may run on."""
    code = (
        "import os; os.sched_setaffinity(0, {0});"
        "from memstream.models.providers import allowed_cores, session_options;"
        "print(allowed_cores(), session_options().intra_op_num_threads,"
        " session_options(threads=3).intra_op_num_threads)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "1", "3"]
    from memstream.models.providers import allowed_cores, session_options

    assert allowed_cores() is None  # unrestricted: ONNX Runtime's own default
    assert session_options().intra_op_num_threads == 0
