"""TagModel (tag by example, learning from agents' own tags) and the tagging eval."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from memstream.eval.tagging import run_tagging_eval
from memstream.models.tagging import TagModel, cross_validate, text_grams

TAXONOMY = {
    "billing": [
        "invoice totals are wrong after a refund",
        "charge the card when the invoice is due",
        "refund partial payments on cancelled plans",
    ],
    "search": [
        "index new documents for full text search",
        "rank search results by recency",
        "search query parser drops quoted phrases",
    ],
    "auth": [
        "login fails when the password contains unicode",
        "rotate session tokens after a password change",
        "add single sign-on login for teams",
    ],
}


class WordHashEmbedder:
    """A tiny deterministic stand-in for MiniLM: hashed bag of words, unit length."""

    dim = 32
    version = "test"

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, zlib.crc32(word.encode()) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1.0)


def test_grams_cover_words_bigrams_and_characters() -> None:
    grams = text_grams("Fix Login")
    assert "w:fix" in grams and "b:fix login" in grams and "c: fi" in grams and "c:login" in grams


@pytest.mark.parametrize("embedder", [None, WordHashEmbedder()])
def test_predicts_the_tag_of_similar_text(embedder: WordHashEmbedder | None) -> None:
    model = TagModel(TAXONOMY, embedder)
    ranked = model.predict(["the refund on my invoice is wrong", "login with password"], k=3)
    assert [r[0][0] for r in ranked] == ["billing", "auth"]
    for row in ranked:
        assert len(row) == 3
        scores = [s for _, s in row]
        assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1 + 1e-9


def test_learning_self_tagged_examples_changes_the_prediction() -> None:
    model = TagModel(TAXONOMY, WordHashEmbedder(), refit_every=3)
    text = "quarterly zebra export"
    before = model.predict([text])[0][0][0]
    target = "search" if before != "search" else "auth"
    refitted = [
        model.learn(t, [target])
        for t in ("zebra export job", "quarterly zebra export", "export the zebra rows")
    ]
    assert refitted == [False, False, True] and model.refits == 2
    assert model.predict([text])[0][0][0] == target


def test_learning_a_new_tag_adds_it() -> None:
    model = TagModel(TAXONOMY, WordHashEmbedder())
    kept = model.learn_many(
        [("kubernetes pod restarts", ["deploy"]), ("helm chart for kubernetes", ["deploy"])]
    )
    assert kept == 2 and "deploy" in model.tags and model.examples == 11
    assert model.predict(["kubernetes pod crash loop"])[0][0][0] == "deploy"
    assert model.learn("ignored", []) is False


def test_is_deterministic() -> None:
    texts = ["search the invoices", "password reset email"]
    a = TagModel(TAXONOMY, WordHashEmbedder()).scores(texts)
    b = TagModel(TAXONOMY, WordHashEmbedder()).scores(texts)
    assert np.array_equal(a, b)


def test_rejects_an_empty_taxonomy() -> None:
    with pytest.raises(ValueError):
        TagModel({})
    with pytest.raises(ValueError):
        TagModel({"a": []})


def test_cross_validation_holds_out_one_example_per_tag_per_fold() -> None:
    cv = cross_validate(TAXONOMY, WordHashEmbedder(), folds=3)
    assert cv["held_out"] == 9 and 0 <= cv["top1"] <= cv["top3"] <= 1


def test_eval_returns_the_documented_keys(tmp_path: Path) -> None:
    items = [
        {"text": "refund the duplicate invoice charge", "tags": ["billing"]},
        {"text": "search results miss new documents", "tags": ["search"]},
        {"text": "login token expires too early", "tags": ["auth"]},
        {"text": "quoted phrases in the search query", "tags": ["search"]},
        {"text": "card charged twice on the invoice", "tags": ["billing"]},
        {"text": "password change keeps old sessions", "tags": ["auth", "search"]},
    ]
    path = tmp_path / "tagging.json"
    path.write_text(json.dumps({"source": "test", "taxonomy": TAXONOMY, "items": items}))
    result = run_tagging_eval(path, online_every=2, embedder=WordHashEmbedder(), cv_folds=3)
    json.dumps(result)  # JSON-able
    assert {"dataset", "items", "tags", "top1", "top3", "baseline", "online", "per_tag"} <= set(
        result
    )
    assert result["items"] == 6 and result["tags"] == 3
    assert result["baseline"]["name"] == "nearest-example MiniLM"
    assert result["online"]["protocol"] == "predict, then learn the agent's own tag (prequential)"
    assert result["online"]["refits"] == 4  # the taxonomy fit, then after items 2, 4 and 6
    for block in (result, result["baseline"], result["online"]):
        assert 0 <= block["top1"] <= block["top3"] <= 1
    assert result["top1"] >= 0.5
    assert set(result["per_tag"]) == set(TAXONOMY)
    assert result["per_tag"]["search"]["items"] == 3
    assert result["ms_per_item"] >= 0 and result["seconds"] >= 0
