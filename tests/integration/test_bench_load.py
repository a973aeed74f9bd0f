"""`memstream bench load` against the session worker (issue 16): a short run that must end
with no errors and every acknowledged write indexed, and its result shape."""

from __future__ import annotations

import uuid

import pytest

from memstream.bench.load import run_load
from tests.integration.conftest import Worker


def test_a_short_load_run_indexes_every_acknowledged_write(worker: Worker) -> None:
    tenant = f"load-{uuid.uuid4().hex[:6]}"
    tokens = [worker.token(tenant, f"agent-{i}") for i in range(3)]
    result = run_load(worker.url, tokens, seconds=4, rate=3, searches_per_write=1)
    assert result["errors_total"] == 0, result["errors"]
    assert result["writes_acknowledged"] >= 6
    assert result["writes_indexed"] == result["writes_acknowledged"]
    assert {"POST /v1/memories", "GET /v1/search"} <= set(result["latency_ms"])
    assert result["latency_ms"]["GET /v1/search"]["p99"] > 0


def test_the_load_bench_refuses_remote_targets() -> None:
    with pytest.raises(ValueError, match="local"):
        run_load("http://example.org:8700", ["ms_x_y"], seconds=1)
