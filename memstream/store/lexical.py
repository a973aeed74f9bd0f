"""Text -> BM25 sparse vectors, one tokenizer and configuration for every process.

Qdrant Edge's BM25 model (Rust, no server): documents get term-frequency weights with
k=1.2, b=0.75 and `avg_len=32` tokens (memories are short); queries get 1.0 per unique
term. IDF is applied by the engine at search time (the `bm25` vector has the IDF
modifier), so document vectors never need re-computing when the corpus grows. Token ids
are hashes, so the same text gives the same vector everywhere.
"""

from __future__ import annotations

from functools import cache

import qdrant_edge as qe

from memstream.store.base import Sparse

AVG_LEN = 32
LANGUAGE = "english"


@cache
def _model() -> qe.Bm25:
    return qe.Bm25(qe.Bm25Config(avg_len=AVG_LEN, language=LANGUAGE))


def _to_sparse(vector: qe.SparseVector) -> Sparse:
    return Sparse(indices=list(vector.indices), values=[float(v) for v in vector.values])


def doc_sparse(text: str) -> Sparse:
    """A stored memory's sparse vector."""
    return _to_sparse(_model().embed_document(text))


def query_sparse(text: str) -> Sparse:
    """A query's sparse vector."""
    return _to_sparse(_model().embed_query(text))
