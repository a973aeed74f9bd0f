"""Late-interaction reranking (ColBERT-style MaxSim) with the embedding model's token vectors.

A pooled sentence vector blurs a short memory into one point; matching each word of the
query against the best-matching word of the memory, in context, keeps the details. We use
MiniLM's own contextual token vectors (zero-shot: the model was not trained for this), so
no second model is needed:

    score(q, m) = sum_i w_i * max(max_t q_i . m_t, CONTEXT_WEIGHT * max_c q_i . c_c) / sum_i w_i

over the query's word pieces ``q_i`` (function words and punctuation left out), the memory's
pieces ``m_t`` and the pieces ``c_c`` of its ``context`` (a conversation's previous turn),
with ``w_i`` the piece's IDF over the memories being reranked. A memory's token vectors are
kept when it is embedded at ingest (`store.token_vectors`), so a query embeds only itself;
texts without kept vectors (a context, a revealed text) are embedded at query time, for the
top candidates only (`RankingWeights.rerank_window`), and held in a small LRU cache.

On LoCoMo (measured with a numpy prototype of the ranking) this signal alone reached
recall@5 0.70 against 0.53 for the pooled vectors of the same model, both with the names
taken out of the question; in the pipeline the rerank lifts hybrid from 0.727 to 0.780
(docs/retrieval.md).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from typing import Protocol, runtime_checkable

import numpy as np

from memstream.models.embedding import TokenVectors
from memstream.store.token_vectors import CONTEXT, TEXT, TokenVectorStore

CONTEXT_WEIGHT = 0.8
"""A match in the context counts a little less than one in the memory itself."""

# Word pieces that carry no topic: question words, auxiliaries, pronouns, articles.
QUERY_STOPWORDS = frozenset(
    """a an the and or but of to in on at for with from by about as into than then so
    what when where who whom whose why how which is are was were be been being am do does
    did done have has had having will would can could should shall may might must i me my
    mine we us our you your he him his she her hers it its they them their theirs this that
    these those there here some any ever s t""".split()
)

_CACHE_BYTES = 16 * 1024 * 1024
"""A few hundred texts' vectors: the recent queries' candidates (worker RSS stays bounded)."""


@runtime_checkable
class TokenEmbedder(Protocol):
    """An embedder that can also return per-token vectors (`OnnxEmbedder` does)."""

    def embed_tokens(self, texts: list[str]) -> list[TokenVectors]: ...


def _weights(tokens: tuple[str, ...], docs: list[set[str]]) -> np.ndarray:
    """IDF of each query piece over ``docs``, zero for function words and punctuation."""
    n = len(docs)
    out = np.zeros(len(tokens), dtype=np.float32)
    for i, token in enumerate(tokens):
        word = token.removeprefix("##")
        if word in QUERY_STOPWORDS or not any(ch.isalnum() for ch in word):
            continue
        df = sum(1 for d in docs if token in d)
        out[i] = math.log((n - df + 0.5) / (df + 0.5) + 1)
    if not out.any():  # a query of function words only: every piece counts the same
        out[:] = 1.0
    return out


class LateInteraction:
    """MaxSim scores of one query against a few memories. Token vectors come from a small
    LRU cache (bounded in bytes), then from the vectors kept at ingest (`kept`), and only
    then from the model."""

    def __init__(
        self,
        embedder: TokenEmbedder,
        cache_bytes: int = _CACHE_BYTES,
        kept: TokenVectorStore | None = None,
    ) -> None:
        self.embedder = embedder
        self.cache_bytes = cache_bytes
        self.kept = kept
        self._cache: OrderedDict[str, TokenVectors] = OrderedDict()
        self._cached_bytes = 0
        self._lock = threading.Lock()
        self.computed = 0  # texts the model had to run on (the rest came from a cache)

    def remember(self, text: str, vectors: TokenVectors) -> None:
        """Cache a text's vectors computed elsewhere (a query's, with its pooled vector)."""
        with self._lock:
            if text not in self._cache:
                self._cached_bytes += vectors.vectors.nbytes
            self._cache[text] = vectors
            self._cache.move_to_end(text)

    def _tokens(self, texts: list[str]) -> list[TokenVectors]:
        with self._lock:
            have = {t: self._cache[t] for t in texts if t in self._cache}
        if "" in texts:  # no context: nothing to run the model on
            have[""] = TokenVectors.empty(getattr(self.embedder, "dim", 384))
        missing = [t for t in dict.fromkeys(texts) if t not in have]
        if missing:
            have.update(zip(missing, self.embedder.embed_tokens(missing), strict=True))
            self.computed += len(missing)
        with self._lock:
            for text in dict.fromkeys(texts):
                if text not in self._cache:
                    self._cached_bytes += have[text].vectors.nbytes
                self._cache[text] = have[text]
                self._cache.move_to_end(text)
            while self._cache and self._cached_bytes > self.cache_bytes:
                _, dropped = self._cache.popitem(last=False)
                self._cached_bytes -= dropped.vectors.nbytes
        return [have[t] for t in texts]

    def scores(
        self,
        query: str,
        memories: list[tuple[str, str | None]],
        tenant: str | None = None,
        ids: list[str] | None = None,
    ) -> np.ndarray:
        """One score per ``(text, context)``; higher is better, in [-1, 1]. With the
        memories' `tenant` and `ids`, the vectors kept at ingest are used where there are
        some; the rest is embedded now."""
        if not memories:
            return np.zeros(0, dtype=np.float32)
        kept: dict[tuple[str, int], TokenVectors] = {}
        if self.kept is not None and tenant is not None and ids is not None:
            kept = self.kept.get(tenant, [(i, part) for i in ids for part in (TEXT, CONTEXT)])
        keys = ids or [""] * len(memories)
        need = [query]
        for key, (text, context) in zip(keys, memories, strict=True):
            if (key, TEXT) not in kept:
                need.append(text)
            if context and (key, CONTEXT) not in kept:
                need.append(context)
        computed = dict(zip(need, self._tokens(need), strict=True))
        q = computed[query]
        empty = TokenVectors.empty(getattr(self.embedder, "dim", 384))
        docs = [
            kept.get((k, TEXT)) or computed[t] for k, (t, _) in zip(keys, memories, strict=True)
        ]
        ctxs = [
            kept.get((k, CONTEXT)) or (computed[c] if c else empty)
            for k, (_, c) in zip(keys, memories, strict=True)
        ]
        if not q.tokens:
            return np.zeros(len(memories), dtype=np.float32)
        pieces = [set(d.tokens) | set(c.tokens) for d, c in zip(docs, ctxs, strict=True)]
        weights = _weights(q.tokens, pieces)
        qv = q.vectors.astype(np.float32, copy=False)
        best = np.maximum(_max_per_text(qv, docs), CONTEXT_WEIGHT * _max_per_text(qv, ctxs))
        best[np.isneginf(best)] = -1.0  # (memories, query pieces); -1: nothing to match
        return ((best * weights).sum(axis=1) / weights.sum()).astype(np.float32)


def _max_per_text(query: np.ndarray, texts: list[TokenVectors]) -> np.ndarray:
    """For each text, each query piece's best similarity with one of its pieces (-inf for a
    text without pieces): one matrix product over all texts' pieces at once."""
    out = np.full((len(texts), len(query)), -np.inf, dtype=np.float32)
    present = [i for i, t in enumerate(texts) if t.tokens]
    if not present:
        return out
    stacked = np.concatenate([texts[i].vectors.astype(np.float32, copy=False) for i in present])
    starts = np.cumsum([0] + [len(texts[i].tokens) for i in present[:-1]])
    similarity = query @ stacked.T  # (query pieces, all pieces)
    out[present] = np.maximum.reduceat(similarity, starts, axis=1).T
    return out
