"""`memstream acls` and `memstream token ...`: who may use the broker and the API."""

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
from memstream.cli.options import fail as _fail
from memstream.cli.options import load_settings as _settings
from memstream.settings import Settings

token_app = typer.Typer(help="API bearer tokens.", no_args_is_help=True)


def acls(
    file: Annotated[
        Path | None, typer.Argument(help="ACL set (JSON); default: deploy/kafka/acls.json's")
    ] = None,
    bootstrap: BootstrapOption = None,
    as_json: JsonFlag = False,
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
    as_json: JsonFlag = False,
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


def register(app: typer.Typer) -> None:
    """Mount these commands on the main `memstream` app."""
    app.command()(acls)
    app.add_typer(token_app, name="token")
