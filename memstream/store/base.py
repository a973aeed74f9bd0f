"""The memory store's interface: one contract, two backends (Qdrant Edge, Qdrant server).

A point is one memory; its id is the memory id (the source event's UUIDv7), so writing the
same memory twice rewrites the same point (idempotent). Access is decided here, from the
caller's identity, never from a request: see `access_filter` below, written once for both
backends.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

import numpy as np


@dataclass(frozen=True)
class Caller:
    """Who asks: the identity a token carries. Tenant isolation and scopes follow from it.

    Visible to a caller: memories of its own tenant whose scope is `tenant` or `public`,
    `team:<x>` for x in its teams, and `private` ones it wrote itself. Never another
    tenant's memories (`public` widens visibility inside the tenant to agents outside every
    team; sharing beyond the tenant is an explicit export, not a search).
    """

    tenant: str
    agent_id: str
    teams: frozenset[str] = frozenset()
    clearance: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset({"read", "write", "subscribe"})
    """What the token may do (`read`, `write`, `subscribe`, `admin`); never widens what it
    may see, which the identity above decides."""

    def may_see(self, tenant: str, scope: str, agent_id: str) -> bool:
        """The rule in Python, for checks and tests; backends express it as a filter."""
        if tenant != self.tenant:
            return False
        if scope in ("tenant", "public"):
            return True
        if scope == "private":
            return agent_id == self.agent_id
        if scope.startswith("team:"):
            return scope[5:] in self.teams
        return False


def may_supersede(writer: str, new_scope: str, old: StoredMemory) -> bool:
    """Whether a memory by `writer` in `new_scope` may close `old`'s validity (same tenant
    assumed): the writer must be able to see `old`, proven by the event alone (the author of
    a private memory; a member of its team, shown by writing into that team, which the API
    allows members only), and everyone who could see `old` must be able to see its
    replacement, so a supersession never hides a memory from its readers."""
    if old.scope == "private":
        return old.agent_id == writer  # its only reader sees its own memory in any scope
    if old.scope.startswith("team:"):
        return new_scope == old.scope
    return old.scope in ("tenant", "public") and new_scope in ("tenant", "public")


@dataclass(frozen=True)
class Sparse:
    """A sparse lexical vector (BM25 term weights for documents, 1.0 per term for queries)."""

    indices: list[int]
    values: list[float]


@dataclass
class StoredMemory:
    """What one point holds (its payload), and what a search returns."""

    memory_id: UUID
    tenant: str
    agent_id: str
    scope: str
    text: str
    ts: datetime  # when the source event was created
    recorded_at: datetime  # when the store learned of it (transaction time)
    source_kind: str = "memory"
    topic: str | None = None
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    valid_from: datetime | None = None  # valid time; None = from ts
    valid_to: datetime | None = None  # None = still valid
    usefulness: float = 0.5
    vector_code: bytes = b""  # the compressed embedding (codec below)
    codec: str = ""
    models: dict[str, str] = field(default_factory=dict)
    provenance: list[dict[str, str]] = field(default_factory=list)  # merged duplicates
    sealed: dict[str, Any] | None = None  # personal values, encrypted per subject (shred.py)
    subjects: list[str] = field(default_factory=list)  # subject ids of the sealed values
    supersedes: list[str] = field(default_factory=list)  # ids of the memories it replaced
    expires_at: datetime | None = None  # its time to live ends here; None = never
    verification: str | None = None  # verified / refuted by the verifiers; None = unchecked
    fact: dict[str, str] | None = None  # subject, attribute, value it states
    fact_key: str | None = None  # tenant + subject + attribute, hashed (models.facts)
    auto_tags: list[str] = field(default_factory=list)  # predicted from the taxonomy
    links: list[dict[str, Any]] = field(default_factory=list)  # related memories: id, score

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


@dataclass
class Hit:
    """One search result. A score is None only when that query was not run (no `dense`, or
    no `sparse` / an empty one); a memory found by one query gets the other query's score
    too (0.0 for a sparse vector sharing no term with the query)."""

    memory: StoredMemory
    dense_score: float | None = None
    sparse_score: float | None = None


# --- the payload format, shared by both backends ------------------------------------------

DENSE = "dense"
"""Name of the dense vector (cosine, 384 dims)."""
SPARSE = "bm25"
"""Name of the sparse vector (BM25 term weights, IDF applied by the engine)."""

KEYWORD_FIELDS = (
    "tenant",
    "agent_id",
    "scope",
    "topic",
    "tags",
    "memory_id",
    "subjects",
    "supersedes",
    "fact_key",
    "auto_tags",
)
DATETIME_FIELDS = ("ts", "valid_from", "valid_to", "expires_at")
"""Indexed payload fields; datetimes are ISO 8601 strings (the engine parses them)."""


def payload_indexes(tenant: Any, keyword: Any, datetime: Any) -> list[tuple[str, Any]]:
    """The payload indexes of a new shard or collection, in a backend's schema types: the
    tenant field (a tenant index), the other keyword fields, the datetime fields."""
    indexes: list[tuple[str, Any]] = [("tenant", tenant)]
    indexes += [(name, keyword) for name in KEYWORD_FIELDS if name != "tenant"]
    indexes += [(name, datetime) for name in DATETIME_FIELDS]
    return indexes


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _from_iso(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def memory_to_payload(memory: StoredMemory) -> dict[str, Any]:
    """A point's payload: every field, JSON-able (datetimes ISO 8601, `vector_code` base64)."""
    return {
        "memory_id": str(memory.memory_id),
        "tenant": memory.tenant,
        "agent_id": memory.agent_id,
        "scope": memory.scope,
        "text": memory.text,
        "ts": memory.ts.isoformat(),
        "recorded_at": memory.recorded_at.isoformat(),
        "source_kind": memory.source_kind,
        "topic": memory.topic,
        "tags": list(memory.tags),
        "metadata": dict(memory.metadata),
        "valid_from": _iso(memory.valid_from),
        "valid_to": _iso(memory.valid_to),
        "usefulness": float(memory.usefulness),
        "vector_code": base64.b64encode(memory.vector_code).decode("ascii"),
        "codec": memory.codec,
        "models": dict(memory.models),
        "provenance": [dict(entry) for entry in memory.provenance],
        "sealed": memory.sealed,
        "subjects": list(memory.subjects),
        "supersedes": list(memory.supersedes),
        "expires_at": _iso(memory.expires_at),
        "verification": memory.verification,
        "fact": memory.fact,
        "fact_key": memory.fact_key,
        "auto_tags": list(memory.auto_tags),
        "links": [dict(link) for link in memory.links],
    }


