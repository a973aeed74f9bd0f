"""The HTTP API's answers, as typed models: the server builds them (services/api/) and
the Python SDK parses them (sdk/http.py), so the two cannot drift apart."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field


class SearchResult(BaseModel):
    memory_id: UUID
    text: str
    score: float
    agent_id: str
    scope: str
    tags: list[str]
    valid_from: datetime | None = None
    valid_to: datetime | None = Field(default=None, description="None: still valid")
    verification: str | None = Field(
        default=None, description="verified or refuted by the verifiers; None: no claim checked"
    )
    kind: str = Field(default="memory", description="memory, or fact (knowledge mode)")
    provenance: list[UUID] = Field(
        default_factory=list, description="a fact's member memories, best first"
    )


class CachedResult(BaseModel):
    """A task's result from the semantic result cache."""

    result_id: str
    task: str
    result: str
    verification: str
    agent_id: str
    scope: str


class CacheLookup(BaseModel):
    """`hit` (with the result), `miss`, or `rejected`: a similar task named other values."""

    outcome: Literal["hit", "miss", "rejected"]
    result: CachedResult | None = None
    score: float | None = None
    reason: str | None = None


class SearchResults(BaseModel):
    results: list[SearchResult]


class MemoryView(BaseModel):
    """One memory as its reader may see it."""

    memory_id: UUID
    text: str
    agent_id: str
    scope: str
    topic: str | None
    tags: list[str]
    metadata: dict[str, Any]
    ts: datetime
    valid_from: datetime | None
    valid_to: datetime | None
    expires_at: datetime | None
    usefulness: float
    supersedes: list[UUID]
    auto_tags: list[str] = Field(default_factory=list, description="from the taxonomy")
    links: list[UUID] = Field(default_factory=list, description="related memories")


class MemoryPage(BaseModel):
    memories: list[MemoryView]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")


class MemoryHistory(BaseModel):
    memory_id: UUID
    versions: list[MemoryView] = Field(description="the supersession chain, oldest first")


class Deliveries(BaseModel):
    deliveries: list[dict[str, Any]]
    cursor: str = Field(description="poll again from here")


class SubscriptionView(BaseModel):
    subscription_id: str
    query: str | None
    min_score: float
    filters: dict[str, Any]
    max_per_minute: int
    expires_at: datetime | None
    include_own: bool
    created_at: datetime


class ModelVersion(BaseModel):
    """A published student policy (GET /v1/models/{name}): the ONNX model, its version and
    lineage, which experience it was distilled from."""

    name: str
    version: int
    versions: list[int] = Field(description="every published version, ascending")
    team: str
    observation_dim: int
    actions: int
    weights_sha256: str = Field(description="digest of the float32 weights")
    published_at: float
    lineage: dict[str, Any] = Field(
        description="topic, offsets (partition -> next offset covered), teachers, pairs, "
        "pairs_sha256, config, and rebuilt_from for a version a replay made"
    )
    input: str = Field(default="observation", description="ONNX input, float32 [N, d]")
    output: str = Field(default="probabilities", description="ONNX output, float32 [N, actions]")
    onnx_b64: str | None = Field(
        default=None, description="the ONNX model, base64 (left out with include_model=false)"
    )
