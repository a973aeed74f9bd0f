"""`memstream eval retrieval`: LoCoMo turns stored as memories, questions asked through the
real pipeline pieces (model stage, store sink, hybrid retriever), recall@k of evidence turns.

Each conversation is its own tenant. A turn becomes a memory by its speaker, timestamped
with its session's date, with the session date and the previous turn as `context` (indexed
lexically, not embedded). Questions of categories 1-4 are asked as of one day after the
conversation's last session. Baselines in the same run: `bm25` (each turn indexed alone,
as in the published BM25 figure), `bm25_with_context` (our lexical index alone), `dense`
(MiniLM alone, the question as asked) and `hybrid_without_rerank` (the first stage, without
late interaction). `search_ms` is the per-question latency of each mode (p50, p99).
"""

from __future__ import annotations

import gc
import re
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from memstream.eval.locomo import CATEGORY_NAMES, LocomoData, Turn, load_locomo, recall_at_k
from memstream.models.embedding import Embedder, OnnxEmbedder
from memstream.models.registry import HotSwapScorer, ModelRegistry
from memstream.retrieval import RankingWeights, Retriever
from memstream.retrieval.ranking import ScoredMemory
from memstream.schemas.events import Memory
from memstream.store.base import Caller, MemoryStore
from memstream.store.sink import write_records
from memstream.store.token_vectors import TokenVectorStore
from memstream.streams.enrich import ModelStage
from memstream.streams.privacy_stage import PrivacyStage

MODES = ("hybrid", "hybrid_first_stage", "lexical", "dense", "bm25_turn_only")


def _privacy_stage(data_dir: Path, policy: str) -> PrivacyStage | None:
    """`worker`: the privacy stage exactly as the worker's settings build it; `seal`,
    `redact`, ...: those settings with that action; `allow`: none at all."""
    if policy == "allow":
        return None  # nothing would change: skip the scan
    from memstream.settings import Settings
    from memstream.streams.app import build_privacy_stage

    settings = Settings().model_copy(update={"data_dir": data_dir, "master_key": None})
    if policy != "worker":
        settings = settings.model_copy(update={"pii_default_action": policy})
    if not settings.pii_enabled:
        return None
    return build_privacy_stage(settings)


