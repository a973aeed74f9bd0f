"""What every `memstream` command shares: settings with logging, a clean failure, the broker."""

from __future__ import annotations

import typer

from memstream.logging import configure_logging
from memstream.settings import Settings


def load_settings() -> Settings:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    return settings


def fail(message: str) -> typer.Exit:
    """Print `error: ...` to stderr; raise the result to exit with status 2."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=2)


def require_bootstrap(settings: Settings, bootstrap: str | None) -> str:
    """--bootstrap, else MEMSTREAM_KAFKA_BOOTSTRAP, else a clear error."""
    found = bootstrap or settings.kafka_bootstrap
    if not found:
        raise fail(
            "no broker: pass --bootstrap or set MEMSTREAM_KAFKA_BOOTSTRAP (or run `memstream up`)"
        )
    return found
