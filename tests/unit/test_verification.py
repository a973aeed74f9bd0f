"""The verifier plug-in interface and the built-in SymPy verifier (no broker)."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest

from memstream.eval.verification import generate_claims, run_verification_eval
from memstream.models.compression import decode_vector
from memstream.models.registry import HotSwapScorer, ModelRegistry
from memstream.models.static import StaticEmbedder
from memstream.schemas import Memory, Subscription
from memstream.services.matcher import SubscriptionIndex
from memstream.streams.enrich import ModelStage, verification_report
from memstream.verification import Verdict, unregister, verifier, verify_text


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("Checked: 12 * 7 = 84.", "verified"),
        ("2 + 2 is 5", "refuted"),
        ("17 divided by 4 equals 4.25", "verified"),
        ("3^4 > 80", "verified"),
        ("(a + b)^2 = a^2 + 2ab + b^2", "verified"),
        ("(a+b)^2 = a^2 + b^2", "refuted"),
        ("solving 3x + 4 = 19 gives x = 5", "verified"),
        ("solving 3x + 4 = 19 gives x = 6", "refuted"),
        ("The sum 1,200 + 350 = 1550 holds", "verified"),
        ("0.1 + 0.2 = 0.3", "verified"),
        ("the square root of 81 is 9", "verified"),
        ("x^2 - 1 = (x - 1)(x + 1)", "verified"),
    ],
)
def test_claims_are_verified_or_refuted(text: str, status: str) -> None:
    assert verify_text(text).status == status


@pytest.mark.parametrize(
    "text",
    [
        "the staging DB moved to eu-west-2",
        "set i = i + 1 in the loop",  # an assignment
        "y = 2x + 1",  # a definition
        "x + 2 = 5",  # a problem, not a claim
        "release 2024-05-01 at 10:30, ratio 8:1",
        "timeout=30 and retries = 3",
        "E = m c^2",
        "I am a cat = 3",
    ],
)
def test_ordinary_text_gets_no_verdict(text: str) -> None:
    assert verify_text(text).status is None


@pytest.mark.parametrize(
    "text",
    ["9^9^9^9 = 3", "2**99999 = 1", "__import__('os').system('true') = 1", "1" * 40 + " + 1 = 2"],
)
def test_hostile_input_is_not_evaluated(text: str) -> None:
    assert verify_text(text).status is None


def test_generated_claims_are_judged_and_every_false_one_refuted() -> None:
    result = run_verification_eval(n=240, seed=3)
    print(result)  # the accuracy, for the log
    assert result["claims"] >= 200
    assert result["false_claims_not_refuted"] == 0
    assert result["true_claims_refuted"] == 0
    assert result["accuracy"] >= 0.95


def test_a_plugged_in_verifier_runs_and_a_failing_one_is_skipped() -> None:
    @verifier("test-units")
    def units(text: str) -> list[Verdict]:
        if "1 km = 100 m" in text:
            return [Verdict("1 km = 100 m", "refuted", "test-units")]
        return []

    @verifier("test-broken")
    def broken(text: str) -> list[Verdict]:
        raise RuntimeError("a bug in a plug-in")

    try:
        assert verify_text("note: 1 km = 100 m").status == "refuted"
        assert verify_text("nothing to check").status is None
    finally:
        unregister("test-units")
        unregister("test-broken")


def test_refuted_memories_are_reported_and_never_matched(tmp_path: Path) -> None:
    stage = ModelStage(StaticEmbedder(), HotSwapScorer(ModelRegistry(tmp_path, "valuation")))
    claims = generate_claims(20, seed=1)
    events = [Memory(tenant="t", agent_id="author", payload={"text": m["text"]}) for m in claims]
    records = stage.process(events)
    statuses = [r.payload.verification for r in records]
    assert statuses == ["verified" if m["true"] else "refuted" for m in claims]
    report = verification_report(records[1])
    assert report is not None and report.payload.status == "refuted"
    assert report.event_id == verification_report(records[1]).event_id  # fixed by the memory
    index = SubscriptionIndex()
    subscription = Subscription(
        tenant="t",
        agent_id="reader",
        payload={"subscription_id": "everything", "query": "x", "min_score": -1.0},
    )
    index.upsert(subscription, np.ones(384, dtype=np.float32) / np.sqrt(384))
    vectors = [
        decode_vector(np.frombuffer(base64.b64decode(r.payload.vector_b64), np.uint8))
        for r in records
    ]
    delivered = [bool(found) for found in index.match_many(records, vectors)]
    assert delivered == [m["true"] for m in claims]
