"""`memstream bench ingest`: how fast the worker takes in realistic memories, against the
plain loop and the model alone in the same run, and what a search costs while it does.

Texts are LoCoMo turns (speaker, session date and previous turn as context, as
`eval retrieval` stores them). In one run, on one machine:

1. **References, in this process, nothing else running**: `embed_only` (the ONNX embedding
   of the texts at batch 500, nothing else) and `serial_loop` (the worker's own privacy
   stage, model stage and store writes, one batch of 500 after another on one thread, no
   broker, no framework).
2. **The worker** (`memstream worker --serve` on the default broker, Apache Kafka): every
   turn published at once, in a fresh tenant per repeat; the rate is memories over the time
   from the first publish to the last `memstream.indexed` record. Searches (`POST
   /v1/search`, one at a time, LoCoMo questions) are timed on the idle store and again while
   a repeat is being ingested. The worker's RSS is read after each phase, and after
   `rss_memories` memories in all.
3. **Latency** (`bench push`'s end-to-end part, a fresh broker and worker): publish-to-push
   and publish-to-indexed at 20 and 50 memories/s.

Ratios are what to compare across runs: the machine is shared and noisy.
"""

from __future__ import annotations

import asyncio
import os
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from aiokafka import AIOKafkaConsumer

from memstream.bench.pipeline import send_memories
from memstream.bench.push import end_to_end, summary_ms
from memstream.bench.push.latency import serve_worker
from memstream.broker import start_broker
from memstream.eval.locomo import load_locomo
from memstream.eval.retrieval import turn_memories
from memstream.schemas.events import Indexed, Memory, new_event_id
from memstream.schemas.topics import INDEXED
from memstream.services.auth import TokenStore
from memstream.services.stack import stop_process
from memstream.streams.admin import ensure_topics

REFERENCE_BATCH = 500


