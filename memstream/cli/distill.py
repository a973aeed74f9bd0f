"""`memstream distill rebuild`: rebuild a student policy from the experience log."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from memstream.cli.options import (
    BootstrapOption,
    JsonFlag,
    require_bootstrap,
)
from memstream.cli.options import fail as _fail
from memstream.cli.options import load_settings as _settings

distill_app = typer.Typer(help="Student policies distilled from experience.", no_args_is_help=True)


@distill_app.command("rebuild")
def distill_rebuild(
    tenant: Annotated[str, typer.Option(help="the team's tenant")],
    team: Annotated[str, typer.Option(help="a team of distill_teams")],
    version: Annotated[
        int | None, typer.Option(help="the version whose experience range to replay")
    ] = None,
    bootstrap: BootstrapOption = None,
    as_json: JsonFlag = False,
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


def register(app: typer.Typer) -> None:
    """Mount these commands on the main `memstream` app."""
    app.add_typer(distill_app, name="distill")
