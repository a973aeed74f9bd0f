"""Where a person lives: street addresses (with the rest of their line) and postcodes."""

from __future__ import annotations

import re

from memstream.privacy.entities import PiiSpan
from memstream.privacy.merging import _merge
from memstream.privacy.recognizers.patterns import _CAP, _U, _compile
from memstream.privacy.recognizers.personal import _MONTHS

_STREET_SUFFIX = (
    r"street|st|str|road|rd|avenue|ave|av|drive|dr|lane|ln|boulevard|blvd|way|court|ct|place|pl|"
    r"square|sq|terrace|ter|parkway|pkwy|highway|hwy|circle|cir|crescent|cres|close|grove|"
    r"gardens?|greens?|park|row|walk|hill|heights|mews|alley|path|trail|trl|loop|run|pike|"
    r"plaza|point|pt|port|fort|ft|ridge|view|vista|bridge|crossing|xing|estates?|meadows?|"
    r"ranch|junction|jct|center|centre|mall|quay|wharf|wynd|rise|vale|fields?|common|expressway|"
    r"freeway|turnpike|route|rte|motorway"
)
_STREET_PREFIX = (
    r"via|viale|vicolo|corso|piazza|piazzale|strada|rue|avenue|boulevard|chemin|allée|place|"
    r"calle|carrer|avenida|av\.|rua|travessa|praça|plaza|paseo|camino|ul\.|ulica|al\.|aleja|"
    r"os\.|námestie|náměstí|ulice|utca|út|straße|strasse|str\.|gasse|weg|platz|laan|straat|"
    r"plein|kade|gracht|vej|gade|gata|gatan|vägen|veien|tie|katu|tee|iela|gatve|"
    r"odos|leoforos|οδός|λεωφόρος|улица|ул\.|проспект|пр\."
)
# words ending like a (northern/central European) street name: Mellemvej, Kiannonkatu, ...
_STREET_ENDINGS = tuple(
    """strasse straße str. gasse weg vej vegur vei veien gade gatan gata vägen v. katu tie kuja
    polku laan straat plein dreef kade singel platz allee ring damm ufer steig utca útja út tér
    ulice ulica iela gatve tee väg stræde torv alle svingen bakken leite vænget parken haven
    højen""".split()
)
_STREET_WORD_END = "(?:" + "|".join(re.escape(e) for e in _STREET_ENDINGS) + ")"
# street words that name a street when capitalised after a name ("Wall Street")
_STREET_TITLE = (
    r"Street|Road|Avenue|Lane|Drive|Boulevard|Highway|Parkway|Terrace|Crescent|Square|"
    r"Strasse|Straße|Allee|Gasse|Rue|Calle|Via"
)
_UNIT = r"(?:apt|apartment|suite|postbox|ste|unit|flat|floor|fl|room|rm|box|po box|p\.o\. box|bldg|building|dept|lot|no|nr)\.?"

_ADDRESS_PATTERNS = [
    # 123 Main Street / 704 1436 Redbud Drive / 12 wressle road
    rf"\b\d{{1,6}}[A-Za-z]?(?:[ \t,]+\d{{1,6}})?[ \t]+(?:[\w'\u2019.-]+[ \t]+){{0,4}}(?:{_STREET_SUFFIX})\b\.?",
    # Via Roma 12 / Rue de la Paix 5 / ul. Nowa 3 / Av. Paulista 1000
    rf"(?:(?<=\s)|^|(?<=[,>]))(?:{_STREET_PREFIX})[ \t]+(?:[\w'\u2019.-]+[ \t]+){{0,4}}\d{{1,5}}[A-Za-z]?\b",
    # 48 107 Rue Abdelaziz Thâalbi / 2613 avenida praia 1
    rf"\b\d{{1,6}}[A-Za-z]?(?:[ \t]+\d{{1,5}})?[ \t]+(?:{_STREET_PREFIX})[ \t]+[\w'\u2019.-]+(?:[ \t]+[{_U}][\w'\u2019.-]*){{0,3}}",
    # 46 velký průhon 426 (lower case allowed, needs 2+ digit numbers on both sides)
    r"\b\d{2,6}[ \t]+(?:[^\W\d_][\w'\u2019.-]*[ \t]+){1,3}\d{2,5}\b\.?",
    # Apt. 022 / Suite 653 / Unit 5477 Box 8244 / PO Box 12
    rf"\b{_UNIT}[ \t]*#?[ \t]*\d{{1,6}}[A-Za-z]?\b",
    # military addresses: PSC 0729, Box 5797 / APO AP 96854 / USNS Smith FPO AE 44941
    r"\b(?:psc|cmr|unit)[ \t]+\d{3,5},?[ \t]+box[ \t]+\d{3,5}\b",
    r"\b(?:apo|fpo|dpo)[ \t]+(?:aa|ae|ap)[ \t]+\d{5}\b",
    r"\b(?:usns|usnv|uscgc|uss)[ \t]+[\w'-]+(?:[ \t]+[\w'-]+)?\b",
    # the corner of X and Y
    r"\b(?:the )?corner of [^\n,;?!]{2,60}? and [^\n,;?!]{2,40}?(?=[\n,;?!]|\.(?:\s|$)|$)",
]

