"""Conflicting facts: a memory that states another value for a subject's attribute.

After a batch is stored, each memory that states a fact (`StoredMemory.fact_key`) is laid
on the timeline of the memories with the same key: every earlier memory still valid at its
valid time with a different value ends there, and it ends where the first later memory
with a different value starts. The older stays stored, queryable as of its time
(`valid_at`); a `Conflict` event names both. Validity is only ever shortened (the earlier
of the old and the new end wins), so the result does not depend on the order memories
arrive in, and running it again changes nothing: a replay rebuilds the same timeline.
Supersession follows `may_supersede`, so a fact never hides a memory from its readers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from memstream.logging import get_logger
from memstream.schemas.events import Conflict, ConflictPayload, Indexed, derived_id
from memstream.store.base import Caller, MemoryStore, StoredMemory, may_supersede
from memstream.store.sink import writer_of

log = get_logger("memstream.conflicts")

MAX_VERSIONS = 1000
"""Most memories read per subject's attribute: a fact rewritten more often keeps working on
its newest thousand versions."""


@dataclass(frozen=True)
class _Version:
    memory: StoredMemory

    @property
    def start(self) -> datetime:
        return self.memory.valid_from or self.memory.ts

    @property
    def value(self) -> str:
        return (self.memory.fact or {}).get("value", "")


def _versions(store: MemoryStore, writer: Caller, key: str) -> list[_Version]:
    """The memories about one subject's attribute that the writer can see (the only ones
    `may_supersede` lets it close, or that may close it)."""
    found: list[StoredMemory] = []
    start = None
    while len(found) < MAX_VERSIONS:
        page, start = store.page(writer, 256, start, fact_key=key)
        found.extend(page)
        if start is None:
            break
    return [_Version(m) for m in found]


def _end(store: MemoryStore, tenant: str, memory: StoredMemory, at: datetime) -> bool:
    """Close `memory` at `at` unless it ends there or earlier already; True if it changed."""
    if memory.valid_to is not None and memory.valid_to <= at:
        return False
    return store.supersede(tenant, memory.memory_id, at)


def resolve_conflicts(store: MemoryStore, records: list[Indexed]) -> list[Conflict]:
    """Lay each stored record that states a fact on its key's timeline; the conflicts found
    (one per pair of different values that met), for `memstream.conflicts`."""
    conflicts: list[Conflict] = []
    for record in records:
        if record.payload.fact is None or record.payload.duplicate_of is not None:
            continue
        writer = writer_of(record)
        stored = store.get(writer, [record.event_id])
        if not stored or stored[0].fact_key is None:
            continue  # not in this store (erased, kept out)
        new = _Version(stored[0])
        versions = _versions(store, writer, stored[0].fact_key)
        later = sorted(
            (v for v in versions if v.start > new.start and v.value != new.value),
            key=lambda v: (v.start, str(v.memory.memory_id)),
        )
        if later and may_supersede(later[0].memory.agent_id, later[0].memory.scope, new.memory):
            _end(store, record.tenant, new.memory, later[0].start)
            conflicts.append(_conflict(record.tenant, new, later[0]))
        for old in versions:
            if old.memory.memory_id == new.memory.memory_id or old.value == new.value:
                continue
            if old.start >= new.start:
                continue
            if old.memory.valid_to is not None and old.memory.valid_to < new.start:
                continue  # ended before this one began: no conflict with it
            if not may_supersede(new.memory.agent_id, new.memory.scope, old.memory):
                log.info(
                    "conflicting fact left valid: the writer may not supersede it",
                    memory_id=str(new.memory.memory_id),
                    other=str(old.memory.memory_id),
                )
                continue
            _end(store, record.tenant, old.memory, new.start)
            conflicts.append(_conflict(record.tenant, old, new))
    return conflicts


def _conflict(tenant: str, old: _Version, new: _Version) -> Conflict:
    """The event for one pair; its id is fixed by the pair, so a replay or a re-read that
    finds the pair again publishes the same event (at least once, never two different)."""
    fact = new.memory.fact or {}
    pair = f"conflict:{old.memory.memory_id}:{new.memory.memory_id}"
    return Conflict(
        event_id=derived_id(tenant, pair, new.start),
        tenant=tenant,
        agent_id=new.memory.agent_id,
        scope=new.memory.scope,
        parent_ids=[old.memory.memory_id, new.memory.memory_id],
        payload=ConflictPayload(
            subject=fact.get("subject", ""),
            attribute=fact.get("attribute", ""),
            superseded_id=old.memory.memory_id,
            superseded_value=old.value,
            superseding_id=new.memory.memory_id,
            superseding_value=new.value,
            changed_at=new.start,
        ),
    )
