"""`memstream bench push`: publish-to-push latency over the real API, and matcher throughput.

Part 1 (end to end) starts a broker and one `memstream worker --serve` (real embedding
model), creates `subscriptions` standing queries for 20 subscriber agents of one tenant,
opens one SSE stream per subscriber, then publishes memories through `POST /v1/memories`
on a fixed timetable at each rate. Latency is SSE arrival minus the moment just before the
POST (`publish_clock`); the delivery's own `ts` (stamped by the worker when it matched)
splits it into publish -> matched (queueing, batching, embedding, store write) and
matched -> arrived (deliveries topic, the per-stream gateway consumer, SSE).

Part 2 (broker-free) times `SubscriptionIndex.upsert` and `.match` with 1k and 10k
subscriptions in one tenant (the worst case: matching scans the memory's tenant only).
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
from memstream.services.matcher import SubscriptionIndex
from memstream.stack import spawn_worker, stop_process, wait_for_http
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
) -> dict[str, Any]:
    """Part 2 for one index size: upsert cost, then match() per memory when nothing passes
    the score (the scan) and when `match_share` of subscriptions do (the deliveries)."""
    rng = np.random.default_rng(seed)
    subs = _unit(rng.standard_normal((size, dim)))
    vectors = _unit(rng.standard_normal((memories, dim)))
    min_score = float(np.quantile(vectors[: min(memories, 200)] @ subs.T, 1.0 - match_share))
    index = SubscriptionIndex(dim)
    t0 = time.perf_counter()
    for i in range(size):
        index.upsert(
            Subscription(
                tenant=TENANT,
                agent_id=f"sub-{i % SUBSCRIBER_AGENTS}",
                scope="private",
                payload=SubscriptionPayload(
                    subscription_id=f"s-{i}",
                    query=f"query {i}",
                    min_score=min_score,
                    max_per_minute=MAX_PER_MINUTE,
                ),
            ),
            subs[i],
        )
    upsert_s = time.perf_counter() - t0
    record = _indexed("pub-0")

    def timed(vecs: np.ndarray) -> tuple[int, int, float]:
        done = produced = 0
        start = time.perf_counter()
        for v in vecs:
            produced += len(index.match(record, v))
            done += 1
            if time.perf_counter() - start > max_s:
                break
        return done, produced, time.perf_counter() - start

    scan_n, _, scan_s = timed(np.zeros((min(memories, 500), dim), dtype=np.float32))
    n, produced, match_s = timed(vectors)
    t0 = time.perf_counter()
    for v in vectors[:scan_n]:
        subs @ v
    matmul_s = time.perf_counter() - t0
    return {
        "subscriptions": size,
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
        "matmul_only_us_per_memory": round(1e6 * matmul_s / scan_n, 1),
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
    matcher_match_share: float = 0.01,
    progress: bool = True,
) -> dict[str, Any]:
    """Both parts; a JSON-able dict. `match_share`: target fraction of subscriptions each
    memory matches end to end (sets min_score); `matcher_match_share`: the same for part 2."""
    matcher = []
    for size in matcher_sizes:
        if progress:
            print(f"[push] matcher: {size} subscriptions", file=sys.stderr, flush=True)
        matcher.append(matcher_throughput(size, match_share=matcher_match_share))
    e2e = end_to_end(rates, subscriptions, seconds, broker, match_share, progress)
    return {
        "bench": "push",
        "run_id": uuid.uuid4().hex[:8],
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
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
            "Matcher: all subscriptions in ONE tenant (worst case; match() scans only the "
            "memory's tenant, so T equal tenants cost ~1/T). Random unit vectors; "
            "min_score set so matcher_match_share of pairs pass.",
        ],
    }


if __name__ == "__main__":
    print(json.dumps(run_push_bench(), indent=2))
