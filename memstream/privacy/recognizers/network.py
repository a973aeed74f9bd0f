"""Network identifiers: e-mail addresses, URLs and domain names, IPv4 and IPv6 addresses."""

from __future__ import annotations

import re

from memstream.privacy.entities import PiiSpan
from memstream.privacy.recognizers.patterns import regex_spans

_EMAIL = re.compile(
    r"[\w.!#$%&'*+/=?^`{|}~-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63})+",
)
_URL = re.compile(
    r"\b(?:(?:https?|ftp)://|www\.)[^\s<>\"'()\[\]{}]+[^\s<>\"'()\[\]{}.,;:!?]"
    r"|\b(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+"
    r"(?:com|net|org|info|biz|io|co|edu|gov|ai|app|dev|me|tv|us|uk|de|fr|es|it|nl|be|ch|at|se|"
    r"no|dk|fi|pl|cz|pt|br|ca|au|jp|cn|ru|in|mx|ar|cl|uy|ee|lv|lt|cy|gr|ie|nz|za|sg|hk)"
    r"(?:\.[a-z]{2})?(?:/[^\s<>\"']*)?\b",
    re.I,
)
_IPV4 = r"\b(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}\b"
_IPV6 = r"(?<![\w:])(?:[0-9a-f]{1,4}:){2,7}(?::|[0-9a-f]{1,4})(?![\w:])|(?<![\w:])::(?:[0-9a-f]{1,4}:){0,5}[0-9a-f]{1,4}(?![\w:])"
_IPV4_RE = re.compile(_IPV4)
_IPV6_RE = re.compile(_IPV6, re.I)


def network_spans(text: str) -> list[PiiSpan]:
    """E-mails, URLs (not the domain of an e-mail) and IP addresses."""
    out: list[PiiSpan] = []
    add = out.append
    for m in _EMAIL.finditer(text):
        add(PiiSpan(m.start(), m.end(), "EMAIL_ADDRESS", 0.95))
    for m in _URL.finditer(text):
        s, e = m.start(), m.end()
        if s > 0 and text[s - 1] == "@":
            continue
        add(PiiSpan(s, e, "URL", 0.6))
    out += regex_spans(text, [_IPV4_RE], "IP_ADDRESS", 0.9)
    for m in _IPV6_RE.finditer(text):
        if m.group(0).count(":") >= 3 or "::" in m.group(0):
            add(PiiSpan(m.start(), m.end(), "IP_ADDRESS", 0.8))
    return out
