"""What describes a person without naming them: nationality or group, dates, ages, titles."""

from __future__ import annotations

import re

from memstream.privacy.entities import PiiSpan
from memstream.privacy.recognizers.patterns import _U, _compile, regex_spans

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

_DATE_RES = _compile(_DATE_PATTERNS)
_AGE_RES = _compile(_AGE_PATTERNS)
_TITLE_RES = [re.compile(p, re.I) for p in _TITLE_PATTERNS]


def personal_spans(text: str) -> list[PiiSpan]:
    """Groups of people (NRP), dates and times, ages, honorifics and job titles."""
    out: list[PiiSpan] = []
    add = out.append
    for m in _NRP_RE.finditer(text):
        if m.group(1).lower() not in _NRP_STOP:
            add(PiiSpan(m.start(1), m.end(1), "NRP", 0.4))
    out += regex_spans(text, _DATE_RES, "DATE_TIME", 0.6)
    out += regex_spans(text, _AGE_RES, "AGE", 0.7)
    for rx in _TITLE_RES:
        for m in rx.finditer(text):
            add(PiiSpan(m.start(), m.end(), "TITLE", 0.6))
    for m in _TITLE_AS.finditer(text):
        add(PiiSpan(m.start(1), m.end(1), "TITLE", 0.5))
    return out
