"""Acceptance (issue 22, point 3): `memstream doctor` on a healthy stack, with the worker
not serving and with the broker not answering: exit 0, then 1 with a fix each time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from memstream.broker.base import free_port
from memstream.services.stack import StackState
from tests.integration.test_durable_stack import _up


def _doctor(data_dir: Path) -> tuple[int, dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMSTREAM_")}
    env["MEMSTREAM_DATA_DIR"] = str(data_dir)
    out = subprocess.run(
        [sys.executable, "-m", "memstream", "doctor", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return out.returncode, json.loads(out.stdout)  # --json: the whole of stdout is JSON


def _by_name(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["checks"]}


def test_doctor_on_a_healthy_stack_then_worker_down_then_broker_down(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    proc, _ = _up(data_dir, free_port())
    try:
        state = StackState.read(data_dir)
        assert state is not None and state.worker_pid and state.broker_pids

        code, report = _doctor(data_dir)
        checks = _by_name(report)
        assert code == 0 and report["ok"], report
        assert [c["status"] for c in report["checks"]] == ["ok"] * 6
        assert report["facts"]["kafka_bootstrap"] == state.bootstrap

        os.kill(state.worker_pid, signal.SIGSTOP)  # alive, but not serving
        try:
            code, report = _doctor(data_dir)
        finally:
            os.kill(state.worker_pid, signal.SIGCONT)
        checks = _by_name(report)
        assert code == 1 and not report["ok"]
        assert checks["worker"]["status"] == "fail" and "worker.log" in checks["worker"]["hint"]
        assert checks["store"]["status"] == "skip"
        assert checks["broker"]["status"] == "ok" and checks["topics"]["status"] == "ok"

        for pid in state.broker_pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            code, report = _doctor(data_dir)
        finally:
            for pid in state.broker_pids:
                os.kill(pid, signal.SIGCONT)
        checks = _by_name(report)
        assert code == 1 and not report["ok"]
        assert (
            checks["broker"]["status"] == "fail" and state.bootstrap in checks["broker"]["detail"]
        )
        assert "memstream up" in checks["broker"]["hint"]
        assert checks["topics"]["status"] == "skip"

        code, report = _doctor(data_dir)  # both back
        assert code == 0, report
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=90)
