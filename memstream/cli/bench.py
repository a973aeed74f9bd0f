"""`memstream bench ...`: throughput and latency benchmarks (the stress ones: bench_stress)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from memstream.cli.options import (
    DEV_LOCOMO,
    JsonFlag,
    SaveFlag,
)
from memstream.cli.options import fail as _fail
from memstream.cli.options import load_settings as _settings
from memstream.cli.results import emit

bench_app = typer.Typer(help="Benchmarks; results go to benchmarks/results/.", no_args_is_help=True)


@bench_app.command("pipeline")
def bench_pipeline(
    events: Annotated[int, typer.Option(help="events to publish per broker")] = 20_000,
    brokers: Annotated[str, typer.Option(help="comma-separated: tansu,kafka")] = "tansu,kafka",
    as_json: JsonFlag = False,
    save: SaveFlag = True,
) -> None:
    """Publish rate and validate-stage rate (Faust, and plain aiokafka for scale) per broker."""
    from memstream.bench.pipeline import run_pipeline_bench

    _settings()
    result = run_pipeline_bench(
        events, [b.strip() for b in brokers.split(",") if b.strip()], progress=not as_json
    )
    emit("pipeline", result, save=save, as_json=as_json)


@bench_app.command("embed")
def bench_embed(
    batches: Annotated[str, typer.Option(help="comma-separated batch sizes")] = "1,32,128",
    repeats: Annotated[int, typer.Option(help="passes over the sentences")] = 2,
    dataset: Annotated[
        Path | None, typer.Option(help="LoCoMo file: embed its turns instead")
    ] = None,
    reference_python: Annotated[
        str | None, typer.Option(help="a python with sentence-transformers, for the PyTorch column")
    ] = None,
    as_json: JsonFlag = False,
    save: SaveFlag = True,
) -> None:
    """Sentences/s of the ONNX embedder per provider and batch, next to PyTorch."""
    from memstream.bench.embed import run_embed_bench

    _settings()
    result = run_embed_bench(
        [int(b) for b in batches.split(",")], repeats, dataset, reference_python
    )
    emit("embed", result, save=save, as_json=as_json)


@bench_app.command("store")
def bench_store(
    points: Annotated[int, typer.Option(help="points to upsert")] = 100_000,
    tenants: Annotated[int, typer.Option()] = 100,
    queries: Annotated[int, typer.Option(help="queries per measurement")] = 500,
    as_json: JsonFlag = False,
    save: SaveFlag = True,
) -> None:
    """Upserts/s and p50/p99 query latency (unfiltered, access-filtered, hybrid), embedded."""
    from memstream.bench.store import run_store_bench

    _settings()
    result = run_store_bench(points=points, tenants=tenants, queries=queries)
    emit("store", result, save=save, as_json=as_json)


@bench_app.command("privacy")
def bench_privacy(
    texts: Annotated[int, typer.Option(help="texts per tier")] = 500,
    dataset: Annotated[Path | None, typer.Option(help="sample texts from this PII dataset")] = None,
    as_json: JsonFlag = False,
    save: SaveFlag = True,
) -> None:
    """Texts/s of each PII detection tier."""
    from memstream.bench.privacy import run_privacy_bench

    _settings()
    result = run_privacy_bench(texts=texts, dataset=dataset)
    emit("privacy", result, save=save, as_json=as_json)


@bench_app.command("replay")
def bench_replay(
    events: Annotated[int, typer.Option(help="events in the archive to replay")] = 100_000,
    embed_cap: Annotated[
        int, typer.Option(help="events for the run with embedding (slow)")
    ] = 5_000,
    as_json: JsonFlag = False,
    save: SaveFlag = True,
) -> None:
    """Replay events/s from an archive: with embedding (memories) and without (indexed)."""
    from memstream.bench.replay import run_replay_bench

    _settings()
    result = run_replay_bench(events, embed_cap=embed_cap)
    emit("replay", result, save=save, as_json=as_json)


@bench_app.command("pool")
def bench_pool(
    sizes: Annotated[str, typer.Option(help="agents per team, comma-separated")] = "8,64",
    teams: Annotated[int, typer.Option(help="teams pooled per ONNX run")] = 64,
    updates: Annotated[int, typer.Option(help="updates measured per size")] = 4096,
    as_json: JsonFlag = False,
    save: SaveFlag = True,
) -> None:
    """Pooled team state updates/s (one agent's new state and its team's re-pool, batched
    across teams), with the ONNX Runtime providers that ran."""
    from memstream.bench.team_pool import run_team_pool_bench

    result = run_team_pool_bench(
        tuple(int(x) for x in sizes.split(",")), teams=teams, updates=updates
    )
    emit("bench-pool", result, save=save, as_json=as_json)


@bench_app.command("push")
def bench_push(
    rates: Annotated[
        str, typer.Option(help="memories/s to publish, comma-separated; empty = skip")
    ] = "50,200",
    subscriptions: Annotated[int, typer.Option()] = 100,
    seconds: Annotated[float, typer.Option(help="seconds per rate")] = 20.0,
    matcher_sizes: Annotated[
        str, typer.Option(help="subscriptions for the matcher run; empty = skip")
    ] = "1000,10000",
    matcher_seconds: Annotated[
        float, typer.Option(help="matcher: seconds per size for search and for match")
    ] = 10.0,
    matcher_check: Annotated[
        int, typer.Option(help="matcher: memories per size checked against brute force")
    ] = 64,
    matcher_locomo: Annotated[
        Path, typer.Option(help="matcher: LoCoMo file whose texts the simulation starts from")
    ] = DEV_LOCOMO,
    broker_kind: Annotated[str, typer.Option("--broker", help="tansu or kafka")] = "tansu",
    as_json: JsonFlag = False,
    save: SaveFlag = True,
) -> None:
    """Publish-to-push latency p50/p99 per rate, and matcher throughput per subscription count."""
    from memstream.bench.push import run_push_bench

    rate_list = tuple(int(r) for r in rates.split(",") if r.strip())
    sizes = tuple(int(m) for m in matcher_sizes.split(",") if m.strip())
    if sizes and not matcher_locomo.is_file():
        raise _fail(f"no LoCoMo file at {matcher_locomo}; pass --matcher-locomo")
    _settings()
    result = run_push_bench(
        rate_list,
        subscriptions,
        seconds,
        sizes,
        broker_kind,
        matcher_seconds=matcher_seconds,
        matcher_check=matcher_check,
        locomo=matcher_locomo,
        progress=not as_json,
    )
    emit("push" if rate_list else "push-matcher", result, save=save, as_json=as_json)


@bench_app.command("ingest")
def bench_ingest(
    dataset: Annotated[
        Path, typer.Option(help="LoCoMo-format JSON file whose turns are the memories")
    ] = DEV_LOCOMO,
    broker_kind: Annotated[str, typer.Option("--broker", help="kafka or tansu")] = "kafka",
    repeats: Annotated[int, typer.Option(help="worker runs over all turns")] = 3,
    rss_memories: Annotated[
        int, typer.Option(help="memories to ingest in all before the last RSS reading")
    ] = 20_000,
    latency_seconds: Annotated[float, typer.Option(help="seconds per latency rate")] = 60.0,
    latency_rates: Annotated[
        str, typer.Option(help="memories/s for publish-to-push; empty = skip")
    ] = "20,50",
    as_json: JsonFlag = False,
    save: SaveFlag = True,
) -> None:
    """Worker memories/s against the plain serial loop and the embedding alone (same run),
    search p50/p99 idle and under full ingest, publish-to-push and publish-to-indexed at
    each rate, and the worker's RSS."""
    from memstream.bench.ingest import run_ingest_bench

    if not dataset.is_file():
        raise _fail(f"no LoCoMo file at {dataset}; pass --dataset")
    _settings()
    result = run_ingest_bench(
        dataset,
        broker=broker_kind,
        repeats=repeats,
        rss_memories=rss_memories,
        latency_seconds=latency_seconds,
        latency_rates=tuple(int(r) for r in latency_rates.split(",") if r.strip()),
        progress=not as_json,
    )
    emit("ingest", result, save=save, as_json=as_json)


@bench_app.command("up")
def bench_up(
    brokers: Annotated[str, typer.Option(help="comma-separated: kafka, tansu")] = "kafka,tansu",
    repeats: Annotated[int, typer.Option(help="runs per broker")] = 2,
    as_json: JsonFlag = False,
    save: SaveFlag = True,
) -> None:
    """Seconds from `memstream up` to `ready` per broker: first start and restart."""
    from memstream.bench.up import run_up_bench

    _settings()
    result = run_up_bench(tuple(b.strip() for b in brokers.split(",")), repeats)
    emit("up", result, save=save, as_json=as_json)


def register(app: typer.Typer) -> None:
    """Mount these commands on the main `memstream` app."""
    app.add_typer(bench_app, name="bench")
