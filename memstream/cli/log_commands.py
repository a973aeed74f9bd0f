"""The log's commands: `replay`, `tail`, `processors list`, `dlq list|replay`, `archive stats`.

`register(app)` mounts them on the main CLI, or alone on any Typer app.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from memstream.cli.options import BootstrapOption, JsonFlag, stack_settings
from memstream.cli.options import fail as _fail
from memstream.cli.options import load_settings as _settings
from memstream.cli.options import require_bootstrap as _bootstrap

processors_app = typer.Typer(help="Installed plug-in processors.", no_args_is_help=True)
dlq_app = typer.Typer(help="The dead-letter topic.", no_args_is_help=True)
archive_app = typer.Typer(help="The on-disk topic archive.", no_args_is_help=True)


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


def replay_cmd(
    topic: Annotated[
        list[str] | None,
        typer.Option(
            "--topic",
            help="topic to replay (repeat or comma-separate); memstream.memories and "
            "memstream.observations re-embed, memstream.indexed is stored as is; default "
            "both input topics",
        ),
    ] = None,
    from_: Annotated[
        str, typer.Option("--from", help="beginning, an offset (every partition) or an ISO time")
    ] = "beginning",
    to: Annotated[str, typer.Option(help="end, an offset or an ISO time (exclusive)")] = "end",
    from_archive: Annotated[
        Path | None, typer.Option(help="read an archive directory instead of the broker")
    ] = None,
    into: Annotated[str, typer.Option(help="store version to write: a number or `new`")] = "new",
    processors: Annotated[
        str | None, typer.Option(help="also run these plug-ins (comma-separated); needs a broker")
    ] = None,
    swap: Annotated[bool, typer.Option(help="make the new version live at the end")] = False,
    restart: Annotated[bool, typer.Option(help="ignore the version's checkpoint")] = False,
    bootstrap: BootstrapOption = None,
    store: Annotated[
        Path | None, typer.Option(help="the Edge store directory (default <data dir>/store)")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="records per batch")] = None,
    books: Annotated[
        bool,
        typer.Option(
            "--books",
            help="instead: rebuild the reputation book and the credit ledger from "
            "indexed, feedback and deliveries, and say whether they equal the live ones "
            "(writes nothing)",
        ),
    ] = False,
    tenant: Annotated[
        str | None, typer.Option(help="with --books: compare this tenant only")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Re-process history into a new store version while the live one serves.

    Resumable: re-running the same command continues after the last stored batch. With
    --swap the alias moves at the end; a running worker follows it within a second."""
    from memstream.log.replay import ReplayError, replay, replay_books

    settings = stack_settings(_settings())
    if books:
        try:
            found = replay_books(
                settings, from_archive=from_archive, bootstrap=bootstrap, tenant=tenant
            )
        except ReplayError as err:
            raise _fail(str(err)) from err
        if as_json:
            typer.echo(json.dumps(found, indent=2))
        else:
            same = found["equal_to_live"]
            typer.echo(
                f"{found['records_read']} records read; reputation "
                f"{'equals' if same['reputation'] else 'DIFFERS FROM'} the live book, ledger "
                f"{'equals' if same['ledger'] else 'DIFFERS FROM'} the live ledger"
            )
        if not all(found["equal_to_live"].values()):
            raise typer.Exit(1)
        return
    try:
        summary = replay(
            settings,
            topics=_split(topic) or None,
            start=from_,
            stop=to,
            from_archive=from_archive,
            bootstrap=bootstrap,
            into=into,
            processors=_split([processors] if processors else None),
            swap=swap,
            restart=restart,
            batch_size=batch_size,
            store_root=store,
            progress=not as_json,
        )
    except ReplayError as err:
        raise _fail(str(err)) from err
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    typer.echo(
        f"v{summary['version']}: {summary['records_read']} records read, "
        f"{summary['memories_written']} memories written, "
        f"{summary['duplicates_merged']} duplicates merged, {summary['rejected']} rejected "
        f"in {summary['seconds']:.1f}s ({summary['records_per_s']:,.0f} records/s)"
    )
    if summary["processor_outputs"] or summary["processor_failures"]:
        typer.echo(
            f"processors: {summary['processor_outputs']} outputs, "
            f"{summary['processor_failures']} dead-lettered"
        )
    if summary["swapped"]:
        typer.echo(
            f"alias -> memories_v{summary['version']}; running workers follow it within a second"
        )


