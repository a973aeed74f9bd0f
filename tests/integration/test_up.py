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
    assert "\x1b" not in worker_log  # no terminal escape codes in a log file (issue 22)


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


def _start_up(tmp_path: Path, port: int, *args: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "MEMSTREAM_DATA_DIR": str(tmp_path / "data"),
        "MEMSTREAM_BROKER_KIND": "tansu",
        "MEMSTREAM_WEB_PORT": str(port),
    }
    env.pop("MEMSTREAM_KAFKA_BOOTSTRAP", None)
    return subprocess.Popen(
        [sys.executable, "-m", "memstream", "up", *args],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_up_says_at_once_that_its_port_is_taken(tmp_path: Path) -> None:
    """It used to wait 60 s and report a probe timeout; the cause was only in worker.log."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        proc = _start_up(tmp_path, port)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0 and time.monotonic() - started < 30
    assert f"{port} is already in use" in out, out


def test_up_restarts_a_worker_that_dies_and_says_why(tmp_path: Path) -> None:
    """After `kill -9` of the worker, `up` used to keep running with the API gone."""
    from memstream.services.stack import StackState

    port = free_port()
    proc = _start_up(tmp_path, port)
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not proc.stdout.readline().startswith("ready "):
        pass
    state = StackState.read(tmp_path / "data")
    assert state is not None and state.worker_pid
    os.kill(state.worker_pid, signal.SIGKILL)
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if "restarting" in line:
            break
    assert any("worker exited with status -9; restarting" in line for line in lines), lines
    for _ in range(240):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
    else:
        raise AssertionError("the API never came back")
    restarted = StackState.read(tmp_path / "data")
    assert restarted is not None and restarted.worker_pid != state.worker_pid
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert StackState.read(tmp_path / "data") is None


def test_erase_from_an_empty_directory_names_what_it_did_not_find(tmp_path: Path) -> None:
    """It used to create a new master key there, print success and erase nothing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMSTREAM_")}
    env["MEMSTREAM_CACHE_DIR"] = str(tmp_path / "cache")  # no stack registered for this user
    done = subprocess.run(
        [sys.executable, "-m", "memstream", "erase", "--tenant", "acme", "--subject", "Jane Roe"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and done.stdout == ""
    assert "no key store" in done.stderr and "no running stack" in done.stderr, done.stderr
    assert not (tmp_path / ".memstream").exists()  # nothing created
