"""The model stage: embed, value and compress a batch of valid events into `Indexed` records.

Broker-free and synchronous, so it is unit-tested directly and run by the worker in a
thread (ONNX Runtime releases the GIL) while Faust keeps heartbeating. One call handles a
whole batch: one embedding run, one valuation run, one codec pass.
"""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import numpy as np

from memstream.logging import get_logger
from memstream.models.compression import (
    CODEC_NAME,
    DUPLICATE_COSINE,
    encode_vectors,
    same_words,
    word_set,
)
from memstream.models.embedding import Embedder
from memstream.models.facts import extract_fact
from memstream.models.pool import VectorPool
from memstream.models.registry import HotSwapScorer
from memstream.models.reputation import ReputationBook
from memstream.models.valuation import valuation_features_batch
from memstream.schemas.events import (
    FactPayload,
    Indexed,
    IndexedPayload,
    LinkPayload,
    Links,
    LinksPayload,
    Memory,
    Observation,
    TagScore,
    VerdictPayload,
    VerificationPayload,
    VerificationReport,
    derived_id,
)
from memstream.store.faults import store_fault
from memstream.store.token_vectors import CONTEXT, TEXT, TokenVectorStore
from memstream.streams.annotate import LinkingStage, TaggingStage
from memstream.streams.privacy_stage import Protected
from memstream.verification import Verification, verify_text

log = get_logger("memstream.model_stage")

Source = Memory | Observation


