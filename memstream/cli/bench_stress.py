"""`memstream bench load|fuzz|faults|store-faults|scale`: benchmarks under load and faults."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated

import typer

from memstream.broker import BrokerUnavailable
from memstream.cli.bench import bench_app
from memstream.cli.options import (
    DEV_LOCOMO,
    JsonFlag,
    SaveFlag,
)
from memstream.cli.options import fail as _fail
from memstream.cli.options import load_settings as _settings
from memstream.cli.results import emit, with_bar
from memstream.settings import Settings

LocalApiOption = Annotated[str, typer.Option(help="the API of a running stack (local only)")]


@bench_app.command("load")
def bench_load(
    url: LocalApiOption = "http://127.0.0.1:8700",
    clients: Annotated[int, typer.Option(help="agents, each with its own token and stream")] = 8,
    seconds: Annotated[float, typer.Option(help="how long to drive the API")] = 60.0,
    rate: Annotated[float, typer.Option(help="writes per second, all clients together")] = 10.0,
    searches_per_write: Annotated[int, typer.Option(help="searches after each write")] = 2,
    as_json: JsonFlag = False,
    save: SaveFlag = True,
) -> None:
    """A steady mix of writes, searches and streams against a running API: achieved rates,
    p50/p99 per route, errors, and whether every acknowledged write was indexed (exit 1
    on any error or missing write). Tokens are made in the stack's token store."""
    from memstream.bench.load import run_load
    from memstream.cli.options import stack_settings
    from memstream.services.auth import TokenStore

    if clients < 1 or seconds <= 0 or rate <= 0:
        raise _fail("--clients, --seconds and --rate must be positive")
    settings = stack_settings(Settings())
    store = TokenStore(settings.data_dir / "tokens.db")
    tenant = f"load-{uuid.uuid4().hex[:6]}"
    tokens = [store.create(tenant, f"agent-{i}") for i in range(clients)]
    result = with_bar(
        "load (writes acknowledged)",
        int(rate * seconds),
        as_json,
        lambda progress: run_load(
            url,
            tokens,
            seconds=seconds,
            rate=rate,
            searches_per_write=searches_per_write,
            progress=progress,
        ),
    )
    emit("load", result, save=save, as_json=as_json)
    if result["errors_total"] or result["writes_missing"]:
        raise typer.Exit(code=1)


@bench_app.command("faults")
def bench_faults(
    fault: Annotated[
        str, typer.Option(help="kill: kill -9 then restart; pause: SIGSTOP then SIGCONT")
    ] = "kill",
    events: Annotated[int, typer.Option(help="memories to publish (at most 10,000)")] = 3000,
    rate: Annotated[float, typer.Option(help="memories per second")] = 40.0,
    down_s: Annotated[float, typer.Option(help="seconds a killed node stays down")] = 10.0,
    pause_s: Annotated[float, typer.Option(help="seconds a node stays stopped")] = 20.0,
    light: Annotated[
        bool, typer.Option(help="static embedder and no PII scan: the delivery path only")
    ] = False,
    fast_start: Annotated[bool, typer.Option(help="brokers with the C1 JIT only")] = False,
    keep: Annotated[bool, typer.Option(help="keep the worker's data dir and log")] = False,
    as_json: JsonFlag = False,
    save: SaveFlag = True,
) -> None:
    """Broker faults under a steady stream on a local 3-node Apache Kafka cluster
    (replication 3, min.insync.replicas=2, acks=all, idempotent producer): kill -9 one
    node and restart it, then another (`--fault kill`), or stop and continue them
    (`--fault pause`). Prints published, acknowledged, indexed, duplicated and lost
    counts (exit 1 if any acknowledged memory was lost or doubled in the store);
    progress goes to stderr."""
    from memstream.bench.faults import FAULTS, run_broker_faults

    if fault not in FAULTS:
        raise _fail(f"--fault must be one of {', '.join(FAULTS)}")
    if not 0 < events <= 10_000 or rate <= 0 or down_s < 0 or pause_s < 0:
        raise _fail("--events must be 1..10000, --rate positive, --down-s/--pause-s >= 0")
    _settings()
    try:
        result = run_broker_faults(
            fault,  # type: ignore[arg-type]
            events=events,
            rate=rate,
            down_s=down_s,
            pause_s=pause_s,
            light=light,
            fast_start=fast_start,
            keep_dir=keep,
        )
    except BrokerUnavailable as err:
        raise _fail(str(err)) from err
    emit(f"faults-{fault}", result, save=save, as_json=as_json)
    if result["lost"] or result["store_duplicates"]:
        raise typer.Exit(code=1)


