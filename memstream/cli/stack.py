"""`memstream up`, `doctor`, `broker`, `worker`: start and check the pieces of a stack."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from memstream.broker import BrokerUnavailable, start_broker
from memstream.cli.options import (
    BootstrapOption,
    JsonFlag,
    require_bootstrap,
)
from memstream.cli.options import fail as _fail
from memstream.cli.options import load_settings as _settings


def _stop_on_signal() -> threading.Event:
    """An event set by SIGINT or SIGTERM; install it before starting anything."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def broker(
    kind: Annotated[
        str, typer.Option(help="kafka (Apache Kafka, KRaft) or tansu (embedded)")
    ] = "tansu",
    nodes: Annotated[int, typer.Option(help="brokers in the cluster: 1 or 3 (kafka only)")] = 1,
    port: Annotated[int | None, typer.Option(help="listener port of the first node")] = None,
    secure: Annotated[
        bool,
        typer.Option(
            help="kafka only: SCRAM over TLS (certificates made for the run), ACLs enforced; "
            "prints an env file per principal"
        ),
    ] = False,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="kafka only: keep the cluster (and its certificates) here"),
    ] = None,
) -> None:
    """Start a broker and keep it running until Ctrl-C; prints `ready <bootstrap>`."""
    _settings()
    stop = _stop_on_signal()
    if nodes not in (1, 3):
        raise _fail("--nodes must be 1 or 3")
    if (secure or data_dir) and kind != "kafka":
        raise _fail("--secure and --data-dir need --kind kafka")
    try:
        handle = start_broker(kind, nodes=nodes, port=port, data_dir=data_dir, secure=secure)
    except (BrokerUnavailable, ValueError) as err:
        raise _fail(str(err)) from err
    with handle:
        typer.echo(f"{handle.label} nodes={handle.nodes}")
        if handle.secure is not None:
            for principal, env_file in handle.secure.write_env_files(handle.bootstrap).items():
                typer.echo(f"principal {principal}: set -a; . {env_file}; set +a")
        typer.echo(f"ready {handle.bootstrap}", color=False)
        sys.stdout.flush()
        stop.wait()


def worker(
    bootstrap: BootstrapOption = None,
    serve: Annotated[bool, typer.Option(help="also serve the HTTP API from this worker")] = False,
    port: Annotated[int | None, typer.Option(help="HTTP API port (default 8700)")] = None,
    role: Annotated[
        str | None,
        typer.Option(
            help="all (default), or a comma-separated set of model (validate, privacy, "
            "embed -> indexed; stateless), sink (indexed -> store), match (subscriptions -> "
            "deliveries), api (HTTP, MCP, push); roles without api serve /healthz and /metrics"
        ),
    ] = None,
) -> None:
    """Run the stream processors (validate -> indexed / dead-letter) until SIGINT/SIGTERM."""
    from memstream.streams.roles import Roles
    from memstream.streams.worker import run_worker

    settings = _settings()
    if role is not None:
        try:
            settings = settings.model_copy(update={"role": Roles.parse(role).label})
        except ValueError as err:
            raise _fail(str(err)) from err
    if serve or port:
        settings = settings.model_copy(
            update={"serve": serve or settings.serve, "web_port": port or settings.web_port}
        )
    run_worker(settings, require_bootstrap(settings, bootstrap))


def up(
    demo: Annotated[bool, typer.Option(help="publish a few demo memories once ready")] = False,
    broker_kind: Annotated[
        str | None,
        typer.Option(
            "--broker",
            help="kafka (default: Apache Kafka, its log under the data dir) or tansu "
            "(memory only: a restart forgets the log, offsets and subscriptions)",
        ),
    ] = None,
    port: Annotated[int | None, typer.Option(help="HTTP API port (default 8700)")] = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the pipeline")] = 180,
) -> None:
    """Start the embedded stack (broker, topics, worker); prints `ready <url>`; Ctrl-C or
    SIGTERM stops it. A worker that exits is restarted with backoff; after 5 restarts in 5
    minutes, or if it dies before the stack is ready, `up` stops and exits with status 1.
    Other commands find the running stack through `<data dir>/stack.json`."""
    from memstream.services.stack import Stack, StackError, wait_for_http
    from memstream.streams.probe import wait_until_ready

    settings = _settings()
    stop = _stop_on_signal()
    if broker_kind:
        if broker_kind not in ("kafka", "tansu"):
            raise _fail(f"--broker must be kafka or tansu, not {broker_kind!r}")
        settings = settings.model_copy(update={"broker_kind": broker_kind})
    if port:
        settings = settings.model_copy(update={"web_port": port})
    stack = Stack(settings, say=lambda text: typer.echo(text, err=True))
    try:
        stack.start()
    except (BrokerUnavailable, StackError, ValueError) as err:
        raise _fail(str(err)) from err
    try:
        assert stack.broker is not None
        typer.echo(f"broker {stack.broker.label} at {stack.bootstrap}")
        try:
            wait_for_http(f"{stack.url}/healthz", timeout, alive=stack.check)
            seconds = wait_until_ready(stack.bootstrap, timeout)
            stack.check()
        except StackError as err:
            raise _fail(str(err)) from err
        except TimeoutError as err:
            raise _fail(f"{err}; see {stack.worker_log}") from err
        typer.echo(f"pipeline answered in {seconds:.1f}s; kafka at {stack.bootstrap}")
        if demo:
            from memstream.services.demo import run_demo

            asyncio.run(run_demo(stack.bootstrap))
        typer.echo(f"ready {stack.url}")
        sys.stdout.flush()
        try:
            stack.supervise(stop.is_set)
        except StackError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(code=1) from err
        typer.echo("stopping")
    finally:
        stack.stop()


def doctor(as_json: JsonFlag = False) -> None:
    """Check the running stack: broker, topics, worker, store, models and versions; exit 1
    with a fix for each failure."""
    from memstream.services.doctor import render, run_doctor

    report = run_doctor(_settings())
    typer.echo(json.dumps(report, indent=2) if as_json else render(report))
    if not report["ok"]:
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    """Mount these commands on the main `memstream` app."""
    app.command()(broker)
    app.command()(worker)
    app.command()(up)
    app.command()(doctor)
