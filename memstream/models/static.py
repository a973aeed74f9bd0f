"""A static embedding model for fast unit tests: one vector per token, averaged.

Distilled from the ONNX model the way model2vec does it: every vocabulary token is run
through the transformer on its own (`[CLS] token [SEP]`) and the resulting sentence vector
is kept as that token's row. A text's vector is the mean of its tokens' rows, normalised.
Thousands of texts per second and no model at run time, but much worse retrieval than the
transformer: select it (`MEMSTREAM_EMBEDDER=static`) for tests only, never for integration.
"""

from __future__ import annotations

import os

import numpy as np

from memstream.models.embedding import cache_dir, ensure_onnx_model, load_tokenizer
from memstream.models.providers import make_session

CLS, SEP, PAD, UNK = 101, 102, 0, 100


def ensure_static_table() -> tuple[np.ndarray, str]:
    """(vocab x 384 float16 table, version); distilled once (~6 s on 2 cores) and cached."""
    model_path, teacher = ensure_onnx_model()
    path = cache_dir() / "models" / f"static-{teacher.replace('@', '-')}.npy"
    if not path.exists():
        session = make_session(str(model_path), prefer="cpu")
        vocab_size = len(load_tokenizer().get_vocab())
        table = np.zeros((vocab_size, 384), dtype=np.float32)
        for start in range(0, vocab_size, 2048):
            ids = np.arange(start, min(start + 2048, vocab_size))
            batch = np.stack([np.full(len(ids), CLS), ids, np.full(len(ids), SEP)], axis=1)
            (table[ids],) = session.run(
                ["sentence_embedding"],
                {"input_ids": batch.astype(np.int64), "attention_mask": np.ones_like(batch)},
            )
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, table.astype(np.float16))
        os.replace(tmp, path)
    return np.load(path).astype(np.float32), f"static-{teacher}"


class StaticEmbedder:
    """Mean of distilled token vectors; unit length; for unit tests."""

    dim = 384

    def __init__(self) -> None:
        self.table, self.version = ensure_static_table()
        self.tokenizer = load_tokenizer(max_tokens=512)
        self.tokenizer.no_padding()
        self.providers = ["static"]

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        rows = []
        for encoding in self.tokenizer.encode_batch(list(texts)):
            ids = [i for i in encoding.ids if i not in (CLS, SEP, PAD)] or [UNK]
            rows.append(self.table[ids].mean(axis=0))
        vectors = np.vstack(rows)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
