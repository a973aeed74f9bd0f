"""The sink stage in the worker: records into the store (with their conflicts and pooled
team state), records from `indexed`, erasures and deletions, expiry and index building."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Annotated
from uuid import UUID

import faust
from pydantic import Field, TypeAdapter, ValidationError

from memstream.privacy.keystore import KeyStore
from memstream.schemas.events import Deletion, Erasure, Indexed
from memstream.schemas.topics import CONFLICTS, ERASURES, POOLED
from memstream.store.conflicts import resolve_conflicts
from memstream.store.sink import call_retrying, write_isolated
from memstream.store.token_vectors import TokenVectorStore
from memstream.store.tombstones import Tombstones
from memstream.streams import stage_metrics
from memstream.streams.app.match import match
from memstream.streams.app.outcomes import SINK_STAGE, Outcome, _processor_error, log, loop_run
from memstream.streams.app.validate import reject
from memstream.streams.validate import InvalidEvent

if TYPE_CHECKING:
    from memstream.streams.app.wiring import Worker


def _erase(
    keystore: KeyStore,
    store: object,
    tenant: str,
    subject_id: str,
    token_store: TokenVectorStore | None = None,
) -> int:
    """Delete the subject's key, its memories, the record keys of those memories (so
    their raw copies in the archive go too) and their kept token vectors; returns how many
    memories were deleted."""
    keystore.erase(tenant, subject_id)
    ids = store.delete_subject(tenant, subject_id)  # type: ignore[attr-defined]
    keystore.erase_records(tenant, [str(i) for i in ids])
    if token_store is not None:
        token_store.delete_memories(ids)
    return len(ids)


removal_adapter: TypeAdapter[Erasure | Deletion] = TypeAdapter(
    Annotated[Erasure | Deletion, Field(discriminator="kind")]
)
"""What `memstream.erasures` carries: subject erasures and memory deletions."""


def _delete(
    tombstones: Tombstones,
    keystore: KeyStore,
    store: object,
    deletion: Deletion,
    token_store: TokenVectorStore | None = None,
) -> int:
    """Apply a deletion: tombstones first (so a memory still in the pipeline is not stored
    after it, and a replay leaves it out), then the store, the record keys of the archived
    raw copies and the kept token vectors; returns how many points were deleted."""
    ids = list(deletion.payload.memory_ids)
    tombstones.add(deletion.tenant, ids, deletion.payload.reason, deletion.event_id)
    deleted = store.delete(deletion.tenant, ids)  # type: ignore[attr-defined]
    keystore.erase_records(deletion.tenant, [str(i) for i in ids])
    if token_store is not None:
        token_store.delete_memories(ids)
    return int(deleted)


class _Reaper:
    """Publishes a deletion for each memory whose time to live has ended (search and
    deliveries already leave it out from that instant). Each id is asked for once a minute
    at most, until its deletion has been applied."""

    def __init__(self, store: object, every_s: float = 60.0) -> None:
        self.store = store
        self.every_s = every_s
        self.asked: dict[UUID, float] = {}

    def due(self, now: datetime, limit: int = 500) -> dict[str, list[UUID]]:
        """Expired memory ids to delete now, per tenant."""
        clock = time.monotonic()
        self.asked = {i: t for i, t in self.asked.items() if clock - t < self.every_s}
        out: dict[str, list[UUID]] = {}
        for tenant, memory_id in self.store.expired_ids(now, limit):  # type: ignore[attr-defined]
            if memory_id not in self.asked:
                self.asked[memory_id] = clock
                out.setdefault(tenant, []).append(memory_id)
        return out


class _Optimizer:
    """Builds the store's indexes every `every` new points, or once writes have paused for
    `idle_s` with some pending, in the model thread (Qdrant Edge's optimize() blocks
    searches and writes for its whole run: seconds at 20k points). Never on a timer while
    memories keep coming, where it would stall every search and push behind it; until then
    the new points are searched by brute force, which stays fast at that size."""

    def __init__(self, store: object, every: int = 20_000, idle_s: float = 5.0) -> None:
        self.store = store
        self.every = every
        self.idle_s = idle_s
        self.pending = 0
        self.last_write = time.monotonic()

    def maybe_optimize(self, written: int) -> None:
        """After a write: optimize if `every` points are pending."""
        self.pending += written
        if written:
            self.last_write = time.monotonic()
        if self.pending >= self.every:
            self._optimize()

    def maybe_optimize_idle(self) -> None:
        """From a timer: optimize pending points once writes have paused."""
        if self.pending and time.monotonic() - self.last_write >= self.idle_s:
            self._optimize()

    def _optimize(self) -> None:
        try:
            self.store.optimize()  # type: ignore[attr-defined]
        except Exception:  # searches stay correct (brute force) without the indexes
            log.exception("store optimize failed; will try again later")
        self.pending = 0


async def sink_and_match(w: Worker, results: list[Outcome]) -> None:
    """This process's share of the stored records: into the store (sink role; a record
    the store refuses becomes a `store_error` in `results`), then matched against the
    subscriptions (match role)."""
    loop = asyncio.get_running_loop()
    positions = [i for i, r in enumerate(results) if isinstance(r, Indexed)]
    if w.admission is not None and positions:
        # kept out of the pool: on the log still, but neither stored nor pushed
        admitted = [i for i in positions if w.admission.admits(results[i])]  # type: ignore[arg-type]
        if len(admitted) < len(positions):
            w.services.note_kept_out(len(positions) - len(admitted))
            positions = admitted
    if not positions:
        return
    if w.roles.sink:
        written = await _sink(w, loop, results, positions)
    else:
        written = [results[i] for i in positions]
    await match(w, written)  # type: ignore[arg-type]


async def _sink(
    w: Worker, loop: asyncio.AbstractEventLoop, results: list[Outcome], positions: list[int]
) -> list[Indexed]:
    executor, store, services = w.executor, w.store, w.services
    stored = [results[i] for i in positions]
    # while the store fails, this retries (with backoff) until it returns: the batch
    # is not acked meanwhile, so no offset is committed past an unwritten memory
    with stage_metrics.timed("sink", len(stored)):
        outcomes = await loop.run_in_executor(
            executor, partial(write_isolated, store, stored, status=w.store_status)
        )
    stage_metrics.count_outcomes("sink", outcomes, lambda e: None if e is None else "store_error")
    for i, error in zip(positions, outcomes, strict=True):
        if error is not None:
            results[i] = InvalidEvent(
                "store_error", f"{type(error).__name__}: {error}"[:2000], SINK_STAGE
            )
    written = [results[i] for i in positions if isinstance(results[i], Indexed)]
    await loop.run_in_executor(executor, w.optimizer.maybe_optimize, len(written))
    conflicts = await loop.run_in_executor(
        executor, partial(call_retrying, store, resolve_conflicts, store, written)
    )
    for conflict in conflicts:
        key = f"{conflict.tenant}/{conflict.payload.subject}"[:256].encode()
        await w.app.producer.send(CONFLICTS.name, key, conflict.to_json(), None, None, None)
    services.note_conflicts(len(conflicts))
    try:  # derived: a fault here must never hold up the store's batch
        pooled = await loop.run_in_executor(executor, services.team_pool.update, written)
    except Exception:
        log.exception("pooled team state not updated for a batch", size=len(written))
        pooled = []
    for state in pooled:
        key = f"{state.tenant}/{state.payload.team}".encode()
        await w.app.producer.send(POOLED.name, key, state.to_json(), None, None, None)
    return written  # type: ignore[return-value]


async def handle_indexed(w: Worker, messages: list[faust.types.Message]) -> None:
    """Records the model stage wrote to `indexed` elsewhere: stored and/or matched here;
    one that does not parse or that the store refuses is dead-lettered with its reason."""
    results: list[Outcome] = []
    for msg in messages:
        try:
            results.append(Indexed.model_validate_json(msg.value or b""))
        except (ValidationError, ValueError) as exc:
            results.append(InvalidEvent("invalid_fields", str(exc)[:2000], SINK_STAGE))
    await sink_and_match(w, results)
    for msg, result in zip(messages, results, strict=True):
        if isinstance(result, InvalidEvent):
            await reject(w, result, result.stage or SINK_STAGE, msg)


async def apply_removal(w: Worker, msg: faust.types.Message) -> None:
    """Right to be forgotten: delete the subject's key (its sealed values become noise
    everywhere, replays included) and its memories in the store; or delete memories."""
    executor, store, store_status = w.executor, w.store, w.store_status
    try:
        removal = removal_adapter.validate_json(msg.value or b"")
    except ValidationError as exc:
        await reject(w, InvalidEvent("invalid_fields", str(exc)[:2000]), "erasure", msg)
        return
    if isinstance(removal, Deletion):
        try:
            deleted = await loop_run(  # a store outage delays it (no dead letter)
                executor,
                partial(call_retrying, store, _delete, status=store_status),
                w.tombstones,
                w.keystore,
                store,
                removal,
                w.token_store,
            )
        except Exception as exc:
            await reject(w, _processor_error("deletion", exc), "deletion", msg)
            return
        log.info(
            "memories deleted",
            tenant=removal.tenant,
            reason=removal.payload.reason,
            requested=len(removal.payload.memory_ids),
            deleted=deleted,
        )
        return
    erasure = removal
    tenant, subject = erasure.tenant, erasure.payload.subject_id
    try:
        deleted = await loop_run(
            executor,
            partial(call_retrying, store, _erase, status=store_status),
            w.keystore,
            store,
            tenant,
            subject,
            w.token_store,
        )
    except Exception as exc:  # dead-lettered, so an operator can re-drive it
        await reject(w, _processor_error("erasure", exc), "erasure", msg)
        return
    log.info("subject erased", tenant=tenant, subject_id=subject, memories_deleted=deleted)


def attach_sink(w: Worker) -> None:
    """The sink role's erasure agent and its timers: idle index building, the store's
    point count, and expiry."""
    app, executor, query_executor, store = w.app, w.executor, w.query_executor, w.store

    @app.agent(app.topic(ERASURES.name, **w.raw), name="memstream.erasure")
    async def erase(stream: faust.StreamT) -> None:
        """Right to be forgotten and memory deletions (`apply_removal`)."""
        async for event in stream.events():
            await apply_removal(w, event.message)

    @app.timer(interval=1.0)
    async def optimize_when_idle() -> None:
        await loop_run(executor, w.optimizer.maybe_optimize_idle)

    reaper = _Reaper(store)

    @app.timer(interval=30.0)
    async def count_store_points() -> None:
        try:
            stage_metrics.STORE_POINTS.set(await loop_run(query_executor, store.count))
        except Exception:  # a failing store is reported by /healthz and its own metrics
            pass

    @app.timer(interval=1.0)
    async def reap_expired() -> None:
        """Time to live: a deletion event on the log for each expired memory."""
        try:
            due = await loop_run(query_executor, reaper.due, datetime.now(UTC))
            for tenant, ids in due.items():
                await w.services.delete(tenant, "memstream-ttl", ids, "expired")
        except Exception:  # the next tick tries again; search already hides them
            log.exception("expiry sweep failed")
