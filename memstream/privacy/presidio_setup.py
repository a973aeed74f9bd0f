"""Presidio's analyzer on the offline spaCy pipeline (ORG kept, e-mails validated offline),
which of its results the detector keeps, and its default configuration as a baseline."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from memstream.privacy.entities import _NER_MAPPING, SPACY_MODEL, PiiSpan, as_text, canonical
from memstream.privacy.merging import _merge
from memstream.privacy.recognizers.personal import _MONTHS, _WEEKDAYS
from memstream.privacy.spacy_nlp import load_spacy

if TYPE_CHECKING:  # pragma: no cover
    from presidio_analyzer import AnalyzerEngine


def _offline_email_recognizer() -> Any:
    """Presidio's email recognizer validates with tldextract, which downloads the public suffix
    list on first use; this variant uses tldextract's bundled snapshot only."""
    import tldextract
    from presidio_analyzer.predefined_recognizers import EmailRecognizer

    extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return extract(pattern_text).fqdn != ""

    return OfflineEmailRecognizer()


def build_analyzer(default_config: bool = False) -> AnalyzerEngine:
    """A Presidio ``AnalyzerEngine`` on the offline spaCy model.

    ``default_config=True`` keeps Presidio's default NER mapping (which drops ORGANIZATION) and
    is used as the evaluation baseline; otherwise ORG entities are kept.
    """
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine

    if default_config:
        ner_conf = NerModelConfiguration()
    else:
        ner_conf = NerModelConfiguration(
            model_to_presidio_entity_mapping=_NER_MAPPING,
            labels_to_ignore=[
                "CARDINAL",
                "EVENT",
                "LANGUAGE",
                "LAW",
                "MONEY",
                "ORDINAL",
                "PERCENT",
                "PRODUCT",
                "QUANTITY",
                "WORK_OF_ART",
            ],  # fmt: skip,
        )
    engine = SpacyNlpEngine(
        models=[{"lang_code": "en", "model_name": SPACY_MODEL}],
        ner_model_configuration=ner_conf,
    )
    engine.nlp = {"en": load_spacy()}  # share the pipeline; SpacyNlpEngine.load() not needed
    registry = RecognizerRegistry(supported_languages=["en"])
    registry.load_predefined_recognizers(languages=["en"], nlp_engine=engine)
    registry.remove_recognizer("EmailRecognizer")
    registry.add_recognizer(_offline_email_recognizer())
    if not default_config:
        # this module's phone patterns find what libphonenumber's matcher does, at a fraction
        # of its cost (it was an eighth of the full tier's time)
        registry.remove_recognizer("PhoneRecognizer")
    return AnalyzerEngine(nlp_engine=engine, registry=registry, supported_languages=["en"])


_DATE_WORD = re.compile(rf"\d|\b(?:{_MONTHS}|{_WEEKDAYS})\b", re.I)
_AGE_PHRASE = re.compile(r"\b(?:years?[ -]old|year|yrs?|age[ds]?|age of)\b", re.I)


def _keep_presidio(text: str, etype: str, start: int, end: int) -> bool:
    """spaCy's DATE entities include "the weekend", "a few months ago" and "35 years old":
    keep dates only when they carry a digit or a month/weekday name, and leave ages to the
    AGE recognizer (which flags just the number)."""
    if etype == "CREDIT_CARD":  # "+49 171 2345678" can pass Luhn; a leading + means a phone
        return not text[max(0, start - 2) : start].strip().endswith("+")
    if canonical(etype) == "ID_NUMBER":
        # the weak licence and passport patterns take "S3", "EC2", "H100" for ID numbers;
        # an identity document's number has four digits or more
        return sum(ch.isdigit() for ch in text[start:end]) >= 4
    if etype != "DATE_TIME":
        return True
    value = text[start:end]
    return bool(_DATE_WORD.search(value)) and not _AGE_PHRASE.search(value)


def presidio_default_batch(
    analyzer: AnalyzerEngine, texts: list[str], batch_size: int = 64
) -> list[list[PiiSpan]]:
    """Presidio's default analyzer alone (evaluation baseline), batched through ``nlp.pipe``."""
    out: list[list[PiiSpan]] = []
    texts = [as_text(t) for t in texts]
    for text, artifacts in analyzer.nlp_engine.process_batch(
        texts, language="en", batch_size=batch_size
    ):
        results = analyzer.analyze(text, language="en", nlp_artifacts=artifacts)
        out.append(
            _merge(
                PiiSpan(r.start, r.end, canonical(r.entity_type), float(r.score)) for r in results
            )
        )
    return out
