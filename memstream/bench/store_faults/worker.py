"""The worker under test: its process, its metrics, its health probe."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import httpx

from memstream.bench.store_faults.disk import METRICS
from memstream.broker.base import free_port


def _parse_metrics(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in METRICS:
        match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
        if match:
            out[name] = float(match.group(1))
    return out


class _Worker:
    """One `memstream worker --serve` on the store under test, restartable."""

    def __init__(self, bootstrap: str, env: dict[str, str], log_path: Path) -> None:
        self.bootstrap, self.env, self.log_path = bootstrap, env, log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout: float = 180) -> None:
        from memstream.services.stack import spawn_worker, wait_for_http

        self.proc = spawn_worker(
            self.bootstrap,
            log_path=self.log_path,
            tied=True,
            **self.env,
            MEMSTREAM_SERVE="true",
            MEMSTREAM_WEB_PORT=str(self.port),
        )
        self.starts += 1

        def alive() -> None:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"worker exited ({self.proc.returncode}): {self.log_tail()}")

        wait_for_http(f"{self.url}/healthz", timeout, alive=alive)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> int | None:
        from memstream.services.stack import stop_process

        if self.proc is None:
            return None
        return stop_process(self.proc, timeout=30)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


async def _probe(client: httpx.AsyncClient, url: str) -> tuple[int | None, Any, dict[str, float]]:
    """(/healthz status, its body, /metrics of interest); None when nothing answers."""
    try:
        health = await client.get(f"{url}/healthz")
        metrics = await client.get(f"{url}/metrics")
    except httpx.HTTPError:
        return None, None, {}
    try:
        body = health.json()
    except ValueError:
        body = health.text
    return health.status_code, body, _parse_metrics(metrics.text)
