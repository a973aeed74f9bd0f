"""`memstream bench push`: publish-to-push latency over the real API, and matcher throughput.

Part 1 (end to end) starts a broker and one `memstream worker --serve` (real embedding
model), creates `subscriptions` standing queries for 20 subscriber agents of one tenant,
opens one SSE stream per subscriber, then publishes memories through `POST /v1/memories`
on a fixed timetable at each rate. Latency is SSE arrival minus the moment just before the
POST (`publish_clock`); the delivery's own `ts` (stamped by the worker when it matched)
splits it into publish -> matched (queueing, batching, embedding, store write) and
matched -> arrived (deliveries topic, the per-stream gateway consumer, SSE).

Part 2 (broker-free, `--matcher-sizes`) times the subscription matcher at each size in one
tenant (the worst case: matching reads the memory's tenant only), on subscriptions simulated
from real MiniLM embeddings (see the comment there) and on random vectors: memories/s for
the matcher as it was before issue 17 and for the exact batched passes, in the same run, and
the sets of subscriptions over threshold against float64 brute force on a sample.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from memstream.broker import start_broker
from memstream.broker.base import free_port
from memstream.schemas.events import (
    Indexed,
    IndexedPayload,
    Subscription,
    SubscriptionPayload,
)
from memstream.services.auth import TokenStore
from memstream.services.matcher import INT8_MIN, SubscriptionIndex, int8_engine
from memstream.services.stack import spawn_worker, stop_process, wait_for_http
from memstream.streams.admin import ensure_topics

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


# --- part 1: end to end ------------------------------------------------------------------------


@dataclass
class Arrival:
    memory_id: str
    subscription_id: str
    recipient: str
    perf: float
    wall: float
    matched_wall: float


@dataclass
class Sent:
    memory_id: str
    scheduled: float
    perf: float
    wall: float
    ack_perf: float


@dataclass
class _Run:
    url: str
    tokens: dict[str, str]
    arrivals: list[Arrival] = field(default_factory=list)
    connected: set[str] = field(default_factory=set)
    sent_ids: set[str] = field(default_factory=set)
    indexed: dict[str, tuple[float, bool]] = field(default_factory=dict)  # id -> (ts, dup)
    models: dict[str, str] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _read_stream(run: _Run, agent: str) -> None:
    """One subscriber's SSE stream: every delivery's arrival time, keyed by memory id."""
    async with httpx.AsyncClient(base_url=run.url, timeout=None) as client:
        async with client.stream("GET", "/v1/stream", headers=_auth(run.tokens[agent])) as r:
            if r.status_code != 200:
                run.failures.append(f"stream {agent}: HTTP {r.status_code}")
                return
            async for line in r.aiter_lines():
                if line.startswith(": connected"):
                    run.connected.add(agent)
                elif line.startswith("data: "):
                    perf, wall = time.perf_counter(), time.time()
                    p = json.loads(line[6:])
                    matched = datetime.fromisoformat(p["ts"]).timestamp()
                    d = p["payload"]
                    run.arrivals.append(
                        Arrival(
                            d["memory_id"],
                            d["subscription_id"],
                            d["recipient"],
                            perf,
                            wall,
                            matched,
                        )
                    )


async def _follow_indexed(run: _Run, bootstrap: str) -> None:
    """Which memories the worker finished (and which it merged as near-duplicates, which
    are never delivered), with the `indexed` record's broker timestamp."""
    from aiokafka import AIOKafkaConsumer

    from memstream.schemas.topics import INDEXED

    consumer = AIOKafkaConsumer(
        INDEXED.name,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        while True:
            for messages in (await consumer.getmany(timeout_ms=200)).values():
                for message in messages:
                    record = Indexed.model_validate_json(message.value)
                    run.indexed[str(record.event_id)] = (
                        message.timestamp / 1000.0,
                        record.payload.duplicate_of is not None,
                    )
                    if not run.models:
                        run.models = dict(record.payload.models)
    finally:
        await consumer.stop()


async def _stats(api: httpx.AsyncClient, token: str) -> dict[str, Any]:
    return (await api.get("/v1/stats", headers=_auth(token))).json()


async def _publish_at(
    api: httpx.AsyncClient, run: _Run, rate: int, seconds: float, first: int
) -> list[Sent]:
    """POST `rate * seconds` memories on a fixed timetable (one task per send, so a slow
    answer never delays the next send); records the clock just before each POST."""
    texts = memory_texts(int(rate * seconds), start=first)
    publishers = [f"pub-{i}" for i in range(PUBLISHER_AGENTS)]
    sent: list[Sent] = []

    async def one(i: int, scheduled: float, topic: str, text: str) -> None:
        token = run.tokens[publishers[i % len(publishers)]]
        perf, wall = time.perf_counter(), time.time()
        try:
            r = await api.post(
                "/v1/memories",
                json={"text": text, "topic": topic, "scope": "tenant", "tags": [topic]},
                headers=_auth(token),
            )
        except httpx.HTTPError as err:
            run.failures.append(f"publish: {type(err).__name__}: {err}")
            return
        if r.status_code != 202:
            run.failures.append(f"publish: HTTP {r.status_code} {r.text[:200]}")
            return
        memory_id = r.json()["event_id"]
        run.sent_ids.add(memory_id)
        sent.append(Sent(memory_id, scheduled, perf, wall, time.perf_counter()))

    start = time.perf_counter() + 0.1
    tasks = []
    for i, (topic, text) in enumerate(texts):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, scheduled, topic, text)))
    await asyncio.gather(*tasks)
    return sent


