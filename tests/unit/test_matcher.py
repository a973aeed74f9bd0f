from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memstream.schemas import Delivery, Indexed, Subscription
from memstream.services.matcher import SubscriptionIndex

DIM = 384


def _unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def _sub(
    agent: str, sub_id: str, *, tenant: str = "t", teams: tuple[str, ...] = (), **payload: object
) -> Subscription:
    return Subscription(
        tenant=tenant,
        agent_id=agent,
        payload={"subscription_id": sub_id, "query": "q", "teams": list(teams), **payload},
    )


def _record(
    agent: str = "writer", scope: str = "tenant", tenant: str = "t", **payload: object
) -> Indexed:
    base = {
        "source_kind": "memory",
        "text": "a memory",
        "vector_codec": "rlm4-384-v1",
        "vector_b64": base64.b64encode(bytes(192)).decode(),
        "usefulness": 0.5,
        "novelty": 1.0,
        "features": [0.0],
        "models": {},
    }
    return Indexed(tenant=tenant, agent_id=agent, scope=scope, payload={**base, **payload})


def test_visibility_own_memories_filters_and_threshold() -> None:
    index = SubscriptionIndex()
    q = _unit(1)
    index.upsert(_sub("ops-member", "s1", teams=("ops",), min_score=0.5), q)
    index.upsert(_sub("outsider", "s2", min_score=0.5), q)
    index.upsert(_sub("writer", "s3", min_score=0.5), q)  # the author itself
    index.upsert(_sub("picky", "s4", min_score=0.5, filters={"tags": ["billing"]}), q)
    index.upsert(_sub("strict", "s5", min_score=0.999), q)
    index.upsert(_sub("other-tenant", "s6", tenant="u", min_score=0.5), q)
    near = q * 0.9 + _unit(2) * 0.1
    near /= np.linalg.norm(near)

    team = index.match(_record(scope="team:ops"), near)
    assert [d.payload.recipient for d in team] == ["ops-member"]
    everyone = index.match(_record(scope="tenant", tags=["billing"]), near)
    assert sorted(d.payload.recipient for d in everyone) == ["ops-member", "outsider", "picky"]
    assert index.match(_record(scope="tenant"), _unit(3)) == []  # unrelated memory


def test_cancel_expiry_and_rate_limit() -> None:
    clock = [0.0]
    index = SubscriptionIndex(clock=lambda: clock[0])
    q = _unit(1)
    index.upsert(_sub("a", "s1", min_score=0.0, max_per_minute=2), q)
    index.upsert(
        _sub("b", "s2", min_score=0.0, expires_at=datetime.now(UTC) - timedelta(seconds=1)), q
    )
    sent = [len(index.match(_record(), q)) for _ in range(3)]
    assert sent == [1, 1, 0]  # b expired; a limited to 2 a minute
    clock[0] = 61.0
    assert len(index.match(_record(), q)) == 1
    index.upsert(_sub("a", "s1", active=False), q)
    assert index.match(_record(), q) == [] and len(index) == 1


# --- exactness and maintenance of the index (issue 17) ---------------------------------------

METHODS = ("int8", "float32", "auto")


def _subs(
    n: int, thresholds: np.ndarray, tenant: str = "t", prefix: str = "s"
) -> list[Subscription]:
    return [
        _sub(f"agent-{i % 7}", f"{prefix}{i}", tenant=tenant, min_score=float(thresholds[i]))
        for i in range(n)
    ]


def _clustered(rng: np.random.Generator, n: int, dim: int = DIM, spread: float = 0.6) -> np.ndarray:
    """Unit vectors around a few dozen topics (like embeddings of standing queries)."""
    topics = np.random.default_rng(dim)  # the same topics in every call
    centres = topics.standard_normal((40, dim)) + 2.0 * topics.standard_normal(dim)
    x = centres[rng.integers(0, 40, n)] + spread * rng.standard_normal((n, dim)) * np.sqrt(2.0)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _brute(vectors: np.ndarray, thresholds: np.ndarray, queries: np.ndarray) -> list[set[str]]:
    scores = queries.astype(np.float64) @ vectors.astype(np.float64).T
    return [{f"s{j}" for j in np.flatnonzero(row >= thresholds)} for row in scores]


