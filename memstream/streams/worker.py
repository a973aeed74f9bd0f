"""Run the Faust worker in this process: topics first, then the agents until a signal."""

from __future__ import annotations

import asyncio
import faulthandler
import gc
import os
import signal
import sys

import faust

from memstream.settings import Settings
from memstream.streams.admin import broker_is_tansu, ensure_topics
from memstream.streams.app import create_app


def run_worker(settings: Settings, bootstrap: str) -> None:
    """Block running the pipeline against `bootstrap`; SIGINT/SIGTERM stop it cleanly.

    Until Faust installs its own handlers (after topics and models are loaded), a signal
    exits at once with status 0: nothing has been consumed yet, so nothing is lost."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: sys.exit(0))
    # a crash inside a native library (ONNX Runtime, Qdrant Edge) names its Python frames
    # in the worker's log instead of a bare exit status
    faulthandler.enable()
    # the store, archive, key store, tokens and models hold personal data and secrets:
    # whatever this process creates is readable by its owner only
    os.umask(0o077)
    asyncio.run(
        ensure_topics(
            bootstrap,
            partitions=settings.partitions,
            replication_factor=settings.replication_factor,
        )
    )
    app = create_app(settings, bootstrap, tansu=asyncio.run(broker_is_tansu(bootstrap)))
    # The models, spaCy and the libraries are millions of long-lived objects: left to the
    # collector, each full collection walks them all (60-80 ms pauses measured in the
    # middle of searches, the whole p99). Frozen, a collection walks what came after.
    gc.collect()
    gc.freeze()
    worker = faust.Worker(
        app,
        loglevel=settings.log_level,
        quiet=True,
        override_logging=False,
        # a fresh event loop: asyncio.run above closed its own
        loop=asyncio.new_event_loop(),
    )
    # Faust's start-up spinner writes terminal escape codes (cursor hide/show) to stdout even
    # when that is a log file; the worker logs, it does not animate
    worker.spinner = None
    worker.execute_from_commandline()
