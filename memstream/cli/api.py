"""`memstream import`, `export`, `mcp`: commands that go through a stack's HTTP API."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from memstream.cli.options import (
    TokenOption,
    UrlOption,
)
from memstream.cli.options import fail as _fail
from memstream.cli.options import load_settings as _settings


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


def register(app: typer.Typer) -> None:
    """Mount these commands on the main `memstream` app."""
    app.command("import")(import_command)
    app.command("export")(export_command)
    app.command("mcp")(mcp_command)
