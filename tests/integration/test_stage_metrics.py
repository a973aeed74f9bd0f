"""/metrics of a running worker (issue 22): every stage's batch time and size, events out of
each stage, privacy actions by category, the model in use."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from memstream.services.auth import TokenStore
from tests.integration.conftest import Worker
from tests.integration.test_api import _auth

pytestmark = pytest.mark.integration


def _samples(url: str) -> list[tuple[str, dict[str, str], float]]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def test_stage_latency_batch_sizes_outcomes_and_privacy_actions_are_exported(
    worker: Worker,
) -> None:
    tenant = f"metrics-{uuid.uuid4().hex[:6]}"
    token = TokenStore(worker.data_dir / "tokens.db").create(tenant, "writer")
    with httpx.Client(base_url=worker.url, timeout=30) as api:
        r = api.post(
            "/v1/memories",
            json={"text": "write to jane.roe@example.org about the metrics probe"},
            headers=_auth(token),
        )
        assert r.status_code == 202, r.text
        memory_id = r.json()["event_id"]
        deadline = time.monotonic() + 60
        while api.get(f"/v1/memories/{memory_id}", headers=_auth(token)).status_code != 200:
            assert time.monotonic() < deadline, "never indexed"
            time.sleep(0.3)
    samples = _samples(worker.url)
    timed = {
        labels["stage"]
        for name, labels, v in samples
        if name == "memstream_stage_seconds_count" and v > 0
    }
    assert {"validate", "privacy", "model", "sink", "match"} <= timed
    sized = {
        labels["stage"]
        for name, labels, v in samples
        if name == "memstream_stage_batch_size_count" and v > 0
    }
    assert {"validate", "privacy", "model"} <= sized
    outcomes = {
        (labels["stage"], labels["outcome"])
        for name, labels, v in samples
        if name == "memstream_stage_events_total" and v > 0
    }
    assert ("validate", "ok") in outcomes and ("model", "ok") in outcomes
    actions = {
        (labels["category"], labels["action"])
        for name, labels, v in samples
        if name == "memstream_privacy_actions_total" and v > 0
    }
    assert any("EMAIL" in category for category, _ in actions), actions
    models = [labels for name, labels, v in samples if name == "memstream_model_info" and v == 1]
    assert models and models[0]["provider"].endswith("ExecutionProvider")
