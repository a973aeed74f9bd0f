"""Memory compression: 4-bit rotated vectors (8:1 against fp32), zstd text, near-duplicates.

Vector codec `rlm4-384-v1`: multiply the unit vector by a fixed random orthogonal matrix
(shipped as `data/rotation384_v1.npy`, so every process encodes identically), which makes
each coordinate close to Gaussian with standard deviation 1/sqrt(384); then quantise each
coordinate to the 16 Lloyd-Max levels of a Gaussian (Max, 1960), two codes per byte:
384 dims -> 192 bytes, against 1,536 bytes of fp32. No training on the data, so the codec
is fixed before the first memory arrives and never needs re-fitting. Search decodes the
stored codes and scores them against the full-precision query (asymmetric distance).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
import zstandard

CODEC_NAME = "rlm4-384-v1"
DIM = 384
BYTES_PER_VECTOR = DIM // 2

# Lloyd-Max optimal 16-level quantiser for N(0, 1) (J. Max, 1960).
_LEVELS = np.array(
    [-2.7326, -2.0690, -1.6181, -1.2562, -0.9424, -0.6568, -0.3881, -0.1284,
     0.1284, 0.3881, 0.6568, 0.9424, 1.2562, 1.6181, 2.0690, 2.7326],
    dtype=np.float32,
)  # fmt: skip
_SIGMA = np.float32(1.0 / np.sqrt(DIM))
_BOUNDS = (_LEVELS[1:] + _LEVELS[:-1]) / 2 * _SIGMA


@cache
def _rotation() -> np.ndarray:
    with resources.files("memstream.models").joinpath("data/rotation384_v1.npy").open("rb") as f:
        return np.load(f)


def encode_vectors(vectors: np.ndarray) -> np.ndarray:
    """(n, 384) unit float vectors -> (n, 192) uint8 codes."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != DIM:
        raise ValueError(f"expected (n, {DIM}) vectors, got {vectors.shape}")
    codes = np.searchsorted(_BOUNDS, vectors @ _rotation()).astype(np.uint8)
    return (codes[:, 0::2] << 4) | codes[:, 1::2]


def decode_vectors(packed: np.ndarray) -> np.ndarray:
    """(n, 192) uint8 codes -> (n, 384) float32 unit vectors approximating the originals.

    Re-normalised because the originals were unit length: without it a code's length error
    would bias its dot products (measured: top-10 overlap with fp32 0.94 -> 0.95)."""
    packed = np.asarray(packed, dtype=np.uint8)
    codes = np.empty((packed.shape[0], DIM), dtype=np.uint8)
    codes[:, 0::2] = packed >> 4
    codes[:, 1::2] = packed & 0x0F
    vectors = (_LEVELS[codes] * _SIGMA) @ _rotation().T
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def encode_vector(vector: np.ndarray) -> bytes:
    return encode_vectors(vector[None, :])[0].tobytes()


def decode_vector(code: bytes) -> np.ndarray:
    return decode_vectors(np.frombuffer(code, dtype=np.uint8)[None, :])[0]


# --- text ----------------------------------------------------------------------------------

TEXT_MIN_BYTES = 160
"""Shorter texts are stored as they are: zstd's frame overhead would outweigh the gain."""

_compressor = zstandard.ZstdCompressor(level=3)
_decompressor = zstandard.ZstdDecompressor()


@dataclass(frozen=True)
class PackedText:
    codec: str  # "raw" or "zstd"
    data: bytes

    def text(self) -> str:
        raw = _decompressor.decompress(self.data) if self.codec == "zstd" else self.data
        return raw.decode("utf-8")


def pack_text(text: str) -> PackedText:
    """zstd when it saves at least 10%, else the UTF-8 bytes as they are."""
    raw = text.encode("utf-8")
    if len(raw) >= TEXT_MIN_BYTES:
        packed = _compressor.compress(raw)
        if len(packed) <= 0.9 * len(raw):
            return PackedText("zstd", packed)
    return PackedText("raw", raw)


# --- near-duplicates -----------------------------------------------------------------------

DUPLICATE_COSINE = 0.95
"""Two memories of one tenant and scope at least this similar (and `same_words`) are merged."""

_WORD = re.compile(r"[^\W_]+", re.UNICODE)


WordSet = np.ndarray
"""A text's distinct words as a sorted int64 array of each word's hash with its lowest bit
set to "has a digit": about 300 bytes a memory where a frozenset of tuples took 4 KB (the model stage's pool keeps one
for each of up to 20,000 recent memories)."""


def word_set(text: str) -> WordSet:
    """The text's lower-cased words, hashed with a has-a-digit bit: enough to compare
    wordings without keeping the words (the raw text may hold personal data)."""
    # the hash's lowest bit gives way to the digit bit, so the code stays a 64-bit int
    codes = [(hash(w) & ~1) | any(ch.isdigit() for ch in w) for w in _WORD.findall(text.lower())]
    return np.unique(np.asarray(codes, dtype=np.int64))


def same_words(a: WordSet, b: WordSet, min_jaccard: float = 0.8) -> bool:
    """Near-identical wording, and no differing word carries a digit.

    Embeddings put "Alice's phone is 555-0199" and "... 555-0123" at cosine > 0.95: an
    update, not a duplicate. Merging it would lose the new value, so a duplicate must also
    share its words, and any word that differs must not be a number."""
    shared = len(np.intersect1d(a, b, assume_unique=True))
    union = len(a) + len(b) - shared
    if not union:
        return True
    if shared / union < min_jaccard:
        return False
    return not bool((np.setxor1d(a, b, assume_unique=True) & 1).any())


def near_duplicates(
    new: np.ndarray, pool: np.ndarray, threshold: float = DUPLICATE_COSINE
) -> tuple[np.ndarray, np.ndarray]:
    """For each new vector: (index of its most similar pool vector or -1, that cosine).

    Returns -1 where nothing in the pool reaches `threshold` (and for an empty pool)."""
    if len(pool) == 0 or len(new) == 0:
        return np.full(len(new), -1), np.zeros(len(new), dtype=np.float32)
    sims = new @ pool.T
    best = sims.argmax(axis=1)
    best_sim = sims[np.arange(len(new)), best]
    return np.where(best_sim >= threshold, best, -1), best_sim.astype(np.float32)
