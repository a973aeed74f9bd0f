"""Part 2's inputs: subscriptions simulated from real MiniLM embeddings, exactness checks."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from memstream.bench.push.corpus import MAX_PER_MINUTE, SUBSCRIBER_AGENTS, TENANT
from memstream.schemas.events import (
    Subscription,
    SubscriptionPayload,
)
from memstream.services.matcher import SubscriptionIndex

# --- part 2: matcher throughput ------------------------------------------------------------
#
# Subscriptions simulated from real MiniLM embeddings ("clustered"): random Gaussian vectors
# in 384-d have no structure at all, which standing queries (embeddings of text, clustered by
# topic) do not look like. The generator starts from real query-like texts, embeds them with
# the worker's model, and makes each simulated subscription a paraphrase of one of them: its
# cosine to that real query is drawn from the cosines of real paraphrase pairs (below,
# embedded with the same model), and the direction it moves in is Gaussian with the
# covariance of real MiniLM embeddings (so it varies the way real texts vary). The memories
# are real LoCoMo turns, through the worker's vector codec. Random unit vectors remain as a
# labelled worst case (`matcher_throughput`).

PARAPHRASE_PAIRS: tuple[tuple[str, str], ...] = (
    ("postgres replication lag and failover", "replication delay and failover in PostgreSQL"),
    ("database schema migrations", "migrating the database schema"),
    (
        "slow SQL queries and missing indexes",
        "SQL queries that are slow because an index is missing",
    ),
    ("database backups and restores", "backing up and restoring databases"),
    ("failed deployments and rollbacks", "deploys that failed and were rolled back"),
    ("kubernetes rollout problems", "problems rolling out on Kubernetes"),
    ("CI pipeline breakages", "the CI pipeline is broken"),
    ("feature flags and canary releases", "canary releases behind feature flags"),
    ("invoices and payment failures", "failed payments and invoicing"),
    ("customer refunds", "refunds issued to customers"),
    ("subscription plan pricing changes", "changes to the price of subscription plans"),
    ("payment provider outages", "outages at our payment provider"),
    ("leaked credentials and secret rotation", "rotating secrets after credentials leaked"),
    ("TLS certificate expiry", "TLS certificates that are about to expire"),
    ("access reviews and permissions", "reviews of user permissions and access"),
    ("security vulnerabilities in dependencies", "vulnerable third-party dependencies"),
    ("DNS resolution problems", "DNS lookups failing"),
    ("load balancer errors and timeouts", "timeouts and errors from the load balancer"),
    ("network latency between regions", "cross-region network latency"),
    ("firewall and VPN changes", "changes to the VPN and firewall rules"),
    (
        "When did Caroline go to the LGBTQ support group?",
        "What date did Caroline attend the LGBTQ support group?",
    ),
    ("What does Melanie like to paint?", "What subjects does Melanie paint?"),
    (
        "Where did Melanie go camping with her family?",
        "Where did Melanie take her family camping?",
    ),
    ("What career is Caroline thinking about?", "Which career path is Caroline considering?"),
    ("news about adoption agencies", "updates on adoption agencies"),
    ("anything about my friend's new job", "updates on my friend's new job"),
    ("travel plans for the summer", "summer travel plans"),
    ("health problems and doctor visits", "visits to the doctor about health issues"),
    ("books someone recommended", "book recommendations"),
    ("pets and animals at home", "pets we keep at home"),
    ("running a marathon and training", "training for a marathon"),
    ("cooking recipes and dinner ideas", "ideas for dinner and recipes"),
    ("music concerts and festivals", "festivals and live music concerts"),
    ("moving to a new apartment", "relocating to a new flat"),
    ("problems with the kids' school", "issues at the children's school"),
    ("art classes and painting workshops", "workshops on painting and art lessons"),
    ("volunteering at the shelter", "volunteer work at the animal shelter"),
    ("birthday party planning", "planning a birthday party"),
    ("mental health and counseling", "counselling and mental health support"),
    ("hiking trips in the mountains", "mountain hikes"),
    ("memory leaks in the API server", "the API server is leaking memory"),
    ("disk space running out on build machines", "build machines running low on disk"),
    ("on-call incidents over the weekend", "weekend on-call incidents"),
    ("customer complaints about slow pages", "customers complaining that pages load slowly"),
    ("errors in the nightly batch job", "the nightly batch job failing with errors"),
    ("GDPR data deletion requests", "requests to delete personal data under GDPR"),
    ("cloud cost increases", "our cloud bill going up"),
    ("flaky integration tests", "integration tests that fail intermittently"),
)
"""Standing queries, each said two ways (written for this benchmark): their MiniLM cosines
are the simulation's paraphrase distance."""

