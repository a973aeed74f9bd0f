"""The pattern recognizers both tiers run (no NLP), one module per kind of identifier, and
the capitalisation heuristic for names."""

from __future__ import annotations

from memstream.privacy.entities import PiiSpan
from memstream.privacy.recognizers.identifiers import identifier_spans
from memstream.privacy.recognizers.names import name_heuristic_spans
from memstream.privacy.recognizers.network import network_spans
from memstream.privacy.recognizers.personal import personal_spans
from memstream.privacy.recognizers.places import place_spans

RECOGNIZERS = (network_spans, identifier_spans, personal_spans, place_spans)
"""In the order their spans are reported."""


def pattern_spans(text: str) -> list[PiiSpan]:
    """All spans found by the regex recognizers (no NLP); not yet merged."""
    return [span for recognize in RECOGNIZERS for span in recognize(text)]


__all__ = ["RECOGNIZERS", "name_heuristic_spans", "pattern_spans"]
