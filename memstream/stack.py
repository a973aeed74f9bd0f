"""The embedded stack `memstream up` runs: a broker, topics and a worker process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType

from memstream.broker import BrokerHandle, external_broker, start_broker
from memstream.settings import Settings
from memstream.streams.admin import ensure_topics


def spawn_worker(
    bootstrap: str, *, log_path: Path | None = None, **env: str
) -> subprocess.Popen[bytes]:
    """Start `memstream worker` in a child process pointed at `bootstrap`."""
    child_env = {**os.environ, "MEMSTREAM_KAFKA_BOOTSTRAP": bootstrap, **env}
    out = (
        os.fdopen(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
        if log_path
        else subprocess.DEVNULL
    )
    return subprocess.Popen(
        [sys.executable, "-m", "memstream", "worker"],
        env=child_env,
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15) -> int:
    """SIGTERM, wait, then SIGKILL: the worker commits its offsets on SIGTERM."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class Stack:
    """Broker (embedded unless `kafka_bootstrap` is set) plus one worker process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.broker: BrokerHandle | None = None
        self.worker: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        if self.broker is None:
            raise RuntimeError("stack not started")
        return self.broker.bootstrap

    def start(self) -> Stack:
        settings = self.settings
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if settings.kafka_bootstrap:
            self.broker = external_broker(settings.kafka_bootstrap)
        else:
            self.broker = start_broker(settings.broker_kind)
        asyncio.run(
            ensure_topics(
                self.broker.bootstrap,
                partitions=settings.partitions,
                replication_factor=settings.replication_factor,
            )
        )
        self.worker = spawn_worker(
            self.broker.bootstrap,
            log_path=settings.data_dir / "worker.log",
            MEMSTREAM_SERVE="true",
            MEMSTREAM_WEB_PORT=str(settings.web_port),
            MEMSTREAM_DATA_DIR=str(settings.data_dir),
        )
        return self

    def stop(self) -> None:
        if self.worker is not None:
            stop_process(self.worker)
            self.worker = None
        if self.broker is not None:
            self.broker.stop()
            self.broker = None

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def wait_for_http(url: str, timeout: float) -> None:
    """Poll `url` until it answers 200 (TimeoutError otherwise)."""
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout}s")
