"""Acceptance (issue 11): a fuzz run against the real API. No 5xx, no dropped connection,
every rejection a 4xx with a reason, and every tenant can still search afterwards. The
full 10,000-request run is `memstream bench fuzz` (benchmarks/results/fuzz-*.json); the
suite runs a shorter one with the same catalogue."""

from __future__ import annotations

import uuid

from memstream.bench.fuzz import CASES, run_fuzz_async
from tests.integration.conftest import Worker


async def test_fuzzed_requests_never_get_a_5xx_and_every_4xx_says_why(worker: Worker) -> None:
    tenants = [f"fz-{uuid.uuid4().hex[:6]}" for _ in range(3)]
    tokens = [
        worker.token(t, f"agent-{j}", ["red"] if j % 2 else []) for t in tenants for j in range(8)
    ]
    result = await run_fuzz_async(
        worker.url, tokens[::8] + tokens, tenants, requests=2000, seed=11, concurrency=6
    )
    assert result["server_errors_5xx"] == 0, result["examples_5xx"]
    assert result["connection_errors"] == 0, result["examples_5xx"]
    assert result["rejected_without_reason"] == 0, result["examples_without_reason"]
    assert set(result["by_case"]) == set(CASES) and all(result["by_case"].values())
    assert result["rejected_4xx"] > 1000 and result["accepted_2xx"] > 50
    assert set(result["search_after_by_tenant"].values()) == {200}
