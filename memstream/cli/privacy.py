"""`memstream erase` and `memstream privacy preview`: personal data."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from memstream.broker.security import kafka_client_kwargs
from memstream.cli.options import (
    BootstrapOption,
    require_bootstrap,
)
from memstream.cli.options import fail as _fail
from memstream.cli.options import load_settings as _settings

privacy_app = typer.Typer(help="The privacy stage.", no_args_is_help=True)


def erase(
    tenant: Annotated[str, typer.Option(help="the tenant the subject's data lives in")],
    subject: Annotated[
        list[str], typer.Option(help="a personal value: name, email, phone... (repeat)")
    ],
    bootstrap: BootstrapOption = None,
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


def register(app: typer.Typer) -> None:
    """Mount these commands on the main `memstream` app."""
    app.command()(erase)
    app.add_typer(privacy_app, name="privacy")