async def _drain(
    api: httpx.AsyncClient, run: _Run, token: str, timeout: float, quiet_s: float = 20.0
) -> dict[str, Any]:
    """Wait until every published memory is on `indexed` and every delivery the worker
    produced has arrived (or nothing moved for `quiet_s`, or `timeout` passed)."""
    deadline = time.monotonic() + timeout
    last_progress, last_key = time.monotonic(), None
    worker: dict[str, Any] = {}
    while time.monotonic() < deadline:
        worker = (await _stats(api, token))["worker"]
        if run.sent_ids <= run.indexed.keys() and len(run.arrivals) >= worker["deliveries"]:
            return {"complete": True, **worker}
        key = (len(run.indexed), worker["deliveries"], len(run.arrivals))
        if key != last_key:
            last_key, last_progress = key, time.monotonic()
        elif time.monotonic() - last_progress > quiet_s:
            break
        await asyncio.sleep(0.2)
    return {"complete": False, **worker}


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rate_report(
    rate: int, seconds: float, sent: list[Sent], run: _Run, send_s: float
) -> dict[str, Any]:
    """Latencies and counts of one rate step's memories."""
    by_id = {s.memory_id: s for s in sent}
    mine = [a for a in run.arrivals if a.memory_id in by_id]
    pairs = {(a.memory_id, a.subscription_id) for a in mine}
    first: dict[str, Arrival] = {}
    for a in mine:
        if a.memory_id not in first or a.perf < first[a.memory_id].perf:
            first[a.memory_id] = a
    firsts = sorted(
        ((by_id[m].perf, a.perf - by_id[m].perf) for m, a in first.items()), key=lambda x: x[0]
    )
    quarter = max(len(firsts) // 4, 1)
    indexed = {m: run.indexed[m] for m in by_id if m in run.indexed}
    duplicates = sum(1 for _, dup in indexed.values() if dup)
    published = len(sent)
    last_arrival = max((a.perf for a in mine), default=None)
    last_send = max((s.perf for s in sent), default=None)
    index_times = sorted(ts for ts, _ in indexed.values())
    first_wall = min((s.wall for s in sent), default=None)
    return {
        "rate_target_per_s": rate,
        "seconds": seconds,
        "published": published,
        "publish_rate_achieved_per_s": round(published / send_s, 1) if send_s else None,
        "send_start_lag_ms": summary_ms([s.perf - s.scheduled for s in sent]),
        "post_202_ms": summary_ms([s.ack_perf - s.perf for s in sent]),
        "memories_indexed": len(indexed),
        "memories_merged_as_duplicates": duplicates,
        "worker_indexing_rate_per_s": (
            round(len(index_times) / (index_times[-1] - first_wall), 1)
            if index_times and first_wall and index_times[-1] > first_wall
            else None
        ),
        "memories_delivered": len(first),
        "memories_without_delivery": published - len(first),
        "deliveries_received": len(mine),
        "deliveries_unique": len(pairs),
        "deliveries_per_memory_mean": round(len(pairs) / published, 2) if published else None,
        "latency_first_delivery_ms": summary_ms([x for _, x in firsts]),
        "latency_each_delivery_ms": summary_ms([a.perf - by_id[a.memory_id].perf for a in mine]),
        "latency_first_delivery_p50_ms_by_quarter": [
            summary_ms([x for _, x in firsts[q * quarter : (q + 1) * quarter]])["p50"]
            for q in range(4)
        ],
        "latency_from_202_first_delivery_p50_ms": summary_ms(
            [a.perf - by_id[m].ack_perf for m, a in first.items()]
        )["p50"],
        "publish_to_matched_ms": summary_ms(
            [a.matched_wall - by_id[a.memory_id].wall for a in mine]
        ),
        "matched_to_arrived_ms": summary_ms([a.wall - a.matched_wall for a in mine]),
        "publish_to_indexed_record_ms": summary_ms(
            [ts - by_id[m].wall for m, (ts, _) in indexed.items()]
        ),
        "drain_after_last_send_s": (
            round(last_arrival - last_send, 2) if last_arrival and last_send else None
        ),
    }


async def _end_to_end(
    url: str,
    bootstrap: str,
    tokens: dict[str, str],
    pid: int,
    rates: tuple[int, ...],
    subscriptions: int,
    seconds: float,
    min_score: float,
    say: Callable[[str], None],
) -> dict[str, Any]:
    run = _Run(url, tokens)
    stats_token = tokens["sub-0"]
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    follower = asyncio.create_task(_follow_indexed(run, bootstrap))
    readers: list[asyncio.Task[None]] = []
    try:
        async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as api:
            t0 = time.perf_counter()
            for agent_index, query in subscription_queries(subscriptions):
                r = await api.post(
                    "/v1/subscriptions",
                    json={
                        "query": query,
                        "min_score": min_score,
                        "max_per_minute": MAX_PER_MINUTE,
                    },
                    headers=_auth(tokens[f"sub-{agent_index}"]),
                )
                r.raise_for_status()
            for _ in range(600):
                if (await _stats(api, stats_token))["subscriptions"] >= subscriptions:
                    break
                await asyncio.sleep(0.25)
            else:
                raise RuntimeError("the worker never applied all subscriptions")
            subscribe_s = time.perf_counter() - t0
            say(f"{subscriptions} subscriptions applied in {subscribe_s:.1f}s; opening streams")

            agents = sorted({f"sub-{i}" for i, _ in subscription_queries(subscriptions)})
            readers = [asyncio.create_task(_read_stream(run, a)) for a in agents]
            while len(run.connected) < len(agents):
                if run.failures:
                    raise RuntimeError(run.failures[0])
                await asyncio.sleep(0.1)
            await asyncio.sleep(2.0)  # each stream's consumer seeks to the end after `connected`
            say("warm-up: 20 memories at 10/s")
            warm = await _publish_at(api, run, 10, 2.0, first=0)
            warm_drain = await _drain(api, run, stats_token, timeout=120)
            say(f"warm-up drained: {warm_drain}")
            rows = []
            first = len(warm)
            for rate in rates:
                say(f"rate {rate}/s for {seconds}s")
                cpu0, own0 = _cpu_s(pid), time.process_time()
                t_start = time.perf_counter()
                sent = await _publish_at(api, run, rate, seconds, first=first)
                first += int(rate * seconds)
                send_s = max(s.perf for s in sent) - min(s.perf for s in sent) + 1.0 / rate
                drain = await _drain(api, run, stats_token, timeout=max(180.0, 10 * seconds))
                wall = time.perf_counter() - t_start
                cpu1, own1 = _cpu_s(pid), time.process_time()
                row = _rate_report(rate, seconds, sent, run, send_s)
                row["drained"] = drain["complete"]
                row["window_s"] = round(wall, 1)
                row["worker_cpu_cores_avg"] = round((cpu1 - cpu0) / wall, 2)
                row["bench_client_cpu_cores_avg"] = round((own1 - own0) / wall, 2)
                rows.append(row)
                say(
                    f"  published {row['published']} ({row['publish_rate_achieved_per_s']}/s), "
                    f"indexed {row['memories_indexed']} at {row['worker_indexing_rate_per_s']}/s, "
                    f"delivered {row['memories_delivered']}, first-delivery latency "
                    f"{row['latency_first_delivery_ms']}"
                )
            final = await _stats(api, stats_token)
    finally:
        for task in [*readers, follower]:
            task.cancel()
        await asyncio.gather(*readers, follower, return_exceptions=True)
    return {
        "subscribe_s": round(subscribe_s, 2),
        "streams": len(agents),
        "warmup": {"published": len(warm), **warm_drain},
        "rates": rows,
        "worker_counts": final.get("worker"),
        "memories_in_store": final.get("memories_indexed"),
        "models": run.models,
        "failures": run.failures[:20],
        "failure_count": len(run.failures),
    }


def end_to_end(
    rates: tuple[int, ...],
    subscriptions: int,
    seconds: float,
    broker: str,
    match_share: float,
    progress: bool,
) -> dict[str, Any]:
    """Part 1: broker + worker + API; see the module docstring."""

    def say(msg: str) -> None:
        if progress:
            print(f"[push] {msg}", file=sys.stderr, flush=True)

    needed = 20 + sum(int(rate * seconds) for rate in rates)
    if needed > MAX_MEMORIES - 400:
        raise ValueError(f"{needed} memories asked; at most {MAX_MEMORIES - 400} distinct ones")
    sample = [t for _, t in memory_texts(needed)]
    queries = [q for _, q in subscription_queries(subscriptions)]
    calibration = calibrate_min_score(
        queries, [t for _, t in memory_texts(400, start=MAX_MEMORIES - 400)], match_share
    )
    say(f"calibrated: {calibration}")
    handle = start_broker(broker)
    worker = None
    try:
        asyncio.run(ensure_topics(handle.bootstrap, partitions=3))
        with tempfile.TemporaryDirectory(prefix="memstream-push-") as tmp:
            data_dir = Path(tmp)
            log = data_dir / "worker.log"
            port = free_port()
            worker = spawn_worker(
                handle.bootstrap,
                log_path=log,
                MEMSTREAM_SERVE="true",
                MEMSTREAM_WEB_PORT=str(port),
                MEMSTREAM_DATA_DIR=str(data_dir),
                MEMSTREAM_LEARNER_ENABLED="false",
                MEMSTREAM_LOG_LEVEL="WARNING",
            )
            url = f"http://127.0.0.1:{port}"
            t0 = time.perf_counter()
            try:
                wait_for_http(f"{url}/healthz", 180)
            except TimeoutError as err:
                raise RuntimeError(f"worker not up; log tail:\n{log.read_text()[-3000:]}") from err
            say(f"worker up in {time.perf_counter() - t0:.1f}s at {url} on {handle.label}")
            store = TokenStore(data_dir / "tokens.db")
            tokens = {
                f"sub-{i}": store.create(TENANT, f"sub-{i}") for i in range(SUBSCRIBER_AGENTS)
            }
            tokens |= {
                f"pub-{i}": store.create(TENANT, f"pub-{i}") for i in range(PUBLISHER_AGENTS)
            }
            result = asyncio.run(
                _end_to_end(
                    url,
                    handle.bootstrap,
                    tokens,
                    worker.pid,
                    rates,
                    subscriptions,
                    seconds,
                    calibration["min_score"],
                    say,
                )
            )
            alive = worker.poll() is None
            stop_process(worker)
            worker = None
            if not alive:
                result["worker_log_tail"] = log.read_text()[-3000:]
    finally:
        if worker is not None:
            stop_process(worker)
        handle.stop()
    return {
        "broker": handle.label,
        "tenant_layout": (
            f"1 tenant, {SUBSCRIBER_AGENTS} subscriber agents (1 SSE stream each), "
            f"{PUBLISHER_AGENTS} publisher agents, scope=tenant"
        ),
        "memory_text": {
            "words_mean": round(float(np.mean([len(t.split()) for t in sample])), 1),
            "chars_mean": round(float(np.mean([len(t) for t in sample])), 1),
            "example": sample[0],
        },
        "calibration": calibration,
        "max_per_minute": MAX_PER_MINUTE,
        "publish_clock": "time.perf_counter() just before each POST /v1/memories",
        **result,
    }


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


# --- entry point -------------------------------------------------------------------------------


def run_push_bench(
    rates: tuple[int, ...] = (50, 200),
    subscriptions: int = 100,
    seconds: float = 20.0,
    matcher_sizes: tuple[int, ...] = (1_000, 10_000),
    broker: str = "tansu",
    *,
    match_share: float = 0.05,
    matcher_match_share: float = 0.001,
    matcher_seconds: float = 10.0,
    matcher_check: int = 64,
    locomo: Path = Path("../shared/data/locomo_dev.json"),
    progress: bool = True,
) -> dict[str, Any]:
    """Both parts (an empty `rates` or `matcher_sizes` skips one); a JSON-able dict.
    `match_share`: target fraction of subscriptions each memory matches end to end (sets
    min_score); `matcher_match_share`: the same for the random worst case of part 2;
    `matcher_seconds`: per size, for each of search and match (methods interleaved);
    `matcher_check`: memories compared with brute force per size."""
    matcher = (
        matcher_scaling(
            matcher_sizes,
            locomo,
            budget_s=matcher_seconds,
            check=matcher_check,
            random_match_share=matcher_match_share,
            progress=progress,
        )
        if matcher_sizes
        else None
    )
    e2e = (
        end_to_end(rates, subscriptions, seconds, broker, match_share, progress) if rates else None
    )
    return {
        "bench": "push",
        "run_id": uuid.uuid4().hex[:8],
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_avg_1_5_15_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "rates": list(rates),
        "subscriptions": subscriptions,
        "seconds": seconds,
        "end_to_end": e2e,
        "matcher": matcher,
        "notes": [
            "Latency = SSE arrival - time just before the POST, same process clock; "
            "publish_to_matched uses the delivery's ts (worker wall clock, same machine).",
            "Benchmark client, broker and worker share this machine's CPUs; "
            "bench_client_cpu_cores_avg is the client's share.",
            "Each SSE stream has its own gateway consumer reading the whole deliveries "
            "partition of its agent and filtering by key (3 partitions, 20 streams).",
            f"Subscriptions use max_per_minute={MAX_PER_MINUTE}: the default 60/min "
            "would throttle them at these rates.",
            "Matcher: all subscriptions in ONE tenant (worst case; matching reads only the "
            "memory's tenant, so T equal tenants cost ~1/T). search = finding every "
            "subscription at or over its min_score (exact); match = that plus the "
            "per-subscription checks and building the Delivery events. scan = the matcher "
            "before issue 17 (one float32 matrix-vector product per memory); float32 / int8 "
            f"= the exact batched first passes ({BATCH} memories per call); methods are "
            "interleaved in one run, so machine load hits them alike.",
        ],
    }


if __name__ == "__main__":
    print(json.dumps(run_push_bench(), indent=2))
