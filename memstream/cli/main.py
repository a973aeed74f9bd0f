"""`memstream ...`: the one command-line entry point; each command group lives in its own
module and mounts itself here."""

from __future__ import annotations

import typer

from memstream.cli import (
    access,
    api,
    bench,
    bench_stress,  # noqa: F401  (adds its commands to bench's app)
    catalogue,
    distill,
    evals,
    log_commands,
    privacy,
    stack,
)

app = typer.Typer(
    help="memstream: an event-driven memory bus for AI agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
for group in (stack, access, privacy, api, catalogue, log_commands, bench, evals, distill):
    group.register(app)


def main() -> None:
    app()
