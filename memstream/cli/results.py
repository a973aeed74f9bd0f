"""How bench and eval commands show progress, print their results and save them under
benchmarks/results/."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer

from memstream.cli.options import fail


@contextlib.contextmanager
def question_bar(as_json: bool) -> Iterator[Callable[[int, int], None]]:
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


def with_bar(
    label: str,
    total: int,
    as_json: bool,
    run: Callable[[Callable[[int], None]], dict[str, Any]],
) -> dict[str, Any]:
    """`run(progress)` under a progress bar (off with --json) that `progress(done)` moves;
    a ValueError it raises is a clean failure."""
    from rich.progress import Progress

    with Progress(disable=as_json, transient=True) as bar:
        task = bar.add_task(label, total=total)
        try:
            return run(lambda done: bar.update(task, completed=done))
        except ValueError as err:
            raise fail(str(err)) from err


def emit(name: str, result: dict[str, Any], *, save: bool, as_json: bool) -> None:
    """Print a bench or eval result; with `save`, record it (and where) under
    benchmarks/results/ first."""
    if save:
        result["saved_to"] = str(save_result(name, result))
    typer.echo(json.dumps(result, indent=None if as_json else 2))


def save_result(name: str, result: dict[str, object]) -> Path:
    from datetime import UTC, datetime

    directory = Path("benchmarks/results")
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"{name}-{stamp}.json"
    record = {"command": "memstream " + " ".join(sys.argv[1:]), "result": result}
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path
