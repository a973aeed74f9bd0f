"""`memstream ...`: the one command-line entry point."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from memstream.broker import BrokerUnavailable, start_broker
from memstream.broker.security import kafka_client_kwargs
from memstream.cli import log_commands as cli_ops
from memstream.cli.options import fail as _fail
from memstream.cli.options import load_settings as _settings
from memstream.cli.options import require_bootstrap
from memstream.settings import Settings

app = typer.Typer(
    help="memstream: an event-driven memory bus for AI agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
schemas_app = typer.Typer(help="Event JSON Schemas.", no_args_is_help=True)
topics_app = typer.Typer(help="The topic catalogue.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks; results go to benchmarks/results/.", no_args_is_help=True)
app.add_typer(schemas_app, name="schemas")
app.add_typer(topics_app, name="topics")
eval_app = typer.Typer(help="Quality evaluations on datasets.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
app.add_typer(eval_app, name="eval")
cli_ops.register(app)


def _stop_on_signal() -> threading.Event:
    """An event set by SIGINT or SIGTERM; install it before starting anything."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


@app.command()
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


@app.command()
def acls(
    file: Annotated[
        Path | None, typer.Argument(help="ACL set (JSON); default: deploy/kafka/acls.json's")
    ] = None,
    bootstrap: Annotated[
        str | None, typer.Option(help="host:port[,...]; default MEMSTREAM_KAFKA_BOOTSTRAP")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON only")] = False,
) -> None:
    """Create the ACLs of an ACL set on a cluster with an authorizer, connecting with the
    MEMSTREAM_KAFKA_* credentials (a super user's)."""
    from memstream.broker.kafka.acls import DEFAULT_ACLS, apply_acls, load_acls

    settings = _settings()
    try:
        bindings = load_acls(file or DEFAULT_ACLS)
    except (OSError, ValueError) as err:
        raise _fail(str(err)) from err
    target = require_bootstrap(settings, bootstrap)
    try:
        count = asyncio.run(
            apply_acls(target, settings.kafka_security().aiokafka_kwargs(), bindings)
        )
    except Exception as err:
        raise _fail(f"could not apply ACLs: {err}") from err
    if as_json:
        typer.echo(json.dumps({"applied": count, "file": str(file or DEFAULT_ACLS)}))
    else:
        typer.echo(f"applied {count} ACL bindings from {file or DEFAULT_ACLS}")


@app.command()
def worker(
    bootstrap: Annotated[
        str | None, typer.Option(help="host:port[,...]; default MEMSTREAM_KAFKA_BOOTSTRAP")
    ] = None,
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


@app.command()
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


@app.command()
def erase(
    tenant: Annotated[str, typer.Option(help="the tenant the subject's data lives in")],
    subject: Annotated[
        list[str], typer.Option(help="a personal value: name, email, phone... (repeat)")
    ],
    bootstrap: Annotated[str | None, typer.Option(help="host:port[,...]")] = None,
) -> None:
    """Forget a data subject for good. Its key is deleted, so its sealed values are noise
    in every copy (store, log, archive, deliveries); every memory whose text holds one of
    its values is deleted, is left out by every replay (topic, archive, --swap), and later
    memories that hold it are not kept either. Needs the key store of the stack that
    stored the memories: its data dir (MEMSTREAM_DATA_DIR), or the running stack."""
    from memstream.cli.options import stack_settings
    from memstream.privacy.keystore import subject_id
    from memstream.schemas.events import Erasure, ErasurePayload
    from memstream.schemas.topics import ERASURES
    from memstream.services.stack import where_to_look
    from memstream.streams.privacy_stage import load_master_key

    settings = stack_settings(_settings())
    keys = settings.data_dir / "keys.db"
    if not keys.is_file():
        raise _fail(
            f"no key store at {keys.resolve()} ({where_to_look(settings)}): run erase with "
            "the MEMSTREAM_DATA_DIR of the stack that stored the memories, or while it runs"
        )
    try:
        master = load_master_key(settings.data_dir, settings.master_key, create=False)
    except FileNotFoundError as err:
        raise _fail(str(err)) from err
    bootstrap = require_bootstrap(settings, bootstrap)
    try:
        events = [
            Erasure(
                tenant=tenant,
                agent_id="memstream-cli",
                payload=ErasurePayload(subject_id=subject_id(tenant, value, master)),
            )
            for value in subject
        ]
    except ValueError as err:
        raise _fail(f"--tenant {tenant!r} is not a valid tenant id") from err

    async def send() -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", **kafka_client_kwargs()
        )
        await producer.start()
        try:
            for event in events:
                await producer.send_and_wait(
                    ERASURES.name, event.to_json(), key=event.payload.subject_id.encode()
                )
        finally:
            await producer.stop()

    asyncio.run(send())
    typer.echo(
        json.dumps(
            {
                "erasures": [
                    {"subject_id": e.payload.subject_id, "event_id": str(e.event_id)}
                    for e in events
                ]
            }
        )
    )


UrlOption = Annotated[
    str | None,
    typer.Option("--url", help="the API (default: MEMSTREAM_API_URL, else the running stack's)"),
]
TokenOption = Annotated[
    str | None, typer.Option("--token", help="bearer token (default: MEMSTREAM_TOKEN)")
]


@app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="a JSONL file: memstream's export or mem0's")],
    url: UrlOption = None,
    token: TokenOption = None,
    scope: Annotated[
        str, typer.Option(help="scope of rows that name none (mem0's never do)")
    ] = "tenant",
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON only")] = False,
) -> None:
    """Import memories as the token's agent. Idempotent by id (a second import of the same
    file changes nothing); a bad row is dead-lettered with its line number and reason.
    Exit 1 when any row was dead-lettered."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    from memstream.cli.options import api_target
    from memstream.sdk.http import HttpClient, MemstreamError
    from memstream.sdk.transfer import import_file

    if not file.is_file():
        raise _fail(f"no such file: {file}")
    url, token = api_target(url, token)
    columns = ("[progress.description]{task.description}", BarColumn(), DownloadColumn())
    with (
        HttpClient(url, token) as client,
        Progress(*columns, TimeRemainingColumn(), disable=as_json, transient=True) as bar,
    ):
        task = bar.add_task(f"import {file.name}", total=file.stat().st_size)
        try:
            report = import_file(
                client,
                file,
                default_scope=scope,
                on_progress=lambda done: bar.update(task, completed=done),
            )
        except MemstreamError as err:
            raise _fail(str(err)) from err
    summary = report.as_dict()
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        typer.echo(
            f"{report.accepted} accepted, {report.dead_lettered} dead-lettered, "
            f"{report.skipped_blank} blank lines, of {report.lines} lines in {file}"
        )
        for failure in report.failures[:20]:
            typer.echo(f"  line {failure['line']}: {failure['reason']}: {failure['detail']}")
        if len(report.failures) > 20:
            typer.echo(f"  ... {len(report.failures) - 20} more (--json lists 100)")
    if report.dead_lettered:
        raise typer.Exit(code=1)


@app.command("export")
def export_command(
    url: UrlOption = None,
    token: TokenOption = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="write here instead of stdout")
    ] = None,
    topic: Annotated[str | None, typer.Option(help="only this topic")] = None,
) -> None:
    """Every memory the token may see, as JSONL (one object per line), streamed; the
    format `memstream import` reads back."""
    from memstream.cli.options import api_target
    from memstream.sdk.http import HttpClient, MemstreamError
    from memstream.sdk.transfer import export_rows

    url, token = api_target(url, token)
    with HttpClient(url, token) as client:
        try:
            if out is None:
                export_rows(client, sys.stdout, topic=topic)
            else:
                with out.open("w", encoding="utf-8") as handle:
                    count = export_rows(client, handle, topic=topic)
                typer.echo(f"{count} memories written to {out}", err=True)
        except MemstreamError as err:
            raise _fail(str(err)) from err


@app.command("mcp")
def mcp_command(url: UrlOption = None, token: TokenOption = None) -> None:
    """Serve memstream's MCP tools on stdin/stdout for a local MCP host (Claude Desktop,
    an IDE): every tool goes through the HTTP API with this token, so it sees and writes
    exactly what the token may. Logs go to stderr; stdout is the protocol's."""
    from memstream.cli.options import api_target
    from memstream.sdk.http import Unauthorized
    from memstream.services.mcp import run_stdio

    _settings()  # logging to stderr, never stdout
    url, token = api_target(url, token)
    try:
        run_stdio(url, token)
    except Unauthorized as err:
        raise _fail(f"the API at {url} refused the token: {err.message}") from err
    except KeyboardInterrupt:
        pass


