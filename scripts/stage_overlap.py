"""Stage rates of the worker's model path on LoCoMo turns, alone and overlapped, in one run:

    .venv/bin/python scripts/stage_overlap.py [--turns 384] [--chunk 64]

Prints memories/s of the PII scan alone, the embedding (with and without the context's
token vectors), both one after the other (the serial loop), and both overlapped on
sub-batches with the scan in a thread or in a process of its own, as the worker does.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import tempfile
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

from memstream.bench.ingest import _retag
from memstream.eval.locomo import load_locomo
from memstream.eval.retrieval import turn_memories
from memstream.models.embedding import OnnxEmbedder
from memstream.models.registry import HotSwapScorer, ModelRegistry
from memstream.privacy.keystore import KeyStore
from memstream.settings import Settings
from memstream.store.token_vectors import TokenVectorStore
from memstream.streams import app as worker_app
from memstream.streams.app import privacy as privacy_side
from memstream.streams.enrich import ModelStage


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="../shared/data/locomo_dev.json")
    parser.add_argument("--turns", type=int, default=384)
    parser.add_argument("--chunk", type=int, default=64)
    args = parser.parse_args()
    memories, _, _ = turn_memories(load_locomo(Path(args.dataset)))
    data = Path(tempfile.mkdtemp())
    settings = Settings(data_dir=data)
    privacy = worker_app.build_privacy_stage(settings, KeyStore(data / "keys.db"))
    embedder = OnnxEmbedder(spin=False)
    n, size = args.turns, args.chunk

    def stage(context: bool) -> ModelStage:
        return ModelStage(
            embedder,
            HotSwapScorer(ModelRegistry(data / "models", "valuation")),
            token_store=TokenVectorStore(data / f"tv-{time.monotonic_ns()}.db"),
            keep_context_tokens=context,
        )

    def chunks() -> list[list]:
        fresh = _retag(memories[:n], f"t{time.monotonic_ns()}")
        return [fresh[i : i + size] for i in range(0, n, size)]

    worker_app.protect(privacy, memories[:16])  # warm-up
    t = time.perf_counter()
    screened = [worker_app.protect(privacy, c) for c in chunks()]
    pii = time.perf_counter() - t
    rates = {"pii_scan": n / pii}
    for context in (True, False):
        s = stage(context)
        t = time.perf_counter()
        for events, protected in screened:
            worker_app.embed_protected(s, events, protected)
        embed = time.perf_counter() - t
        tag = "with_context_tokens" if context else "without_context_tokens"
        rates[f"embed_{tag}"] = n / embed
        rates[f"serial_{tag}"] = n / (pii + embed)

    async def overlapped(executor: Executor, in_child: bool, context: bool) -> float:
        loop = asyncio.get_running_loop()
        model = ThreadPoolExecutor(1)
        s = stage(context)
        t = time.perf_counter()
        futures = [
            loop.run_in_executor(executor, worker_app.protect_in_child, c)
            if in_child
            else loop.run_in_executor(executor, worker_app.protect, privacy, c)
            for c in chunks()
        ]
        for future in futures:
            events, protected = (await future)[:2]
            await loop.run_in_executor(model, worker_app.embed_protected, s, events, protected)
        return n / (time.perf_counter() - t)

    def processes(count: int) -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(
            count,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=privacy_side._start_privacy_child,
            initargs=(settings.model_dump_json(),),
        )
        for f in [pool.submit(worker_app.protect_in_child, memories[:8]) for _ in range(count)]:
            f.result()
        return pool

    thread = ThreadPoolExecutor(1)
    one, two = processes(1), processes(2)
    for context in (True, False):
        tag = "with_context_tokens" if context else "without_context_tokens"
        rates[f"thread_overlap_{tag}"] = asyncio.run(overlapped(thread, False, context))
        rates[f"process_overlap_{tag}"] = asyncio.run(overlapped(one, True, context))
        rates[f"two_process_overlap_{tag}"] = asyncio.run(overlapped(two, True, context))
    one.shutdown()
    two.shutdown()
    for name, rate in rates.items():
        print(f"{name:<40} {rate:7.1f} memories/s")


if __name__ == "__main__":
    main()
