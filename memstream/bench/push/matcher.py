"""Part 2: matcher throughput per index size, clustered and random, and its scaling."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from memstream.bench.push.corpus import TENANT
from memstream.bench.push.simulation import (
    BATCH,
    MIN_SCORE_SPREAD,
    SubscriptionSimulator,
    _build,
    _cycle,
    _index_bytes,
    _interleaved,
    _pcts,
    _say,
    _subscriptions,
    brute_force,
    calibration,
    exactness,
    real_embeddings,
)
from memstream.schemas.events import (
    Indexed,
    IndexedPayload,
)
from memstream.services.matcher import INT8_MIN, SubscriptionIndex, int8_engine


def measure_index(
    index: SubscriptionIndex,
    queries: np.ndarray,
    budget_s: float,
    say: Callable[[str], None],
    fanout: float,
) -> dict[str, Any]:
    """Memories/s finding the subscriptions over threshold (`search`) for the matcher as it
    was (`scan`: one matrix-vector product per memory) and the batched exact passes, then
    for full matching with deliveries (`match`), old against the default. `fanout`:
    subscriptions over threshold per memory, to keep each timed step short."""
    size = len(index)
    scan_chunk = max(1, min(BATCH, 2_000_000 // max(size, 1)))  # about as long as a batch
    match_chunk = max(1, min(BATCH, int(20_000 / max(fanout, 1.0))))  # deliveries per step
    record = _indexed("pub-0")

    def search(method: str, chunk: int) -> Callable[[int], int]:
        def run(start: int) -> int:
            # the slots and scores, before they are turned into ids (the same for both)
            tenant = index._tenants[TENANT]
            vecs = _cycle(queries, start, chunk)
            if method == "scan":
                return sum(len(tenant.search(v[None], "scan")[0][0]) for v in vecs)
            return sum(len(slots) for slots, _ in tenant.search(vecs, method))  # type: ignore[arg-type]

        return run

    def match(method: str, chunk: int) -> Callable[[int], int]:
        def run(start: int) -> int:
            index.method = method  # type: ignore[assignment]
            vecs = _cycle(queries, start, chunk)
            if method == "scan":  # as the worker did: one match per memory
                return sum(len(index.match(record, v)) for v in vecs)
            return sum(len(d) for d in index.match_many([record] * chunk, vecs))

        return run

    methods = {"scan": scan_chunk, "float32": BATCH, "int8": BATCH}
    say(f"  search: {', '.join(methods)} interleaved for {budget_s:.0f}s")
    searched = _interleaved(
        {m: search(m, c) for m, c in methods.items()}, methods, budget_s, len(queries)
    )
    auto = "int8" if size >= INT8_MIN and int8_engine(index.dim) is not None else "float32"
    chunks = {"scan": min(scan_chunk, match_chunk), auto: match_chunk}
    say(f"  match with deliveries: scan, {auto} interleaved for {budget_s:.0f}s")
    matched = _interleaved(
        {m: match(m, c) for m, c in chunks.items()}, chunks, budget_s, len(queries)
    )
    index.method = "auto"
    best = max(("float32", "int8"), key=lambda m: searched[m]["memories_per_s"])
    return {
        "search": {
            m: {k: v for k, v in r.items() if k != "per_memory"} for m, r in searched.items()
        },
        "over_threshold_per_memory": searched["float32"]["per_memory"],
        "match": {
            m: {
                **{k: v for k, v in r.items() if k != "per_memory"},
                "deliveries_per_memory": r["per_memory"],
            }
            for m, r in matched.items()
        },
        "default_method": auto,
        "search_speedup_vs_scan": {
            m: round(searched[m]["memories_per_s"] / searched["scan"]["memories_per_s"], 1)
            for m in ("float32", "int8")
        },
        "match_speedup_vs_scan": round(
            matched[auto]["memories_per_s"] / matched["scan"]["memories_per_s"], 1
        ),
        "fastest_search": best,
    }


def matcher_clustered(
    size: int,
    sim: SubscriptionSimulator,
    memories: np.ndarray,
    budget_s: float,
    check: int,
    say: Callable[[str], None],
    seed: int = 11,
) -> dict[str, Any]:
    """One size of the clustered workload: build, exactness against brute force, timings."""
    rng = np.random.default_rng(seed + size)
    levels = np.array([t for t, _ in MIN_SCORE_SPREAD])
    shares = np.array([s for _, s in MIN_SCORE_SPREAD])
    thresholds = rng.choice(levels, size, p=shares / shares.sum())
    say(f"matcher, clustered: simulating {size} subscriptions")
    vectors, _ = sim.sample(size, rng)
    subs = _subscriptions(thresholds)
    index, upsert_s = _build(subs, vectors)
    del subs
    t0 = time.perf_counter()
    index.over_threshold(TENANT, memories[:1])  # the lazy part of loading: norms, int8 codes
    first_s = time.perf_counter() - t0
    sample = memories[rng.choice(len(memories), min(check, len(memories)), replace=False)]
    say(f"  exactness on {len(sample)} memories against float64 brute force")
    reference = brute_force(vectors, thresholds, sample)
    methods = ("int8", "float32", "scan") if size <= 100_000 else ("int8", "float32")
    exact = exactness(index, reference, sample, methods)
    del vectors
    over = exact["pairs_over_threshold"] / len(sample)
    timings = measure_index(index, memories, budget_s, say, over)
    row = {
        "subscriptions": size,
        "workload": "clustered (simulated from real MiniLM embeddings)",
        "tenants": 1,
        "upsert_us_each_avg": round(1e6 * upsert_s / size, 1),
        "first_match_prepare_s": round(first_s, 2),
        "index_bytes": _index_bytes(index),
        "over_threshold_per_memory": round(over, 2),
        "match_share": round(over / size, 6),
        "exactness": exact,
        **timings,
    }
    return row


def pruning_bounds(
    sim: SubscriptionSimulator, memories: np.ndarray, n: int = 100_000, seed: int = 13
) -> dict[str, Any]:
    """What exact pruning could skip on the clustered workload, measured rather than
    assumed: (1) IVF clusters (k-means) with the Cauchy-Schwarz bound q.c + |q| r >= t;
    (2) a PCA projection with the tail bound q.s <= (Pq).(Ps) + |q_tail| |s_tail|. For
    each: the share of subscriptions a memory still has to score, and for (2) the share
    with a candidate pair in a batch of 64 memories (those rows need exact scores)."""
    rng = np.random.default_rng(seed)
    levels = np.array([t for t, _ in MIN_SCORE_SPREAD])
    shares = np.array([s for _, s in MIN_SCORE_SPREAD])
    s, _ = sim.sample(n, rng)
    t = rng.choice(levels, n, p=shares / shares.sum())
    q = memories[rng.choice(len(memories), BATCH, replace=False)]
    sample = s[rng.choice(n, min(n, 20_000), replace=False)]
    ivf = {}
    for k in (256, 1024):
        centres = sample[rng.choice(len(sample), k, replace=False)].copy()
        for _ in range(6):  # Lloyd iterations on the sample
            near = np.argmax(sample @ centres.T, axis=1)
            for c in range(k):
                members = sample[near == c]
                if len(members):
                    centres[c] = members.mean(axis=0)
        near = np.concatenate(
            [np.argmax(s[a : a + 16_384] @ centres.T, axis=1) for a in range(0, n, 16_384)]
        )
        count = np.bincount(near, minlength=k)
        centres = np.stack(
            [s[near == c].mean(axis=0) if count[c] else centres[c] for c in range(k)]
        )
        radius = np.zeros(k)
        lowest = np.full(k, np.inf)
        np.maximum.at(radius, near, np.linalg.norm(s - centres[near], axis=1))
        np.minimum.at(lowest, near, t)
        alive = q @ centres.T + np.linalg.norm(q, axis=1)[:, None] * radius >= lowest
        ivf[f"k{k}"] = {
            "radius": _pcts(radius[count > 0]),
            "clusters_left": round(float(alive.mean()), 3),
            "subscriptions_left": round(float((alive * count).sum(axis=1).mean() / n), 3),
        }
    _, vecs = np.linalg.eigh(sample.T.astype(np.float64) @ sample)
    basis = vecs[:, ::-1].astype(np.float32)
    ps, pq = s @ basis, q @ basis
    projection = {}
    for d in (32, 64, 128):
        tail_s = np.linalg.norm(ps[:, d:], axis=1)
        tail_q = np.linalg.norm(pq[:, d:], axis=1)
        bound = pq[:, :d] @ ps[:, :d].T + tail_q[:, None] * tail_s[None, :]
        cand = bound >= t[None, :]
        projection[f"d{d}"] = {
            "pairs_left": round(float(cand.mean()), 4),
            "subscriptions_with_a_candidate_in_a_batch": round(float(cand.any(axis=0).mean()), 3),
            "head_cost_vs_full": round((d + 1) / s.shape[1], 2),
        }
    over = q @ s.T >= t[None, :]
    return {
        "subscriptions": n,
        "memories": BATCH,
        "pairs_over_threshold": round(float(over.mean()), 4),
        "subscriptions_over_threshold_in_a_batch": round(float(over.any(axis=0).mean()), 3),
        "ivf_cauchy_schwarz": ivf,
        "pca_projection_tail_bound": projection,
    }


def _unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


def _indexed(agent: str) -> Indexed:
    return Indexed(
        tenant=TENANT,
        agent_id=agent,
        scope="tenant",
        payload=IndexedPayload(
            source_kind="memory",
            text="The orders Postgres primary fell behind in replication (ticket 1).",
            topic="databases",
            tags=["databases"],
            vector_codec="rlm4-384-v1",
            vector_b64="",
            usefulness=0.5,
            novelty=0.5,
            features=[0.0],
            models={"embedding": "bench"},
        ),
    )


def matcher_throughput(
    size: int,
    memories: int = 1000,
    match_share: float = 0.01,
    dim: int = 384,
    seed: int = 7,
    max_s: float = 20.0,
    compare: bool = False,
    check: int = 0,
) -> dict[str, Any]:
    """The random-vector worst case (no structure at all) for one index size: upsert cost,
    then matching batches of memories when nothing passes the score (`scan_only`: the first
    pass alone) and when `match_share` of subscriptions do (the deliveries). `compare`
    adds the matcher as it was (`scan`) in the same run; `check` memories are compared with
    float64 brute force."""
    rng = np.random.default_rng(seed)
    subs = _unit(rng.standard_normal((size, dim)))
    vectors = _unit(rng.standard_normal((memories, dim)))
    min_score = float(np.quantile(vectors[: min(memories, 200)] @ subs.T, 1.0 - match_share))
    index, upsert_s = _build(_subscriptions(np.full(size, min_score)), subs)
    record = _indexed("pub-0")

    def timed(vecs: np.ndarray) -> tuple[int, int, float]:
        done = produced = 0
        start = time.perf_counter()
        for a in range(0, len(vecs), BATCH):
            chunk = vecs[a : a + BATCH]
            produced += sum(len(d) for d in index.match_many([record] * len(chunk), chunk))
            done += len(chunk)
            if time.perf_counter() - start > max_s:
                break
        return done, produced, time.perf_counter() - start

    index.over_threshold(TENANT, vectors[:1])  # prepare outside the timings
    scan_n, _, scan_s = timed(np.zeros((min(memories, 512), dim), dtype=np.float32))
    n, produced, match_s = timed(vectors)
    matmul_n = min(scan_n, 2 * BATCH)
    t0 = time.perf_counter()
    for a in range(0, matmul_n, BATCH):
        subs @ vectors[a : a + BATCH].T
    matmul_s = time.perf_counter() - t0
    row: dict[str, Any] = {
        "subscriptions": size,
        "workload": "random unit vectors (worst case: no structure; pruning could do nothing)",
        "tenants": 1,
        "min_score": round(min_score, 4),
        "target_match_share": match_share,
        "upsert_total_s": round(upsert_s, 2),
        "upsert_us_each_avg": round(1e6 * upsert_s / size, 1),
        "memories": n,
        "memories_per_s": round(n / match_s, 1),
        "us_per_memory": round(1e6 * match_s / n, 1),
        "deliveries_per_memory": round(produced / n, 2),
        "deliveries_per_s": round(produced / match_s),
        "scan_only_memories_per_s": round(scan_n / scan_s, 1),
        "scan_only_us_per_memory": round(1e6 * scan_s / scan_n, 1),
        "matmul_only_us_per_memory": round(1e6 * matmul_s / matmul_n, 1),
    }
    if check:
        sample = vectors[:check]
        row["exactness"] = exactness(
            index, brute_force(subs, np.full(size, min_score), sample), sample, ("int8", "float32")
        )
    if compare:
        row.update(measure_index(index, vectors, max_s, lambda _: None, match_share * size))
    return row


def matcher_scaling(
    sizes: tuple[int, ...],
    locomo: Path,
    budget_s: float = 10.0,
    check: int = 64,
    random_match_share: float = 0.001,
    progress: bool = True,
) -> dict[str, Any]:
    """Part 2: the clustered workload and the random worst case at each size."""
    say = _say(progress)
    real = real_embeddings(locomo, say)
    vecs = real["vectors"]
    para = (vecs["para_a"] * vecs["para_b"]).sum(axis=1)
    sim = SubscriptionSimulator(
        vecs["queries"], np.vstack([vecs["queries"], vecs["memories"]]), para
    )
    calib = calibration(sim, vecs, np.random.default_rng(5))
    say(f"calibration: {json.dumps(calib)}")
    pruning = pruning_bounds(sim, vecs["memories"]) if sizes else None
    say(f"pruning bounds: {json.dumps(pruning)}")
    clustered, random_rows = [], []
    for size in sizes:
        clustered.append(matcher_clustered(size, sim, vecs["memories"], budget_s, check, say))
        say(f"  {json.dumps(_brief(clustered[-1]))}")
        say(f"matcher, random worst case: {size} subscriptions")
        random_rows.append(
            matcher_throughput(
                size,
                memories=len(vecs["memories"]),
                match_share=random_match_share,
                max_s=budget_s,
                compare=True,
                check=check,
            )
        )
        say(f"  {json.dumps(_brief(random_rows[-1]))}")
    return {
        "simulation": {
            "real_texts": real["counts"],
            "embedding_model": real["model"],
            "subscriptions": (
                "each a paraphrase of one real query (uniform over them): cosine to it drawn "
                "from the real paraphrase cosines (+ N(0, 0.02), clipped), moved in a "
                "Gaussian direction with the covariance of the real embeddings, orthogonal to "
                "the query, unit length"
            ),
            "memories": "the LoCoMo turns (as stored: 'speaker: text'), through the worker's vector codec",
            "min_score_spread": [{"min_score": t, "share": s} for t, s in MIN_SCORE_SPREAD],
            "calibration": calib,
        },
        "batch": BATCH,
        "pruning_bounds": pruning,
        "clustered": clustered,
        "random": random_rows,
        "summary": [_brief(r) for r in clustered] + [_brief(r) for r in random_rows],
    }


def _brief(row: dict[str, Any]) -> dict[str, Any]:
    """One line per size: memories/s before and now, deliveries, exactness."""
    search = row.get("search", {})
    exact = row.get("exactness", {})
    return {
        "workload": row["workload"].split(" ")[0],
        "subscriptions": row["subscriptions"],
        "search_per_s": {m: r["memories_per_s"] for m, r in search.items()},
        "match_per_s": {m: r["memories_per_s"] for m, r in row.get("match", {}).items()},
        "deliveries_per_memory": next(
            (r["deliveries_per_memory"] for r in row.get("match", {}).values()),
            row.get("deliveries_per_memory"),
        ),
        "misses": {m: exact[m]["misses"] for m in ("int8", "float32") if m in exact},
        "extras": {m: exact[m]["extras"] for m in ("int8", "float32") if m in exact},
    }
