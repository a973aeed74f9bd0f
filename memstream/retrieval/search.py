"""`Retriever`: a query text in, the caller's best memories out."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np

from memstream.models.compression import decode_vectors
from memstream.models.embedding import Embedder
from memstream.retrieval.late import LateInteraction, TokenEmbedder
from memstream.retrieval.ranking import RankingWeights, ScoredMemory, rank
from memstream.store.base import Caller, Hit, MemoryStore, StoredMemory
from memstream.store.lexical import query_sparse
from memstream.store.token_vectors import TokenVectorStore


class Retriever:
    """Hybrid search: the store finds candidates (dense and lexical, access-filtered by the
    caller), `rank` orders them. Candidates the dense query missed get their dense score
    from their stored 192-byte code, so every candidate is scored on both signals."""

    def __init__(
        self,
        store: MemoryStore,
        embedder: Embedder,
        weights: RankingWeights | None = None,
        candidates: int = 50,
        kept_tokens: TokenVectorStore | None = None,
        reputation: Callable[[str, str], float] | None = None,
        excluded_author: Callable[[str, str], bool] | None = None,
        strip_names: bool = True,
    ) -> None:
        """`kept_tokens`: the token vectors the ingest path kept (`ModelStage`), read by the
        rerank before it runs the model on a candidate. `reputation(tenant, agent)`: the
        authors' reputation, a ranking term (see `rank`). `excluded_author(tenant, agent)`:
        authors whose memories leave the candidates (a quarantined contributor).
        `strip_names=False` embeds the query as asked even when it names an author (the
        ablation's step before that change; the subject boost still applies)."""
        self.strip_names = strip_names
        self.reputation = reputation
        self.excluded_author = excluded_author
        self.store = store
        self.embedder = embedder
        self.weights = weights or RankingWeights()
        self.candidates = candidates
        reranks = self.weights.rerank_window > 0 and isinstance(embedder, TokenEmbedder)
        self.late = LateInteraction(embedder, kept=kept_tokens) if reranks else None
        self._authors: dict[str, set[str]] = {}  # tenant -> agent ids seen among candidates

    def _learn_authors(self, tenant: str, hits: list[Hit]) -> None:
        """Remember who writes in a tenant, so the next query naming one of them embeds
        once (ids only: what a name-free query is, never what they wrote)."""
        known = self._authors.setdefault(tenant, set())
        if len(known) < _MAX_AUTHORS_PER_TENANT:
            known.update(h.memory.agent_id for h in hits)
        if len(self._authors) > _MAX_TENANTS_REMEMBERED:
            self._authors.pop(next(iter(self._authors)))

    def search(
        self,
        caller: Caller,
        query: str,
        k: int = 10,
        *,
        now: datetime | None = None,
        mode: str = "hybrid",
        only_valid: bool = True,
        topics: list[str] | None = None,
        tags: list[str] | None = None,
        as_of: datetime | None = None,
    ) -> list[ScoredMemory]:
        """`mode`: `hybrid` (default), `dense` or `lexical` (the baselines); `topics` and
        `tags` narrow the candidates (any of each list). `as_of`: the memories valid at that
        time (bi-temporal: a superseded value is found as of when it held), ranked as then."""
        now = as_of or now or datetime.now(UTC)
        limit = max(self.candidates, k)
        valid_at = now if only_valid else None
        sparse = query_sparse(query) if mode in ("hybrid", "lexical") else None

        def candidates(text: str) -> tuple[np.ndarray | None, list[Hit]]:
            vector = self._embed_query(text, mode) if mode in ("hybrid", "dense") else None
            found = self.store.search(
                caller,
                dense=vector,
                sparse=sparse,
                limit=limit,
                valid_at=valid_at,
                topics=topics,
                tags=tags,
            )
            return vector, found

        # A name dominates a small embedding model's vector ("What pets does Melanie have?"
        # matches everything said to or about Melanie): the subject boost handles who, so
        # the dense side searches for what. The names are those of the tenant's authors
        # seen in earlier searches; only when the candidates show an author named in the
        # query that was not known yet is the search run again without that name too.
        subjects: frozenset[str] = frozenset()
        if mode == "hybrid":
            subjects = named_in(query, self._authors.get(caller.tenant, set()))
        about = without_agents(query, subjects) if self.strip_names else query
        vector, hits = candidates(about)
        if mode == "hybrid":
            self._learn_authors(caller.tenant, hits)
            named = subjects | named_agents(query, hits)
            if named != subjects:
                subjects = named
                if self.strip_names:
                    about = without_agents(query, subjects)
                    vector, hits = candidates(about)
        if self.excluded_author is not None:
            hits = [h for h in hits if not self.excluded_author(h.memory.tenant, h.memory.agent_id)]
        if mode == "dense":
            hits = [h for h in hits if h.dense_score is not None]
            return [
                ScoredMemory(h.memory, h.dense_score or 0.0, h.dense_score or 0.0, 0.0, 0.0)
                for h in sorted(hits, key=lambda h: -(h.dense_score or 0.0))
            ][:k]
        if mode == "lexical":
            hits = [h for h in hits if h.sparse_score is not None]
            return [
                ScoredMemory(h.memory, h.sparse_score or 0.0, 0.0, h.sparse_score or 0.0, 0.0)
                for h in sorted(hits, key=lambda h: -(h.sparse_score or 0.0))
            ][:k]
        missing = [h for h in hits if h.dense_score is None and h.memory.vector_code]
        if missing and vector is not None:
            codes = np.frombuffer(b"".join(h.memory.vector_code for h in missing), dtype=np.uint8)
            scores = decode_vectors(codes.reshape(len(missing), -1)) @ vector
            for hit, score in zip(missing, scores, strict=True):
                hit.dense_score = float(score)
        ranked = rank(hits, now, self.weights, subjects, reputation=self.reputation)
        window = self.weights.rerank_window
        if self.late is None or len(ranked) < 2:
            return ranked[:k]
        # rerank stage: the top candidates again, with late interaction (the query without
        # the names, like the dense side)
        by_id = {h.memory.memory_id: h for h in hits}
        top = [by_id[r.memory.memory_id] for r in ranked[:window]]
        late = self.late.scores(
            about,
            [(h.memory.text, _context(h.memory)) for h in top],
            caller.tenant,
            [str(h.memory.memory_id) for h in top],
        )
        reranked = rank(top, now, self.weights, subjects, late, self.reputation)
        return (reranked + ranked[window:])[:k]

    def _embed_query(self, text: str, mode: str) -> np.ndarray:
        """The query's pooled vector; when the rerank will need the query's token vectors
        too, both from one model run (the rerank then finds them in its cache)."""
        both = getattr(self.embedder, "embed_with_tokens", None)
        if self.late is None or mode != "hybrid" or both is None:
            return self.embedder.embed([text])[0]
        vectors, tokens = both([text])
        self.late.remember(text, tokens[0])
        return vectors[0]


_MIN_AGENT_ID = 3  # shorter ids ("a", "ai") would match ordinary words
_MAX_AUTHORS_PER_TENANT = 10_000
_MAX_TENANTS_REMEMBERED = 10_000


def named_agents(query: str, hits: list[Hit]) -> frozenset[str]:
    """Authors among the candidates whose agent id the query names as a word ("melanie" in
    "What pets does Melanie have?"): the query is about them."""
    return named_in(query, {h.memory.agent_id for h in hits})


def named_in(query: str, agents: set[str]) -> frozenset[str]:
    """Those of ``agents`` whose id the query names as a word."""
    if not agents:
        return frozenset()
    words = set(re.findall(r"[\w.-]+", query.lower()))
    words |= {w.strip(".-") for w in words}
    return frozenset(a for a in agents if len(a) >= _MIN_AGENT_ID and a.lower() in words)


def without_agents(query: str, agents: frozenset[str]) -> str:
    """``query`` with the named agents' ids (and a possessive 's) taken out; unchanged when
    nothing would be left."""
    if not agents:
        return query
    names = "|".join(re.escape(a) for a in sorted(agents, key=len, reverse=True))
    rest = re.sub(rf"(?<![\w.-])(?:{names})(?:['\u2019]s)?(?![\w-])", " ", query, flags=re.I)
    rest = re.sub(r"\s+", " ", rest).strip()
    return rest if re.search(r"\w", rest) else query


def _context(memory: StoredMemory) -> str | None:
    context = memory.metadata.get("context")
    return context if isinstance(context, str) else None