@processors_app.command("list")
def processors_list(
    as_json: JsonFlag = False,
) -> None:
    """Installed plug-ins: name, origin package, consumed and produced topics."""
    from memstream.processors import load_entry_points

    _settings()
    specs, failures = load_entry_points()
    rows = [
        {
            "name": s.name,
            "origin": s.origin,
            "consumes": list(s.consumes),
            "produces": s.produces,
            "batch": s.batch,
            "group": f"memstream-proc-{s.name}",
        }
        for s in sorted(specs, key=lambda s: s.name)
    ]
    broken = [
        {"entry_point": f.entry_point, "distribution": f.distribution, "error": repr(f.error)}
        for f in failures
    ]
    if as_json:
        typer.echo(json.dumps({"processors": rows, "failed": broken}, indent=2))
        return
    if not rows:
        typer.echo("no processors installed (entry-point group memstream.processors)")
    for row in rows:
        typer.echo(
            f"{row['name']:<20} {row['origin']:<28} {','.join(row['consumes'])} -> "
            f"{row['produces'] or '-'}"
        )
    for item in broken:
        typer.echo(f"FAILED {item['entry_point']} ({item['distribution']}): {item['error']}")


@dlq_app.command("list")
def dlq_list(
    reason: Annotated[str | None, typer.Option(help="only this reason code")] = None,
    stage: Annotated[
        str | None, typer.Option(help="only this stage (`processor:*` for every plug-in)")
    ] = None,
    limit: Annotated[int, typer.Option(help="newest N (0 = all)")] = 50,
    bootstrap: BootstrapOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON rows")] = False,
) -> None:
    """Dead letters: id (partition:offset), reason, stage, origin, tenant, detail."""
    from memstream.log.dead_letters import list_dead_letters

    settings = _settings()
    rows = list_dead_letters(_bootstrap(settings, bootstrap), limit or None, reason, stage)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        origin = f"{row['origin_topic']}[{row['origin_partition']}]@{row['origin_offset']}"
        detail = (row.get("detail") or "").replace("\n", " ")
        typer.echo(
            f"{row['id']:<10} {row['reason'] or '-':<26} {row['stage'] or '-':<20} "
            f"{origin:<34} {row['tenant'] or '-':<16} {row['size']:>8}  {detail[:80]}"
        )
    typer.echo(f"{len(rows)} dead letter(s)", err=True)


@dlq_app.command("replay")
def dlq_replay(
    offset: Annotated[
        list[str] | None,
        typer.Option(help="partition:offset or dead-letter event id (repeatable)"),
    ] = None,
    reason: Annotated[str | None, typer.Option(help="every dead letter with this reason")] = None,
    stage: Annotated[str | None, typer.Option(help="every dead letter of this stage")] = None,
    bootstrap: BootstrapOption = None,
    as_json: Annotated[bool, typer.Option("--json", help='print {"republished": N}')] = False,
) -> None:
    """Re-publish dead letters' original bytes to their origin topic (after a fix)."""
    from memstream.log.dead_letters import replay_dead_letters

    settings = _settings()
    ids = _split(offset)
    if not ids and reason is None and stage is None:
        raise _fail("name dead letters with --offset, or choose them with --reason / --stage")
    try:
        sent = replay_dead_letters(_bootstrap(settings, bootstrap), ids, reason=reason, stage=stage)
    except LookupError as err:
        raise _fail(str(err)) from err
    typer.echo(
        json.dumps({"republished": sent}) if as_json else f"re-published {sent} dead letter(s)"
    )


