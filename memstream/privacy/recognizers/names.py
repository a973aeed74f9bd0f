"""The capitalisation heuristic for names, places and organisations (the fast tier's only
signal for them; the full tier filters it by spaCy's tags)."""

from __future__ import annotations

import re

from memstream.privacy.entities import PiiSpan
from memstream.privacy.recognizers.patterns import _U

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
