"""The memory store on both backends: Qdrant Edge (in-process) and qdrant-client local mode.

The property tests build one corpus per module (a few hundred memories over 5 tenants,
4 teams, 10 agents, every scope, validity windows, topics and tags) and check every search
against a Python oracle built on `Caller.may_see`.
"""

from __future__ import annotations

import os
import random
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from uuid import UUID, uuid4

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qdrant_client import QdrantClient

from memstream.models.compression import CODEC_NAME, encode_vector
from memstream.store import (
    Caller,
    CollectionSet,
    EdgeStore,
    MemoryStore,
    QdrantServerStore,
    Sparse,
    StoredMemory,
    open_store,
)
from memstream.store.collections import ALIAS_FILE
from memstream.store.lexical import doc_sparse, query_sparse
from memstream.store.live import LiveStore

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def unit(rng: np.random.Generator, n: int = 1) -> np.ndarray:
    v = rng.standard_normal((n, 384)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def memory(**fields: object) -> StoredMemory:
    base: dict[str, object] = {
        "memory_id": uuid4(),
        "tenant": "acme",
        "agent_id": "agent-1",
        "scope": "tenant",
        "text": "a memory",
        "ts": T0,
        "recorded_at": T0 + timedelta(seconds=1),
    }
    base.update(fields)
    return StoredMemory(**base)  # type: ignore[arg-type]


def upsert_texts(store: MemoryStore, memories: list[StoredMemory], dense: np.ndarray) -> None:
    store.upsert(memories, dense, [doc_sparse(m.text) for m in memories])


@pytest.fixture(scope="module")
def qdrant_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Qdrant server when a `qdrant` binary is on PATH (the server path at scale)."""
    import shutil
    import subprocess

    from memstream.broker.base import free_port, wait_for_port

    binary = shutil.which("qdrant")
    if binary is None:
        pytest.skip(
            "no `qdrant` binary on PATH (none is installable from the package registries "
            "here); the server code path runs on qdrant-client's local mode instead"
        )
    port = free_port()
    storage = tmp_path_factory.mktemp("qdrant")
    env = {
        **os.environ,
        "QDRANT__SERVICE__HTTP_PORT": str(port),
        "QDRANT__SERVICE__GRPC_PORT": str(free_port()),
        "QDRANT__STORAGE__STORAGE_PATH": str(storage / "storage"),
        "QDRANT__STORAGE__SNAPSHOTS_PATH": str(storage / "snapshots"),
    }
    proc = subprocess.Popen([binary], env=env, cwd=storage, stdout=subprocess.DEVNULL)
    try:
        assert wait_for_port("127.0.0.1", port, 60), "qdrant did not open its port"
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(params=["edge", "server", "qdrant-binary"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MemoryStore]:
    if request.param == "edge":
        s: MemoryStore = EdgeStore(tmp_path / "shard")
    elif request.param == "server":
        s = QdrantServerStore(QdrantClient(":memory:"), close_client=True)
    else:
        url = request.getfixturevalue("qdrant_server")
        collection = f"t{uuid4().hex[:8]}"
        s = QdrantServerStore(
            QdrantClient(url=url), collection, close_client=True, shards=2, replicas=1
        )
    yield s
    s.close()


@pytest.fixture(scope="module")
def embedder():  # type: ignore[no-untyped-def]
    from memstream.models.static import StaticEmbedder

    return StaticEmbedder()


# --- basics, on both backends -------------------------------------------------------------


def test_round_trip_and_idempotent_upsert(store: MemoryStore) -> None:
    rng = np.random.default_rng(1)
    vector = unit(rng)
    original = memory(
        scope="team:infra",
        text="Deploys on Fridays need two approvals — ünïcode too",
        ts=datetime(2025, 3, 4, 5, 6, 7, 891234, tzinfo=UTC),
        recorded_at=datetime(2025, 3, 4, 7, 6, 7, 5, tzinfo=timezone(timedelta(hours=2))),
        source_kind="observation",
        topic="ops",
        tags=["deploy", "policy"],
        metadata={"n": 3, "x": 0.25, "nested": {"list": [1, "two", None, True]}},
        valid_from=datetime(2025, 3, 1, tzinfo=UTC),
        valid_to=datetime(2026, 1, 1, tzinfo=UTC),
        usefulness=0.8125,
        vector_code=encode_vector(vector[0]),
        codec=CODEC_NAME,
        models={"embedding": "minilm@1", "valuation": "v3"},
        provenance=[{"memory_id": str(uuid4()), "agent_id": "agent-9"}],
    )
    caller = Caller("acme", "agent-1", frozenset({"infra"}))
    upsert_texts(store, [original], vector)
    assert store.get(caller, [original.memory_id]) == [original]
    assert store.count() == 1 and store.count("acme") == 1 and store.count("other") == 0

    rewritten = replace(original, text="Deploys on Fridays need three approvals")
    upsert_texts(store, [rewritten], vector)
    assert store.count() == 1
    assert store.get(caller, [original.memory_id]) == [rewritten]

    minimal = memory()  # defaults: no topic, empty lists, no validity, no code
    upsert_texts(store, [minimal], unit(rng))
    assert store.get(caller, [minimal.memory_id, uuid4(), original.memory_id]) == [
        minimal,
        rewritten,
    ]
    assert store.count() == 2


def test_get_applies_the_access_rule(store: MemoryStore) -> None:
    rng = np.random.default_rng(2)
    mine = memory(scope="private", agent_id="me")
    theirs = memory(scope="private", agent_id="them")
    team = memory(scope="team:red")
    other_tenant = memory(tenant="globex", scope="public")
    items = [mine, theirs, team, other_tenant]
    upsert_texts(store, items, unit(rng, len(items)))
    ids = [m.memory_id for m in items]
    assert store.get(Caller("acme", "me"), ids) == [mine]
    assert store.get(Caller("acme", "them", frozenset({"red"})), ids) == [theirs, team]
    assert store.get(Caller("globex", "me"), ids) == [other_tenant]
    assert store.get(Caller("acme", "me"), []) == []


def test_hybrid_search_finds_rare_words_and_meanings(store: MemoryStore, embedder) -> None:  # type: ignore[no-untyped-def]
    texts = [
        "The payments service times out when the database connection pool is exhausted",
        "Our cat prefers sleeping on the warm laptop keyboard in the afternoon",
        "Use the zxqvortex flag to enable verbose tracing in the ingest worker",
        "The quarterly budget review moved to Thursday at ten",
        "Bananas ripen faster when stored next to apples",
        "The CI pipeline caches Python wheels between runs to save minutes",
    ]
    memories = [memory(text=t) for t in texts]
    upsert_texts(store, memories, embedder.embed(texts))
    caller = Caller("acme", "agent-1")

    rare = store.search(caller, sparse=query_sparse("zxqvortex"), limit=3)
    assert [h.memory.text for h in rare] == [texts[2]]
    assert rare[0].sparse_score is not None and rare[0].sparse_score > 0
    assert rare[0].dense_score is None  # no dense query was run

    meaning = "my kitten likes to nap on the computer"
    hits = store.search(caller, dense=embedder.embed([meaning])[0], limit=1)
    assert [h.memory.text for h in hits] == [texts[1]]

    both = store.search(
        caller,
        dense=embedder.embed([meaning])[0],
        sparse=query_sparse("zxqvortex tracing"),
        limit=1,
    )
    assert {h.memory.text for h in both} == {texts[1], texts[2]}
    for hit in both:  # each found by one query, scored by both
        assert hit.dense_score is not None and hit.sparse_score is not None
    by_text = {h.memory.text: h for h in both}
    assert by_text[texts[1]].sparse_score == 0.0
    assert by_text[texts[2]].sparse_score > 0  # type: ignore[operator]
    assert by_text[texts[1]].dense_score > by_text[texts[2]].dense_score  # type: ignore[operator]

    # another tenant's rare word never reaches this caller
    assert store.search(Caller("globex", "agent-1"), sparse=query_sparse("zxqvortex")) == []


def test_supersede_and_valid_at(store: MemoryStore) -> None:
    rng = np.random.default_rng(3)
    old = memory(text="The office is on floor 3", ts=T0)
    new = memory(text="The office moved to floor 5", ts=T0 + timedelta(days=10))
    later = memory(text="From March the office is remote", valid_from=T0 + timedelta(days=60))
    upsert_texts(store, [old, new, later], unit(rng, 3))
    caller = Caller("acme", "agent-1")
    q = unit(rng)[0]

    def valid(at: datetime) -> set[UUID]:
        return {h.memory.memory_id for h in store.search(caller, dense=q, valid_at=at)}

    assert valid(T0 - timedelta(days=1)) == set()  # before ts: not yet valid
    assert valid(T0 + timedelta(days=20)) == {old.memory_id, new.memory_id}
    assert store.supersede("acme", old.memory_id, new.ts)
    assert not store.supersede("globex", old.memory_id, new.ts)  # another tenant's id
    assert not store.supersede("acme", uuid4(), new.ts)
    assert valid(T0 + timedelta(days=5)) == {old.memory_id}
    assert valid(new.ts) == {new.memory_id}  # valid_to is exclusive
    assert valid(T0 + timedelta(days=61)) == {new.memory_id, later.memory_id}
    # without valid_at, nothing is hidden: supersede closes validity, it does not delete
    assert len(store.search(caller, dense=q)) == 3
    (closed,) = store.get(caller, [old.memory_id])
    assert closed.valid_to == new.ts


def test_add_provenance(store: MemoryStore) -> None:
    original = memory()
    upsert_texts(store, [original], unit(np.random.default_rng(4)))
    entry = {"memory_id": str(uuid4()), "agent_id": "agent-2", "ts": "2025-01-02T00:00:00+00:00"}
    assert store.add_provenance("acme", original.memory_id, entry)
    assert store.add_provenance("acme", original.memory_id, entry)  # idempotent
    second = {"memory_id": str(uuid4()), "agent_id": "agent-3"}
    assert store.add_provenance("acme", original.memory_id, second)
    assert not store.add_provenance("globex", original.memory_id, entry)
    assert not store.add_provenance("acme", uuid4(), entry)
    (stored,) = store.get(Caller("acme", "x"), [original.memory_id])
    assert stored.provenance == [entry, second]
    assert stored.text == original.text


def test_search_filters_topics_tags_agents(store: MemoryStore) -> None:
    rng = np.random.default_rng(5)
    a = memory(topic="ops", tags=["k8s", "incident"], agent_id="a1")
    b = memory(topic="sales", tags=["crm"], agent_id="a2")
    c = memory(topic=None, tags=[], agent_id="a1")
    upsert_texts(store, [a, b, c], unit(rng, 3))
    caller, q = Caller("acme", "a1"), unit(rng)[0]

    def ids(**kw: object) -> set[UUID]:
        return {h.memory.memory_id for h in store.search(caller, dense=q, **kw)}  # type: ignore[arg-type]

    assert ids(topics=["ops"]) == {a.memory_id}
    assert ids(topics=["ops", "sales"]) == {a.memory_id, b.memory_id}
    assert ids(tags=["incident", "crm"]) == {a.memory_id, b.memory_id}
    assert ids(agents=["a1"]) == {a.memory_id, c.memory_id}
    assert ids(topics=[], tags=[], agents=[]) == {a.memory_id, b.memory_id, c.memory_id}
    assert ids(topics=["ops"], agents=["a2"]) == set()
    assert store.search(caller) == [] and store.search(caller, dense=q, limit=0) == []


def test_delete(store: MemoryStore) -> None:
    items = [memory(), memory(), memory(tenant="globex")]
    upsert_texts(store, items, unit(np.random.default_rng(6), 3))
    ids = [m.memory_id for m in items]
    assert store.delete("globex", ids[:2]) == 0  # not its memories
    assert store.delete("acme", [*ids, uuid4()]) == 2
    assert store.delete("acme", ids) == 0
    assert store.delete("acme", []) == 0
    assert store.count() == 1 and store.count("globex") == 1
    assert store.get(Caller("acme", "agent-1"), ids) == []


# --- versions -----------------------------------------------------------------------------


def test_collection_set_create_swap_live(tmp_path: Path) -> None:
    sets = CollectionSet(tmp_path / "store")
    assert sets.live_version() is None and sets.versions() == []
    with pytest.raises(FileNotFoundError):
        sets.open_live()
    v1 = sets.create_version()
    assert v1 == 1 and sets.path(1).is_dir() and sets.live_version() is None
    sets.swap(v1)
    assert sets.live_version() == 1
    assert (tmp_path / "store" / ALIAS_FILE).read_text().strip() == "memories_v1"
    first = memory()
    with sets.open_live() as live:
        upsert_texts(live, [first], unit(np.random.default_rng(7)))

    v2 = sets.create_version()  # a replay builds v2 while v1 serves
    assert v2 == 2 and sets.live_version() == 1
    with sets.open(v2) as building:
        assert building.count() == 0
        upsert_texts(building, [first, memory()], unit(np.random.default_rng(8), 2))
    sets.swap(v2)
    with sets.open_live() as live:
        assert live.count() == 2 and live.path == sets.path(2)
    assert not list((tmp_path / "store").glob(".alias-*"))  # no temp files left
    with pytest.raises(FileNotFoundError):
        sets.swap(9)
    with pytest.raises(ValueError):
        sets.drop(2)
    sets.drop(1)
    assert sets.versions() == [2] and sets.create_version() == 3


def test_open_store_paths_and_memory(tmp_path: Path) -> None:
    path = tmp_path / "edge"
    with open_store(str(path)) as first:  # type: ignore[attr-defined]
        assert isinstance(first, LiveStore) and first.store.path == path / "memories_v1"
        upsert_texts(first, [memory()], unit(np.random.default_rng(9)))
    with open_store(str(path)) as again:  # type: ignore[attr-defined]
        assert again.count() == 1
    assert CollectionSet(path).live_version() == 1
    local = open_store(":memory:")
    assert isinstance(local, QdrantServerStore) and local.count() == 0
    local.close()


def test_edge_store_refuses_another_dimension(tmp_path: Path) -> None:
    EdgeStore(tmp_path / "s").close()
    with pytest.raises(Exception, match="384"):
        EdgeStore(tmp_path / "s", dim=128)


def test_server_versions_behind_an_alias() -> None:
    client = QdrantClient(":memory:")
    store = QdrantServerStore(client)
    assert store.live_version() == 1 and store.versions() == [1]
    upsert_texts(store, [memory()], unit(np.random.default_rng(10)))
    v2 = store.create_version()
    assert v2 == 2 and store.live_version() == 1
    building = store.at(v2)
    upsert_texts(building, [memory(), memory()], unit(np.random.default_rng(11), 2))
    assert store.count() == 1  # the alias still serves v1
    store.swap(v2)
    assert store.live_version() == 2 and store.count() == 2  # followed at once
    # a second store on the same alias finds it and creates nothing
    assert QdrantServerStore(client).versions() == [1, 2]
    client.close()


# --- the access rule, property-tested against a Python oracle ------------------------------

TENANTS = [f"tenant-{i}" for i in range(5)]
TEAMS = [f"team{i}" for i in range(4)]
AGENTS = [f"agent-{i}" for i in range(10)]
SCOPES = ["private", "tenant", "public", *(f"team:{t}" for t in TEAMS)]
TOPICS = ["ops", "sales", "research"]
TAGS = ["red", "green", "blue", "cyan"]
VOCAB = [
    "kafka", "qdrant", "deploy", "incident", "budget", "invoice", "latency", "cache",
    "tenant", "schema", "replay", "vector", "token", "policy", "backup", "cluster",
    "router", "ledger", "sensor", "window", "garden", "harbor", "pencil", "rocket",
    "violin", "tundra", "canyon", "meadow", "falcon", "glacier",
]  # fmt: skip
CORPUS_SIZE = 400


@dataclass
class Corpus:
    memories: list[StoredMemory]
    dense: np.ndarray
    sparse: list[Sparse]

    def allowed(
        self,
        caller: Caller,
        valid_at: datetime | None,
        topics: list[str] | None,
        tags: list[str] | None,
        agents: list[str] | None,
    ) -> set[UUID]:
        out = set()
        for m in self.memories:
            if not caller.may_see(m.tenant, m.scope, m.agent_id):
                continue
            if valid_at is not None:
                start = m.valid_from or m.ts
                if start > valid_at or (m.valid_to is not None and m.valid_to <= valid_at):
                    continue
            if topics and m.topic not in topics:
                continue
            if tags and not set(m.tags) & set(tags):
                continue
            if agents and m.agent_id not in agents:
                continue
            out.add(m.memory_id)
        return out

    def lexical(self, query: Sparse) -> set[UUID]:
        terms = set(query.indices)
        return {
            m.memory_id
            for m, s in zip(self.memories, self.sparse, strict=True)
            if terms & set(s.indices)
        }


def make_corpus(seed: int = 42) -> Corpus:
    rnd = random.Random(seed)
    memories = []
    for i in range(CORPUS_SIZE):
        ts = T0 + timedelta(hours=rnd.randrange(0, 24 * 60))
        valid_from = rnd.choice([None, None, ts + timedelta(hours=rnd.randrange(-48, 240))])
        valid_to = rnd.choice([None, None, ts + timedelta(hours=rnd.randrange(1, 24 * 30))])
        memories.append(
            memory(
                memory_id=UUID(int=rnd.getrandbits(128), version=4),
                tenant=TENANTS[i % len(TENANTS)] if i < 300 else rnd.choice(TENANTS[:2]),
                agent_id=rnd.choice(AGENTS),
                scope=rnd.choice(SCOPES),
                text=" ".join(rnd.choices(VOCAB, k=rnd.randrange(3, 9))),
                ts=ts,
                topic=rnd.choice([None, *TOPICS]),
                tags=rnd.sample(TAGS, rnd.randrange(0, 3)),
                valid_from=valid_from,
                valid_to=valid_to,
            )
        )
    dense = unit(np.random.default_rng(seed), CORPUS_SIZE)
    return Corpus(memories, dense, [doc_sparse(m.text) for m in memories])


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return make_corpus()


@pytest.fixture(scope="module")
def edge_corpus(corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeStore]:
    store = EdgeStore(tmp_path_factory.mktemp("corpus") / "shard")
    store.upsert(corpus.memories, corpus.dense, corpus.sparse)
    yield store
    store.close()


@pytest.fixture(scope="module")
def server_corpus(corpus: Corpus) -> Iterator[QdrantServerStore]:
    store = QdrantServerStore(QdrantClient(":memory:"), close_client=True)
    store.upsert(corpus.memories, corpus.dense, corpus.sparse)
    yield store
    store.close()


@st.composite
def queries(draw: st.DrawFn) -> dict[str, object]:
    caller = Caller(
        tenant=draw(st.sampled_from([*TENANTS, *TENANTS, "tenant-none"])),
        agent_id=draw(st.sampled_from(AGENTS)),
        teams=draw(st.frozensets(st.sampled_from(TEAMS))),
    )
    use_dense, use_sparse = draw(st.sampled_from([(True, False), (False, True), (True, True)]))
    words = draw(st.lists(st.sampled_from([*VOCAB, "unheardof"]), min_size=1, max_size=3))

    def sometimes(values: st.SearchStrategy) -> object:  # type: ignore[type-arg]
        """Each optional filter in about one query of four, so most queries find something."""
        return draw(values) if draw(st.integers(0, 3)) == 0 else None

    hours = sometimes(st.sampled_from(range(-24, 24 * 70, 6)))  # uniform over the corpus
    return {
        "caller": caller,
        "dense_seed": draw(st.integers(0, 2**32 - 1)) if use_dense else None,
        "words": words if use_sparse else None,
        "limit": draw(st.sampled_from([1, 3, 10, 50, 200, 400])),
        "valid_at": None if hours is None else T0 + timedelta(hours=hours),  # type: ignore[arg-type]
        "topics": sometimes(st.lists(st.sampled_from(TOPICS), max_size=2)),
        "tags": sometimes(st.lists(st.sampled_from(TAGS), max_size=2)),
        "agents": sometimes(st.lists(st.sampled_from(AGENTS), max_size=4)),
    }


@dataclass
class Tally:
    examples: int = 0
    hits: int = 0
    nonempty: int = 0
    complete_checks: int = 0


def check_search(store: MemoryStore, corpus: Corpus, q: dict[str, object], tally: Tally) -> None:
    caller: Caller = q["caller"]  # type: ignore[assignment]
    limit: int = q["limit"]  # type: ignore[assignment]
    dense = None
    if q["dense_seed"] is not None:
        dense = unit(np.random.default_rng(q["dense_seed"]))[0]  # type: ignore[arg-type]
    sparse = query_sparse(" ".join(q["words"])) if q["words"] else None  # type: ignore[arg-type]
    filters = {k: q[k] for k in ("valid_at", "topics", "tags", "agents")}
    hits = store.search(caller, dense=dense, sparse=sparse, limit=limit, **filters)  # type: ignore[arg-type]

    allowed = corpus.allowed(caller, **filters)  # type: ignore[arg-type]
    ids = [h.memory.memory_id for h in hits]
    assert len(ids) == len(set(ids)), "a memory returned twice"
    for hit in hits:
        m = hit.memory
        assert caller.may_see(m.tenant, m.scope, m.agent_id), (caller, m.tenant, m.scope)
        assert m.memory_id in allowed
        assert (hit.dense_score is not None) == (dense is not None)
    found = set(ids)
    if dense is not None:  # brute force on an unoptimised shard: exact
        assert len(found) >= min(limit, len(allowed))
        if limit >= len(allowed):
            assert found == allowed
            tally.complete_checks += 1
    if sparse is not None and sparse.indices:
        lexical = corpus.lexical(sparse) & allowed
        for hit in hits:
            assert hit.sparse_score is not None
            assert (hit.sparse_score > 0) == (hit.memory.memory_id in lexical)
        if dense is None:
            assert found <= lexical
            assert len(found) == min(limit, len(lexical))
    tally.examples += 1
    tally.hits += len(hits)
    tally.nonempty += bool(hits)


def run_property(store: MemoryStore, corpus: Corpus, examples: int) -> Tally:
    tally = Tally()

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(q=queries())
    def prop(q: dict[str, object]) -> None:
        check_search(store, corpus, q, tally)

    prop()
    return tally


def test_edge_search_never_leaks_and_is_complete(edge_corpus: EdgeStore, corpus: Corpus) -> None:
    tally = run_property(edge_corpus, corpus, examples=1000)
    assert tally.examples >= 1000
    # the filter is not trivially empty: most queries return something
    assert tally.nonempty >= 500, tally  # measured ~680 of 1000
    assert tally.hits >= 3_000, tally  # measured ~5,900
    assert tally.complete_checks >= 200, tally  # limit >= visible: exact set (~450)


def test_server_search_never_leaks_and_is_complete(
    server_corpus: QdrantServerStore, corpus: Corpus
) -> None:
    # qdrant-client local mode is pure Python (each query scans the collection with the
    # filter evaluated per point), so this backend runs 100 examples, not 1000.
    tally = run_property(server_corpus, corpus, examples=100)
    assert tally.examples >= 100
    # measured ~65 and ~550 typically; one fresh-clone run drew 56 and 202 (the limits are
    # random, so 100 examples vary widely): the guard is that the filter is not trivially empty
    assert tally.nonempty >= 40 and tally.hits >= 150, tally


@pytest.mark.parametrize("backend", ["edge", "server"])
def test_large_limit_returns_exactly_the_visible_set(
    backend: str, edge_corpus: EdgeStore, server_corpus: QdrantServerStore, corpus: Corpus
) -> None:
    store: MemoryStore = edge_corpus if backend == "edge" else server_corpus
    rnd = random.Random(7)
    q = unit(np.random.default_rng(7))[0]
    checked = 0
    for tenant in TENANTS:
        limit = store.count(tenant)  # >= what any caller of the tenant sees
        assert limit == sum(m.tenant == tenant for m in corpus.memories)
        for _ in range(4):
            caller = Caller(tenant, rnd.choice(AGENTS), frozenset(rnd.sample(TEAMS, 2)))
            visible = {
                m.memory_id
                for m in corpus.memories
                if caller.may_see(m.tenant, m.scope, m.agent_id)
            }
            assert 0 < len(visible) <= limit
            found = {h.memory.memory_id for h in store.search(caller, dense=q, limit=limit)}
            assert found == visible
            assert {
                m.memory_id for m in store.get(caller, [m.memory_id for m in corpus.memories])
            } == visible
            checked += 1
    assert checked == 20


def test_no_warnings_from_local_mode_indexes() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        QdrantServerStore(QdrantClient(":memory:"), close_client=True).close()


def test_live_store_follows_an_alias_swap(tmp_path: Path) -> None:
    """A replay builds v2 and swaps the alias: the open LiveStore serves v2, no restart."""
    from memstream.store.live import LiveStore

    collections = CollectionSet(tmp_path)
    live = LiveStore(collections, check_every_s=0)
    assert live.version == 1 and live.count() == 0
    v2 = collections.create_version()
    replayed = collections.open(v2)
    now = datetime.now(UTC)
    memory = StoredMemory(uuid4(), "t", "a", "tenant", "rebuilt", now, now)
    vector = np.zeros((1, 384), dtype=np.float32)
    vector[0, 0] = 1.0
    replayed.upsert([memory], vector, [Sparse([1], [1.0])])
    replayed.close()
    collections.swap(v2)
    assert live.count() == 1 and live.version == v2
    assert [m.text for m in live.get(Caller("t", "a"), [memory.memory_id])] == ["rebuilt"]
    live.close()
