"""Link a new memory to the related memories its tenant already holds.

A raw cosine bar links badly: short, generic memories ("Thanks, see you!") sit close to
everything, so one fixed cosine either floods them with links or starves specific ones.
`Linker` scores each candidate relative to the new memory's own similarity distribution:

    score = z( z(cosine) + lexical_weight * z(shared rare words) + source_weight * same_source )

where z() standardises over the candidates (mean 0, sd 1), "shared rare words" sums the
IDF (over the candidates' texts) of content words both texts contain, and same_source is
1 when both memories come from the same author (agent, speaker). A candidate is linked
when its score clears `bar` standard deviations, at most `max_links` of them.

The default bar, 3.0, is the three-sigma rule: a link must stand out from the memory's
typical candidate as far as roughly 1 in 700 would under a normal spread; it was fixed by
that reasoning, not by scoring links against labelled pairs. The weights (0.5, 0.5) are
priors that let the lexical and source signals adjust, not outvote, the embedding.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Hashable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

_WORD = re.compile(r"[a-z0-9][a-z0-9'&-]*")
STOPWORDS = frozenset(
    """a about after again all also am an and any are as at be because been before being
    but by can could did do does doing don't done for from get got had has have having he
    her here hers him his how i i'm if in into is it it's its just know let's like me more
    most my no not now of off oh on one only or other our out over really she should so
    some still such than that that's the their them then there these they thing things
    this those through to too up us very was way we were what when where which while who
    why will with would yeah yes you you're your""".split()
)
"""Function words only: generic English, nothing specific to a data set."""

Candidate = tuple[Hashable, Any, str] | tuple[Hashable, Any, str, str | None]
"""(memory id, vector, text) or (memory id, vector, text, source)."""


@lru_cache(maxsize=4096)  # ~2 KB an entry: bounded well under 10 MB
def content_words(text: str) -> frozenset[str]:
    """Lowercased words of 3+ characters that are not function words."""
    return (
        frozenset(w for w in (m.strip("'&-") for m in _WORD.findall(text.lower())) if len(w) > 2)
        - STOPWORDS
    )


def _standardise(x: np.ndarray) -> np.ndarray:
    sd = float(x.std())
    return (x - x.mean()) / sd if sd > 1e-9 else np.zeros_like(x)


class Linker:
    """Scores a new memory against its tenant's memories and keeps the outstanding ones."""

    def __init__(
        self,
        bar: float = 3.0,
        max_links: int = 5,
        *,
        lexical_weight: float = 0.5,
        source_weight: float = 0.5,
        min_candidates: int = 10,
    ) -> None:
        """`min_candidates`: below it a spread cannot be estimated and nothing is linked."""
        if max_links < 0 or min_candidates < 2:
            raise ValueError("max_links must be >= 0 and min_candidates >= 2")
        self.bar = bar
        self.max_links = max_links
        self.lexical_weight = lexical_weight
        self.source_weight = source_weight
        self.min_candidates = min_candidates

    def scores(
        self,
        vector: np.ndarray,
        text: str,
        candidates: Sequence[Candidate],
        *,
        source: str | None = None,
    ) -> np.ndarray:
        """One score (standard deviations above the typical candidate) per candidate."""
        n = len(candidates)
        if n < self.min_candidates:
            return np.full(n, -np.inf)
        matrix = np.asarray([c[1] for c in candidates], dtype=np.float32)
        query = np.asarray(vector, dtype=np.float32)
        combined = _standardise((matrix @ query).astype(np.float64))
        if self.lexical_weight:
            combined += self.lexical_weight * _standardise(
                self._shared_rare_words(text, [c[2] for c in candidates])
            )
        if self.source_weight and source is not None:
            same = np.array([len(c) > 3 and c[3] == source for c in candidates], dtype=np.float64)
            combined += self.source_weight * same
        return _standardise(combined)

    @staticmethod
    def _shared_rare_words(text: str, texts: Sequence[str]) -> np.ndarray:
        """Sum of IDF (over the candidates and the new text) of the words each shares."""
        mine = content_words(text)
        if not mine:
            return np.zeros(len(texts))
        sets = [content_words(t) for t in texts]
        df = Counter(w for s in sets for w in s & mine)
        docs = len(texts) + 1
        idf = {w: math.log((docs + 1) / (df[w] + 1.5)) for w in mine}
        return np.array([sum(idf[w] for w in s & mine) for s in sets])

    def link(
        self,
        vector: np.ndarray,
        text: str,
        candidates: Sequence[Candidate],
        *,
        source: str | None = None,
    ) -> list[tuple[Hashable, float]]:
        """[(memory id, score)] of the candidates above the bar, best first, at most max_links.

        Pass all of the tenant's memories (or a uniform sample plus the vector-search
        shortlist): the scores are relative to the candidates' spread, so a shortlist
        alone would make every candidate look typical.
        """
        if not candidates or self.max_links == 0:
            return []
        s = self.scores(vector, text, candidates, source=source)
        order = np.argsort(-s, kind="stable")[: self.max_links]
        return [(candidates[i][0], round(float(s[i]), 4)) for i in order if s[i] >= self.bar]
