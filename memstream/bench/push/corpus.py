"""The push bench's corpus: memory texts, standing queries, latency summaries."""

from __future__ import annotations

import random
from typing import Any

import numpy as np

TENANT = "bench-push"
SUBSCRIBER_AGENTS = 20
PUBLISHER_AGENTS = 10
MAX_MEMORIES = 5 * 5 * 4 * 20 * 5  # distinct texts `memory_texts` can make
MAX_PER_MINUTE = 100_000  # the default (60/min) would throttle subscriptions at these rates

# Five topics: standing queries and memory fragments about them (a memory is one subject,
# one event, one detail and a unique ticket number, so none is a near-duplicate of another).
TOPICS: dict[str, dict[str, list[str]]] = {
    "databases": {
        "queries": [
            "postgres replication lag and failover",
            "database schema migrations",
            "slow SQL queries and missing indexes",
            "database backups and restores",
        ],
        "subjects": [
            "The orders Postgres primary",
            "The staging MySQL replica",
            "The analytics warehouse",
            "The billing database",
            "The users table",
        ],
        "events": [
            "fell forty seconds behind in replication",
            "ran out of connections",
            "needed a new index on customer_id",
            "was restored from last night's backup",
            "finished its schema migration",
        ],
        "details": [
            "during the nightly batch",
            "after the latest release",
            "while autovacuum was running",
            "on the eu-west cluster",
        ],
    },
    "deployments": {
        "queries": [
            "failed deployments and rollbacks",
            "kubernetes rollout problems",
            "CI pipeline breakages",
            "feature flags and canary releases",
        ],
        "subjects": [
            "The checkout service rollout",
            "The nightly CI pipeline",
            "The canary for the search API",
            "The Helm release of the gateway",
            "The blue-green deploy of the web app",
        ],
        "events": [
            "was rolled back",
            "got stuck at fifty percent of pods",
            "failed on a flaky integration test",
            "was paused by the feature flag service",
            "crash-looped on startup",
        ],
        "details": [
            "because a config map was missing",
            "after a dependency upgrade",
            "in the production cluster",
            "when the image registry timed out",
        ],
    },
    "billing": {
        "queries": [
            "invoices and payment failures",
            "customer refunds",
            "subscription plan pricing changes",
            "payment provider outages",
        ],
        "subjects": [
            "The monthly invoice run",
            "A refund for an enterprise customer",
            "The Stripe webhook handler",
            "The annual plan price",
            "The dunning email job",
        ],
        "events": [
            "charged some customers twice",
            "was approved by finance",
            "dropped payment events",
            "goes up next quarter",
            "sent reminders to paid accounts",
        ],
        "details": [
            "for customers in Europe",
            "after the currency change",
            "during the provider's incident",
            "for accounts on the legacy plan",
        ],
    },
    "security": {
        "queries": [
            "leaked credentials and secret rotation",
            "TLS certificate expiry",
            "access reviews and permissions",
            "security vulnerabilities in dependencies",
        ],
        "subjects": [
            "An AWS access key",
            "The TLS certificate of the public API",
            "The quarterly access review",
            "A critical CVE in the logging library",
            "The SSO configuration",
        ],
        "events": [
            "was found in a public repository",
            "expires in five days",
            "revoked admin rights from contractors",
            "needs an urgent patch",
            "now enforces hardware keys",
        ],
        "details": [
            "and was rotated immediately",
            "for the payments team",
            "according to the security scanner",
            "before the compliance audit",
        ],
    },
    "networking": {
        "queries": [
            "DNS resolution problems",
            "load balancer errors and timeouts",
            "network latency between regions",
            "firewall and VPN changes",
        ],
        "subjects": [
            "The internal DNS resolver",
            "The public load balancer",
            "Traffic between us-east and eu-west",
            "The office VPN",
            "The egress firewall",
        ],
        "events": [
            "returned SERVFAIL for internal names",
            "answered with 502 errors",
            "doubled its round-trip latency",
            "dropped connections every hour",
            "blocked calls to the package mirror",
        ],
        "details": [
            "after a route table change",
            "during peak traffic",
            "because of an MTU mismatch",
            "until the health checks were fixed",
        ],
    },
}


