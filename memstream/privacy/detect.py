"""PII detection for memories before they are embedded and stored.

Two tiers:

* ``full``: Presidio's ``AnalyzerEngine`` on an offline spaCy pipeline (texts are batched
  through ``nlp.pipe``), plus spaCy's ORG entities and untagged proper nouns, plus this
  module's own pattern recognizers (addresses, international phones, dates, ages, ZIP codes,
  titles, IBANs, ID-like numbers, ...), because the default analyzer misses about a quarter of
  direct identifiers.
* ``fast``: the pattern recognizers only, plus a capitalisation heuristic for names; no spaCy
  is imported, for topics configured for speed.

The product promise is that nothing personal leaks, so every recognizer leans towards recall:
when in doubt, flag. Overlapping spans are merged into one.

The steps live in their own modules: the pattern recognizers (`privacy.recognizers`), spaCy
(`spacy_nlp`), Presidio (`presidio_setup`), person names (`names`), chunking and merging;
`PiiDetector` runs them as one pipeline.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from memstream.privacy.chunking import chunk_text
from memstream.privacy.entities import (
    CHUNK_CHARS,
    ENTITY_MAP,
    NLP_MAX_CHARS,
    PRESIDIO_MIN_SCORE,
    SPACY_MODEL,
    PiiSpan,
    Tier,
    as_text,
    canonical,
)
from memstream.privacy.merge_categories import merge_by_category
from memstream.privacy.merging import _trim, merge_spans
from memstream.privacy.names import PersonResolver, regex_tokens, spacy_tokens
from memstream.privacy.presidio_setup import (
    _keep_presidio,
    build_analyzer,
    presidio_default_batch,
)
from memstream.privacy.recognizers import name_heuristic_spans, pattern_spans
from memstream.privacy.spacy_nlp import _spacy_extra_spans, _tag_filtered, load_spacy
from memstream.privacy.truecase import needs_truecasing, truecase

if TYPE_CHECKING:  # pragma: no cover
    from presidio_analyzer import AnalyzerEngine

__all__ = [
    "CHUNK_CHARS",
    "ENTITY_MAP",
    "NLP_MAX_CHARS",
    "PRESIDIO_MIN_SCORE",
    "SPACY_MODEL",
    "PiiDetector",
    "PiiSpan",
    "Tier",
    "as_text",
    "build_analyzer",
    "canonical",
    "chunk_text",
    "load_spacy",
    "merge_by_category",
    "merge_spans",
    "name_heuristic_spans",
    "pattern_spans",
    "presidio_default_batch",
]


class PiiDetector:
    """Find PII spans in batches of texts.

    ``tier="full"`` runs Presidio + spaCy + the pattern recognizers; ``tier="fast"`` runs the
    pattern recognizers and the capitalisation heuristic only (spaCy is never imported).
    """

    def __init__(
        self,
        tier: Tier = "full",
        *,
        proper_nouns: bool = True,
        batch_size: int = 64,
        min_presidio_score: float = PRESIDIO_MIN_SCORE,
        nlp_max_chars: int = NLP_MAX_CHARS,
    ) -> None:
        if tier not in ("full", "fast"):
            raise ValueError(f"unknown tier {tier!r}")
        self.tier: Tier = tier
        self.proper_nouns = proper_nouns
        self.batch_size = batch_size
        self.min_presidio_score = min_presidio_score
        self.nlp_max_chars = nlp_max_chars
        self._analyzer: AnalyzerEngine | None = None
        self._no_phone: list[str] | None = None
        self._persons: PersonResolver | None = None

    @property
    def persons(self) -> PersonResolver:
        if self._persons is None:
            self._persons = PersonResolver()
        return self._persons

    @property
    def analyzer(self) -> AnalyzerEngine:
        """Presidio engine, built on first use (full tier only)."""
        if self._analyzer is None:
            self._analyzer = build_analyzer()
        return self._analyzer

    def _entities_without_phone(self) -> list[str]:
        """libphonenumber's matcher is very slow on long digit runs (tables, logs); our own
        phone pattern still covers such chunks."""
        if self._no_phone is None:
            ents = self.analyzer.get_supported_entities(language="en")
            self._no_phone = [e for e in ents if e != "PHONE_NUMBER"]
        return self._no_phone

    def detect(self, text: str) -> list[PiiSpan]:
        """Spans for one text (prefer :meth:`detect_batch`: spaCy is much faster batched)."""
        return self.detect_batch([text])[0]

    def detect_batch(self, texts: list[str]) -> list[list[PiiSpan]]:
        """Sorted spans per text, merged within each category (a direct identifier and a
        quasi-identifier may overlap); offsets index the original strings."""
        texts = [as_text(t) for t in texts]
        raw: list[list[PiiSpan]] = [[] for _ in texts]
        chunks: list[tuple[int, int, str, bool]] = []  # (text index, offset, piece, shadow)
        for i, text in enumerate(texts):
            if text:
                for off, piece in chunk_text(text):
                    chunks.append((i, off, piece, False))
                    if needs_truecasing(piece):  # lower-case text: detect on a shadow too
                        chunks.append((i, off, truecase(piece), True))
        nlp_chunks: list[tuple[int, int, str, bool]] = []
        for i, off, piece, shadow in chunks:
            found = pattern_spans(piece)
            if self.tier == "full" and len(texts[i]) <= self.nlp_max_chars and _wordy(piece):
                nlp_chunks.append((i, off, piece, shadow))
            else:  # fast tier, or NLP skipped: huge text, binary junk
                capitalised = name_heuristic_spans(piece)
                found += capitalised
                if capitalised:  # no capitalised word, no name
                    found += [
                        PiiSpan(a, b, "PERSON", 0.7)
                        for a, b in self.persons.spans(regex_tokens(piece), piece, shadow=shadow)
                    ]
            raw[i].extend(_shift(found, off))
        if nlp_chunks:
            pieces = [(c[2], c[3]) for c in nlp_chunks]
            for (i, off, _piece, _s), found in zip(
                nlp_chunks, self._nlp_spans(pieces), strict=True
            ):
                raw[i].extend(_shift(found, off))
        return [
            merge_by_category(list(_trim(text, spans)), text)
            for text, spans in zip(texts, raw, strict=True)
        ]

    def _nlp_spans(self, pieces: list[tuple[str, bool]]) -> Iterator[list[PiiSpan]]:
        analyzer = self.analyzer
        engine = analyzer.nlp_engine
        shadows = [shadow for _, shadow in pieces]
        for (piece, artifacts), shadow in zip(
            engine.process_batch([p for p, _ in pieces], language="en", batch_size=self.batch_size),
            shadows,
            strict=True,
        ):
            results = analyzer.analyze(
                piece,
                language="en",
                nlp_artifacts=artifacts,
                score_threshold=self.min_presidio_score,
                entities=self._entities_without_phone() if _digit_heavy(piece) else None,
            )
            # PERSON on evidence only (memstream.privacy.names), not on the model's word
            found = [
                PiiSpan(r.start, r.end, canonical(r.entity_type), float(r.score))
                for r in results
                if r.entity_type != "PERSON"
                and _keep_presidio(piece, r.entity_type, r.start, r.end)
            ]
            found += [
                PiiSpan(a, b, "PERSON", 0.85)
                for a, b in self.persons.spans(spacy_tokens(artifacts.tokens), piece, shadow=shadow)
            ]
            if self.proper_nouns:
                found += _spacy_extra_spans(artifacts.tokens)
                found += _tag_filtered(artifacts.tokens, name_heuristic_spans(piece))
            yield found


def _wordy(piece: str) -> bool:
    """Worth running NLP on: at least 40% letters (not binary junk or digit soup)."""
    letters = sum(ch.isalpha() for ch in piece)
    return letters >= 0.4 * len(piece)


def _digit_heavy(piece: str) -> bool:
    return sum(ch.isdigit() for ch in piece) > 0.2 * len(piece)


def _shift(spans: Iterable[PiiSpan], offset: int) -> Iterator[PiiSpan]:
    if offset == 0:
        yield from spans
        return
    for s in spans:
        yield PiiSpan(s.start + offset, s.end + offset, s.entity_type, s.score)