token_app = typer.Typer(help="API bearer tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")


@token_app.command("create")
def token_create(
    tenant: Annotated[str, typer.Option(help="the tenant the token acts in")],
    agent: Annotated[str, typer.Option(help="the agent id the token acts as")],
    team: Annotated[
        list[str] | None, typer.Option(help="a team the agent belongs to (repeat)")
    ] = None,
    clearance: Annotated[
        list[str] | None,
        typer.Option(
            help="pii: may see personal data; admin: may erase subjects of its tenant (repeat)"
        ),
    ] = None,
    ttl: Annotated[
        float | None, typer.Option(help="seconds until the token expires (default: never)")
    ] = None,
    scope: Annotated[
        list[str] | None,
        typer.Option(
            help="what it may do: read, write, subscribe, admin (repeat; default: read, "
            "write, subscribe, and admin with the admin clearance)"
        ),
    ] = None,
) -> None:
    """Print a new token for this identity, and nothing else (only its hash is kept).
    Written to the token store of the running stack, else of MEMSTREAM_DATA_DIR."""
    from memstream.cli.options import stack_settings
    from memstream.services.auth import InvalidIdentity, TokenStore

    settings = stack_settings(Settings())
    store = TokenStore(settings.data_dir / "tokens.db")
    try:
        typer.echo(
            store.create(tenant, agent, team or [], clearance or [], ttl_s=ttl, scopes=scope)
        )
    except InvalidIdentity as err:
        raise _fail(str(err)) from err