@bench_app.command("scale")
def bench_scale(
    workers: Annotated[
        str, typer.Option(help="model worker counts to measure, comma-separated")
    ] = "1,2",
    memories: Annotated[
        int | None,
        typer.Option(
            help="memories preloaded before the workers start (LoCoMo turns); default 2000, "
            "20000 with --light"
        ),
    ] = None,
    repeats: Annotated[int, typer.Option(help="runs per worker count (median reported)")] = 2,
    dataset: Annotated[
        Path, typer.Option(help="LoCoMo-format JSON file whose turns are the memories")
    ] = DEV_LOCOMO,
    light: Annotated[
        bool,
        typer.Option(
            help="static embedder and fast PII tier: a secondary figure, not the headline"
        ),
    ] = False,
    pin: Annotated[bool, typer.Option(help="pin worker i to core i (taskset -c i)")] = True,
    keep: Annotated[bool, typer.Option(help="keep the temp dir with the workers' logs")] = False,
    as_json: JsonFlag = False,
    save: SaveFlag = True,
) -> None:
    """Events/s of `memstream worker --role model` with 1, 2, ... processes on Apache Kafka
    (8 partitions per input topic), each worker pinned to its own core: memories are
    preloaded, then each configuration drains them in a fresh consumer group; the median
    per configuration, the scaling ratio 2/1 against the 1.8 bar, and where the CPU went
    (workers, PII children, broker, bench, other processes). No sink runs (model workers
    never open the store). Progress goes to stderr."""
    from memstream.bench.scale import parse_workers, run_scale_bench

    try:
        counts = parse_workers(workers)
    except ValueError as err:
        raise _fail(str(err)) from err
    if (memories is not None and memories < 100) or repeats < 1:
        raise _fail("--memories must be at least 100 and --repeats at least 1")
    if not dataset.is_file():
        raise _fail(f"no LoCoMo file at {dataset}; pass --dataset")
    _settings()
    try:
        result = run_scale_bench(
            counts,
            dataset=dataset,
            memories=memories,
            repeats=repeats,
            light=light,
            pin=pin,
            keep=keep,
            progress=True,
        )
    except (BrokerUnavailable, RuntimeError) as err:
        raise _fail(str(err)) from err
    emit("scale", result, save=save, as_json=as_json)


@bench_app.command("fuzz")
def bench_fuzz(
    url: LocalApiOption = "http://127.0.0.1:8700",
    requests: Annotated[int, typer.Option(help="requests to send")] = 10_000,
    tenants: Annotated[int, typer.Option(help="tenants to spread them over")] = 4,
    agents: Annotated[int, typer.Option(help="tokens per tenant")] = 16,
    concurrency: Annotated[int, typer.Option()] = 8,
    seed: Annotated[int, typer.Option()] = 7,
    as_json: JsonFlag = False,
    save: SaveFlag = True,
) -> None:
    """Hostile and careless requests against a running API: counts per status; fails
    (exit 1) on any 5xx, dropped connection or 4xx without a reason. Tokens are made in
    the stack's token store (MEMSTREAM_DATA_DIR)."""
    from memstream.bench.fuzz import run_fuzz
    from memstream.services.auth import TokenStore

    settings = _settings()
    store = TokenStore(settings.data_dir / "tokens.db")
    names = [f"fuzz-{i}" for i in range(tenants)]
    tokens = [
        store.create(t, f"agent-{j}", ["red"] if j % 2 else [], ["pii"] if j % 4 == 3 else [])
        for t in names
        for j in range(agents)
    ]
    firsts = tokens[::agents]  # one per tenant, for the searches afterwards
    result = with_bar(
        "fuzz",
        requests,
        as_json,
        lambda progress: run_fuzz(
            url,
            firsts + tokens,
            names,
            requests=requests,
            seed=seed,
            concurrency=concurrency,
            limit_bytes=settings.max_event_bytes,
            progress=progress,
        ),
    )
    emit("fuzz", result, save=save, as_json=as_json)
    bad = result["server_errors_5xx"] + result["connection_errors"]
    if bad or result["rejected_without_reason"]:
        raise typer.Exit(code=1)


@bench_app.command("store-faults")
def bench_store_faults(
    backend: Annotated[
        str, typer.Option(help="edge (Qdrant Edge) or server (QdrantServerStore, qdrant-local)")
    ] = "edge",
    events: Annotated[int, typer.Option(help="memories to publish")] = 1000,
    rate: Annotated[float, typer.Option(help="memories per second")] = 25.0,
    fault_seconds: Annotated[float, typer.Option(help="how long the disk stays full")] = 20.0,
    kill: Annotated[
        bool, typer.Option(help="SIGKILL the worker while the store fails; restart it after")
    ] = False,
    bootstrap: Annotated[
        str | None, typer.Option(help="a running broker (default: start a 1-node Kafka)")
    ] = None,
    as_json: JsonFlag = False,
    save: SaveFlag = True,
) -> None:
    """Fill the disk under a worker's store mid-stream (a tmpfs of its own and a ballast
    file: needs root), free it, let the backlog drain: published, acknowledged, indexed,
    duplicated, dead-lettered and lost counts, and what /healthz and /metrics showed.
    Progress goes to stderr; exit 1 if anything acknowledged was lost or dead-lettered."""
    from memstream.bench.store_faults import MountUnavailable, run_store_faults

    _settings()  # logs to stderr: with --json, stdout is the JSON alone
    try:
        result = run_store_faults(
            backend,
            events,
            rate=rate,
            fault_s=fault_seconds,
            kill=kill,
            bootstrap=bootstrap,
        )
    except (MountUnavailable, ValueError, BrokerUnavailable) as err:
        raise _fail(str(err)) from err
    emit(f"store-faults-{backend}", result, save=save, as_json=as_json)
    if result["lost"] or result["dead_lettered"] or not result["drained"]:
        raise typer.Exit(code=1)
