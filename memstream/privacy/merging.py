"""Overlapping spans (and parts of one entity separated by a short gap) merged into one,
and spans trimmed of surrounding whitespace."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from memstream.privacy.entities import PiiSpan

# name-like types whose neighbouring parts belong together ("Dr." + "Ann Lee"); structured
# identifiers (cards, phones, e-mails, ...) keep their own span and placeholder
_JOINABLE_TYPES = frozenset(
    {"PERSON", "ORGANIZATION", "LOCATION", "ADDRESS", "ZIP_CODE", "PROPER_NOUN", "TITLE", "NRP"}
)
_GAP = re.compile(r"[\s,.;:()'\"/&+-]{0,3}")  # what may separate two parts of one entity
_GAP_WORDS = re.compile(r"\s+(?:and|&|of|de|da|del|der|van|von|y|e|the)\s+", re.I)


def _merge(spans: Iterable[PiiSpan], text: str | None = None) -> list[PiiSpan]:
    """Merge overlapping spans (and, given ``text``, spans separated only by a few spaces or
    punctuation marks, or a connector such as "and"/"of": "Dr." + "Ann Lee", "Owens, Duran and
    Oneal"). The merged span takes the type of its largest, most confident part."""
    ordered = sorted(spans, key=lambda s: (s.start, -s.end))
    merged: list[PiiSpan] = []
    best: PiiSpan | None = None
    for span in ordered:
        if span.end <= span.start:
            continue
        if merged and (
            span.start < merged[-1].end
            or (
                span.entity_type in _JOINABLE_TYPES
                and merged[-1].entity_type in _JOINABLE_TYPES
                and _joinable(text, merged[-1].end, span.start)
            )
        ):
            last = merged[-1]
            assert best is not None
            if _weight(span) > _weight(best):
                best = span
            merged[-1] = PiiSpan(
                last.start, max(last.end, span.end), best.entity_type, max(last.score, span.score)
            )
        else:
            best = span
            merged.append(span)
    return merged


def _weight(span: PiiSpan) -> tuple[float, float]:
    return ((span.end - span.start) * span.score, span.score)


def _joinable(text: str | None, end: int, start: int) -> bool:
    if text is None or start < end:
        return False
    if start - end <= 3 and _GAP.fullmatch(text, end, start):
        return True
    return start - end <= 7 and _GAP_WORDS.fullmatch(text, end, start) is not None


def merge_spans(spans: Iterable[PiiSpan], text: str | None = None) -> list[PiiSpan]:
    """Overlapping spans become one; with ``text``, so do spans separated by a short gap."""
    return _merge(spans, text)


def _trim(text: str, spans: Iterable[PiiSpan]) -> Iterator[PiiSpan]:
    """Strip surrounding whitespace/punctuation from spans so placeholders read well."""
    for s in spans:
        a, b = s.start, s.end
        while a < b and text[a] in " \t\r\n,;:":
            a += 1
        while b > a and text[b - 1] in " \t\r\n,;:":
            b -= 1
        if b > a:
            yield PiiSpan(a, b, s.entity_type, s.score)


# ---------------------------------------------------------------------------------------------
# Chunking for long texts
