"""`memstream eval retrieval --ablation`: one store, every variant, each row complete."""

from __future__ import annotations

import json
from pathlib import Path

from memstream.eval.retrieval_ablation import (
    VARIANTS,
    Variant,
    ablation_table,
    run_retrieval_ablation,
)
from memstream.models.embedding import OnnxEmbedder
from memstream.retrieval import RankingWeights


def _locomo(path: Path) -> Path:
    said = [
        ("Ann", "I adopted a puppy called Biscuit last week."),
        ("Bob", "That is lovely, what breed is Biscuit?"),
        ("Ann", "A beagle, he loves long walks on the beach."),
        ("Bob", "I started learning the violin in March."),
        ("Ann", "How often do you practise the violin?"),
        ("Bob", "Every evening after work, for an hour."),
    ]
    turns = [{"speaker": s, "dia_id": f"D1:{i + 1}", "text": t} for i, (s, t) in enumerate(said)]
    sample = {
        "sample_id": "conv-t",
        "conversation": {
            "speaker_a": "Ann",
            "speaker_b": "Bob",
            "session_1_date_time": "1:56 pm on 8 May, 2023",
            "session_1": turns,
        },
        "qa": [
            {
                "question": "What breed is Ann's puppy?",
                "answer": "beagle",
                "evidence": ["D1:3"],
                "category": 4,
            },
            {
                "question": "When does Bob practise the violin?",
                "answer": "evenings",
                "evidence": ["D1:6"],
                "category": 4,
            },
            {
                "question": "What did Ann adopt and what does it love?",
                "answer": "a puppy, walks",
                "evidence": ["D1:1", "D1:3"],
                "category": 1,
            },
        ],
    }
    path.write_text(json.dumps([sample]))
    return path


def test_every_variant_is_a_row_with_recall_per_conversation_and_search_time(
    tmp_path: Path,
) -> None:
    variants = (
        VARIANTS[0],
        Variant("names kept", RankingWeights(rerank_window=0), strip_names=False),
        Variant("default", RankingWeights()),
    )
    result = run_retrieval_ablation(
        _locomo(tmp_path / "locomo.json"),
        variants,
        embedder=OnnxEmbedder(prefer="cpu"),
        pii_policy="allow",
    )
    json.dumps(result)
    assert [row["variant"] for row in result["rows"]] == [v.name for v in variants]
    assert result["questions"] == 3 and result["memories"] == 6
    for row in result["rows"]:
        assert 0.0 <= row["recall@5"] <= 1.0
        assert set(row["by_conversation"]) == {"conv-t"}
        assert set(row["by_category"]) == {"1-multi-hop", "4-single-hop"}
        assert row["search_ms"]["p99"] >= row["search_ms"]["p50"] >= 0
    default = result["rows"][-1]
    assert default["recall@5"] == 1.0  # six turns: all evidence is in the top five
    table = ablation_table(result).splitlines()
    assert len(table) == 2 + len(variants)
    assert table[0].startswith("| variant | recall@5 | conv-t |")
