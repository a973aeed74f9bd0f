"""Which detected types are sealed by default: direct identifiers, not ordinary content.

*Direct identifiers* point at one person on their own: names, e-mail addresses, phone
numbers, street addresses, government and financial identifiers, card numbers, IBANs, IP
addresses. They are sealed by default. *Quasi-identifiers and ordinary content*
(organisations, products, places, dates and times, titles, ages, nationalities, URLs, ZIP
codes, other proper nouns) are what memories are about; they are kept unless a policy
seals them too (`MEMSTREAM_PII_SEALED`, per tenant or topic). *Secrets* (keys, tokens,
passwords) are never stored at all, for any reader (`memstream.privacy.secrets`).
"""

from __future__ import annotations

from collections.abc import Iterable

DIRECT = frozenset(
    {
        "PERSON",
        "EMAIL_ADDRESS",
        "PHONE_NUMBER",
        "ADDRESS",
        "US_SSN",
        "ID_NUMBER",
        "CREDIT_CARD",
        "IBAN_CODE",
        "CRYPTO",
        "IP_ADDRESS",
        "MAC_ADDRESS",
    }
)
QUASI = frozenset(
    {
        "ORGANIZATION",
        "LOCATION",
        "DATE_TIME",
        "TITLE",
        "AGE",
        "NRP",
        "URL",
        "ZIP_CODE",
        "PROPER_NOUN",
    }
)
SECRET = frozenset({"SECRET"})
CATEGORIES: dict[str, frozenset[str]] = {"direct": DIRECT, "quasi": QUASI, "secret": SECRET}


def category_of(entity_type: str) -> str:
    """`direct`, `quasi` or `secret`; unknown types count as direct (sealed: recall first)."""
    if entity_type in QUASI:
        return "quasi"
    if entity_type.startswith("SECRET"):
        return "secret"
    return "direct"


def sealed_types(names: Iterable[str]) -> frozenset[str]:
    """The entity types a list of category names and/or type names stands for:
    `["direct", "LOCATION"]` -> every direct type plus LOCATION."""
    out: set[str] = set()
    for name in names:
        out |= CATEGORIES.get(name.lower(), frozenset({name.upper()}))
    out.discard("SECRET")  # secrets are removed whatever the policy, not sealed
    return frozenset(out)