@token_app.command("list")
def token_list(
    tenant: Annotated[str | None, typer.Option(help="only this tenant's tokens")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON only")] = False,
) -> None:
    """The tokens of the running stack's token store: ids and identities, never secrets."""
    from memstream.cli.options import stack_settings
    from memstream.services.auth import TokenStore

    settings = stack_settings(Settings())
    rows = TokenStore(settings.data_dir / "tokens.db").listing(tenant)
    if as_json:
        typer.echo(json.dumps({"tokens": rows}))
        return
    for row in rows:
        state = "revoked" if row["revoked"] else "active"
        teams = ",".join(row["teams"]) or "-"  # type: ignore[arg-type]
        clearance = ",".join(row["clearance"]) or "-"  # type: ignore[arg-type]
        scopes = ",".join(row["scopes"])  # type: ignore[arg-type]
        expires = f"  expires {row['expires_at']}" if row["expires_at"] else ""
        typer.echo(
            f"{row['token_id']}  {state:7}  {row['tenant']}/{row['agent_id']}  "
            f"teams={teams}  clearance={clearance}  scopes={scopes}  {row['created_at']}{expires}"
        )


@token_app.command("revoke")
def token_revoke(
    token: Annotated[str, typer.Argument(help="a token id (from `token list`) or a whole token")],
) -> None:
    """Revoke a token: every later request with it gets 401."""
    from memstream.cli.options import stack_settings
    from memstream.services.auth import TokenStore, token_id

    settings = stack_settings(Settings())
    store = TokenStore(settings.data_dir / "tokens.db")
    which = token_id(token) if token.startswith("ms_") else token
    if not store.revoke_id(which):
        raise _fail(f"no token {which!r} in {settings.data_dir / 'tokens.db'}")
    typer.echo(f"revoked {which}")


@schemas_app.command("export")
def schemas_export(
    directory: Annotated[Path, typer.Option("--dir", help="where to write")] = Path("schemas"),
) -> None:
    """Write one JSON Schema file per event kind."""
    from memstream.schemas.export import export_schemas

    for path in export_schemas(directory):
        typer.echo(str(path))


@schemas_app.command("check")
def schemas_check(
    directory: Annotated[Path, typer.Option("--dir")] = Path("schemas"),
) -> None:
    """Exit 1 when the files in --dir differ from the models."""
    from memstream.schemas.export import stale_schemas

    stale = stale_schemas(directory)
    if stale:
        typer.echo(f"stale: {', '.join(stale)}; run `memstream schemas export`", err=True)
        raise typer.Exit(1)
    typer.echo("schemas up to date")


@topics_app.command("list")
def topics_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Print the catalogue: name, key, cleanup policy, what it carries."""
    from memstream.schemas.topics import CATALOGUE

    if as_json:
        rows = [
            {
                "name": spec.name,
                "key": spec.key,
                "cleanup_policy": spec.cleanup_policy,
                "description": spec.description,
            }
            for spec in CATALOGUE
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    for spec in CATALOGUE:
        typer.echo(
            f"{spec.name:28} key={spec.key:16} cleanup={spec.cleanup_policy:8} {spec.description}"
        )


@topics_app.command("create")
def topics_create(
    bootstrap: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Create the catalogue's missing topics (idempotent)."""
    from memstream.streams.admin import ensure_topics

    settings = _settings()
    bootstrap = require_bootstrap(settings, bootstrap)
    created = asyncio.run(
        ensure_topics(
            bootstrap,
            partitions=settings.partitions,
            replication_factor=settings.replication_factor,
        )
    )
    typer.echo(json.dumps({"created": created}))


@bench_app.command("pipeline")
def bench_pipeline(
    events: Annotated[int, typer.Option(help="events to publish per broker")] = 20_000,
    brokers: Annotated[str, typer.Option(help="comma-separated: tansu,kafka")] = "tansu,kafka",
    as_json: Annotated[bool, typer.Option("--json", help="print JSON only")] = False,
    save: Annotated[bool, typer.Option(help="save under benchmarks/results/")] = True,
) -> None:
    """Publish rate and validate-stage rate (Faust, and plain aiokafka for scale) per broker."""
    from memstream.bench.pipeline import run_pipeline_bench

    _settings()
    result = run_pipeline_bench(
        events, [b.strip() for b in brokers.split(",") if b.strip()], progress=not as_json
    )
    _emit("pipeline", result, save=save, as_json=as_json)


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
    as_json: Annotated[bool, typer.Option("--json")] = False,
    save: Annotated[bool, typer.Option(help="save under benchmarks/results/")] = True,
) -> None:
    """Sentences/s of the ONNX embedder per provider and batch, next to PyTorch."""
    from memstream.bench.embed import run_embed_bench

    _settings()
    result = run_embed_bench(
        [int(b) for b in batches.split(",")], repeats, dataset, reference_python
    )
    _emit("embed", result, save=save, as_json=as_json)


