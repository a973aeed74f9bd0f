"""Person names on evidence: which capitalised words in a text are a person's name.

A small NER model tags most capitalised words it does not know as PERSON or ORG ("Kafka",
"Redis", "GraphQL"), and sealing every proper noun rewrites a third of ordinary technical
text. Here a run of name-like tokens becomes a PERSON only with evidence:

- **gazetteer**: first and last names of the 100+ locales of the `faker` package (real
  given names and surnames, as national statistics list them; MIT licence);
- **the model**: spaCy's PERSON entity, for names the gazetteer lacks;
- **context**: a title before it ("Dr.", "Mrs."), "my name is", "call me", a verb of speech
  or a kinship word around it ("said", "asked", "her son"), a list whose other members are
  names;

and never when the token is a technology, product, library or command (a glossary built from
`pygments`' lexer names, PyPI's trove classifiers and a short list of infrastructure
software below), looks like code (`json.dumps`, `CamelCase`, `HTTP`, digits), or is an
ordinary dictionary word with no other evidence. Each rule is a small function below, so a
reader can follow why a span was or was not taken for a name.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from memstream.privacy.name_cues import (
    TITLES,
    authored_work,
    cue_before,
    introduced,
    pronoun_subject,
    verb_after,
)
from memstream.privacy.name_lexicon import gazetteer, technology_terms
from memstream.privacy.name_tokens import Token, looks_like_code, regex_tokens, spacy_tokens

_ORG_WORDS = frozenset(
    """inc ltd llc gmbh ag sa plc corp corporation company co group holdings bank insurance
    university college school institute foundation agency orchestra band club association
    society council ministry department hospital clinic partners studio studios labs
    laboratories systems solutions services technologies consulting records investments
    capital markets software media airlines motors industries enterprises ventures trust
    fund partnership firm""".split()
)
_PLACE_BEFORE = re.compile(r"\b(?:in|at|from|to|near|into|via|across|around)[ \t]+$", re.I)
_PLACE_LABELS = frozenset({"GPE", "LOC", "FAC", "NORP", "LANGUAGE"})
_FUNCTION_POS = frozenset(
    {"PRON", "DET", "ADP", "CCONJ", "SCONJ", "AUX", "PART", "PUNCT", "SYM", "NUM", "SPACE"}
)
_OPENERS = frozenset('.!?:;>"\u201c([')

__all__ = [
    "PersonResolver",
    "Token",
    "gazetteer",
    "looks_like_code",
    "person_spans",
    "regex_tokens",
    "spacy_tokens",
    "technology_terms",
]


def _starts_sentence(text: str, at: int) -> bool:
    """Whether position `at` begins a sentence, a line or a quotation."""
    j = at - 1
    while j >= 0 and text[j].isspace():
        if text[j] == "\n":
            return True
        j -= 1
    return j < 0 or text[j] in _OPENERS


_ROLES = frozenset(
    """producer director president ceo cto cfo founder chairman chairwoman manager professor
    doctor officer captain king queen prince princess saint judge senator mayor minister
    chancellor governor general colonel sergeant lieutenant agent detective inspector coach
    author editor actor actress singer drummer guitarist pianist composer artist""".split()
)
_STREET_WORDS = frozenset(
    """street st str road rd avenue ave av drive dr lane ln boulevard blvd way court ct
    place pl square sq terrace parkway highway circle crescent close grove gardens park row
    walk hill heights mews alley path trail plaza point port fort ridge view bridge
    crossing estates meadows junction centre center quay wharf route strasse straße gasse
    weg platz straat laan vej gade gata gatan katu tie utca ulica ulice rua rue calle via
    avenida piazza""".split()
)
_CALENDAR = frozenset(
    """monday tuesday wednesday thursday friday saturday sunday january february march april
    may june july august september october november december""".split()
)
_PARTICLES = frozenset(
    "van von de da del della der den ten ter la le di du dos das bin ibn al el y e st".split()
)
_CAPITAL_PARTICLES = frozenset(p.capitalize() for p in _PARTICLES if len(p) > 1)
_NAME_TOKEN = re.compile(r"^[^\W\d_](?:[^\W\d_]|['\u2019-](?=[^\W\d_]))*$")
_INITIAL = re.compile(r"^[^\W\d_]\.?$")


@dataclass
class _Run:
    tokens: list[Token]
    list_member: bool = False
    group: int = -1  # runs of one list ("A, B and C") share a group


class PersonResolver:
    """Decides which runs of name-like tokens are person names (see the module doc)."""

    def __init__(self) -> None:
        from memstream.privacy.truecase import vocabulary

        self.first, self.last = gazetteer()
        self.tech = technology_terms()
        self._vocab = vocabulary()
        self._evidence: dict[str, str] = {}  # a word's evidence depends on its text only

    # --- token rules ------------------------------------------------------------------------

    def known_name(self, token: Token) -> bool:
        word = token.text.casefold().rstrip(".")
        return word in self.first or word in self.last or _double_surname(word, self.last)

    def given_name(self, token: Token) -> bool:
        return token.text.casefold() in self.first

    def technical(self, token: Token) -> bool:
        return token.text.casefold() in self.tech or looks_like_code(token.text)

    def ordinary_word(self, token: Token) -> bool:
        """A lower-case English word of web2, or its plural: "Producer", "Will", "Bowers".
        No other inflection rules: they make too many surnames look like words ("Mauer")."""
        word = token.text.casefold().strip("'\u2019")
        if word in self._vocab:
            return True
        for suffix in ("es", "s"):
            if len(word) > len(suffix) + 3 and word.endswith(suffix):
                if word[: -len(suffix)] in self._vocab:
                    return True
        return False

    def name_like(self, token: Token, sentence_start: bool = False) -> bool:
        """Could be part of a name: a capitalised word (or an initial), not code, and not a
        function word; at the start of a sentence, where every word is capitalised, only
        what the model tags as a noun ("Fix the build" is a verb)."""
        text = token.text
        if token.pos in _FUNCTION_POS:
            return False
        if sentence_start and token.pos not in (None, "PROPN", "NOUN", "ADJ", "X"):
            return False
        if _INITIAL.match(text):
            return text[0].isupper()
        return bool(_NAME_TOKEN.match(text)) and text[0].isupper() and not looks_like_code(text)

    # --- runs -------------------------------------------------------------------------------

    def runs(self, tokens: Sequence[Token], text: str) -> list[_Run]:
        """Maximal runs of name-like tokens (particles allowed inside), not crossing
        punctuation other than an initial's dot; runs joined by `,` / `and` are a list."""
        out: list[_Run] = []
        current: list[Token] = []
        for i, tok in enumerate(tokens):
            gap = text[current[-1].end : tok.start] if current else ""
            joins = not current or (gap in (" ", "") or (gap.strip() == "" and "\n" not in gap))
            initial = _starts_sentence(text, tok.start)
            if self.name_like(tok, initial and not current) and joins:
                current.append(tok)
                continue
            between = i + 1 < len(tokens) and self.name_like(tokens[i + 1])
            middle_initial = _INITIAL.match(tok.text) is not None and tok.text[0].isupper()
            if current and joins and between and (tok.text.lower() in _PARTICLES or middle_initial):
                current.append(tok)
                continue
            if current:
                out.append(_Run(current))
            current = [tok] if self.name_like(tok, initial) else []
        if current:
            out.append(_Run(current))
        for i, run in enumerate(out):
            run.group = i
        for a, b in itertools.pairwise(out):
            between = text[a.tokens[-1].end : b.tokens[0].start]
            if re.fullmatch(r"[ \t]*(?:,|,?[ \t]*and|&)[ \t]*", between):
                a.list_member = b.list_member = True
                b.group = a.group
        return out

    def evidence(self, token: Token) -> str:
        """What one word says about being part of a name:

        - `name`: in the gazetteer and neither a dictionary word nor a technology;
        - `ambiguous`: in the gazetteer but also an ordinary or technical word ("Will",
          "Rose", "Ruby", "Janet");
        - `unknown`: in no list at all ("Rubija", "Warrane"): a name the gazetteer lacks,
          or a product, place or brand;
        - `word`: an ordinary or technical word, a weekday or month, or code.
        """
        text = token.text
        kind = self._evidence.get(text)
        if kind is None:
            if looks_like_code(text) or text.casefold() in _CALENDAR:
                kind = "word"
            else:
                known = self.known_name(token)
                ordinary = self.ordinary_word(token) or text.casefold() in self.tech
                kind = (
                    ("ambiguous" if ordinary else "name")
                    if known
                    else ("word" if ordinary else "unknown")
                )
            if len(self._evidence) < 200_000:
                self._evidence[text] = kind
        return kind

    def _trim(self, run: list[Token], text: str, shadow: bool = False) -> list[Token]:
        """Drop leading and trailing tokens that are no evidence of a name: ordinary or
        technical words ("Producer", "Orchestra"), particles at the edges, the tail of a
        hyphenated descriptor ("ex-Zombie Kleist")."""

        named = any(self.evidence(t) in ("name", "ambiguous") for t in run)
        model_person = not shadow and len(run) > 1 and all(t.ent == "PERSON" for t in run)

        before = text[max(0, run[0].start - 40) : run[0].start] if run else ""
        if run and introduced(before) and not self.technical(run[0]):
            return run  # "my kid Mali", "Dr. Rose": introduced as a person
        if len(run) == 2 and run[0].text in _CAPITAL_PARTICLES and cue_before(before):
            return run  # "says Du Cane", "by Van Dyke"

        def weak(t: Token, last: bool) -> bool:
            if t.text.lower() in _PARTICLES or t.text.casefold() in _ROLES:
                return True
            if _INITIAL.match(t.text) or self.evidence(t) != "word":
                return False
            if not last and text[max(0, t.start - 1) : t.start] == "-":
                return True  # "ex-Zombie": describes the name that follows
            # a dictionary word the model calls a proper noun, next to a known name, is part
            # of it ("Tosh Olsen", "Willemine ten Pas", "Lara Pottinger"), as is one the model
            # takes for part of a person's name with its neighbours ("Impi Nummelin");
            # otherwise it describes what follows or is no name at all
            return not (t.pos == "PROPN" and len(run) > 1 and (named or last or model_person))

        while run and weak(run[0], last=False):
            run = run[1:]
        while run and weak(run[-1], last=True):
            run = run[:-1]
        return run

    def is_person(
        self,
        run: list[Token],
        text: str,
        *,
        whole: list[Token] | None = None,
        in_list_of_names: bool = False,
        shadow: bool = False,
    ) -> bool:
        """Whether the trimmed `run` is a person's name (see the module doc). `whole` is
        the run before trimming; `shadow`: the text is a case-restored copy of lower-case
        text, where the model's PERSON is no evidence of its own."""
        if not run:
            return False
        start, end = run[0].start, run[-1].end
        before, after = text[max(0, start - 40) : start], text[end : end + 40]
        words = [t for t in run if not _INITIAL.match(t.text) and t.text.lower() not in _PARTICLES]
        if not words:
            return False
        if _organisation(whole or run, after) or any(
            t.text.casefold().rstrip(".") in _STREET_WORDS for t in whole or run
        ):
            return False  # "Davis, Reynolds and Williamson Orchestra", "Filadelfeos Str."
        kinds = [self.evidence(w) for w in words]
        cue = (
            cue_before(before)
            or verb_after(after)
            or authored_work(before, after)
            or (
                pronoun_subject(text, start, end, _starts_sentence(text, start))
                and not any(self.technical(w) for w in words)  # "Jenkins is flaky. ... him"
            )
        )
        model = not shadow and any(w.ent == "PERSON" for w in words)
        place = any(w.ent in _PLACE_LABELS for w in words)
        supported = cue or model or in_list_of_names
        if len(words) >= 2:
            # a dictionary word inside a name is a surname the model also calls a proper
            # noun ("Lara Pottinger"); anywhere else it means this is not a name
            proper = all(w.pos in (None, "PROPN") for w in words) and not shadow
            if any(k == "word" and not proper for k in kinds) or kinds.count("word") > 1:
                return False
            if len(run) > len(words) and any(_INITIAL.match(t.text) for t in run[1:-1]):
                return True  # "Mijail C Adomo", "Ravil G. Yefimov": a middle initial
            if "name" in kinds:
                # "Southern Poland", "Berkshire Hathaway": a place or a company whose words
                # include a surname; a person's name starts with a given name
                first = self.given_name(words[0])
                return first or cue or model or not (place or words[0].ent == "ORG")
            if supported and not (place and not cue):
                return True
            # two or three words in no list, tagged proper nouns, not a place or a company
            # by the model: a name the gazetteer does not know ("Gyala Antall")
            return proper and len(words) <= 3 and not place and "word" not in kinds
        (kind,) = kinds
        if kind == "word":
            # "my kid Mali", "says Du Cane": introduced as a person, or a particle's surname
            particle = len(run) > 1 and run[0].text in _CAPITAL_PARTICLES and cue
            return (introduced(before) or particle) and not self.technical(words[0])
        if "-" in words[0].text and not (cue or self.given_name(words[0])):
            return False  # "Mayo-Walters", "Fritz-Armstrong": a firm of two surnames
        if kind == "name":
            if cue or in_list_of_names:
                return True
            if _PLACE_BEFORE.search(before) and not self.given_name(words[0]):
                return False  # "flew to Coles", "arrived at Ettelgem"
            return not place  # "Poland", "English"
        if kind == "ambiguous":
            return supported and not (place and not cue)
        return cue or (in_list_of_names and not place)

    def spans(
        self, tokens: Sequence[Token], text: str, *, shadow: bool = False
    ) -> list[tuple[int, int]]:
        """(start, end) of every person name among `tokens` of `text`."""
        runs = self.runs(tokens, text)
        trimmed = [self._trim(r.tokens, text, shadow) for r in runs]
        decided = [
            self.is_person(t, text, whole=r.tokens, shadow=shadow)
            for r, t in zip(runs, trimmed, strict=True)
        ]
        groups: dict[int, list[int]] = {}
        for i, run in enumerate(runs):
            groups.setdefault(run.group, []).append(i)
        for members in groups.values():
            if len(members) < 2:
                continue
            verdict = self._list_verdict(
                [trimmed[i] for i in members],
                [runs[i].tokens for i in members],
                [decided[i] for i in members],
                text,
                shadow,
            )
            for i in members:
                if verdict is not None:
                    decided[i] = (
                        verdict
                        if verdict is False
                        else (
                            decided[i]
                            or self.is_person(
                                trimmed[i],
                                text,
                                whole=runs[i].tokens,
                                in_list_of_names=True,
                                shadow=shadow,
                            )
                        )
                    )
        return [
            _with_title_and_suffix(text, kept[0].start, kept[-1].end)
            for kept, person in zip(trimmed, decided, strict=True)
            if person and kept
        ]

    def _list_verdict(
        self,
        members: list[list[Token]],
        wholes: list[list[Token]],
        decided: list[bool],
        text: str,
        shadow: bool,
    ) -> bool | None:
        """A list ("A, B and C"): False when it is a firm's name (three or more bare
        surnames, no given name: "Davis, Reynolds and Williamson"), True when it is a list
        of names (one member is a name on its own evidence, or every member is a single
        capitalised word and one is a known name: "Usamov and Bowers"), else None."""
        after = text[members[-1][-1].end : members[-1][-1].end + 40] if members[-1] else ""
        if any(_organisation(m, "") for m in wholes) or _organisation([], after):
            return False  # "Davis, Reynolds and Williamson Orchestra"
        single = all(len(m) == 1 for m in members)
        if single and len(members) >= 3 and not any(self.given_name(m[0]) for m in members):
            before = text[max(0, members[0][0].start - 40) : members[0][0].start]
            if not cue_before(before):
                return False
        if any(decided):
            return True
        if single and not shadow:
            kinds = [self.evidence(m[0]) for m in members]
            places = any(m[0].ent in _PLACE_LABELS for m in members)
            if "word" not in kinds and not places and ({"name", "ambiguous"} & set(kinds)):
                return True
        return None