def memory_from_payload(payload: dict[str, Any]) -> StoredMemory:
    """The inverse of `memory_to_payload`."""
    return StoredMemory(
        memory_id=UUID(payload["memory_id"]),
        tenant=payload["tenant"],
        agent_id=payload["agent_id"],
        scope=payload["scope"],
        text=payload["text"],
        ts=datetime.fromisoformat(payload["ts"]),
        recorded_at=datetime.fromisoformat(payload["recorded_at"]),
        source_kind=payload.get("source_kind", "memory"),
        topic=payload.get("topic"),
        tags=list(payload.get("tags") or []),
        metadata=dict(payload.get("metadata") or {}),
        valid_from=_from_iso(payload.get("valid_from")),
        valid_to=_from_iso(payload.get("valid_to")),
        usefulness=float(payload.get("usefulness", 0.5)),
        vector_code=base64.b64decode(payload.get("vector_code") or ""),
        codec=payload.get("codec", ""),
        models=dict(payload.get("models") or {}),
        provenance=[dict(entry) for entry in payload.get("provenance") or []],
        sealed=payload.get("sealed"),
        subjects=list(payload.get("subjects") or []),
        supersedes=list(payload.get("supersedes") or []),
        expires_at=_from_iso(payload.get("expires_at")),
        verification=payload.get("verification"),
        fact=payload.get("fact"),
        fact_key=payload.get("fact_key"),
        auto_tags=list(payload.get("auto_tags") or []),
        links=[dict(link) for link in payload.get("links") or []],
    )


# --- the filters both backends share -----------------------------------------------------------


class FilterDialect(Protocol):
    """How one backend spells filter conditions; the rules below are written once over it,
    so the access rule cannot drift between Qdrant Edge and the Qdrant server."""

    def match(self, key: str, value: str) -> Any: ...

    def any(self, key: str, values: Iterable[str]) -> Any: ...

    def all(self, conditions: list[Any]) -> Any: ...

    def either(self, conditions: list[Any]) -> Any: ...

    def before(self, key: str, iso: str) -> Any:
        """key <= iso (datetime)."""

    def after(self, key: str, iso: str) -> Any:
        """key > iso (datetime)."""

    def empty(self, key: str) -> Any: ...


def access_filter(d: FilterDialect, caller: Caller) -> Any:
    """What `caller.may_see` allows, as a filter: built from the caller's identity only."""
    visible: list[Any] = [
        d.any("scope", ["tenant", "public"]),
        d.all([d.match("scope", "private"), d.match("agent_id", caller.agent_id)]),
    ]
    if caller.teams:
        visible.append(d.any("scope", (f"team:{team}" for team in caller.teams)))
    return d.all([d.match("tenant", caller.tenant), d.either(visible)])


def valid_filter(d: FilterDialect, at: datetime) -> Any:
    """valid_from (ts when unset) <= at, and valid_to unset or > at."""
    t = at.isoformat()
    started = d.either(
        [d.before("valid_from", t), d.all([d.empty("valid_from"), d.before("ts", t)])]
    )
    not_ended = d.either([d.empty("valid_to"), d.after("valid_to", t)])
    return d.all([started, not_ended])