@eval_app.command("valuation")
def eval_valuation(
    dataset: Annotated[
        Path | None,
        typer.Option(
            help="LoCoMo-format JSON: train the valuation on simulated feedback from some "
            "conversations, measure the ranking prior and the admission bar on the others; "
            "without it, the synthetic feedback stream (AUC only)"
        ),
    ] = None,
    k: Annotated[int, typer.Option(help="recall@k (with --dataset)")] = 5,
    pii: Annotated[
        str, typer.Option(help="with --dataset: privacy policy as in eval retrieval")
    ] = "worker",
    seed: Annotated[int, typer.Option()] = 0,
    feedback: Annotated[int, typer.Option(help="synthetic: simulated feedback events")] = 20_000,
    noise: Annotated[float, typer.Option(help="synthetic: share of labels flipped")] = 0.2,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    save: Annotated[bool, typer.Option(help="save under benchmarks/results/")] = True,
) -> None:
    """Does the valuation pay? With --dataset: recall@k with the learned valuation as a
    ranking prior against without, and what the admission bar keeps out of the pool and
    costs, on conversations the model never saw (progress on stderr). Without: AUC of the
    learned model against the cold-start heuristic on a synthetic feedback stream."""
    _settings()
    if dataset is not None:
        from memstream.eval.pool import run_pool_eval

        if not dataset.is_file():
            raise typer.BadParameter(f"{dataset}: no such file", param_hint="--dataset")
        result = run_pool_eval(dataset, k=k, seed=seed, pii_policy=pii)
        _emit("eval-valuation-pool", result, save=save, as_json=as_json)
        return
    from memstream.eval.valuation import run_valuation_eval

    result = run_valuation_eval(seed=seed, n_feedback=feedback, noise=noise)
    _emit("eval-valuation", result, save=save, as_json=as_json)


@eval_app.command("cache")
def eval_cache(
    tasks: Annotated[int, typer.Option(help="tasks in the generated stream")] = 2000,
    bar: Annotated[
        float, typer.Option(help="cosine a cached task needs (the headline figure)")
    ] = 0.90,
    seed: Annotated[int, typer.Option()] = 0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    save: Annotated[bool, typer.Option(help="save under benchmarks/results/")] = True,
) -> None:
    """The semantic result cache on a generated task stream (exact repeats, paraphrases,
    near-misses with one value changed; memstream/eval/cache.py): share of duplicate work
    avoided and false hits, at --bar and at other bars, and without the value test."""
    from memstream.eval.cache import run_cache_eval

    _settings()
    if not 0.0 < bar <= 1.0:
        raise typer.BadParameter("must be in (0, 1]", param_hint="--bar")
    if tasks < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--tasks")
    result = run_cache_eval(n=tasks, seed=seed, bar=bar)
    _emit("eval-cache", result, save=save, as_json=as_json)


@eval_app.command("economy")
def eval_economy(
    dataset: Annotated[
        Path, typer.Option(help="LoCoMo-format JSON: the honest agents' knowledge and questions")
    ] = Path("../shared/data/locomo_dev.json"),
    rounds: Annotated[int, typer.Option(min=2, help="rounds of asking and rating")] = 4,
    seed: Annotated[int, typer.Option()] = 0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    save: Annotated[bool, typer.Option(help="save under benchmarks/results/")] = True,
) -> None:
    """Honest, lazy and poisoning agents and a ring of colluding raters share a pool for N
    rounds (memstream/eval/economy.py): reputations, the poisoners' memories against the
    admission bar, what the ring earned, and the honest agents' recall against a run
    without attackers (progress on stderr)."""
    from memstream.eval.economy import run_economy_eval

    _settings()
    if not dataset.is_file():
        raise typer.BadParameter(f"{dataset}: no such file", param_hint="--dataset")
    result = run_economy_eval(dataset, rounds=rounds, seed=seed)
    _emit("eval-economy", result, save=save, as_json=as_json)


@eval_app.command("tagging")
def eval_tagging(
    dataset: Annotated[
        Path,
        typer.Option(
            help="JSON: taxonomy (tag -> example texts) and items", exists=True, dir_okay=False
        ),
    ],
    online_every: Annotated[
        int, typer.Option(help="online run: refit after this many self-tagged items")
    ] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    save: Annotated[bool, typer.Option(help="save under benchmarks/results/")] = True,
) -> None:
    """Tag by example (memstream/models/tagging.py): top-1 and top-3 accuracy of the model
    fitted on the taxonomy alone, nearest-example MiniLM as the baseline, and the online
    run that learns from each item's own tag after predicting it."""
    from memstream.eval.tagging import run_tagging_eval

    result = run_tagging_eval(dataset, online_every=online_every)
    _emit("eval-tagging", result, save=save, as_json=as_json)


