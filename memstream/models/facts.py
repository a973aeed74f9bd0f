"""Facts a memory states about one attribute of one subject, for conflict detection.

A memory may name its fact (`MemoryPayload.fact`); otherwise a few extractive patterns read
it from the text, so no model or LLM is needed:
  "the <attribute> of <subject> is|was set to|changed to|is now <value>"
  "<subject>'s <attribute> is|was set to|changed to|is now <value>"
  "<subject> moved to <value>"  (attribute: location)
Subjects and attributes are compared case- and article-insensitively (`fact_key`); values
as written, less case and trailing punctuation. Only the first sentence that matches
counts: a memory states at most one fact.
"""

from __future__ import annotations

import hashlib
import re

from memstream.schemas.events import FactPayload

_VERB = r"(?:is now|is|was set to|has been set to|was changed to|changed to|became|is set to)"
_WORDS = r"[\w][\w.-]*(?:\s[\w.-]+){0,2}?"  # one to three words
_VALUE = r"(?P<value>[^\s.;,!?]+(?:\s[^\s.;,!?]+){0,5}?)(?=\s*(?:[.;,!?]|$))"
_PATTERNS = (
    re.compile(
        rf"(?:^|[.;:!?]\s+)the\s+(?P<attribute>{_WORDS})\s+of\s+(?:the\s+)?(?P<subject>{_WORDS})\s+"
        rf"{_VERB}\s+{_VALUE}",
        re.I,
    ),
    re.compile(
        rf"(?:^|[.;:!?]\s+)(?:the\s+)?(?P<subject>{_WORDS})['\u2019]s\s+(?P<attribute>{_WORDS})\s+"
        rf"{_VERB}\s+{_VALUE}",
        re.I,
    ),
    re.compile(
        rf"(?:^|[.;:!?]\s+)(?:the\s+|our\s+)?(?P<subject>{_WORDS})\s+moved\s+to\s+{_VALUE}",
        re.I,
    ),
)
_NOT_SUBJECTS = frozenset(
    "it that this there here he she they we i you what who which let everything something "
    "nothing one user".split()
)
_NOT_VALUES = re.compile(
    r"^(?:stored|used|followed|where|that|to|by|not|also|the same|a lot|going|about|so|very|"
    r"really|just|being)\b",
    re.I,
)
_ARTICLE = re.compile(r"^(?:the|a|an|our|their|its)\s+", re.I)
_SPACE = re.compile(r"\s+")


def _clean(part: str) -> str:
    return _SPACE.sub(" ", _ARTICLE.sub("", part.strip())).strip(" ,:'\"").lower()


def extract_fact(text: str) -> FactPayload | None:
    """The fact the first matching sentence of `text` states, or None."""
    for pattern in _PATTERNS:
        found = pattern.search(text)
        if found is None:
            continue
        groups = found.groupdict()
        subject = _clean(groups["subject"])
        attribute = _clean(groups.get("attribute") or "location")
        value = _SPACE.sub(" ", groups["value"]).strip(" ,:'\"").rstrip(".").lower()
        if subject.split(" ")[0] in _NOT_SUBJECTS or _NOT_VALUES.match(value):
            continue
        if subject and attribute and value:
            return FactPayload(subject=subject, attribute=attribute, value=value)
    return None


def normalised(fact: FactPayload) -> FactPayload:
    """A fact as compared: subject and attribute without case or article, value without
    case."""
    return FactPayload(
        subject=_clean(fact.subject), attribute=_clean(fact.attribute), value=_clean(fact.value)
    )


def fact_key(tenant: str, fact: FactPayload) -> str:
    """What two memories must share to be about the same thing: tenant, subject, attribute."""
    raw = f"{tenant}\x00{_clean(fact.subject)}\x00{_clean(fact.attribute)}"
    return hashlib.sha256(raw.encode()).hexdigest()[:32]