MIN_SCORE_SPREAD: tuple[tuple[float, float], ...] = (
    (0.45, 0.15),
    (0.5, 0.5),
    (0.55, 0.15),
    (0.6, 0.1),
    (0.7, 0.1),
)
"""(min_score, share of subscriptions): the default 0.5 for half, some lower, some higher."""

BATCH = 64  # memories per match_many call, as the worker's pipeline hands them over


def _say(progress: bool) -> Callable[[str], None]:
    def say(msg: str) -> None:
        if progress:
            print(f"[push] {msg}", file=sys.stderr, flush=True)

    return say


def real_texts(locomo: Path) -> dict[str, list[str]]:
    """Query-like texts (LoCoMo questions, observations and event summaries, plus the Flask
    texts of benign_dev.json next to it, if there) and memories (LoCoMo turns as stored)."""
    from memstream.eval.locomo import load_locomo

    data = load_locomo(locomo, categories=(1, 2, 3, 4, 5))
    queries = [q.question for q in data.questions]
    for sample in json.loads(locomo.read_text()):
        for by_speaker in sample.get("observation", {}).values():
            for items in by_speaker.values():
                queries.extend(str(item[0]) for item in items if item)
        for session in sample.get("event_summary", {}).values():
            for speaker, items in session.items():
                if speaker != "date":
                    queries.extend(str(item) for item in items)
    benign = locomo.parent / "benign_dev.json"
    if benign.is_file():
        queries.extend(str(x["text"]) for x in json.loads(benign.read_text()))
    return {
        "queries": list(dict.fromkeys(q for q in queries if q.strip())),
        "memories": [t.memory_text for t in data.turns],
    }


def real_embeddings(locomo: Path, say: Callable[[str], None]) -> dict[str, Any]:
    """MiniLM embeddings of `real_texts` and of the paraphrase pairs, cached by content."""
    import hashlib

    from memstream.models.compression import decode_vectors, encode_vectors
    from memstream.models.embedding import cache_dir, load_embedder

    texts = real_texts(locomo)
    texts["para_a"] = [a for a, _ in PARAPHRASE_PAIRS]
    texts["para_b"] = [b for _, b in PARAPHRASE_PAIRS]
    embedder = load_embedder("minilm")
    key = hashlib.sha256(json.dumps([embedder.version, texts]).encode()).hexdigest()[:16]
    path = cache_dir() / "bench" / f"matcher-real-{key}.npz"
    if path.is_file():
        with np.load(path) as cached:
            vectors = {k: cached[k] for k in cached.files}
    else:
        say(f"embedding {sum(len(v) for v in texts.values())} real texts (cached afterwards)")
        vectors = {k: embedder.embed(v).astype(np.float32) for k, v in texts.items()}
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **vectors)  # type: ignore[arg-type]
    vectors["memories"] = decode_vectors(encode_vectors(vectors["memories"]))
    return {
        "vectors": vectors,
        "model": embedder.version,
        "counts": {k: len(v) for k, v in texts.items()},
    }