# these rely on capitalisation (_CAP), so they are matched case-sensitively
_ADDRESS_PATTERNS_CASED = [
    # 62314 Mellemvej 32 / 4923 Parmova 109 / 63 30 N. Stadion
    rf"\b\d{{1,6}}(?:[ \t]+\d{{1,5}})?[ \t]+(?:{_CAP}[ \t]+){{1,3}}\d{{1,5}}[A-Za-z]?\b\.?",
    # Capitalised street-ish name followed by a house number at the start of an address line
    rf"(?:(?<=\n)|(?<=\n[ \t>?*-])|(?<=at )|(?<=address: )|(?<=address is ))(?:{_CAP}[ \t]+){{1,3}}\d{{1,5}}[A-Za-z]?\b",
    # on Pod Floriánem 1677 / to Aqqusinersuaq 176 / corner of Kuusiku 7 (not "to Django 4.2")
    rf"(?:(?<=\bon )|(?<=\bto )|(?<=\bof ))(?:{_CAP}[ \t]+){{1,3}}\d{{1,5}}[A-Za-z]?\b(?![.,:]\d)",
    # 63 30 N. Stadion (end of line): a building and a house number before a street name
    rf"\b\d{{1,6}}[ \t]+\d{{1,5}}[ \t]+(?:{_CAP}[ \t]*){{1,3}}(?=\n)",
    # Marina Fort Street / Isaac Lodge Road: capitalised words before a capitalised street word
    rf"\b(?:{_CAP}[ \t]+){{1,3}}(?:{_STREET_TITLE})\b\.?",
]

# After a street address, the rest of an address block (city, region, postcode, country) tends
# to follow on the same or the next few short lines; we extend the address span over it.
_TAIL_TOKEN = (
    rf"(?:{_CAP}|[A-Z]{{2,3}}|nan|\d{{3,6}}(?:[- ]\d{{2,4}})?|[A-Z]\d[A-Z][ ]?\d[A-Z]\d|"
    rf"[A-Z]{{1,2}}\d[A-Z\d]?[ ]?\d[A-Z]{{2}}|\d{{4}}[ ]?[A-Z]{{2}}(?![a-z])|\([^()\n]{{1,40}}\))"
)
_ADDRESS_TAIL = re.compile(
    rf"(?:(?:[ \t]*\n[ \t>?*-]*|[ \t]+|)(?:,[ \t]*)?(?:{_TAIL_TOKEN}|(?<=,)[ \t]*[^\W\d_][\w'\u2019.-]*|(?<=,)[ \t]*\d{{1,3}}\b)){{1,8}}",
)
# a short whole line (1-3 words, lower case allowed) inside an address block: "pomáz", "tunisia"
_ADDRESS_LINE = re.compile(
    r"[ \t]*\n(?:[ \t>?*-]*\n)?[ \t>?*-]*[^\W_][\w'\u2019.-]*(?:[ \t]+[\w'\u2019.()-]+){0,2}[ \t]*(?=\n|$)"
)


_STREET_WORD_RE = re.compile(
    rf"^(?:{_STREET_SUFFIX}|{_STREET_PREFIX}|{_UNIT})\.?$|{_STREET_WORD_END}\.?$", re.I
)


def _plausible_address(value: str) -> bool:
    """A street address names a street: at least one word is a street word ("Road",
    "utca", "Apt") or no English word ("Koskikatu"). "During 1971", "5 Musicians Of The
    70s" and "29 March 2017" are not addresses."""
    from memstream.privacy.truecase import is_common_word

    words = re.findall(r"[^\W\d_][\w'\u2019-]*\.?", value)
    if any(re.fullmatch(_MONTHS, w.rstrip("."), re.I) for w in words):
        return False
    if not words or re.match(r"\d+[ \t]+\d+[ \t]+[^\W\d_]", value):
        return True  # "63 30 N. Stadion": a building and a house number
    last = words[-1].rstrip(".")
    if (
        value == value.lower()
        and re.search(r"[^\W\d_]\.?$", value.rstrip())
        and last in _STREET_SUFFIX_WORDS - _UNAMBIGUOUS_STREET_WORDS
        and all(is_common_word(w.rstrip(".")) for w in words)
        and not any(w.rstrip(".") in _STREET_SUFFIX_WORDS for w in words[:-1])
    ):
        # all lower case, ordinary words, ending on a street word with an everyday meaning
        # ("84 according to the calculator run"): not an address ("12 main street" is one)
        return False
    from memstream.privacy.name_lexicon import technology_terms

    tech = technology_terms()
    return any(
        (_STREET_WORD_RE.search(w) and not is_common_word(w.rstrip(".")))
        or w.rstrip(".").lower() in _STREET_SUFFIX_WORDS | _STREET_PREFIX_WORDS
        or not (is_common_word(w.rstrip(".")) or w.rstrip(".").casefold() in tech)
        for w in words
    )