def _found(index: SubscriptionIndex, queries: np.ndarray, tenant: str = "t") -> list[set[str]]:
    return [{sid for sid, _ in row} for row in index.over_threshold(tenant, queries)]


def test_exact_against_brute_force_on_clustered_and_random_vectors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import memstream.services.tenant_index as tenant_index

    monkeypatch.setattr(tenant_index, "INT8_MIN", 1_000)  # so that "auto" takes the int8 pass
    rng = np.random.default_rng(3)
    n = 3_000
    for data in ("clustered", "random"):
        if data == "clustered":
            vectors, queries = _clustered(rng, n), _clustered(rng, 70)
        else:
            vectors = _unit_rows(rng.standard_normal((n, DIM)))
            queries = _unit_rows(rng.standard_normal((70, DIM)))
        scores = queries.astype(np.float64) @ vectors.astype(np.float64).T
        # thresholds at which 0.05%, 1% and 10% of pairs match, jittered, mixed
        levels = np.quantile(scores, [0.9995, 0.99, 0.9])
        thresholds = rng.choice(levels, n) + rng.choice([-0.02, 0.0, 0.0, 0.02], n)
        # some a hair either side of a real score: the float32 pass cannot tell those
        # apart, the float64 rescoring must
        hit = rng.integers(0, n, 60)
        thresholds[hit] = scores[0, hit] + rng.choice([-1e-9, 1e-9], 60)
        thresholds = np.clip(thresholds, -1.0, 1.0)
        index = SubscriptionIndex()
        for sub, v in zip(_subs(n, thresholds), vectors, strict=True):
            index.upsert(sub, v)
        want = _brute(vectors, thresholds, queries)
        assert sum(map(len, want)) > 100
        for method in METHODS:
            index.method = method
            assert _found(index, queries) == want, (data, method)
            one = index.over_threshold("t", queries[:1])[0]  # a batch of one, too
            assert {sid for sid, _ in one} == want[0]
            got = dict(one)
            for sid in want[0]:
                assert abs(got[sid] - scores[0, int(sid[1:])]) < 1e-5


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 400),
    m=st.integers(1, 70),
    level=st.floats(-1.0, 1.0),
    dim=st.sampled_from([3, 16, 384]),
)
def test_exact_for_any_sizes_and_thresholds(
    seed: int, n: int, m: int, level: float, dim: int
) -> None:
    rng = np.random.default_rng(seed)
    vectors = _unit_rows(rng.standard_normal((n, dim)))
    queries = rng.standard_normal((m, dim)).astype(np.float32)  # memories need not be unit
    queries[0] = vectors[0]  # a memory equal to a query
    thresholds = np.clip(level + rng.normal(0, 0.2, n), -1.0, 1.0)
    index = SubscriptionIndex(dim=dim)
    for sub, v in zip(_subs(n, thresholds), vectors, strict=True):
        index.upsert(sub, v)
    want = _brute(vectors, thresholds, queries)
    for method in METHODS:
        index.method = method
        assert _found(index, queries) == want


def test_upsert_replace_remove_and_compaction_stay_exact() -> None:
    rng = np.random.default_rng(5)
    n = 2_000
    vectors = _clustered(rng, n)
    queries = _clustered(rng, 20)
    thresholds = np.full(n, 0.4)
    index = SubscriptionIndex()
    subs = _subs(n, thresholds)
    for sub, v in zip(subs, vectors, strict=True):
        index.upsert(sub, v)
    index.method = "int8"
    _found(index, queries)  # codes built; the changes below come after
    # replace a third with new vectors, cancel another third (compacts), re-add some
    new = _clustered(rng, n)
    alive = np.ones(n, dtype=bool)
    for i in range(0, n, 3):
        index.upsert(subs[i], new[i])
        vectors[i] = new[i]
    for i in range(1, n, 3):
        index.upsert(_sub("x", f"s{i}", active=False), vectors[i])
        alive[i] = False
    assert index.remove("s2") and not index.remove("s2") and not index.remove("nope")
    alive[2] = False
    for i in range(1, 300, 3):
        index.upsert(subs[i], vectors[i])
        alive[i] = True
    assert len(index) == int(alive.sum())
    assert index._tenants["t"].dead < n // 2  # tombstones were compacted away
    want = [{s for s in row if alive[int(s[1:])]} for row in _brute(vectors, thresholds, queries)]
    for method in METHODS:
        index.method = method
        assert _found(index, queries) == want
    # the last subscription of a tenant gone: nothing left to match
    for i in np.flatnonzero(alive):
        index.remove(f"s{i}")
    assert len(index) == 0 and index.over_threshold("t", queries) == [[] for _ in queries]
    assert index.match(_record(), queries[0]) == []