NOTES = [
    "the on-call engineer was paged",
    "customers noticed slower pages",
    "a postmortem is scheduled for friday",
    "the runbook was updated",
    "alerts fired twice overnight",
    "nobody lost any data",
    "the fix needs a second review",
    "support tickets are piling up",
    "the team added a new dashboard",
    "a workaround is documented in the wiki",
    "the vendor confirmed the problem",
    "retries hid the errors for a while",
    "the change freeze was lifted",
    "we should automate this check",
    "the metrics looked normal at first",
    "finance asked for a written summary",
    "the old behaviour was restored",
    "load tests did not catch it",
    "a follow-up task was filed",
    "the logs were too noisy to help",
]
_STRIDE = 7_919  # a prime coprime to the number of combinations: i -> a permutation


def memory_texts(n: int, start: int = 0) -> list[tuple[str, str]]:
    """Memories `start .. start+n-1` as (topic, text), about 20 words each: every text
    distinct in enough plain lower-case words that neither the privacy stage (which
    replaces numbers and proper nouns with placeholders) nor the near-duplicate merge
    collapses two of them (a merged duplicate is never delivered)."""
    names = sorted(TOPICS)
    per_topic = 5 * 5 * 4 * len(NOTES)
    total = per_topic * len(names)
    if start + n > total:
        raise ValueError(f"at most {total} distinct memories")
    out = []
    for i in range(start, start + n):
        k = (i * _STRIDE + 1_234) % total
        k, note = divmod(k, len(NOTES))
        k, detail = divmod(k, 4)
        k, event = divmod(k, 5)
        topic_i, subject = divmod(k, 5)
        t = TOPICS[names[topic_i]]
        text = (
            f"{t['subjects'][subject]} {t['events'][event]} {t['details'][detail]}; {NOTES[note]}."
        )
        out.append((names[topic_i], text))
    return out


def subscription_queries(n: int, seed: int = 2) -> list[tuple[int, str]]:
    """n (subscriber index, query) pairs spread round-robin over the subscriber agents."""
    rng = random.Random(seed)
    queries = [q for t in TOPICS.values() for q in t["queries"]]
    return [(i % SUBSCRIBER_AGENTS, rng.choice(queries)) for i in range(n)]


def summary_ms(values_s: list[float] | np.ndarray) -> dict[str, float | int | None]:
    """p50/p90/p99/max/mean in milliseconds of seconds-valued samples."""
    a = np.asarray(values_s, dtype=np.float64) * 1000.0
    if a.size == 0:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "max": None, "mean": None}
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {
        "n": int(a.size),
        "p50": round(float(p50), 1),
        "p90": round(float(p90), 1),
        "p99": round(float(p99), 1),
        "max": round(float(a.max()), 1),
        "mean": round(float(a.mean()), 1),
    }


def calibrate_min_score(queries: list[str], texts: list[str], share: float) -> dict[str, Any]:
    """The min_score at which `share` of (memory, subscription) pairs match, measured with
    the worker's model and vector codec (memory vectors go through encode/decode)."""
    from memstream.models.compression import decode_vectors, encode_vectors
    from memstream.models.embedding import load_embedder

    embedder = load_embedder("minilm")
    q = embedder.embed(queries)
    m = decode_vectors(encode_vectors(embedder.embed(texts)))
    scores = m @ q.T
    threshold = float(np.quantile(scores, 1.0 - share))
    return {
        "min_score": round(threshold, 4),
        "target_match_share": share,
        "calibration_pairs": int(scores.size),
        "embedding_model": embedder.version,
    }