def unexpired_filter(d: FilterDialect, now: datetime | None = None) -> Any:
    """No time to live, or one that ends after `now` (default: this instant)."""
    t = (now or datetime.now(UTC)).isoformat()
    return d.either([d.empty("expires_at"), d.after("expires_at", t)])


def readable_filter(d: FilterDialect, caller: Caller) -> Any:
    """What a read (get, list, search) may return: visible to `caller` and not expired."""
    return d.all([access_filter(d, caller), unexpired_filter(d)])


def list_filter(
    d: FilterDialect,
    caller: Caller,
    topic: str | None = None,
    agent: str | None = None,
    since: datetime | None = None,
    tags: list[str] | None = None,
    supersedes: str | None = None,
    fact_key: str | None = None,
) -> Any:
    """`readable_filter` narrowed to a topic, an author, a creation time, tags, the
    memories that replaced a given one (`supersedes`: its id) and the memories about one
    subject's attribute (`fact_key`)."""
    must: list[Any] = [readable_filter(d, caller)]
    if topic is not None:
        must.append(d.match("topic", topic))
    if agent is not None:
        must.append(d.match("agent_id", agent))
    if since is not None:
        must.append(d.after("ts", since.isoformat()))
    if tags:
        must.append(d.any("tags", tags))
    if supersedes is not None:
        must.append(d.match("supersedes", supersedes))
    if fact_key is not None:
        must.append(d.match("fact_key", fact_key))
    return d.all(must)


def search_filter(
    d: FilterDialect,
    caller: Caller,
    valid_at: datetime | None = None,
    topics: list[str] | None = None,
    tags: list[str] | None = None,
    agents: list[str] | None = None,
) -> Any:
    """The access filter (expired memories left out) plus the optional validity time and
    topic, tag and agent filters (an empty list does not restrict)."""
    must: list[Any] = [readable_filter(d, caller)]
    if valid_at is not None:
        must.append(valid_filter(d, valid_at))
    if topics:
        must.append(d.any("topic", topics))
    if tags:
        must.append(d.any("tags", tags))
    if agents:
        must.append(d.any("agent_id", agents))
    return d.all(must)


class MemoryStore(Protocol):
    """Both backends implement this; `memstream.store.open_store` picks one."""

    def upsert(self, memories: list[StoredMemory], dense: np.ndarray, sparse: list[Sparse]) -> None:
        """Write (or rewrite) points; `dense` is (n, 384) unit float32."""

    def add_provenance(self, tenant: str, original: UUID, entry: dict[str, str]) -> bool:
        """Record a merged duplicate on the original point; False if it is not there."""

    def supersede(self, tenant: str, memory_id: UUID, valid_to: datetime) -> bool:
        """Close an older memory's validity without deleting it (bi-temporal)."""

    def search(
        self,
        caller: Caller,
        *,
        dense: np.ndarray | None = None,
        sparse: Sparse | None = None,
        limit: int = 50,
        valid_at: datetime | None = None,
        topics: list[str] | None = None,
        tags: list[str] | None = None,
        agents: list[str] | None = None,
    ) -> list[Hit]:
        """Candidates visible to `caller` by dense and/or sparse similarity (each list up to
        `limit`, merged by id, both scores kept). Order: the dense hits by dense score, then
        the sparse-only ones by sparse score; rank fusion is the caller's business.

        `valid_at` keeps memories valid then: valid_from (or ts when unset) <= t and valid_to
        unset or > t. `topics`, `tags`, `agents` keep memories matching any listed value;
        None or an empty list does not restrict. IDF statistics of the sparse query are
        taken over the caller's tenant only, so other tenants' texts do not sway scores."""

    def get(self, caller: Caller, ids: list[UUID]) -> list[StoredMemory]:
        """The memories among `ids` the caller may see, in the order asked; others omitted."""

    def page(
        self, caller: Caller, limit: int, start: UUID | None = None, **narrow: Any
    ) -> tuple[list[StoredMemory], UUID | None]:
        """Up to `limit` memories `caller` may read, narrowed as `list_filter` allows
        (topic, agent, since, tags), in id order (UUIDv7, so creation order) from `start`;
        returns them and the id the next page starts at (None: no more)."""
        ...

    def expired_ids(self, now: datetime, limit: int) -> list[tuple[str, UUID]]:
        """(tenant, id) of memories whose time to live has ended, any tenant."""
        ...

    def delete(self, tenant: str, ids: list[UUID]) -> int:
        """Remove the tenant's points among `ids`; returns how many there were."""

    def count(self, tenant: str | None = None) -> int:
        """Exact number of points, of one tenant or all."""

    def optimize(self) -> None:
        """Build indexes (blocking); call off the hot path."""

    def close(self) -> None: ...
