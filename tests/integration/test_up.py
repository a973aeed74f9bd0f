"""`memstream up`: starts the embedded stack, says `ready`, stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def test_up_prints_ready_runs_demo_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "MEMSTREAM_DATA_DIR": str(tmp_path / "data"),
        "MEMSTREAM_BROKER_KIND": "tansu",
    }
    env.pop("MEMSTREAM_KAFKA_BOOTSTRAP", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "memstream", "up", "--demo"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("ready "):
            break
    output = "".join(lines)
    assert any(line.startswith("ready kafka://127.0.0.1:") for line in lines), output
    assert "rogue-agent" in output and "planner shared" in output
    worker_log = (tmp_path / "data" / "worker.log").read_text()
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, rest
    assert "stopping" in rest
    assert "Traceback" not in rest + worker_log