def session_time(text: str, fallback: datetime) -> datetime:
    """`1:56 pm on 8 May, 2023` -> an aware datetime (UTC); `fallback` if unreadable."""
    cleaned = re.sub(r"\s+", " ", text.strip())
    for fmt in ("%I:%M %p on %d %B, %Y", "%I:%M %p on %d %b, %Y", "%I:%M %p on %B %d, %Y"):
        try:
            return datetime.strptime(cleaned, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return fallback


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-").lower() or "speaker"


def turn_memories(
    data: LocomoData, with_context: bool = True
) -> tuple[list[Memory], dict[str, str], dict[str, datetime]]:
    """(memories, memory id -> dia id, conversation -> time questions are asked)."""
    base = datetime(2023, 1, 1, tzinfo=UTC)
    memories: list[Memory] = []
    dia_of: dict[str, str] = {}
    asked_at: dict[str, datetime] = {}
    previous: Turn | None = None
    for turn in data.turns:
        ts = session_time(turn.date, base + timedelta(days=turn.session))
        same_session = previous is not None and (previous.conversation, previous.session) == (
            turn.conversation,
            turn.session,
        )
        context = turn.date + (f" | {previous.memory_text}" if same_session and previous else "")
        memory = Memory(
            tenant=f"locomo-{_slug(turn.conversation)}",
            agent_id=_slug(turn.speaker),
            scope="tenant",
            ts=ts,
            payload={"text": turn.memory_text, "context": context if with_context else None},
        )
        memories.append(memory)
        dia_of[str(memory.event_id)] = turn.dia_id
        asked_at[turn.conversation] = max(
            asked_at.get(turn.conversation, ts), ts + timedelta(days=1)
        )
        previous = turn
    return memories, dia_of, asked_at


def ingest(
    store: MemoryStore,
    stage: ModelStage,
    memories: list[Memory],
    batch: int = 256,
    privacy: PrivacyStage | None = None,
) -> None:
    """The worker's path: privacy stage (when given), model stage, sink."""
    from memstream.schemas.events import Indexed
    from memstream.streams.app import enrich_or_reject

    for start in range(0, len(memories), batch):
        results = enrich_or_reject(stage, memories[start : start + batch], privacy)  # type: ignore[arg-type]
        write_records(store, [r for r in results if isinstance(r, Indexed)])
    store.optimize()


def ranked_turns(results: list[ScoredMemory], dia_of: dict[str, str]) -> list[str]:
    """The turn ids of ranked results; a merged duplicate stands for its copies too."""
    ranked = []
    for result in results:
        ranked.append(dia_of.get(str(result.memory.memory_id), ""))
        ranked += [dia_of.get(p["memory_id"], "") for p in result.memory.provenance]
    return ranked


def run_retrieval_eval(
    dataset: Path,
    ks: tuple[int, ...] = (1, 5, 10),
    embedder: Embedder | None = None,
    weights: RankingWeights | None = None,
    pii_policy: str = "worker",
    token_vectors: str = "ingest",
    query_embedder: Embedder | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """`progress(done, total)` is called after each question. `pii_policy`: what the privacy stage does with personal data in the turns: `worker`
    (the default) as the worker's settings say, `allow` indexes them as spoken. Without
    `embedder`, ingest and queries get the worker's two ONNX sessions (the model stage's,
    not spinning, and the query path's single-threaded one), so `search_ms` is what a
    worker answers in; `query_embedder` defaults to `embedder` when that is given."""
    from memstream.store.edge import EdgeStore

    data = load_locomo(dataset)
    if embedder is None:
        embedder = OnnxEmbedder(spin=False)
        query_embedder = query_embedder or OnnxEmbedder(threads=1)
    query_embedder = query_embedder or embedder
    memories, dia_of, asked_at = turn_memories(data)
    # the published BM25 figure indexes each turn alone: a second store without context
    plain, plain_dia_of, _ = turn_memories(data, with_context=False)
    recalls: dict[str, dict[int, list[float]]] = {m: defaultdict(list) for m in MODES}
    by_category: dict[int, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    latency: dict[str, list[float]] = defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="memstream-eval-") as tmp:
        registry = ModelRegistry(Path(tmp) / "models", "valuation")
        store = EdgeStore(Path(tmp) / "store")
        plain_store = EdgeStore(Path(tmp) / "plain")
        try:
            privacy = _privacy_stage(Path(tmp), pii_policy)
            kept = (
                TokenVectorStore(Path(tmp) / "token_vectors.db")
                if token_vectors == "ingest"
                else None
            )
            stage = ModelStage(embedder, HotSwapScorer(registry), token_store=kept)
            ingest(store, stage, memories, privacy=privacy)
            ingest(
                plain_store, ModelStage(embedder, HotSwapScorer(registry)), plain, privacy=privacy
            )
            retriever = Retriever(store, query_embedder, weights, kept_tokens=kept)
            first_stage = Retriever(
                store, query_embedder, replace(weights or RankingWeights(), rerank_window=0)
            )
            plain_retriever = Retriever(plain_store, query_embedder, weights)
            # as the worker does once started (streams/worker.py): no full collection walks
            # the models' objects in the middle of a timed search
            gc.collect()
            gc.freeze()
            for asked, question in enumerate(data.questions, 1):
                caller = Caller(f"locomo-{_slug(question.conversation)}", "evaluator")
                now = asked_at[question.conversation]
                for mode in MODES:
                    if mode == "bm25_turn_only":
                        results = plain_retriever.search(
                            caller, question.question, max(ks), now=now, mode="lexical"
                        )
                        ids = plain_dia_of
                    else:
                        started = time.perf_counter()
                        results = (
                            first_stage.search(caller, question.question, max(ks), now=now)
                            if mode == "hybrid_first_stage"
                            else retriever.search(
                                caller, question.question, max(ks), now=now, mode=mode
                            )
                        )
                        latency[mode].append(time.perf_counter() - started)
                        ids = dia_of
                    ranked = ranked_turns(results, ids)
                    for k in ks:
                        value = recall_at_k(ranked, question.evidence, k)
                        recalls[mode][k].append(value)
                        if mode == "hybrid":
                            by_category[question.category][k].append(value)
                if progress is not None:
                    progress(asked, len(data.questions))
            stored = store.count()
        finally:
            gc.unfreeze()
            store.close()
            plain_store.close()

    def summary(values: dict[int, list[float]]) -> dict[str, float]:
        return {f"recall@{k}": round(float(np.mean(values[k])), 4) for k in ks}

    return {
        "token_vectors": token_vectors,
        "overall": summary(recalls["hybrid"]),
        "by_category": {
            f"{c}-{CATEGORY_NAMES[c]}": summary(v) | {"questions": len(v[ks[0]])}
            for c, v in sorted(by_category.items())
        },
        "baselines": {
            "bm25": summary(recalls["bm25_turn_only"]),
            "bm25_with_context": summary(recalls["lexical"]),
            "dense": summary(recalls["dense"]),
            "hybrid_without_rerank": summary(recalls["hybrid_first_stage"]),
        },
        "search_ms": {
            mode: {
                "p50": round(1000 * float(np.percentile(v, 50)), 1),
                "p99": round(1000 * float(np.percentile(v, 99)), 1),
            }
            for mode, v in latency.items()
        },
        "questions": len(data.questions),
        "memories": len(memories),
        "points_stored": stored,
        "embedding_model": embedder.version,
        "weights": vars(weights or RankingWeights()),
        "pii_policy": pii_policy,
        "dataset": str(dataset),
        "dataset_notes": data.stats,
    }