def test_tenants_are_matched_separately() -> None:
    rng = np.random.default_rng(8)
    vectors = _clustered(rng, 500)
    index = SubscriptionIndex()
    for sub, v in zip(_subs(500, np.full(500, 0.3), tenant="t"), vectors, strict=True):
        index.upsert(sub, v)
    for sub, v in zip(_subs(500, np.full(500, 0.3), tenant="u", prefix="u"), vectors, strict=True):
        index.upsert(sub, v)
    q = vectors[:5]
    t_found, u_found = _found(index, q, "t"), _found(index, q, "u")
    assert all(row and all(s.startswith("s") for s in row) for row in t_found)
    assert [{"u" + s[1:] for s in row} for row in t_found] == u_found
    batch = index.match_many([_record(tenant="t"), _record(tenant="u"), _record(tenant="v")], q[:3])
    assert {d.tenant for d in batch[0]} == {"t"} and {d.tenant for d in batch[1]} == {"u"}
    assert batch[2] == []
    assert {d.payload.subscription_id for d in batch[0]} <= t_found[0]


def test_match_many_is_match_one_by_one_rate_limits_included() -> None:
    rng = np.random.default_rng(9)
    vectors = _clustered(rng, 200)
    queries = _clustered(rng, 12)

    def build() -> SubscriptionIndex:
        index = SubscriptionIndex(clock=lambda: 0.0)
        for i, v in enumerate(vectors):
            sub = _sub(f"agent-{i % 5}", f"s{i}", min_score=0.2, max_per_minute=3, teams=("ops",))
            index.upsert(sub, v)
        return index

    records = [_record(scope="team:ops" if k % 2 else "tenant") for k in range(12)]
    one_by_one = build()
    want = [one_by_one.match(r, q) for r, q in zip(records, queries, strict=True)]
    got = build().match_many(records, queries)

    def key(batch: list[list[Delivery]]) -> list[list[tuple[str, str]]]:
        return [[(d.payload.subscription_id, d.payload.recipient) for d in ds] for ds in batch]

    assert key(got) == key(want)
    for ds, ws in zip(got, want, strict=True):  # float32 sums in another order: last bits
        assert all(
            abs(d.payload.score - w.payload.score) < 1e-5 for d, w in zip(ds, ws, strict=True)
        )
    over = sum(map(len, one_by_one.over_threshold("t", queries)))
    assert 0 < sum(map(len, got)) < over  # max_per_minute=3 held some back


def test_bad_vectors() -> None:
    index = SubscriptionIndex()
    q = _unit(1)
    index.upsert(_sub("a", "s1", min_score=0.5), q)
    bad = q.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError):
        index.upsert(_sub("a", "s1", min_score=0.5), bad)  # refused; the old one stays
    with pytest.raises(ValueError):
        index.upsert(_sub("a", "s2"), q[:10])
    assert len(index) == 1
    out = index.match_many([_record(), _record()], np.stack([bad, q]))
    assert out[0] == [] and [d.payload.subscription_id for d in out[1]] == ["s1"]
    with pytest.raises(ValueError):
        index.match_many([_record()], np.stack([q, q]))


def test_float32_fallback_without_the_int8_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    import memstream.services.tenant_index as tenant_index

    monkeypatch.setattr(tenant_index, "int8_engine", lambda dim: None)
    rng = np.random.default_rng(2)
    vectors = _clustered(rng, 300)
    thresholds = np.full(300, 0.5)
    index = SubscriptionIndex(method="int8")
    for sub, v in zip(_subs(300, thresholds), vectors, strict=True):
        index.upsert(sub, v)
    assert _found(index, vectors[:9]) == _brute(vectors, thresholds, vectors[:9])


def test_the_int8_engine_is_exact_here() -> None:
    from memstream.services.matcher import int8_engine

    engine = int8_engine(DIM)
    assert engine is not None and engine.exact(DIM)