_UNAMBIGUOUS_STREET_WORDS = frozenset(
    "street st road rd avenue ave blvd boulevard lane ln highway hwy parkway pkwy terrace "
    "crescent cres square sq ct".split()
)
"""Street words with no everyday meaning besides ("run", "way", "view", "park" have one)."""
_STREET_SUFFIX_WORDS = frozenset(_STREET_SUFFIX.split("|")) | {"apt", "suite", "unit", "box"}
_STREET_PREFIX_WORDS = frozenset(w.rstrip(".") for w in _STREET_PREFIX.split("|"))


_UNIT_START = re.compile(rf"{_UNIT}[ \t]*#?[ \t]*\d", re.I)
# the street line before a unit line: "...the same: Merineitsi põik 87 van Gijn Summit"
_STREET_LINE = re.compile(r"(?:^|[:>]|\n)[ \t]*([^\n:>]{3,60}?\d[^\n:>]{0,40})[ \t]*\n[ \t>?*-]*\Z")


def _address_start(text: str, start: int) -> int:
    """Start an address that opens with its unit ("Suite 364") at the street line above
    it, when that line holds a house number: the two are one address."""
    if not _UNIT_START.match(text, start):
        return start
    m = _STREET_LINE.search(text, max(0, start - 120), start)
    return m.start(1) if m else start


def _address_end(text: str, end: int) -> int:
    """Extend an address over the rest of its block (city, region, postcode, country)."""
    for _ in range(6):
        m = _ADDRESS_TAIL.match(text, end) or _ADDRESS_LINE.match(text, end)
        if not m or m.end() <= end:
            break
        end = m.end()
    return end


_ZIP = re.compile(
    r"\b(?:\d{5}(?:-\d{4})?|\d{4,5}-\d{3}|\d{3}[ ]\d{2}|\d{4}(?:[ ]?[A-Z]{2})?(?![a-z])|\d{2}-\d{3}|"
    r"[A-Z]\d[A-Z][ ]?\d[A-Z]\d|[A-Z]{1,2}\d[A-Z\d]?[ ]?\d[A-Z]{2})\b"
)
_ZIP_CONTEXT = re.compile(
    rf"(?:(?:zip|postal|post|postcode|plz|cep|pin)(?:[ \t]*code)?\W{{0,12}}|"
    rf"(?:{_CAP}|[A-Z]{{2}}|nan),?[ \t]+|^[ \t>?*-]*|\n[ \t>?*-]*)$",
    re.I,
)

_ADDRESS_RES = _compile(_ADDRESS_PATTERNS) + [re.compile(p, re.M) for p in _ADDRESS_PATTERNS_CASED]
# Mellemvej 32 / Strickstrasse 61 / Kiannonkatu 98 / Alšova 408 (word ends like a street);
# the costliest pattern, so it runs only on texts with a word of such an ending
_WORDISH = re.compile(r"(?<![\w'\u2019.-])[\w'\u2019.-]+(?=[ \t])")
_STREET_WORD_NUMBER = re.compile(
    rf"\b[\w'\u2019.-]*{_STREET_WORD_END}(?:[ \t]+[\w'\u2019.-]+){{0,2}}[ \t]+\d{{1,5}}[A-Za-z]?\b\.?",
    re.I | re.M,
)


def _street_word_numbers(text: str) -> list[re.Match[str]]:
    """Matches of the street-ending pattern, tried only at words with such an ending (the
    pattern alone, scanned over the whole text, costs a quarter of this recognizer)."""
    out = []
    for word in _WORDISH.finditer(text):
        if word.group(0).lower().endswith(_STREET_ENDINGS):
            m = _STREET_WORD_NUMBER.match(text, word.start())
            if m:
                out.append(m)
    return out


def place_spans(text: str) -> list[PiiSpan]:
    """Postcodes in a postal context, and addresses that look like addresses."""
    out: list[PiiSpan] = []
    add = out.append
    for m in _ZIP.finditer(text):
        if _ZIP_CONTEXT.search(text, max(0, m.start() - 40), m.start()):
            add(PiiSpan(m.start(), m.end(), "ZIP_CODE", 0.5))
    addresses: list[PiiSpan] = []
    matches = [m for rx in _ADDRESS_RES for m in rx.finditer(text)]
    for m in matches + _street_word_numbers(text):
        if m.end() > m.start() and _plausible_address(m.group(0)):
            addresses.append(PiiSpan(m.start(), m.end(), "ADDRESS", 0.7))
    for span in _merge(addresses):
        add(PiiSpan(_address_start(text, span.start), _address_end(text, span.end), "ADDRESS", 0.7))
    return out