class ModelStage:
    def __init__(
        self,
        embedder: Embedder,
        scorer: HotSwapScorer,
        *,
        pool: VectorPool | None = None,
        reputation: ReputationBook | None = None,
        duplicate_cosine: float = DUPLICATE_COSINE,
        token_store: TokenVectorStore | None = None,
        keep_context_tokens: bool = True,
        tagging: TaggingStage | None = None,
        linking: LinkingStage | None = None,
    ) -> None:
        """`token_store`: where to keep each memory's token vectors for the rerank (from the
        same model run as its pooled vector), when the embedder can give them; with
        `keep_context_tokens`, its context's too (one more model run on the contexts, so
        that a search runs the model on nothing but its query)."""
        self.embedder = embedder
        self.token_store = token_store if hasattr(embedder, "embed_with_tokens") else None
        self.keep_context_tokens = keep_context_tokens
        self.scorer = scorer
        self.pool = pool or VectorPool(dim=embedder.dim)
        self.reputation = reputation or ReputationBook()
        self.duplicate_cosine = duplicate_cosine
        self.tagging = tagging
        self.linking = linking

    def process(
        self,
        events: list[Source],
        now: datetime | None = None,
        protected: list[Protected] | None = None,
    ) -> list[Indexed]:
        """One `Indexed` record per event, in order. With `protected` (the privacy stage's
        output) only the protected text is embedded, indexed and stored."""
        if not events:
            return []
        now = now or datetime.now(UTC)
        if protected is None:
            protected = [Protected.unscanned(e) for e in events]
        texts = [p.embed_text for p in protected]
        if self.token_store is not None:
            vectors, tokens = self.embedder.embed_with_tokens(texts)  # type: ignore[attr-defined]
            # the rerank scores the text as embedded (placeholders for personal values)
            kept = [(e.tenant, e.event_id, TEXT, tv) for e, tv in zip(events, tokens, strict=True)]
            with_context = [(e, p) for e, p in zip(events, protected, strict=True) if p.context]
            if self.keep_context_tokens and with_context:
                contexts = self.embedder.embed_tokens([p.context for _, p in with_context])  # type: ignore[attr-defined]
                kept += [
                    (e.tenant, e.event_id, CONTEXT, tv)
                    for (e, _), tv in zip(with_context, contexts, strict=True)
                ]
            try:
                self.token_store.put(kept)
            except Exception as exc:
                # a cache: without it the rerank computes these at query time. A full disk
                # must not turn the batch into dead letters (the store's own write waits)
                if not store_fault(exc):
                    raise
                log.warning("token vectors not kept: store fault", error=repr(exc)[:300])
        else:
            vectors = self.embedder.embed(texts)
        # wording is compared on the original text (hashed words, nothing kept in clear):
        # placeholders would make two different values look the same
        novelty, duplicate_of = self._novelty_and_duplicates(
            events, vectors, [e.payload.text for e in events]
        )
        features = valuation_features_batch(
            embeddings=vectors,
            novelty=novelty,
            reputation=[self.reputation.get(e.tenant, e.agent_id) for e in events],
            kind=[e.kind for e in events],
            age_hours=[(now - e.ts).total_seconds() / 3600 for e in events],
            text_chars=[len(p.text) for p in protected],
            n_tags=[len(p.tags) for p in protected],
            texts=[p.text for p in protected],
            contexts=[p.context for p in protected],
        )
        scores, valuation_label = self.scorer.score(features)
        codes = encode_vectors(vectors)
        # claims are checked as their author wrote them (a redaction must not turn a false
        # claim into an unchecked one); facts are read from the stored text
        checks = [_checked(e.payload.text, p.text) for e, p in zip(events, protected, strict=True)]
        memories = [i for i, e in enumerate(events) if e.kind == "memory"]
        auto_tags: list[list[tuple[str, float]]] = [[] for _ in events]
        links: list[list[tuple[UUID, float]]] = [[] for _ in events]
        if self.tagging is not None and memories:
            _place(
                auto_tags,
                memories,
                self.tagging.annotate(
                    [events[i].tenant for i in memories],
                    [protected[i].text for i in memories],
                    [protected[i].tags for i in memories],
                    vectors[memories],
                ),
            )
        if self.linking is not None and memories:
            fresh = [i for i in memories if duplicate_of[i] is None]
            _place(
                links,
                fresh,
                self.linking.link(
                    [events[i].tenant for i in fresh],
                    [events[i].event_id for i in fresh],
                    [events[i].scope for i in fresh],
                    [events[i].agent_id for i in fresh],
                    [protected[i].text for i in fresh],
                    vectors[fresh],
                    [events[i].ts.timestamp() for i in fresh],
                ),
            )
        facts = [_fact_of(e, p) for e, p in zip(events, protected, strict=True)]
        models = {
            "embedding": self.embedder.version,
            "valuation": valuation_label,
            "codec": CODEC_NAME,
        }
        return [
            Indexed(
                event_id=event.event_id,
                tenant=event.tenant,
                agent_id=event.agent_id,
                ts=event.ts,
                scope=event.scope,
                trace_id=event.trace_id,
                parent_ids=event.parent_ids,
                payload=IndexedPayload(
                    source_kind=event.kind,  # type: ignore[arg-type]
                    text=protected[i].text,
                    context=protected[i].context,
                    supersedes=getattr(event.payload, "supersedes", []),
                    topic=protected[i].topic,
                    tags=protected[i].tags,
                    metadata=protected[i].metadata,
                    valid_from=getattr(event.payload, "valid_from", None),
                    valid_to=getattr(event.payload, "valid_to", None),
                    expires_at=getattr(event.payload, "expires_at", None),
                    vector_codec=CODEC_NAME,
                    vector_b64=base64.b64encode(codes[i].tobytes()).decode(),
                    usefulness=float(np.clip(scores[i], 0.0, 1.0)),
                    novelty=float(novelty[i]),
                    features=[float(x) for x in features[i]],
                    duplicate_of=duplicate_of[i],
                    models=models,
                    sealed=protected[i].sealed.model_dump(mode="json")
                    if protected[i].sealed
                    else None,
                    subjects=protected[i].subjects,
                    pii_types=protected[i].pii_types,
                    pii_action=protected[i].action,
                    verification=checks[i].status,
                    verdicts=_verdicts(checks[i]),
                    fact=facts[i],
                    auto_tags=[TagScore(tag=t, score=s) for t, s in auto_tags[i]],
                    links=[LinkPayload(memory_id=m, score=s) for m, s in links[i]],
                ),
            )
            for i, event in enumerate(events)
        ]

    def _novelty_and_duplicates(
        self, events: list[Source], vectors: np.ndarray, texts: list[str]
    ) -> tuple[np.ndarray, list[str | None]]:
        """Novelty against the tenant's pool and the earlier events of this batch; the id of
        an older memory of the same tenant, scope, topic and tags (`_merge_key`) at or above
        `duplicate_cosine` with the same words (`same_words`: an updated value is not a
        duplicate), never the memory itself nor one it supersedes."""
        novelty = np.ones(len(events), dtype=np.float32)
        duplicate_of: list[str | None] = [None] * len(events)
        by_tenant: dict[str, list[int]] = {}
        for i, event in enumerate(events):
            by_tenant.setdefault(event.tenant, []).append(i)
        for tenant, rows in by_tenant.items():
            pool_vectors, pool_ids, pool_scopes, pool_words = self.pool.get(tenant)
            batch = vectors[rows]
            ids = [str(events[i].event_id) for i in rows]
            scopes = [_merge_key(events[i]) for i in rows]
            words = [word_set(texts[i]) for i in rows]
            replaces = [
                {str(u) for u in getattr(events[i].payload, "supersedes", [])} for i in rows
            ]
            all_ids, all_scopes, all_words = (
                pool_ids + ids,
                pool_scopes + scopes,
                pool_words + words,
            )
            # against the pool and the batch apart: stacking them would copy the pool
            to_pool, to_batch = batch @ pool_vectors.T, batch @ batch.T
            n_pool = len(pool_ids)
            # an event seen before (a re-import, a re-read after a crash) is not its own
            # neighbour: it keeps the novelty, and so the value, it was first given
            where = {pid: k for k, pid in enumerate(pool_ids)} if n_pool else {}
            if where:
                for j, event_id in enumerate(ids):
                    k = where.get(event_id)
                    if k is not None:
                        to_pool[j, k] = -1.0
            for j, i in enumerate(rows):
                # the pool, then this batch's earlier events
                earlier = np.concatenate([to_pool[j], to_batch[j, :j]])
                if earlier.size == 0:
                    continue
                novelty[i] = float(np.clip(1.0 - earlier.max(), 0.0, 1.0))
                for best in np.argsort(-earlier, kind="stable"):
                    if earlier[best] < self.duplicate_cosine:
                        break
                    if all_scopes[best] != scopes[j] or not same_words(all_words[best], words[j]):
                        continue
                    target = all_ids[best]
                    if target == ids[j]:
                        continue  # itself, seen before (a re-import, a re-read): not a copy
                    if target in replaces[j]:
                        continue  # a new version is never a copy of the one it replaces
                    # point at the original, not at another duplicate of it
                    if best >= n_pool and duplicate_of[rows[best - n_pool]] is not None:
                        target = duplicate_of[rows[best - n_pool]]  # type: ignore[assignment]
                    duplicate_of[i] = target
                    break
            # duplicates merge into their original, which already stands for them
            keep = [
                j for j, i in enumerate(rows) if duplicate_of[i] is None and ids[j] not in where
            ]
            self.pool.add(
                tenant,
                batch[keep],
                [ids[j] for j in keep],
                [scopes[j] for j in keep],
                [words[j] for j in keep],
            )
        return novelty, duplicate_of


