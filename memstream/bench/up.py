"""`memstream bench up`: seconds from `memstream up` to `ready`, per broker, first start
and restart from the same data dir (the jars and models are already cached; the first
start of a machine also downloads the Kafka jars once, about 43 MB)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from memstream.broker.base import free_port


def time_up(data_dir: Path, broker: str, timeout: float = 300) -> float:
    """Seconds until `memstream up` prints `ready`; the stack is stopped (SIGTERM) after."""
    env = {**os.environ, "MEMSTREAM_DATA_DIR": str(data_dir), "MEMSTREAM_LOG_LEVEL": "WARNING"}
    env.pop("MEMSTREAM_KAFKA_BOOTSTRAP", None)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "memstream", "up", "--broker", broker, "--port", str(free_port())],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    try:
        while time.perf_counter() - started < timeout:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"memstream up --broker {broker} exited before ready")
            if line.startswith("ready "):
                return time.perf_counter() - started
        raise TimeoutError(f"memstream up --broker {broker} not ready in {timeout}s")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)


def run_up_bench(brokers: tuple[str, ...] = ("kafka", "tansu"), repeats: int = 2) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for broker in brokers:
        first, again = [], []
        for _ in range(repeats):
            with tempfile.TemporaryDirectory(prefix="memstream-bench-up-") as tmp:
                data_dir = Path(tmp) / "data"
                first.append(round(time_up(data_dir, broker), 2))
                again.append(round(time_up(data_dir, broker), 2))
        result[broker] = {
            "first_start_s": first,
            "restart_s": again,
            "first_start_median_s": sorted(first)[len(first) // 2],
            "restart_median_s": sorted(again)[len(again) // 2],
        }
    return result
