"""What every `memstream` command shares: settings with logging, a clean failure, the broker."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from memstream.logging import configure_logging
from memstream.settings import Settings

if TYPE_CHECKING:
    from memstream.services.stack import StackState

DEV_LOCOMO = Path("../shared/data/locomo_dev.json")
"""The LoCoMo dev set benches and evals read by default."""

BootstrapOption = Annotated[
    str | None, typer.Option(help="host:port[,...]; default MEMSTREAM_KAFKA_BOOTSTRAP")
]
JsonFlag = Annotated[bool, typer.Option("--json", help="print JSON only")]
SaveFlag = Annotated[bool, typer.Option(help="save under benchmarks/results/")]
UrlOption = Annotated[
    str | None,
    typer.Option("--url", help="the API (default: MEMSTREAM_API_URL, else the running stack's)"),
]
TokenOption = Annotated[
    str | None, typer.Option("--token", help="bearer token (default: MEMSTREAM_TOKEN)")
]


def load_settings() -> Settings:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    return settings


def fail(message: str) -> typer.Exit:
    """Print `error: ...` to stderr; raise the result to exit with status 2."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=2)


def require_bootstrap(settings: Settings, bootstrap: str | None) -> str:
    """--bootstrap, else MEMSTREAM_KAFKA_BOOTSTRAP, else the running stack's broker
    (`memstream.services.stack.find_stack`), else a clear error naming what was looked for."""
    return _given_or_running(
        settings,
        bootstrap or settings.kafka_bootstrap,
        lambda state: state.bootstrap,
        "broker",
        "--bootstrap",
        "MEMSTREAM_KAFKA_BOOTSTRAP",
    )


def _given_or_running(
    settings: Settings,
    given: str | None,
    field: Callable[[StackState], str],
    what: str,
    flag: str,
    env: str,
) -> str:
    """`given`, else that `field` of the running stack, else a clear
    error naming where the stack was looked for and how to name one instead."""
    from memstream.services.stack import find_stack, where_to_look

    found = given
    if not found:
        state = find_stack(settings)
        found = field(state) if state is not None else None
    if not found:
        raise fail(
            f"no {what}: {where_to_look(settings)}; run `memstream up`, pass {flag} or set {env}"
        )
    return found


def stack_settings(settings: Settings) -> Settings:
    """The settings of the running stack these settings mean (its data dir and broker),
    or these settings unchanged when none runs; says on stderr which stack was found
    when it lives elsewhere than the current data dir."""
    from memstream.services.stack import stack_settings as resolve

    resolved, state = resolve(settings)
    if state is not None and resolved.data_dir != settings.data_dir:
        typer.echo(f"using the running stack in {state.data_dir}", err=True)
    return resolved


def api_target(url: str | None, token: str | None) -> tuple[str, str]:
    """(API url, bearer token) for commands that go through the HTTP API: --url, else
    MEMSTREAM_API_URL, else the running stack's API; --token, else MEMSTREAM_TOKEN. A clear
    error names what is missing."""
    import os

    url = _given_or_running(
        Settings(),
        url or os.environ.get("MEMSTREAM_API_URL"),
        lambda state: state.api_url,
        "API",
        "--url",
        "MEMSTREAM_API_URL",
    )
    token = token or os.environ.get("MEMSTREAM_TOKEN")
    if not token:
        raise fail(
            "no token: pass --token or set MEMSTREAM_TOKEN (make one with "
            "`memstream token create --tenant T --agent A`)"
        )
    return url, token