def about(record: Indexed, what: str) -> dict[str, Any]:
    """The envelope of an event derived from `record`: its tenant, author and scope, and an
    id fixed by (what, memory), so a re-processed memory publishes the same event again."""
    return {
        "event_id": derived_id(record.tenant, f"{what}:{record.event_id}", record.ts),
        "tenant": record.tenant,
        "agent_id": record.agent_id,
        "scope": record.scope,
        "parent_ids": [record.event_id],
    }


def links_event(record: Indexed) -> Links | None:
    """What `memstream.links` carries for a record with links or predicted tags."""
    p = record.payload
    if not p.links and not p.auto_tags:
        return None
    return Links(
        **about(record, "links"),
        payload=LinksPayload(memory_id=record.event_id, links=p.links, auto_tags=p.auto_tags),
    )


def verification_report(record: Indexed) -> VerificationReport | None:
    """What `memstream.verdicts` carries for a record the verifiers had a verdict on."""
    status = record.payload.verification
    if status is None:
        return None
    return VerificationReport(
        **about(record, "verification"),
        payload=VerificationPayload(
            memory_id=record.event_id, status=status, verdicts=list(record.payload.verdicts)
        ),
    )


WITHHELD = "(withheld: the memory holds personal data)"


def _place(into: list[Any], positions: list[int], found: list[Any]) -> None:
    """Each of `found` into `into` at its position (the annotations of a subset)."""
    for i, value in zip(positions, found, strict=True):
        into[i] = value


def _checked(original: str, stored: str) -> Verification:
    """The verdicts on the original text; where the privacy stage changed the text, the
    claims' wording is withheld from the record (it could quote a sealed value)."""
    check = verify_text(original)
    if stored == original or not check.verdicts:
        return check
    return Verification(tuple(replace(v, claim=WITHHELD) for v in check.verdicts))


def _verdicts(check: Verification) -> list[VerdictPayload]:
    return [VerdictPayload(**v.as_dict()) for v in check.verdicts]


def _fact_of(event: Source, protected: Protected) -> FactPayload | None:
    """The fact a memory names, or the one its stored text states; observations state none."""
    if event.kind != "memory":
        return None
    return getattr(event.payload, "fact", None) or extract_fact(protected.text)


def _merge_key(event: Source) -> str:
    """What two memories must share to be merged as duplicates, besides their words: the
    scope (who may read them), the topic and the tags (where and as what they were filed),
    so a fact filed twice under different labels keeps both."""
    payload = event.payload
    tags = ",".join(sorted(getattr(payload, "tags", [])))
    return f"{event.scope}\x00{getattr(payload, 'topic', None) or ''}\x00{tags}"
