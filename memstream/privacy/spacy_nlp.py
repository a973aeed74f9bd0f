"""The offline spaCy pipeline (loaded once per process), and what the detector reads from
its tags: untagged proper nouns, capitalised sequences without verbs and pronouns."""

from __future__ import annotations

import threading
from typing import Any

from memstream.privacy.entities import CHUNK_CHARS, SPACY_MODEL, PiiSpan
from memstream.privacy.recognizers.names import _COMMON_CAPS

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