def archive_stats(root: Path, topic: str | None = None) -> dict[str, Any]:
    """Per topic: segments, records, partitions, bytes on disk, first and last record time."""
    from datetime import UTC, datetime

    from memstream.log.archive import ArchiveReader

    reader = ArchiveReader(root)
    topics: dict[str, Any] = {}
    for name in [topic] if topic else reader.topics():
        segments = reader.segments(name)
        records = 0
        partitions: set[int] = set()
        first = last = None
        for record in reader.read(name):
            records += 1
            partitions.add(record.partition)
            first = record.timestamp_ms if first is None else min(first, record.timestamp_ms)
            last = record.timestamp_ms if last is None else max(last, record.timestamp_ms)

        def iso(ms: int | None) -> str | None:
            return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat()

        topics[name] = {
            "segments": len(segments),
            "records": records,
            "partitions": sorted(partitions),
            "bytes": sum(p.stat().st_size for p in segments),
            "first": iso(first),
            "last": iso(last),
        }
    return {
        "root": str(root),
        "topics": topics,
        "records": sum(t["records"] for t in topics.values()),
        "bytes": sum(t["bytes"] for t in topics.values()),
        "skipped_segments": [str(p) for p, _ in reader.skipped],
    }


@archive_app.command("stats")
def archive_stats_cmd(
    root: Annotated[
        Path | None, typer.Option(help="archive directory (default <data>/archive)")
    ] = None,
    topic: Annotated[str | None, typer.Option(help="only this topic")] = None,
    as_json: JsonFlag = False,
) -> None:
    """What the archive holds: records, segments and bytes per topic, time span."""
    settings = stack_settings(_settings())
    root = root or settings.data_dir / "archive"
    if not root.is_dir():
        raise _fail(f"no archive at {root}")
    stats = archive_stats(root, topic)
    if as_json:
        typer.echo(json.dumps(stats, indent=2))
        return
    for name, t in stats["topics"].items():
        typer.echo(
            f"{name:<28} {t['records']:>10} records {t['segments']:>6} segments "
            f"{t['bytes'] / 1_048_576:>9.2f} MiB  {t['first']} .. {t['last']}"
        )
    typer.echo(f"total {stats['records']} records, {stats['bytes'] / 1_048_576:.2f} MiB")
    for path in stats["skipped_segments"]:
        typer.echo(f"unreadable segment skipped: {path}", err=True)


def tail_cmd(
    topic: Annotated[str, typer.Argument(help="a topic, e.g. memstream.memories")],
    last: Annotated[int, typer.Option(help="records of each partition to show first")] = 10,
    idle: Annotated[
        float | None, typer.Option(help="stop after this many seconds without a record")
    ] = None,
    bootstrap: BootstrapOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="one JSON object per record and line, nothing else")
    ] = False,
) -> None:
    """Follow a topic live: its last records, then each new one (Ctrl-C stops)."""
    import asyncio
    import shutil

    from memstream.sdk.tail import follow, one_line

    settings = stack_settings(_settings())
    address = _bootstrap(settings, bootstrap)
    width = shutil.get_terminal_size((120, 24)).columns

    async def run() -> None:
        async for row in follow(address, topic, last=last, idle_s=idle):
            typer.echo(json.dumps(row) if as_json else one_line(row, width))

    try:
        asyncio.run(run())
    except LookupError as err:
        raise _fail(str(err)) from err
    except KeyboardInterrupt:
        pass


def register(app: typer.Typer) -> None:
    """Add `replay`, `tail`, `processors`, `dlq` and `archive` to the main `memstream` app."""
    app.command("replay")(replay_cmd)
    app.command("tail")(tail_cmd)
    app.add_typer(processors_app, name="processors")
    app.add_typer(dlq_app, name="dlq")
    app.add_typer(archive_app, name="archive")


__all__ = ["archive_stats", "register"]
