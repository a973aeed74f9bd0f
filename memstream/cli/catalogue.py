"""`memstream schemas ...` and `memstream topics ...`: the event schemas and topics."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

from memstream.cli.options import (
    BootstrapOption,
    JsonFlag,
    require_bootstrap,
)
from memstream.cli.options import load_settings as _settings

schemas_app = typer.Typer(help="Event JSON Schemas.", no_args_is_help=True)
topics_app = typer.Typer(help="The topic catalogue.", no_args_is_help=True)


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
def topics_list(as_json: JsonFlag = False) -> None:
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
    bootstrap: BootstrapOption = None,
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


def register(app: typer.Typer) -> None:
    """Mount these commands on the main `memstream` app."""
    app.add_typer(schemas_app, name="schemas")
    app.add_typer(topics_app, name="topics")
