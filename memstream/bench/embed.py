"""`memstream bench embed`: sentences/s of the ONNX embedder per provider and batch size,
next to sentence-transformers (PyTorch) on the same model and sentences in the same run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import onnxruntime as ort

from memstream.models.embedding import OnnxEmbedder

FIXTURE = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "embedding_sentences.json"
PROVIDERS = {"CUDAExecutionProvider": "cuda", "CPUExecutionProvider": "cpu"}


def bench_sentences(dataset: Path | None, limit: int = 512) -> list[str]:
    """LoCoMo turns when a dataset is given (realistic chat lengths), else the fixture."""
    if dataset is not None:
        from memstream.eval.locomo import load_locomo

        return [t.memory_text for t in load_locomo(dataset).turns[:limit]]
    return [s for s in json.loads(FIXTURE.read_text())["sentences"] if s.strip()]


def _rate(embedder: OnnxEmbedder, sentences: list[str], batch: int, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        if batch == 1:
            for sentence in sentences:
                embedder.embed([sentence])
        else:
            for i in range(0, len(sentences), batch):
                embedder.embed(sentences[i : i + batch])
    return len(sentences) * repeats / (time.perf_counter() - start)


def _reference(
    python: str, sentences: list[str], batches: list[int], repeats: int
) -> dict[str, Any]:
    script = Path(__file__).with_name("reference_embed.py")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(sentences, handle)
    try:
        out = subprocess.run(
            [python, str(script), handle.name, ",".join(map(str, batches)), str(repeats)],
            capture_output=True,
            text=True,
            timeout=1800,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
    finally:
        os.unlink(handle.name)
    if out.returncode != 0:
        return {"skipped": f"reference run failed: {out.stderr.strip().splitlines()[-1:]}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_embed_bench(
    batches: list[int],
    repeats: int = 2,
    dataset: Path | None = None,
    reference_python: str | None = None,
) -> dict[str, Any]:
    sentences = bench_sentences(dataset)
    result: dict[str, Any] = {
        "sentences": len(sentences),
        "source": str(dataset) if dataset else "tests/fixtures/embedding_sentences.json",
        "onnxruntime": ort.__version__,
        "cpus": os.cpu_count(),
        "providers": {},
    }
    for provider in ort.get_available_providers():
        name = PROVIDERS.get(provider)
        if name is None:
            continue
        embedder = OnnxEmbedder(prefer=name)  # type: ignore[arg-type]
        actual = embedder.providers[0]
        embedder.embed(sentences[:8])  # warm-up
        result["providers"][name] = {
            "session_providers": embedder.providers,
            "fell_back_to_cpu": name == "cuda" and actual != provider,
            "sentences_per_s": {
                str(b): round(_rate(embedder, sentences, b, repeats), 1) for b in batches
            },
        }
        result["model"] = embedder.version

    python = reference_python
    if python is None:
        try:
            import sentence_transformers  # noqa: F401

            python = sys.executable
        except ImportError:
            result["reference"] = {
                "skipped": "sentence-transformers is not importable here: install memstream[reference] "
                "or pass --reference-python PATH"
            }
    if python is not None:
        reference = _reference(python, sentences, batches, repeats)
        result["reference"] = reference
        for device, rates in reference.get("rates", {}).items():
            ours = result["providers"].get(device)
            if ours:
                ours["ratio_to_pytorch"] = {
                    b: round(ours["sentences_per_s"][b] / rates[b], 2) for b in rates if rates[b]
                }
    return result
