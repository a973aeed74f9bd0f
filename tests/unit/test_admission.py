"""The pool's admission bar and the wording features the valuation learns it from."""

from __future__ import annotations

import numpy as np
import pytest

from memstream.models.admission import AdmissionBar, admission_bar
from memstream.models.valuation import (
    FEATURE_NAMES,
    FEATURE_VERSION,
    TEXT_FEATURES,
    text_features,
    valuation_features_batch,
)
from memstream.schemas.events import Indexed, IndexedPayload


def _record(usefulness: float, scope: str = "tenant", valuation: str = "valuation:v3") -> Indexed:
    return Indexed(
        tenant="t",
        agent_id="a",
        scope=scope,  # type: ignore[arg-type]
        payload=IndexedPayload(
            source_kind="memory",
            text="x",
            vector_codec="pq8",
            vector_b64="",
            usefulness=usefulness,
            novelty=1.0,
            features=[],
            models={"valuation": valuation},
        ),
    )


def test_text_features_tell_small_talk_from_specifics() -> None:
    def named(text: str) -> dict[str, float]:
        return dict(zip(TEXT_FEATURES, text_features(text), strict=True))

    chat = named("Caroline: haha thanks, that's so cool!")
    fact = named("Melanie: I ran the Boston marathon on 7 May 2023.")
    question = named("Bob: what did you do there?")
    assert chat["filler_word_share"] > 0.3 and fact["filler_word_share"] == 0.0
    assert fact["has_number"] == 1.0 and chat["has_number"] == 0.0
    assert fact["capitalised_share"] > chat["capitalised_share"] == 0.0
    assert question["is_question"] == 1.0 and fact["is_question"] == 0.0
    # the speaker's name is not content; a privacy placeholder is
    assert text_features("Caroline: ok")[3] == 0.0
    assert text_features("met <PERSON> today")[3] > 0.0
    assert text_features("") == (0.0,) * len(TEXT_FEATURES)
    assert fact["first_person"] == 1.0 and fact["past_event"] == 1.0
    assert chat["first_person"] == 0.0 and chat["past_event"] == 0.0
    answer = dict(
        zip(TEXT_FEATURES, text_features("Ann: in May", context="Bob: when?"), strict=True)
    )
    assert answer["answers_question"] == 1.0 and fact["answers_question"] == 0.0


def test_text_features_are_in_the_feature_matrix_only_when_texts_are_given() -> None:
    assert FEATURE_VERSION == 2 and set(TEXT_FEATURES) <= set(FEATURE_NAMES)
    emb = np.eye(2, 384, dtype=np.float32)
    common = dict(
        embeddings=emb,
        novelty=[1, 1],
        reputation=[0.5, 0.5],
        kind=["memory", "memory"],
        age_hours=[0, 0],
        text_chars=[5, 50],
        n_tags=[0, 0],
    )
    cols = [FEATURE_NAMES.index(n) for n in TEXT_FEATURES]
    with_text = valuation_features_batch(**common, texts=["haha thanks", "deployed 2.4 to Paris"])
    without = valuation_features_batch(**common)
    assert np.allclose(
        with_text[:, cols], [text_features("haha thanks"), text_features("deployed 2.4 to Paris")]
    )
    assert not without[:, cols].any()
    with pytest.raises(ValueError, match="texts"):
        valuation_features_batch(**common, texts=["one"])


def test_the_bar_keeps_out_only_shared_memories_a_learned_model_scored_low() -> None:
    bar = AdmissionBar(0.2)
    low, high = _record(0.1), _record(0.3)
    private_low = _record(0.1, scope="private")
    cold_low = _record(0.1, valuation="valuation:cold-start")
    assert bar.admits(high) and not bar.admits(low)
    assert bar.admits(private_low), "an agent's own notes are not the shared pool"
    assert bar.admits(cold_low), "the heuristic knows nothing of usefulness"
    assert bar.split([low, high, private_low]) == ([high, private_low], [low])
    assert admission_bar(None) is None and admission_bar(0.2) == bar


def test_the_bar_is_a_setting_between_0_and_1(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from memstream.settings import Settings

    monkeypatch.setenv("MEMSTREAM_ADMISSION_BAR", "0.15")
    assert Settings().admission_bar == 0.15
    monkeypatch.setenv("MEMSTREAM_ADMISSION_BAR", "1.5")
    with pytest.raises(ValidationError):
        Settings()
    monkeypatch.delenv("MEMSTREAM_ADMISSION_BAR")
    assert Settings().admission_bar is None


def test_a_quarantined_authors_shared_memories_are_kept_out_whatever_their_value() -> None:
    def sunk(tenant: str, agent: str) -> bool:
        return agent == "a"

    bar = admission_bar(None, sunk)
    assert bar is not None and bar.bar is None
    assert not bar.admits(_record(0.99)), "its author is quarantined"
    assert not bar.admits(_record(0.99, valuation="valuation:cold-start"))
    assert bar.admits(_record(0.01, scope="private")), "its own notes stay its own"
    other = _record(0.01).model_copy(update={"agent_id": "b"})
    assert bar.admits(other), "no bar on value: another author is admitted"
    assert not AdmissionBar(0.5, sunk).admits(other)  # the value bar still applies
