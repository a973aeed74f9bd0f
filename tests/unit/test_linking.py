"""Linker (links a new memory to related ones) and the LoCoMo-format linking eval."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from memstream.eval.linking import gold_pairs, run_linking_eval
from memstream.eval.locomo import load_locomo
from memstream.models.linking import Linker, content_words


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def _candidates(n: int = 30, seed: int = 0) -> list[tuple[str, np.ndarray, str, str]]:
    rng = np.random.default_rng(seed)
    return [(f"m{i}", _unit(rng.normal(size=16)), f"note {i} about nothing", "a") for i in range(n)]


def test_links_the_outstanding_neighbour_only() -> None:
    candidates = _candidates()
    query = candidates[7][1]
    near = _unit(query + 0.05 * np.ones(16, dtype=np.float32))
    links = Linker().link(near, "a fresh note", candidates, source="a")
    assert [mid for mid, _ in links] == ["m7"] and links[0][1] >= 3.0


def test_respects_max_links_and_min_candidates() -> None:
    candidates = _candidates()
    query = candidates[0][1]
    assert len(Linker(bar=-10, max_links=4).link(query, "x", candidates)) == 4
    assert Linker(min_candidates=50).link(query, "x", candidates) == []
    assert Linker().link(query, "x", []) == []
    with pytest.raises(ValueError):
        Linker(max_links=-1)


def test_shared_rare_words_and_same_source_raise_scores() -> None:
    base = _candidates()
    vec = _unit(np.ones(16))
    twins = [("x", vec, "plain text", "b"), ("y", vec, "plain text", "b")]
    scores = Linker().scores(vec, "kayak trip", [*base, *twins], source="b")
    same = Linker().scores(vec, "kayak trip", [*base, twins[0], ("y", vec, "plain text", "a")])
    assert scores[-1] == scores[-2]
    worded = [*base, ("x", vec, "plain text", "b"), ("y", vec, "our kayak trip", "b")]
    lexical = Linker().scores(vec, "kayak trip", worded, source="b")
    assert lexical[-1] > lexical[-2]
    sourced = Linker().scores(
        vec, "kayak trip", [*base, *twins[:1], ("y", vec, "plain text", "c")], source="b"
    )
    assert sourced[-2] > sourced[-1]
    assert same[-1] == same[-2]  # no source given: the source signal is off


def test_content_words_drop_function_words() -> None:
    assert content_words("I went to the Museum with my sister's kids") == {
        "went",
        "museum",
        "sister's",
        "kids",
    }


def test_is_deterministic() -> None:
    candidates = _candidates(seed=3)
    q = _unit(np.arange(16, dtype=np.float32))
    assert np.array_equal(Linker().scores(q, "t", candidates), Linker().scores(q, "t", candidates))


class WordHashEmbedder:
    dim = 256
    version = "test"

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().replace(":", " ").split():
                out[row, zlib.crc32(word.encode()) % self.dim] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


WORDS = (
    "apple bread chair delta eagle fable grape harbor igloo jelly kettle lemon mango noodle "
    "olive pepper quilt radio salad tiger umbra violin walnut xenon yogurt zipper amber basil "
    "cedar daisy ember fjord ginger hazel iris juniper kiwi lilac maple nutmeg"
).split()
FILLER = [f"{a} {b}" for a, b in zip(WORDS[0::2], WORDS[1::2], strict=True)]  # 20 unrelated


def _locomo(path: Path) -> Path:
    def session(n: int, texts: list[str]) -> list[dict[str, str]]:
        return [
            {"speaker": "Ann" if i % 2 == 0 else "Bob", "dia_id": f"D{n}:{i + 1}", "text": t}
            for i, t in enumerate(texts)
        ]

    s1 = [*FILLER[:10], "I adopted a puppy called Biscuit", *FILLER[10:15]]
    s2 = [*FILLER[15:], "I took my puppy Biscuit to the vet", "the vet said Biscuit is well"]
    sample = {
        "sample_id": "conv-t",
        "conversation": {
            "speaker_a": "Ann",
            "speaker_b": "Bob",
            "session_1_date_time": "1 May 2023",
            "session_1": session(1, s1),
            "session_2_date_time": "8 May 2023",
            "session_2": session(2, s2),
        },
        "qa": [
            {
                "question": "Pet?",
                "answer": "Biscuit",
                "evidence": ["D1:11", "D2:6", "D2:7"],
                "category": 1,
            },
            {"question": "Single?", "answer": "x", "evidence": ["D1:12"], "category": 4},
            {"question": "Adversarial", "answer": "x", "evidence": ["D1:1", "D1:2"], "category": 5},
        ],
    }
    path.write_text(json.dumps([sample]))
    return path


def test_gold_pairs_come_from_questions_with_two_or_more_evidence_turns(tmp_path: Path) -> None:
    data = load_locomo(_locomo(tmp_path / "locomo.json"))
    assert gold_pairs(data) == {
        ("conv-t", "D1:11", "D2:6"),
        ("conv-t", "D1:11", "D2:7"),
        ("conv-t", "D2:6", "D2:7"),
    }


def test_eval_returns_the_documented_keys(tmp_path: Path) -> None:
    path = _locomo(tmp_path / "locomo.json")
    result = run_linking_eval(path, bar=2.0, embedder=WordHashEmbedder())
    json.dumps(result)
    assert result["memories"] == 23 and result["gold_pairs"] == 3 and result["bar"] == 2.0
    for key in ("linker", "nearest_neighbours", "nearest_neighbours_top_k"):
        block = result[key]
        assert {"precision", "recall", "f1", "links_per_memory"} <= set(block)
        assert 0 <= block["precision"] <= 1 and 0 <= block["recall"] <= 1
    assert result["linker"]["correct"] >= 1  # the puppy turns stand out from the filler
    assert result["nearest_neighbours"]["links"] == result["linker"]["links"]
    assert [row["bar"] for row in result["sweep"]["linker"]] == [2.0, 2.5, 3.0, 3.5, 4.0]
    assert result["sweep"]["nearest_neighbours"][0]["cosine_bar"] == 0.4
    default = run_linking_eval(path, embedder=WordHashEmbedder())
    assert default["bar"] == 3.0 and "three-sigma" in default["bar_rule"]
    assert run_linking_eval(path, bar=10.0, embedder=WordHashEmbedder())["linker"]["links"] == 0
