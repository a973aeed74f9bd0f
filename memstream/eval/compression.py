"""`memstream eval compression`: what the vector codec costs in retrieval, on LoCoMo data.

Every turn of every conversation is embedded and stored twice: as fp32 and through the
codec. Each question of categories 1-4 is answered by exact search within its own
conversation (one tenant per conversation) in both; recall@10 of the evidence turns is
averaged, and the codec's recall is reported relative to fp32's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from memstream.eval.locomo import load_locomo, recall_at_k
from memstream.models.compression import (
    BYTES_PER_VECTOR,
    CODEC_NAME,
    DIM,
    decode_vectors,
    encode_vectors,
    pack_text,
)
from memstream.models.embedding import Embedder, OnnxEmbedder


def run_compression_eval(
    dataset: Path, k: int = 10, embedder: Embedder | None = None
) -> dict[str, Any]:
    data = load_locomo(dataset)
    embedder = embedder or OnnxEmbedder()
    turns = data.turns
    vectors = embedder.embed([t.memory_text for t in turns])
    queries = embedder.embed([q.question for q in data.questions])
    decoded = decode_vectors(encode_vectors(vectors))

    conv = np.array([t.conversation for t in turns])
    ids = np.array([t.dia_id for t in turns])
    exact, compressed, overlap = [], [], []
    for query, question in zip(queries, data.questions, strict=True):
        members = np.flatnonzero(conv == question.conversation)
        top_exact = members[np.argsort(-(vectors[members] @ query), kind="stable")[:k]]
        top_codec = members[np.argsort(-(decoded[members] @ query), kind="stable")[:k]]
        exact.append(recall_at_k(list(ids[top_exact]), question.evidence, k))
        compressed.append(recall_at_k(list(ids[top_codec]), question.evidence, k))
        overlap.append(len(set(top_exact) & set(top_codec)) / k)

    texts = [t.memory_text.encode() for t in turns]
    packed = [len(pack_text(t.memory_text).data) for t in turns]
    recall_exact, recall_codec = float(np.mean(exact)), float(np.mean(compressed))
    return {
        "codec": CODEC_NAME,
        "embedding_model": embedder.version,
        "bytes_per_vector": BYTES_PER_VECTOR,
        "fp32_bytes_per_vector": DIM * 4,
        "ratio": DIM * 4 / BYTES_PER_VECTOR,
        f"recall_at_{k}_fp32": round(recall_exact, 4),
        f"recall_at_{k}_compressed": round(recall_codec, 4),
        f"recall_at_{k}_relative": round(recall_codec / recall_exact, 4) if recall_exact else None,
        f"top{k}_overlap_with_fp32": round(float(np.mean(overlap)), 4),
        "text_bytes": {"raw": sum(map(len, texts)), "stored": sum(packed)},
        "questions": len(data.questions),
        "memories": len(turns),
        "dataset": str(dataset),
        "dataset_notes": data.stats,
    }
