"""The TypeScript client (clients/typescript) against the session's worker: its `node --test`
suite runs with tokens of a fresh tenant (agents A and B) and of another tenant."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.integration.conftest import Worker

CLIENT_DIR = Path(__file__).resolve().parents[2] / "clients" / "typescript"
TIMEOUT_S = 180


def test_typescript_client_suite(worker: Worker) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not on PATH: the TypeScript client's tests need Node.js 18+")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False)
    major = version.stdout.strip().lstrip("v").split(".")[0]
    if not major.isdigit() or int(major) < 18:
        pytest.skip(f"node {version.stdout.strip()!r} is too old: the client needs Node.js 18+")
    tenant = f"ts-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "MEMSTREAM_URL": worker.url,
        "MEMSTREAM_TOKEN_A": worker.token(tenant, "ada"),
        "MEMSTREAM_TOKEN_B": worker.token(tenant, "bob"),
        "MEMSTREAM_TOKEN_OTHER": worker.token(f"{tenant}-other", "eve"),
        "NO_COLOR": "1",
    }
    try:
        done = subprocess.run(
            [node, "--test", "--test-reporter=spec", "test/"],
            cwd=CLIENT_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        output = "\n".join(
            part.decode(errors="replace") if isinstance(part, bytes) else part
            for part in (err.stdout, err.stderr)
            if part
        )
        pytest.fail(f"node --test ran over {TIMEOUT_S} s; its output:\n{output}")
    output = f"{done.stdout}\n{done.stderr}"
    print(output)
    assert done.returncode == 0, f"node --test failed ({done.returncode}):\n{output}"