def _status_kb(pid: int, field: str = "VmRSS") -> int | None:
    """One kB figure of /proc/PID/status (VmRSS, RssAnon, RssFile, RssShmem)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _rss_mb(pid: int) -> float | None:
    """Resident MB of the worker and its children (the PII process), at this moment."""
    own = _status_kb(pid)
    if own is None:
        return None
    total = own + sum(_status_kb(c) or 0 for c in _children(pid))
    return round(total / 1024, 1)


def _rss_parts(pid: int) -> dict[str, dict[str, float | None]]:
    """Where the resident memory is, per process (the worker, then each child): anonymous
    pages (the heap: what a leak grows) and file pages (the store's memory-mapped segments,
    which the kernel can drop and read back)."""

    def parts(p: int) -> dict[str, float | None]:
        return {
            kind: (None if (kb := _status_kb(p, field)) is None else round(kb / 1024, 1))
            for kind, field in (("anon", "RssAnon"), ("file", "RssFile"), ("shmem", "RssShmem"))
        }

    out = {"worker": parts(pid)}
    for child in _children(pid):
        out[f"child-{child}"] = parts(child)
    return out


def _retag(memories: list[Memory], tenant: str) -> list[Memory]:
    """The same turns as new events of `tenant` (fresh ids, so nothing is a replay)."""
    return [m.model_copy(update={"tenant": tenant, "event_id": new_event_id()}) for m in memories]


# --- part 1: references --------------------------------------------------------------------


def references(memories: list[Memory], say: Callable[[str], None]) -> dict[str, Any]:
    """`embed_only` and `serial_loop` rates (memories/s), in this process."""
    from memstream.models.embedding import OnnxEmbedder
    from memstream.models.registry import HotSwapScorer, ModelRegistry
    from memstream.privacy.keystore import KeyStore
    from memstream.settings import Settings
    from memstream.store.edge import EdgeStore
    from memstream.store.sink import write_isolated
    from memstream.store.token_vectors import TokenVectorStore
    from memstream.streams.app import build_privacy_stage, enrich_or_reject
    from memstream.streams.enrich import ModelStage

    texts = [m.payload.text for m in memories]
    embedder = OnnxEmbedder()
    embedder.embed(texts[:64])  # warm-up
    t0 = time.perf_counter()
    for i in range(0, len(texts), REFERENCE_BATCH):
        embedder.embed(texts[i : i + REFERENCE_BATCH])
    embed_s = time.perf_counter() - t0
    say(f"embed only: {len(texts) / embed_s:.1f}/s")
    with tempfile.TemporaryDirectory(prefix="memstream-ingest-ref-") as tmp:
        data = Path(tmp)
        settings = Settings(data_dir=data)
        privacy = build_privacy_stage(settings, KeyStore(data / "keys.db"))
        stage = ModelStage(
            embedder,
            HotSwapScorer(ModelRegistry(data / "models", "valuation")),
            token_store=TokenVectorStore(data / "token_vectors.db"),
        )
        store = EdgeStore(data / "store")
        enrich_or_reject(stage, memories[:32], privacy)  # warm-up (spaCy, Presidio)
        tenant = f"ref-{uuid.uuid4().hex[:6]}"
        batch = _retag(memories, tenant)
        t0 = time.perf_counter()
        for i in range(0, len(batch), REFERENCE_BATCH):
            results = enrich_or_reject(stage, batch[i : i + REFERENCE_BATCH], privacy)  # type: ignore[arg-type]
            write_isolated(store, [r for r in results if isinstance(r, Indexed)])
        serial_s = time.perf_counter() - t0
        store.close()
    say(f"serial loop: {len(batch) / serial_s:.1f}/s")
    return {
        "embed_only": round(len(texts) / embed_s, 1),
        "serial_loop": round(len(batch) / serial_s, 1),
    }


# --- part 2: the worker --------------------------------------------------------------------


async def _publish_all(bootstrap: str, memories: list[Memory]) -> float:
    """Publish every memory (acks=all); returns the wall clock time of the first send."""
    first, _ = await send_memories(
        bootstrap, ((m.agent_id.encode(), m.to_json()) for m in memories)
    )
    return first


class _IndexedClock:
    """Follows `memstream.indexed` from its end: when each event id was indexed."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.seen: dict[str, float] = {}
        self.ready = asyncio.Event()

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            INDEXED.name,
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="latest",
            enable_auto_commit=False,
            fetch_max_wait_ms=50,
        )
        await consumer.start()
        try:
            await consumer.getmany(timeout_ms=200)
            self.ready.set()
            while True:
                batches = await consumer.getmany(timeout_ms=200)
                now = time.time()
                for records in batches.values():
                    for record in records:
                        if record.key:
                            self.seen.setdefault(record.key.decode(), now)
        finally:
            await consumer.stop()

    async def wait_for(self, ids: set[str], timeout: float) -> float | None:
        """The time the last of `ids` was indexed, or None on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ids <= self.seen.keys():
                return max(self.seen[i] for i in ids)
            await asyncio.sleep(0.1)
        return None


async def _searches(
    api: httpx.AsyncClient, token: str, questions: list[str], stop: asyncio.Event | None, n: int
) -> list[float]:
    """Searches one after another: `n` of them, or until `stop` is set."""
    out: list[float] = []
    i = 0
    while (stop is None and i < n) or (stop is not None and not stop.is_set()):
        q = questions[i % len(questions)]
        t = time.perf_counter()
        r = await api.get(
            "/v1/search", params={"q": q, "k": 5}, headers={"Authorization": f"Bearer {token}"}
        )
        r.raise_for_status()
        out.append(time.perf_counter() - t)
        i += 1
    return out


async def _worker_phase(
    url: str,
    bootstrap: str,
    tokens: TokenStore,
    pid: int,
    memories: list[Memory],
    questions: list[str],
    repeats: int,
    rss_memories: int,
    say: Callable[[str], None],
) -> dict[str, Any]:
    clock = _IndexedClock(bootstrap)
    follower = asyncio.create_task(clock.run())
    await asyncio.wait_for(clock.ready.wait(), 60)
    rss: dict[str, float | None] = {"idle_start": _rss_mb(pid)}
    total = 0

    async def ingest(tenant: str) -> dict[str, Any]:
        nonlocal total
        batch = _retag(memories, tenant)
        first = await _publish_all(bootstrap, batch)
        last = await clock.wait_for({str(m.event_id) for m in batch}, timeout=900)
        if last is None:
            raise RuntimeError(f"the worker did not index all {len(batch)} memories of {tenant}")
        total += len(batch)
        return {"memories": len(batch), "rate_per_s": round(len(batch) / (last - first), 1)}

    try:
        async with httpx.AsyncClient(base_url=url, timeout=120) as api:
            search_tenant = f"ingest-{uuid.uuid4().hex[:6]}"
            token = tokens.create(search_tenant, "searcher")
            await ingest(search_tenant)  # warm-up, and the store the searches read
            rss["after_warmup"] = _rss_mb(pid)
            await _searches(api, token, questions, None, 20)  # warm the query path
            idle = await _searches(api, token, questions, None, 200)
            say(f"idle search: {summary_ms(idle)}")
            plain_runs = []
            for r in range(repeats):
                plain_runs.append(await ingest(f"ingest-{uuid.uuid4().hex[:6]}"))
                say(f"worker repeat {r + 1}: {plain_runs[-1]['rate_per_s']}/s")
            rss[f"after_{total}"] = _rss_mb(pid)
            stop = asyncio.Event()
            searching = asyncio.create_task(_searches(api, token, questions, stop, 0))
            loaded = await ingest(f"ingest-{uuid.uuid4().hex[:6]}")
            stop.set()
            under = await searching
            say(f"search under ingest: {summary_ms(under)} (ingest {loaded['rate_per_s']}/s)")
            # keyed by the memories indexed when read: the first after the warm-up, the
            # repeats and the run under searches
            rss_at: dict[str, float | None] = {str(total): _rss_mb(pid)}
            parts_at = {str(total): _rss_parts(pid)}
            while total < rss_memories:
                await ingest(f"ingest-{uuid.uuid4().hex[:6]}")
                rss_at[str(total)] = _rss_mb(pid)
                parts_at[str(total)] = _rss_parts(pid)
                say(f"{total} memories in all, RSS {rss_at[str(total)]} MB {parts_at[str(total)]}")
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
    rates = [r["rate_per_s"] for r in plain_runs]
    return {
        "rate_per_s_by_repeat": rates,
        "rate_per_s_median": float(np.median(rates)),
        "rate_per_s_while_searched": loaded["rate_per_s"],
        "search_idle": summary_ms(idle),
        "search_under_ingest": summary_ms(under),
        "rss_mb": rss,
        "rss_mb_by_memories": rss_at,
        "rss_parts_by_memories": parts_at,
        "memories_total": total,
    }


def worker_phase(
    memories: list[Memory],
    questions: list[str],
    broker: str,
    repeats: int,
    rss_memories: int,
    say: Callable[[str], None],
) -> dict[str, Any]:
    handle = start_broker(broker)
    worker = None
    try:
        asyncio.run(ensure_topics(handle.bootstrap, partitions=3))
        with tempfile.TemporaryDirectory(prefix="memstream-ingest-") as tmp:
            data_dir = Path(tmp)
            worker, url, log = serve_worker(
                handle.bootstrap,
                data_dir,
                MEMSTREAM_RATE_LIMIT_PER_S="0",  # searches one at a time: no limit needed
            )
            say(f"worker up at {url} on {handle.label}")
            result = asyncio.run(
                _worker_phase(
                    url,
                    handle.bootstrap,
                    TokenStore(data_dir / "tokens.db"),
                    worker.pid,
                    memories,
                    questions,
                    repeats,
                    rss_memories,
                    say,
                )
            )
            if worker.poll() is not None:
                result["worker_log_tail"] = log.read_text()[-3000:]
            stop_process(worker)
            worker = None
    finally:
        if worker is not None:
            stop_process(worker)
        handle.stop()
    result["broker"] = handle.label
    return result


# --- the whole bench -----------------------------------------------------------------------


def run_ingest_bench(
    dataset: Path,
    *,
    broker: str = "kafka",
    repeats: int = 3,
    rss_memories: int = 20_000,
    latency_seconds: float = 60.0,
    latency_rates: tuple[int, ...] = (20, 50),
    progress: bool = True,
) -> dict[str, Any]:
    def say(msg: str) -> None:
        if progress:
            print(f"[ingest] {msg}", file=sys.stderr, flush=True)

    data = load_locomo(dataset)
    memories, _, _ = turn_memories(data)
    questions = [q.question for q in data.questions]
    say(
        f"{len(memories)} LoCoMo turns, mean {np.mean([len(m.payload.text) for m in memories]):.0f} chars"
    )
    refs = references(memories, say)
    worker = worker_phase(memories, questions, broker, repeats, rss_memories, say)
    latency = (
        end_to_end(latency_rates, 20, latency_seconds, broker, 0.05, progress)
        if latency_rates
        else None
    )
    rows = {row["rate_target_per_s"]: row for row in (latency or {}).get("rates", [])}
    rss_by = worker["rss_mb_by_memories"]
    rss_values = [v for v in rss_by.values() if v is not None]
    counts = [int(k) for k, v in rss_by.items() if v is not None]
    per_10k = (
        round(
            (rss_by[str(max(counts))] - rss_by[str(min(counts))])
            * 10_000
            / (max(counts) - min(counts)),
            1,
        )
        if len(counts) > 1
        else None
    )
    return {
        "bench": "ingest",
        "dataset": str(dataset),
        "memories_per_repeat": len(memories),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "rate": {
            "worker": worker["rate_per_s_median"],
            "serial_loop": refs["serial_loop"],
            "embed_only": refs["embed_only"],
            "worker_over_serial_loop": round(worker["rate_per_s_median"] / refs["serial_loop"], 2),
            "worker_by_repeat": worker["rate_per_s_by_repeat"],
            "worker_while_searched": worker["rate_per_s_while_searched"],
        },
        "search_ms": {
            "idle": worker["search_idle"],
            "under_ingest": worker["search_under_ingest"],
            "under_ingest_over_idle_p99": (
                round(worker["search_under_ingest"]["p99"] / worker["search_idle"]["p99"], 2)
                if worker["search_idle"]["p99"] and worker["search_under_ingest"]["p99"]
                else None
            ),
        },
        "push_ms": {f"rate_{rate}": rows[rate]["latency_first_delivery_ms"] for rate in rows},
        "indexed_ms": {f"rate_{rate}": rows[rate]["publish_to_indexed_record_ms"] for rate in rows},
        "backlog": {
            f"rate_{rate}": {
                "first_delivery_p50_ms_by_quarter": rows[rate][
                    "latency_first_delivery_p50_ms_by_quarter"
                ],
                "worker_indexing_rate_per_s": rows[rate]["worker_indexing_rate_per_s"],
                "drained": rows[rate].get("drained"),
            }
            for rate in rows
        },
        "rss_mb": max(rss_values) if rss_values else None,
        "rss_mb_by_memories": rss_by,
        "rss_mb_per_10k_memories": per_10k,
        "rss_mb_phases": worker["rss_mb"],
        "worker": {
            k: v for k, v in worker.items() if k not in {"search_idle", "search_under_ingest"}
        },
        "latency_run": latency,
    }
