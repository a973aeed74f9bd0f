"""`memstream up`: starts the embedded stack, says `ready`, stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from memstream.broker.base import free_port


def test_up_prints_ready_runs_demo_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "MEMSTREAM_DATA_DIR": str(tmp_path / "data"),
        "MEMSTREAM_BROKER_KIND": "tansu",
        "MEMSTREAM_WEB_PORT": str(port),
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
    assert f"ready http://127.0.0.1:{port}\n" in lines, output
    assert "rogue-agent" in output and "planner shared" in output
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
        assert json.loads(response.read()) == {"status": "ok"}
    worker_log = (tmp_path / "data" / "worker.log").read_text()
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, rest
    assert "stopping" in rest
    assert "Traceback" not in rest + worker_log


def test_token_create_prints_a_token_and_nothing_else(tmp_path: Path) -> None:
    env = {**os.environ, "MEMSTREAM_DATA_DIR": str(tmp_path)}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "memstream",
            "token",
            "create",
            "--tenant",
            "acme",
            "--agent",
            "a1",
            "--team",
            "ops",
            "--clearance",
            "pii",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.count("\n") == 1 and out.startswith("ms_")
    from memstream.services.auth import TokenStore

    caller = TokenStore(tmp_path / "tokens.db").verify(out.strip())
    assert (caller.tenant, caller.agent_id, caller.teams, caller.clearance) == (
        "acme",
        "a1",
        {"ops"},
        {"pii"},
    )
