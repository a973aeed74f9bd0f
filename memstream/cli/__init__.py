"""The `memstream` command: one module per command group."""

from memstream.cli.main import app, main

__all__ = ["app", "main"]
