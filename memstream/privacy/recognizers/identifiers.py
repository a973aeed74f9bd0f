"""Numbers and codes that identify a person or an account: IBANs, social security and card
numbers, phone numbers, passport- and licence-like IDs."""

from __future__ import annotations

import re

from memstream.privacy.entities import PiiSpan
from memstream.privacy.recognizers.patterns import regex_spans

_PHONE = re.compile(
    r"(?<![\w+/.-])(?:(?:\+|00)\d{1,3}[ \t.-]*)?(?:\(\d{1,5}\)[ \t.-]*|\(0\)[ \t.-]*)?"
    r"\d[\d \t().-]{4,20}\d"
    r"(?:[ \t]*(?:x|ext\.?|extension|#)[ \t]*\d{1,6})?(?![\w/])",
    re.I,
)
_PHONE_HINT = re.compile(
    r"(?:phone|tel|mobile|cell|fax|call|desk|contact|number|whatsapp|sms|text|dial)\W{0,12}$", re.I
)

_IBAN = r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30}\b"
_SSN = r"\b\d{3}[- .]\d{2}[- .]\d{4}\b"
_LONG_NUMBER = r"(?<![\w.+])\d(?:[ -]?\d){11,22}\b"  # cards and other long account numbers
_ID_TOKEN = r"\b(?=[A-Z0-9]*\d)(?=[A-Z0-9]*[A-Z])[A-Z0-9]{6,20}\b"  # passport / licence-like
_ID_CONTEXT = re.compile(
    r"(?:passport|licen[cs]e|id|identity|identification|ssn|social security|tax|nin|nhs|"
    r"account|acct|member|policy|customer|employee|student|patient|insurance|number|no\.?|#)"
    r"\W{0,20}$",
    re.I,
)
_DIGITS_ID = re.compile(r"(?<![\w.])\d{6,12}\b")

_IBAN_RE = re.compile(_IBAN, re.I)
_SSN_RE = re.compile(_SSN)
_LONG_NUMBER_RE = re.compile(_LONG_NUMBER)
_ID_TOKEN_RE = re.compile(_ID_TOKEN)


def _luhn(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _iban_ok(value: str) -> bool:
    s = value.replace(" ", "").upper()
    s = s[4:] + s[:4]
    try:
        return int("".join(str(int(c, 36)) for c in s)) % 97 == 1
    except ValueError:
        return False


def identifier_spans(text: str) -> list[PiiSpan]:
    """IBANs (checked), SSNs, card numbers (Luhn) or other long numbers, phones, IDs."""
    out: list[PiiSpan] = []
    add = out.append
    for m in _IBAN_RE.finditer(text):
        add(PiiSpan(m.start(), m.end(), "IBAN_CODE", 0.95 if _iban_ok(m.group(0)) else 0.6))
    out += regex_spans(text, [_SSN_RE], "US_SSN", 0.7)
    for m in _LONG_NUMBER_RE.finditer(text):
        digits = re.sub(r"\D", "", m.group(0))
        if 12 <= len(digits) <= 19 and _luhn(digits):
            add(PiiSpan(m.start(), m.end(), "CREDIT_CARD", 0.9))
        else:
            add(PiiSpan(m.start(), m.end(), "ID_NUMBER", 0.5))
    for m in _PHONE.finditer(text):
        value = m.group(0)
        core = re.split(r"(?i)\s*(?:x|ext\.?|extension|#)\s*\d+$", value)[0]
        n = sum(c.isdigit() for c in core)
        if not 7 <= n <= 15 or core.count("(") != core.count(")"):
            continue
        if re.fullmatch(r"\d{1,4}[.-]\d{1,2}[.-]\d{2,4}", core):  # a date
            continue
        if re.match(r"\d{4}-\d{2}-\d{2}", core):  # a timestamp: 2000-04-16 11:34
            continue
        plain = re.fullmatch(r"\d+", core) is not None
        hint = _PHONE_HINT.search(text, max(0, m.start() - 30), m.start()) is not None
        score = 0.8 if (not plain or hint or core.startswith("+")) else 0.5
        add(PiiSpan(m.start(), m.end(), "PHONE_NUMBER", score))
    for m in _ID_TOKEN_RE.finditer(text):
        if _ID_CONTEXT.search(text, max(0, m.start() - 40), m.start()):
            add(PiiSpan(m.start(), m.end(), "ID_NUMBER", 0.6))
    for m in _DIGITS_ID.finditer(text):
        if _ID_CONTEXT.search(text, max(0, m.start() - 40), m.start()):
            add(PiiSpan(m.start(), m.end(), "ID_NUMBER", 0.6))
    return out
