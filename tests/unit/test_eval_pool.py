"""`memstream eval valuation --dataset`: the valuation trained on some conversations' simulated
feedback, measured on others, with the admission bar applied as the sink applies it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from memstream.eval.pool import run_pool_eval
from memstream.models.embedding import OnnxEmbedder

DEV = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "locomo_dev.json"


def _slice(path: Path, sessions: int) -> Path:
    """The dev file cut to its first `sessions` sessions, with the questions answered there."""
    data = json.loads(DEV.read_text())
    for conv in data:
        c = conv["conversation"]
        for key in list(c):
            m = re.match(r"session_(\d+)", key)
            if m and int(m.group(1)) > sessions:
                del c[key]
        conv["qa"] = [
            q
            for q in conv["qa"]
            if q.get("evidence")
            and all(int(re.match(r"D(\d+)", e).group(1)) <= sessions for e in q["evidence"])
            and q.get("category") in (1, 2, 3, 4)
        ]
    path.write_text(json.dumps(data))
    return path


@pytest.mark.skipif(not DEV.is_file(), reason="the LoCoMo dev set (../shared/data) is not here")
def test_eval_reports_prior_and_admission_on_held_out_conversations(tmp_path: Path) -> None:
    dataset = _slice(tmp_path / "locomo.json", sessions=2)
    result = run_pool_eval(
        dataset, k=5, pii_policy="allow", embedder=OnnxEmbedder(), progress=lambda _: None
    )
    assert set(result["recall@5"]) == {"with_prior", "without"}
    assert {"kept_out", "recall@5"} <= set(result["admission"])
    assert 0.0 <= result["admission"]["kept_out"] < 1.0
    for value in (*result["recall@5"].values(), result["admission"]["recall@5"]):
        assert 0.0 <= value <= 1.0
    folds = result["folds"]
    assert len(folds) == 3 and all(len(f["held_out"]) == 1 for f in folds)
    assert all(f["held_out"][0] not in f["train"] for f in folds)  # never scored on its training
    assert all(f["feedback_events"] > 0 and f["model_version"] == 1 for f in folds)
    held = sum(f["held_out_memories"] for f in folds)
    kept_out = sum(f["kept_out"] * f["held_out_memories"] for f in folds) / held
    assert result["admission"]["kept_out"] == pytest.approx(kept_out, abs=1e-3)
    assert all(f["bar"] is not None or f["kept_out"] == 0.0 for f in folds)