class SubscriptionSimulator:
    """Simulated standing queries: paraphrases of real query embeddings (module comment)."""

    def __init__(self, bases: np.ndarray, real: np.ndarray, paraphrase_cos: np.ndarray) -> None:
        self.bases = np.asarray(bases, dtype=np.float64)
        centred = real - real.mean(axis=0)
        w, v = np.linalg.eigh(centred.T @ centred / len(centred))
        self.factor = (v * np.sqrt(np.clip(w, 0.0, None))).T  # g @ factor ~ N(0, cov)
        self.paraphrase_cos = np.asarray(paraphrase_cos, dtype=np.float64)

    def sample(
        self, n: int, rng: np.random.Generator, which: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(n, dim) float32 unit vectors and the real query each paraphrases (`which`, or
        drawn uniformly)."""
        dim = self.bases.shape[1]
        out = np.empty((n, dim), dtype=np.float32)
        if which is None:
            which = rng.integers(0, len(self.bases), n)
        lo = float(self.paraphrase_cos.min())
        for a in range(0, n, 65_536):
            z = min(n, a + 65_536)
            base = self.bases[which[a:z]]
            cos = rng.choice(self.paraphrase_cos, z - a) + rng.normal(0.0, 0.02, z - a)
            cos = np.clip(cos, lo, 0.995)[:, None]
            step = rng.standard_normal((z - a, dim)) @ self.factor
            step -= (step * base).sum(axis=1, keepdims=True) * base  # orthogonal to the base
            step /= np.linalg.norm(step, axis=1, keepdims=True)
            s = cos * base + np.sqrt(1.0 - cos * cos) * step
            out[a:z] = s / np.linalg.norm(s, axis=1, keepdims=True)
        return out, which


def _pcts(values: np.ndarray, qs: tuple[float, ...] = (10, 50, 90)) -> dict[str, float]:
    return {
        f"p{q:g}": round(float(x), 3) for q, x in zip(qs, np.percentile(values, qs), strict=True)
    }


def _nearest(x: np.ndarray) -> np.ndarray:
    g = x @ x.T
    np.fill_diagonal(g, -np.inf)
    return g.max(axis=1)


def calibration(
    sim: SubscriptionSimulator, real: dict[str, np.ndarray], rng: np.random.Generator
) -> dict[str, Any]:
    """How the simulation compares with the real embeddings it was made from."""
    para = (real["para_a"] * real["para_b"]).sum(axis=1)
    bases, memories = real["queries"], real["memories"]
    small, _ = sim.sample(len(bases), rng)
    big, which_big = sim.sample(20_000, rng)
    to_base = (big * bases[which_big]).sum(axis=1)
    twice = np.repeat(rng.integers(0, len(bases), 2000), 2)
    pairs, _ = sim.sample(len(twice), rng, twice)
    siblings = (pairs[0::2] * pairs[1::2]).sum(axis=1)
    real_scores = memories @ bases.T
    sim_scores = memories[:400] @ big.T
    return {
        "real_paraphrase_pairs": len(para),
        "paraphrase_cosine_real": _pcts(para),
        "cosine_to_its_real_query_simulated": _pcts(to_base),
        "cosine_between_two_paraphrases_of_one_query_simulated": _pcts(siblings),
        "nearest_neighbour_cosine": {
            "real_queries": _pcts(_nearest(bases)),
            f"simulated_{len(bases)}": _pcts(_nearest(small)),
            "note": "each set of the same size; a larger simulated set has closer neighbours",
        },
        "memory_x_subscription_score": {
            "real_memories_x_real_queries": {
                "mean": round(float(real_scores.mean()), 3),
                **_pcts(real_scores.ravel(), (99, 99.9)),
                "share_over_0.5": round(float((real_scores >= 0.5).mean()), 5),
            },
            "real_memories_x_simulated": {
                "mean": round(float(sim_scores.mean()), 3),
                **_pcts(sim_scores.ravel(), (99, 99.9)),
                "share_over_0.5": round(float((sim_scores >= 0.5).mean()), 5),
            },
        },
    }


def _subscriptions(thresholds: np.ndarray) -> list[Subscription]:
    """One Subscription per threshold: copies of one validated subscription with their own
    id, agent and min_score (validating a million one by one takes many minutes, and is not
    what is measured)."""
    template = Subscription(
        tenant=TENANT,
        agent_id="sub-0",
        scope="private",
        payload=SubscriptionPayload(
            subscription_id="s-0", query="query", max_per_minute=MAX_PER_MINUTE
        ),
    )
    out = []
    for i, t in enumerate(thresholds.tolist()):
        payload = template.payload.model_copy(update={"subscription_id": f"s-{i}", "min_score": t})
        out.append(
            template.model_copy(
                update={"agent_id": f"sub-{i % SUBSCRIBER_AGENTS}", "payload": payload}
            )
        )
    return out


def _build(subs: list[Subscription], vectors: np.ndarray) -> tuple[SubscriptionIndex, float]:
    index = SubscriptionIndex(vectors.shape[1])
    t0 = time.perf_counter()
    for sub, v in zip(subs, vectors, strict=True):
        index.upsert(sub, v)
    return index, time.perf_counter() - t0


def _index_bytes(index: SubscriptionIndex) -> int:
    t = index._tenants.get(TENANT)
    if t is None:
        return 0
    arrays = (t.vectors, t.thresholds, t.norms, t.codes, t.scale, t.err)
    return int(sum(a.nbytes for a in arrays))


def brute_force(vectors: np.ndarray, thresholds: np.ndarray, queries: np.ndarray) -> list[set[int]]:
    """Per query, the subscriptions whose float64 score reaches their threshold."""
    q = queries.astype(np.float64).T
    found: list[set[int]] = [set() for _ in range(len(queries))]
    for a in range(0, len(vectors), 65_536):
        scores = vectors[a : a + 65_536].astype(np.float64) @ q
        rows, cols = np.nonzero(scores >= thresholds[a : a + 65_536, None])
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            found[c].add(a + r)
    return found


def exactness(
    index: SubscriptionIndex,
    reference: list[set[int]],
    queries: np.ndarray,
    methods: tuple[str, ...],
) -> dict[str, Any]:
    """Misses (over threshold, not found) and extras (found, not over threshold) per method."""
    out: dict[str, Any] = {
        "memories_checked": len(queries),
        "pairs_over_threshold": sum(len(r) for r in reference),
    }
    before = index.method
    for method in methods:
        index.method = method  # type: ignore[assignment]
        misses = extras = 0
        for a in range(0, len(queries), BATCH):
            found = index.over_threshold(TENANT, queries[a : a + BATCH])
            for ref, got in zip(reference[a : a + BATCH], found, strict=True):
                ids = {int(s[2:]) for s, _ in got}
                misses += len(ref - ids)
                extras += len(ids - ref)
        out[method] = {"misses": misses, "extras": extras}
    index.method = before
    return out


def _interleaved(
    runs: dict[str, Callable[[int], int]], chunk: dict[str, int], budget_s: float, n: int
) -> dict[str, dict[str, float]]:
    """Run each method on its next chunk of memories in turn until `budget_s` is spent
    (each at least twice), so that other load on the machine hits all of them alike.
    `runs[m](start)` handles memories start.. start+chunk[m]-1 and returns a count (of
    deliveries, or pairs found)."""
    done = {m: 0 for m in runs}
    spent = {m: 0.0 for m in runs}
    counted = {m: 0 for m in runs}
    rounds = 0
    t_start = time.perf_counter()
    while rounds < 2 or time.perf_counter() - t_start < budget_s:
        for m, run in runs.items():
            t0 = time.perf_counter()
            counted[m] += run(done[m] % n)
            spent[m] += time.perf_counter() - t0
            done[m] += chunk[m]
        rounds += 1
    return {
        m: {
            "memories": done[m],
            "seconds": round(spent[m], 2),
            "memories_per_s": round(done[m] / spent[m], 1),
            "per_memory": round(counted[m] / done[m], 2),
        }
        for m in runs
    }


def _cycle(queries: np.ndarray, start: int, count: int) -> np.ndarray:
    return queries[np.arange(start, start + count) % len(queries)]
