"""Character classes the recognizers' patterns share, and matches of a list of regexes as
spans."""

from __future__ import annotations

import re
from collections.abc import Iterable

from memstream.privacy.entities import PiiSpan

# upper-ish letters; U+2206 (increment) stands in for a Greek capital delta in some data
_U = "A-Z\u00c0-\u00d6\u00d8-\u00de\u0100-\u024f\u0370-\u03ff\u0400-\u042f\u2206"
_CAP = rf"[{_U}][\w'\u2019.-]*"  # a capitalised word (unicode-aware)
_SP = r"[ \t]+"


def _compile(patterns: Iterable[str]) -> list[re.Pattern[str]]:
    return [re.compile(p, re.I | re.M) for p in patterns]


def regex_spans(
    text: str, regexes: Iterable[re.Pattern[str]], etype: str, score: float
) -> list[PiiSpan]:
    """Every non-empty match of `regexes` in `text` as a span of type `etype`."""
    return [
        PiiSpan(m.start(), m.end(), etype, score)
        for rx in regexes
        for m in rx.finditer(text)
        if m.end() > m.start()
    ]
