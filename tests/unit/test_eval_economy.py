"""`memstream eval economy` on a slice of the dev set: the classes of agents end where the
design says, in one short run."""

from __future__ import annotations

from pathlib import Path

import pytest

from memstream.eval.economy import run_economy_eval
from memstream.models.embedding import OnnxEmbedder
from tests.unit.test_eval_pool import DEV, _slice


@pytest.mark.skipif(not DEV.is_file(), reason="the LoCoMo dev set (../shared/data) is not here")
def test_poisoners_sink_the_ring_earns_nothing_and_the_runs_are_compared(tmp_path: Path) -> None:
    dataset = _slice(tmp_path / "locomo.json", sessions=2)
    result = run_economy_eval(dataset, rounds=2, embedder=OnnxEmbedder(), progress=lambda _: None)
    attacked = result["runs"]["attacked"]
    rep = attacked["reputation"]
    assert rep["poisoners"] < 0.5 < rep["honest"]
    assert result["ring_feedback_weight"] == 0.0 and result["ring_earned"] <= 0.0
    assert attacked["self_feedback_dropped"] > 0
    assert attacked["second_wave_kept_out"]["all"] >= attacked["second_wave_kept_out"]["poison"]
    recall = result["honest_recall@5"]
    assert {"attacked", "clean", "attacked_without_reputation", "within_noise"} <= set(recall)
    low, high = recall["attacked_minus_clean_95ci"]
    assert low <= high
    assert "poison" not in result["runs"]["clean"]["under_final_bar"]
    # a quarantined poisoner's memories are out of the pool whatever their value
    assert result["poisoners_out_of_pool"] >= result["poisoners_below_bar"]
