"""Tokens as the person-name rules read them, from a regex (fast tier) or a spaCy Doc, and
the test for a token that looks like code rather than a name."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

_INNER_CAPS = re.compile(r"[a-z][A-Z]")


@dataclass(frozen=True, slots=True)
class Token:
    """What the rules need of one token: where it is, its text, and what the model thinks
    (part of speech, entity label; None in the fast tier, which has no model)."""

    start: int
    end: int
    text: str
    pos: str | None = None
    ent: str | None = None


@lru_cache(maxsize=65_536)
def looks_like_code(text: str) -> bool:
    """`json.dumps`, `as_view`, `GraphQL`, `HTTP`, `v2`: not how people write names."""
    if any(ch in text for ch in "._/\\@#:=()[]{}<>") or any(ch.isdigit() for ch in text):
        return True
    if len(text) > 1 and text.isupper():
        return True
    return bool(_INNER_CAPS.search(text)) and not re.match(r"^(?:Mc|Mac|O'|D')", text)


_WORD = re.compile(r"[^\W\d_][\w'\u2019.-]*|\S")


def regex_tokens(text: str) -> list[Token]:
    """Tokens without a model (the fast tier)."""
    return [
        Token(m.start(), m.end(), m.group(0).rstrip(".") or m.group(0))
        for m in _WORD.finditer(text)
    ]


_GLUED = re.compile(r"^([^\W\d_]+):[\"\u201c]")


def spacy_tokens(doc: object) -> list[Token]:
    """Tokens of a spaCy Doc, with part of speech and entity label (a speaker label glued
    to its quote, `Elizabeth:"I'm`, is split off)."""
    out = []
    for t in doc:  # type: ignore[attr-defined]
        glued = _GLUED.match(t.text)
        if glued:
            word = glued.group(1)
            out.append(Token(t.idx, t.idx + len(word), word, "PROPN", None))
            continue
        out.append(Token(t.idx, t.idx + len(t.text), t.text, t.pos_ or None, t.ent_type_ or None))
    return out
