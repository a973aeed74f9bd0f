"""What the words around a capitalised run say about it being a person's name.

Each cue is a pattern a reader can check against a sentence: a title or a verb of speech
before it ("Dr.", "says"), a verb or possessive after it ("said", "'s wife"), a descriptor
between a cue and the name ("by ex-Zombie Kleist", "says former coach Ruoho"), a creative
work named after its author ("the Dratchev novel", "a Calquín Cazares concert"), or a
personal pronoun that picks up a sentence's subject ("Shovda is very reliable. You can
always depend on him.")."""

from __future__ import annotations

import re

TITLES = (
    r"(?:mr|mrs|ms|miss|mx|dr|prof|professor|sir|dame|lady|lord|rev|fr|hon|capt|col|gen|sgt|"
    r"lt|herr|frau|mme|mlle|sr|sra|srta|don|dona)"
)
# kin a speaker names someone by: "my son X" (shared by the cues below)
_FAMILY = (
    r"kid|son|daughter|wife|husband|partner|mother|father|brother|sister|child|uncle|aunt|"
    r"cousin"
)
# "ex-Zombie", "former", "the late": a descriptor between a cue and the name it introduces
_DESCRIPTOR = r"(?:[ \t]+(?:ex-[^\W\d_][\w-]*|former|the late|late))?"
BEFORE = re.compile(
    rf"(?:\b{TITLES}\.?|\bmy name is|\bname is|\bname\?|\bnamed|\bcalled|\bcall me|\bi am|\bi'm"
    r"|\bdear|\bhi|\bhello|\bthanks,?|\bregards,?|\bsigned|\bcontact|\bask|\bmet|\bmeet|\bwith"
    r"|\bby|\bsaid|\bsays|\basked|\basks|\btold|\bstarring|\btribute to|\bname:|\bname\?"
    rf"|\bmy (?:{_FAMILY}|friend|boss|colleague|manager|neighbou?r)){_DESCRIPTOR}"
    r"[ \t]+$",
    re.I,
)
AFTER = re.compile(
    r"^(?:(?:'s|\u2019s)[ \t]+(?:kid|son|daughter|wife|husband|mother|father|brother|sister|"
    r"friend|boss|family|parents|address|phone|number|email)\b|[ \t]*(?:said|says|asked|asks|"
    r"told|tells|wrote|writes|replied|shouted|explained|lives|lived|works|worked|spent|"
    r"called|emailed|texted|had given|gave|is from|was born|will be|has been|began|started|"
    r"joined|married|(?:his|her|their) (?:address|phone|number|email|name)|"
    r"and (?:his|her|their)|\(he|\(she)\b|[ \t]*:[ \t]*[\"\u201c]|,[ \t]*(?:can|could|would|"
    r"will|please|do|are|have|did) (?:i|you|we)\b)",
    re.I,
)
# a creative work called after its author: "the Dratchev novel", "a Calquín Cazares concert"
_WORK_BEFORE = re.compile(r"\b(?:the|a|an|this|that|another|every)[ \t]+$", re.I)
_WORK_AFTER = re.compile(
    r"^[ \t]+(?:novels?|books?|songs?|albums?|films?|movies?|concerts?|paintings?|poems?|"
    r"plays?|symphon(?:y|ies)|operas?|biograph(?:y|ies)|memoirs?|lectures?|recitals?|"
    r"portraits?|sculptures?|sonatas?|essays?|short stor(?:y|ies)|versions?|recordings?|"
    r"covers?|remix(?:es)?)\b",
    re.I,
)
_INTRODUCED = re.compile(
    rf"(?:\b{TITLES}\.?|\bmy name is|\bname is|\bnamed|\bcall me|\bmy (?:{_FAMILY}|"
    r"grand(?:son|daughter|mother|father)))[ \t]+$",
    re.I,
)
_PRONOUN = re.compile(r"\b(?:he|she|him|his|himself|herself)\b", re.I)
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


def cue_before(before: str) -> bool:
    """A title, a verb of speech or another introduction just before the run."""
    return BEFORE.search(before) is not None


def introduced(before: str) -> bool:
    """Introduced as a person in so many words: a title, "my name is", "my son": the
    next word is a name even when it is also a dictionary word ("my kid Mali")."""
    return _INTRODUCED.search(before) is not None


def verb_after(after: str) -> bool:
    """A verb of speech, a possessive of kin or contact details just after the run."""
    return AFTER.match(after) is not None


def authored_work(before: str, after: str) -> bool:
    """The run names the author of a work: "the Dratchev novel"."""
    return _WORK_BEFORE.search(before) is not None and _WORK_AFTER.match(after) is not None


def pronoun_subject(text: str, start: int, end: int, sentence_start: bool) -> bool:
    """The run opens its sentence, and that sentence or the next refers back to a person
    with "he", "she", "him" or "his" while naming no one else capitalised: "Shovda is very
    reliable. You can always depend on him.". "Her" is left out: it is also a possessive
    of someone else."""
    if not sentence_start:
        return False
    rest = text[end : end + 200]
    stops = [m.end() for m in _SENTENCE_END.finditer(rest)]
    window = rest[: stops[1]] if len(stops) > 1 else rest
    pronoun = _PRONOUN.search(window)
    if pronoun is None:
        return False
    between = window[: pronoun.start()]
    for word in re.finditer(r"\b[A-Z][\w'\u2019-]*", between):
        opens_sentence = re.search(r"(?:^|[.!?])\s*$", between[: word.start()]) is not None
        if word.group(0) != "I" and not opens_sentence:
            return False  # another name the pronoun may point to
    return True