_TITLE_BEFORE = re.compile(rf"\b{TITLES}\.?[ \t]+$", re.I)
_SUFFIX_AFTER = re.compile(r",?[ \t]+(?:jr|sr|ii|iii|iv|md|dds|phd|esq|dvm|rn)\b\.?", re.I)


def _with_title_and_suffix(text: str, start: int, end: int) -> tuple[int, int]:
    """A name with its title and suffix: "Mrs. Kathrine Filemonsen DDS" (they identify
    the person together, and on their own say nothing)."""
    title = _TITLE_BEFORE.search(text, max(0, start - 12), start)
    suffix = _SUFFIX_AFTER.match(text, end)
    return (title.start() if title else start, suffix.end() if suffix else end)


def _double_surname(word: str, last: frozenset[str]) -> bool:
    parts = word.split("-")
    return len(parts) == 2 and all(p in last for p in parts)


def _organisation(run: list[Token], after: str) -> bool:
    nxt = re.match(r"[ \t]*([^\W\d_]+)", after)
    if nxt and nxt.group(1).casefold() in _ORG_WORDS:
        return True
    return any(t.text.casefold() in _ORG_WORDS for t in run)


def person_spans(
    resolver: PersonResolver, tokens: Iterable[Token], text: str
) -> list[tuple[int, int]]:
    return resolver.spans(list(tokens), text)