@eval_app.command("linking")
def eval_linking(
    dataset: Annotated[
        Path, typer.Option(help="LoCoMo-format JSON file", exists=True, dir_okay=False)
    ],
    bar: Annotated[
        float | None, typer.Option(help="the linker's bar in standard deviations (default 3)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    save: Annotated[bool, typer.Option(help="save under benchmarks/results/")] = True,
) -> None:
    """Links between memories (memstream/models/linking.py): two turns that are evidence
    for the same question are related; precision and recall at the bar, with plain nearest
    neighbours at the same number of links."""
    from memstream.eval.linking import run_linking_eval

    _emit("eval-linking", run_linking_eval(dataset, bar=bar), save=save, as_json=as_json)


@eval_app.command("verification")
def eval_verification(
    claims: Annotated[int, typer.Option(help="generated memories, half true, half false")] = 240,
    seed: Annotated[int, typer.Option()] = 0,
    benign: Annotated[
        Path | None,
        typer.Option(
            help="ordinary texts ([{text}]): any verdict on them is a false flag",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    save: Annotated[bool, typer.Option(help="save under benchmarks/results/")] = True,
) -> None:
    """The verifiers (memstream/verification/) on generated true and false arithmetic and
    algebra claims inside memories: accuracy, per family, and false flags on `--benign`."""
    from memstream.eval.verification import run_verification_eval

    result = run_verification_eval(claims, seed=seed, benign=benign)
    _emit("eval-verification", result, save=save, as_json=as_json)


@eval_app.command("team-pool")
def eval_team_pool(
    dataset: Annotated[
        Path, typer.Option(help="LoCoMo-format JSON file", exists=True, dir_okay=False)
    ],
    k: Annotated[int, typer.Option()] = 5,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    save: Annotated[bool, typer.Option(help="save under benchmarks/results/")] = True,
) -> None:
    """What the pooled team state is good for (memstream/models/team_state.py): routing a
    question to the teammate whose memories hold its evidence, against cosine to each
    agent's mean vector and a random order, and recall when only the top agents are
    searched."""
    from memstream.eval.team_pool import run_team_pool_eval

    _emit("eval-team-pool", run_team_pool_eval(dataset, k=k), save=save, as_json=as_json)


@eval_app.command("distill")
def eval_distill(
    seeds: Annotated[
        int, typer.Option(min=1, help="seeds to run (0 .. seeds-1 from --first-seed)")
    ] = 5,
    first_seed: Annotated[int, typer.Option(min=0)] = 0,
    teachers: Annotated[int, typer.Option(min=1, help="teachers per seed")] = 3,
    bad_share: Annotated[
        float, typer.Option(min=0.0, max=0.9, help="share of malformed experience mixed in")
    ] = 0.10,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    save: Annotated[bool, typer.Option(help="save under benchmarks/results/")] = True,
) -> None:
    """Environment steps a new agent needs to reach CartPole-v1's return threshold, starting
    from the student distilled from teachers' experience against starting from scratch
    (docs/distillation.md). Progress goes to stderr."""
    from memstream.eval.distill import run_distill_eval

    _settings()
    result = run_distill_eval(
        seeds=seeds,
        first_seed=first_seed,
        teachers=teachers,
        bad_share=bad_share,
        progress=lambda line: typer.echo(line, err=True),
    )
    _emit("eval-distill", result, save=save, as_json=as_json)


distill_app = typer.Typer(help="Student policies distilled from experience.", no_args_is_help=True)
app.add_typer(distill_app, name="distill")


@distill_app.command("rebuild")
def distill_rebuild(
    tenant: Annotated[str, typer.Option(help="the team's tenant")],
    team: Annotated[str, typer.Option(help="a team of distill_teams")],
    version: Annotated[
        int | None, typer.Option(help="the version whose experience range to replay")
    ] = None,
    bootstrap: Annotated[str | None, typer.Option(help="Kafka host:port")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Replay `memstream.experience` up to a version's lineage offsets into a new student
    version (same teachers, config and seed), and say whether its weights are identical."""
    from memstream.cli.options import stack_settings
    from memstream.streams.distill import (
        read_experience,
        rebuild_student,
        student_registry,
        team_specs,
    )

    settings = stack_settings(_settings())
    specs = {s.key: s for s in team_specs(settings.distill_teams)}
    spec = specs.get((tenant, team))
    if spec is None:
        raise _fail(f"{tenant}/{team} is not in distill_teams (MEMSTREAM_DISTILL_TEAMS)")
    models_dir = settings.data_dir / "models"
    registry = student_registry(models_dir, tenant, spec.model)
    source = version or registry.current_version()
    if source is None or source not in registry.versions():
        raise _fail(f"{spec.model} has no version {source or ''} in {registry.path}".strip())
    meta = registry.metadata(source)
    lineage = meta["lineage"]
    found = require_bootstrap(settings, bootstrap)
    messages = asyncio.run(read_experience(found, lineage["offsets"], settings))
    new_version, _ = rebuild_student(
        messages,
        spec,
        lineage,
        models_dir,
        max_bytes=settings.max_event_bytes,
        source_version=source,
    )
    if new_version is None:
        raise _fail("the replayed range holds no experience of the lineage's teachers")
    rebuilt = registry.metadata(new_version)
    result = {
        "model": spec.model,
        "rebuilt_from": source,
        "version": new_version,
        "messages_read": len(messages),
        "pairs": rebuilt["lineage"]["pairs"],
        "weights_sha256": rebuilt["weights_sha256"],
        "identical": rebuilt["weights_sha256"] == meta["weights_sha256"],
        "same_pairs": rebuilt["lineage"]["pairs_sha256"] == lineage["pairs_sha256"],
    }
    typer.echo(json.dumps(result, indent=None if as_json else 2))
    if not result["identical"]:
        raise typer.Exit(code=1)


@eval_app.command("retrieval")
def eval_retrieval(
    dataset: Annotated[
        Path, typer.Option(help="LoCoMo-format JSON file", exists=True, dir_okay=False)
    ],
    k: Annotated[str, typer.Option(help="comma-separated cut-offs")] = "1,5,10",
    pii_policy: Annotated[
        str,
        typer.Option(
            help="worker (the worker's privacy settings, what users get), allow (turns as "
            "spoken, for comparison), or an action: seal, redact, pseudonymize"
        ),
    ] = "worker",
    token_vectors: Annotated[
        str,
        typer.Option(
            help="ingest (the rerank's token vectors kept when a memory is embedded, as the "
            "worker does) or query (computed at search time, the old path)"
        ),
    ] = "ingest",
    mode: Annotated[
        str | None,
        typer.Option(
            help="episodic, knowledge or auto: compare recall modes by provenance (items and "
            "characters returned beside recall; memstream/retrieval/modes.py)"
        ),
    ] = None,
    ablation: Annotated[
        bool,
        typer.Option(
            "--ablation",
            help="each pipeline step on and off, recall@5 pooled and per conversation, with "
            "search time: the table in docs/retrieval.md",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    save: Annotated[bool, typer.Option(help="save under benchmarks/results/")] = True,
) -> None:
    """Recall@k of evidence turns: hybrid retrieval, with BM25 and dense baselines; with
    --mode, knowledge mode (consolidated facts) against episodic (raw memories); with
    --ablation, the steps of the pipeline one by one."""
    from memstream.eval.retrieval import run_retrieval_eval

    if ablation:
        from memstream.eval.retrieval_ablation import ablation_table, run_retrieval_ablation

        with _question_bar(as_json) as progress:
            result = run_retrieval_ablation(dataset, pii_policy=pii_policy, progress=progress)
        result["table"] = ablation_table(result)
        if as_json:
            _emit("eval-retrieval-ablation", result, save=save, as_json=True)
            return
        if save:
            typer.echo(f"saved to {_save_result('eval-retrieval-ablation', result)}")
        typer.echo(result["table"])
        return

    if mode is not None:
        from memstream.eval.modes import run_modes_eval
        from memstream.retrieval.modes import MODES

        if mode not in MODES:
            raise _fail(f"--mode must be one of {', '.join(MODES)}")
        cut = max(int(x) for x in k.split(",")) if k != "1,5,10" else 5
        result = run_modes_eval(
            dataset, k=cut, weights=_settings().ranking_weights(), pii_policy=pii_policy
        )
        result["mode_asked"] = mode
        _emit(f"eval-retrieval-{mode}", result, save=save, as_json=as_json)
        return

    if token_vectors not in ("ingest", "query"):
        raise _fail("--token-vectors must be ingest or query")
    settings = _settings()
    ks = tuple(int(x) for x in k.split(","))
    with _question_bar(as_json) as progress:
        result = run_retrieval_eval(
            dataset,
            ks=ks,
            weights=settings.ranking_weights(),
            pii_policy=pii_policy,
            token_vectors=token_vectors,
            progress=progress,
        )
    _emit("eval-retrieval", result, save=save, as_json=as_json)


@eval_app.command("recency")
def eval_recency(
    seed: Annotated[int, typer.Option()] = 0,
    entities: Annotated[int, typer.Option(help="people in the synthetic stream (max 26)")] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    save: Annotated[bool, typer.Option(help="save under benchmarks/results/")] = True,
) -> None:
    """Share of questions where the newest version of a changing fact ranks first."""
    from memstream.eval.recency import run_recency_eval

    settings = _settings()
    result = run_recency_eval(seed=seed, entities=entities, weights=settings.ranking_weights())
    _emit("eval-recency", result, save=save, as_json=as_json)


@bench_app.command("store")
def bench_store(
    points: Annotated[int, typer.Option(help="points to upsert")] = 100_000,
    tenants: Annotated[int, typer.Option()] = 100,
    queries: Annotated[int, typer.Option(help="queries per measurement")] = 500,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    save: Annotated[bool, typer.Option(help="save under benchmarks/results/")] = True,
) -> None:
    """Upserts/s and p50/p99 query latency (unfiltered, access-filtered, hybrid), embedded."""
    from memstream.bench.store import run_store_bench

    _settings()
    result = run_store_bench(points=points, tenants=tenants, queries=queries)
    _emit("store", result, save=save, as_json=as_json)


@eval_app.command("pii")
def eval_pii(
    dataset: Annotated[
        Path, typer.Option(help="presidio-research format JSON", exists=True, dir_okay=False)
    ],
    tier: Annotated[
        str, typer.Option(help="full (Presidio + spaCy + patterns) or fast (patterns)")
    ] = "full",
    benign: Annotated[
        Path | None,
        typer.Option(
            help="texts with no personal data ([{text}]): share of texts and characters altered",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object on stdout")] = False,
    save: Annotated[bool, typer.Option(help="save under benchmarks/results/")] = True,
) -> None:
    """Recall, precision and leak rate of the worker's default policy, per category (direct
    and quasi identifiers) and overall, next to Presidio's default analyzer; with --benign,
    how much ordinary text each alters. The report goes to stderr, JSON to stdout."""
    from memstream.eval.pii import run_pii_eval

    _settings()
    result = run_pii_eval(dataset, tier=tier, benign=benign)  # type: ignore[arg-type]
    _emit("eval-pii", result, save=save, as_json=as_json)


@bench_app.command("privacy")
def bench_privacy(
    texts: Annotated[int, typer.Option(help="texts per tier")] = 500,
    dataset: Annotated[Path | None, typer.Option(help="sample texts from this PII dataset")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    save: Annotated[bool, typer.Option(help="save under benchmarks/results/")] = True,
) -> None:
    """Texts/s of each PII detection tier."""
    from memstream.bench.privacy import run_privacy_bench

    _settings()
    result = run_privacy_bench(texts=texts, dataset=dataset)
    _emit("privacy", result, save=save, as_json=as_json)


@app.command()
def doctor(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Check the running stack: broker, topics, worker, store, models and versions; exit 1
    with a fix for each failure."""
    from memstream.services.doctor import render, run_doctor

    report = run_doctor(_settings())
    typer.echo(json.dumps(report, indent=2) if as_json else render(report))
    if not report["ok"]:
        raise typer.Exit(code=1)


@eval_app.command("compression")
def eval_compression(
    dataset: Annotated[
        Path, typer.Option(help="LoCoMo-format JSON file", exists=True, dir_okay=False)
    ],
    k: Annotated[int, typer.Option(help="recall@k")] = 10,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    save: Annotated[bool, typer.Option(help="save under benchmarks/results/")] = True,
) -> None:
    """Bytes per stored vector, ratio to fp32, and recall@k relative to fp32 exact search."""
    from memstream.eval.compression import run_compression_eval

    _settings()
    result = run_compression_eval(dataset, k=k)
    _emit("eval-compression", result, save=save, as_json=as_json)


@bench_app.command("replay")
def bench_replay(
    events: Annotated[int, typer.Option(help="events in the archive to replay")] = 100_000,
    embed_cap: Annotated[
        int, typer.Option(help="events for the run with embedding (slow)")
    ] = 5_000,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    save: Annotated[bool, typer.Option(help="save under benchmarks/results/")] = True,
) -> None:
    """Replay events/s from an archive: with embedding (memories) and without (indexed)."""
    from memstream.bench.replay import run_replay_bench

    _settings()
    result = run_replay_bench(events, embed_cap=embed_cap)
    _emit("replay", result, save=save, as_json=as_json)


@bench_app.command("pool")
def bench_pool(
    sizes: Annotated[str, typer.Option(help="agents per team, comma-separated")] = "8,64",
    teams: Annotated[int, typer.Option(help="teams pooled per ONNX run")] = 64,
    updates: Annotated[int, typer.Option(help="updates measured per size")] = 4096,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    save: Annotated[bool, typer.Option(help="save under benchmarks/results/")] = True,
) -> None:
    """Pooled team state updates/s (one agent's new state and its team's re-pool, batched
    across teams), with the ONNX Runtime providers that ran."""
    from memstream.bench.team_pool import run_team_pool_bench

    result = run_team_pool_bench(
        tuple(int(x) for x in sizes.split(",")), teams=teams, updates=updates
    )
    _emit("bench-pool", result, save=save, as_json=as_json)


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
    ] = Path("../shared/data/locomo_dev.json"),
    broker_kind: Annotated[str, typer.Option("--broker", help="tansu or kafka")] = "tansu",
    as_json: Annotated[bool, typer.Option("--json")] = False,
    save: Annotated[bool, typer.Option(help="save under benchmarks/results/")] = True,
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
    _emit("push" if rate_list else "push-matcher", result, save=save, as_json=as_json)


DEV_LOCOMO = Path("../shared/data/locomo_dev.json")


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
    as_json: Annotated[bool, typer.Option("--json")] = False,
    save: Annotated[bool, typer.Option(help="save under benchmarks/results/")] = True,
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
    _emit("ingest", result, save=save, as_json=as_json)


privacy_app = typer.Typer(help="The privacy stage.", no_args_is_help=True)
app.add_typer(privacy_app, name="privacy")


@privacy_app.command("preview")
def privacy_preview(
    file: Annotated[
        Path | None,
        typer.Option(help='a JSON list of strings or of {"text": ...}; else stdin, a text a line'),
    ] = None,
    topic: Annotated[str | None, typer.Option(help="preview as memories on this topic")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines only")] = False,
) -> None:
    """What a reader without the pii clearance would see of each text, and the spans found
    (type, start, end, category, action), with exactly the worker's settings and code."""
    from memstream.privacy.preview import preview

    settings = _settings()
    if file is not None:
        try:
            rows = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise _fail(f"cannot read {file}: {err}") from err
        if not isinstance(rows, list):
            raise _fail(f"{file} must hold a JSON list")
        texts = [r["text"] if isinstance(r, dict) else str(r) for r in rows]
    else:
        texts = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    for row in preview(texts, settings, topic):
        if as_json:
            typer.echo(json.dumps(row, ensure_ascii=False))
            continue
        typer.echo(
            f"{row['text']}\n  -> {row['visible'] if row['visible'] is not None else '(rejected: ' + str(row['rejected']) + ')'}"
        )
        for s in row["spans"]:
            value = row["text"][s["start"] : s["end"]]
            typer.echo(f"     {s['action']:<8} {s['category']:<7} {s['type']:<22} {value!r}")


@bench_app.command("up")
def bench_up(
    brokers: Annotated[str, typer.Option(help="comma-separated: kafka, tansu")] = "kafka,tansu",
    repeats: Annotated[int, typer.Option(help="runs per broker")] = 2,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    save: Annotated[bool, typer.Option(help="save under benchmarks/results/")] = True,
) -> None:
    """Seconds from `memstream up` to `ready` per broker: first start and restart."""
    from memstream.bench.up import run_up_bench

    _settings()
    result = run_up_bench(tuple(b.strip() for b in brokers.split(",")), repeats)
    _emit("up", result, save=save, as_json=as_json)


@bench_app.command("load")
def bench_load(
    url: Annotated[str, typer.Option(help="the API of a running stack (local only)")] = (
        "http://127.0.0.1:8700"
    ),
    clients: Annotated[int, typer.Option(help="agents, each with its own token and stream")] = 8,
    seconds: Annotated[float, typer.Option(help="how long to drive the API")] = 60.0,
    rate: Annotated[float, typer.Option(help="writes per second, all clients together")] = 10.0,
    searches_per_write: Annotated[int, typer.Option(help="searches after each write")] = 2,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    save: Annotated[bool, typer.Option(help="save under benchmarks/results/")] = True,
) -> None:
    """A steady mix of writes, searches and streams against a running API: achieved rates,
    p50/p99 per route, errors, and whether every acknowledged write was indexed (exit 1
    on any error or missing write). Tokens are made in the stack's token store."""
    from rich.progress import Progress

    from memstream.bench.load import run_load
    from memstream.cli.options import stack_settings
    from memstream.services.auth import TokenStore

    if clients < 1 or seconds <= 0 or rate <= 0:
        raise _fail("--clients, --seconds and --rate must be positive")
    settings = stack_settings(Settings())
    store = TokenStore(settings.data_dir / "tokens.db")
    tenant = f"load-{uuid.uuid4().hex[:6]}"
    tokens = [store.create(tenant, f"agent-{i}") for i in range(clients)]
    with Progress(disable=as_json, transient=True) as bar:
        task = bar.add_task("load (writes acknowledged)", total=int(rate * seconds))
        try:
            result = run_load(
                url,
                tokens,
                seconds=seconds,
                rate=rate,
                searches_per_write=searches_per_write,
                progress=lambda done: bar.update(task, completed=done),
            )
        except ValueError as err:
            raise _fail(str(err)) from err
    _emit("load", result, save=save, as_json=as_json)
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
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON only")] = False,
    save: Annotated[bool, typer.Option(help="save under benchmarks/results/")] = True,
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
    _emit(f"faults-{fault}", result, save=save, as_json=as_json)
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
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON only")] = False,
    save: Annotated[bool, typer.Option(help="save under benchmarks/results/")] = True,
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
    _emit("scale", result, save=save, as_json=as_json)


@bench_app.command("fuzz")
def bench_fuzz(
    url: Annotated[str, typer.Option(help="the API of a running stack (local only)")] = (
        "http://127.0.0.1:8700"
    ),
    requests: Annotated[int, typer.Option(help="requests to send")] = 10_000,
    tenants: Annotated[int, typer.Option(help="tenants to spread them over")] = 4,
    agents: Annotated[int, typer.Option(help="tokens per tenant")] = 16,
    concurrency: Annotated[int, typer.Option()] = 8,
    seed: Annotated[int, typer.Option()] = 7,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    save: Annotated[bool, typer.Option(help="save under benchmarks/results/")] = True,
) -> None:
    """Hostile and careless requests against a running API: counts per status; fails
    (exit 1) on any 5xx, dropped connection or 4xx without a reason. Tokens are made in
    the stack's token store (MEMSTREAM_DATA_DIR)."""
    from rich.progress import Progress

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
    with Progress(disable=as_json, transient=True) as bar:
        task = bar.add_task("fuzz", total=requests)
        try:
            result = run_fuzz(
                url,
                firsts + tokens,
                names,
                requests=requests,
                seed=seed,
                concurrency=concurrency,
                limit_bytes=settings.max_event_bytes,
                progress=lambda done: bar.update(task, completed=done),
            )
        except ValueError as err:
            raise _fail(str(err)) from err
    _emit("fuzz", result, save=save, as_json=as_json)
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
    as_json: Annotated[bool, typer.Option("--json")] = False,
    save: Annotated[bool, typer.Option(help="save under benchmarks/results/")] = True,
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
    _emit(f"store-faults-{backend}", result, save=save, as_json=as_json)
    if result["lost"] or result["dead_lettered"] or not result["drained"]:
        raise typer.Exit(code=1)


@contextlib.contextmanager
def _question_bar(as_json: bool) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr (never stdout, which carries the result) fed with
    `(done, total)`; with --json it stays off."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), disable=as_json, transient=True) as bar:
        task = bar.add_task("questions (after ingest)", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _emit(name: str, result: dict[str, Any], *, save: bool, as_json: bool) -> None:
    """Print a bench or eval result; with `save`, record it (and where) under
    benchmarks/results/ first."""
    if save:
        result["saved_to"] = str(_save_result(name, result))
    typer.echo(json.dumps(result, indent=None if as_json else 2))


def _save_result(name: str, result: dict[str, object]) -> Path:
    from datetime import UTC, datetime

    directory = Path("benchmarks/results")
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"{name}-{stamp}.json"
    record = {"command": "memstream " + " ".join(sys.argv[1:]), "result": result}
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def main() -> None:
    app()
