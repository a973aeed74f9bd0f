"""Case restoration for all-lowercase text, so that NER can see names again.

spaCy's English models learned that names are capitalised; in "follow up with patricia
desrosiers" they find nothing. Chat messages and agent notes are often typed in lower case, so
before detection we make a *shadow* copy of such a text in which every word that is not a
known lower-case English word gets a capital first letter, run the normal detector on the
shadow as well, and keep the union of both results. Offsets are unchanged: a word is only
rewritten when its capitalised form has the same length.

The vocabulary is Webster's Second International (``web2``, 236k words, public domain) from
the ``english-words`` package: proper nouns appear there capitalised ("Patricia"), common
words in lower case ("frank", "king"). Inflected forms ("located", "months") are reduced by
a few suffix rules. Modern words missing from a 1934 dictionary ("email", "website") become
capitalised in the shadow too; that costs some precision, never recall, which is the side
this module errs on.
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache

# share of letters that must be upper case for a text to count as normally cased
_MIN_UPPER_SHARE = 0.01
_MIN_LETTERS = 12
_WORD = re.compile(r"[^\W\d_][\w'\u2019-]*")
_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("ies", "y"),
    ("ied", "y"),
    ("iest", "y"),
    ("ier", "y"),
    ("ily", "y"),
    ("ing", ""),
    ("ing", "e"),
    ("ed", ""),
    ("ed", "e"),
    ("es", ""),
    ("s", ""),
    ("ly", ""),
    ("er", ""),
    ("er", "e"),
    ("est", ""),
    ("est", "e"),
    ("'s", ""),
    ("\u2019s", ""),
    ("n't", ""),
)
_LOCK = threading.Lock()
_VOCAB: frozenset[str] | None = None
_PROPER: frozenset[str] | None = None


def vocabulary() -> frozenset[str]:
    """Lower-case words of web2 (loaded once, about 50 ms)."""
    return _vocabulary()


def _vocabulary() -> frozenset[str]:
    """Lower-case words of web2 (loaded once, about 50 ms)."""
    _load_web2()
    assert _VOCAB is not None
    return _VOCAB


def _load_web2() -> None:
    """Both halves of web2 in one pass: common words (lower case) and proper nouns."""
    global _VOCAB, _PROPER
    with _LOCK:
        if _VOCAB is None or _PROPER is None:
            from english_words import get_english_words_set

            words = get_english_words_set(["web2"], lower=False, alpha=True)
            _VOCAB = frozenset(w for w in words if w.islower())
            _PROPER = frozenset(w for w in words if w[:1].isupper())


def needs_truecasing(text: str) -> bool:
    """True for texts with enough letters and (almost) no capitals: no case signal left."""
    letters = upper = 0
    for ch in text:
        if ch.isalpha():
            letters += 1
            upper += ch.isupper()
    return letters >= _MIN_LETTERS and upper <= _MIN_UPPER_SHARE * letters


@lru_cache(maxsize=65_536)
def is_common_word(word: str) -> bool:
    """A lower-case English word, directly or through a regular inflection."""
    vocab = _vocabulary()
    w = word.lower().strip("'\u2019-")
    if len(w) <= 2 or w in vocab:
        return True
    if "-" in w:
        return all(is_common_word(part) for part in w.split("-") if part)
    for suffix, repl in _SUFFIXES:
        if w.endswith(suffix) and len(w) - len(suffix) >= 2:
            stem = w[: -len(suffix)] + repl
            if stem in vocab:
                return True
            # doubled consonant: "planned" -> "plan", "running" -> "run"
            if len(stem) >= 3 and stem[-1] == stem[-2] and stem[:-1] in vocab:
                return True
    return False


@lru_cache(maxsize=65_536)
def _also_a_given_name(word: str) -> bool:
    """A common word that is also a given name, as both the gazetteer and the dictionary
    (which lists proper nouns capitalised) say: "frank", "donna", "bertram"; not "friend"
    or "rose", which the dictionary has in lower case only."""
    from memstream.privacy.name_lexicon import gazetteer

    lower = word.casefold()
    return lower in gazetteer()[0] and lower.capitalize() in _proper_nouns()


def _proper_nouns() -> frozenset[str]:
    """Capitalised words of web2 (loaded with the vocabulary)."""
    _load_web2()
    assert _PROPER is not None
    return _PROPER


def truecase(text: str) -> str:
    """``text`` with every word that is not a common lower-case word capitalised.

    The result has the same length as ``text`` and the same character at every offset except
    first letters, so spans found in it index ``text`` directly.
    """

    def cap(m: re.Match[str]) -> str:
        word = m.group(0)
        if is_common_word(word) and not _also_a_given_name(word):
            return word
        capital = word[0].upper()
        return capital + word[1:] if len(capital) == 1 else word

    return _WORD.sub(cap, text)
