"""A memory's valuation features and the cold-start heuristic that scores them.

`valuation_features_batch` turns memories into the feature rows `OnlineValuationModel`
(`memstream.models.valuation`) learns from; `cold_start_score` scores them until feedback
exists.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

EMBEDDING_DIM = 384
"""Dimension of the pipeline's sentence embeddings (a parameter wherever it matters)."""

PROJECTION_DIM = 16
"""How many random directions of the embedding the model sees (topic signal, cheaply)."""

_PROJECTION_SEED = 0x6D656D73  # "mems": a constant, so every process builds the same matrix

FEATURE_VERSION = 2
"""Bump when the meaning or order of the features changes; a model trained on another
version must not be served (the registry metadata records it)."""

MAX_TAGS = 32
AGE_HALF_LIFE_HOURS = 168.0
"""Cold-start decay: a week-old memory keeps half of its age-dependent part."""
SHORT_TEXT_CHARS = 200
"""Cold-start: texts shorter than this get a reduced length credit (log scale)."""
OBSERVATION_FACTOR = 0.8
"""Cold-start: raw observations are worth less than memories an agent chose to share."""

_BASE_FEATURES = (
    "novelty",
    "reputation",
    "is_observation",
    "log_age_hours",
    "log_text_chars",
    "n_tags",
)
TEXT_FEATURES = (
    "is_question",
    "function_word_share",
    "filler_word_share",
    "capitalised_share",
    "has_number",
    "first_person",
    "past_event",
    "answers_question",
)
"""What the wording says about a memory's reuse, whatever its topic (see `text_features`)."""
FEATURE_NAMES: tuple[str, ...] = (
    *_BASE_FEATURES,
    *TEXT_FEATURES,
    *(f"emb_proj_{i:02d}" for i in range(PROJECTION_DIM)),
)
"""Column order of every feature matrix (fixed; see FEATURE_VERSION)."""
N_FEATURES = len(FEATURE_NAMES)

_I_NOVELTY, _I_REPUTATION, _I_OBS, _I_LOG_AGE, _I_LOG_CHARS, _I_TAGS = range(6)
_I_TEXT = len(_BASE_FEATURES)
_I_PROJ = _I_TEXT + len(TEXT_FEATURES)

_WORD = re.compile(r"<[A-Z_]+>|[^\W\d_]+(?:'[^\W\d_]+)?|\d+(?:[.,:]\d+)*")
_FUNCTION_WORDS = frozenset(
    """a an the and or but if so to of in on at for with from by as is are was were be been
    being am it its it's this that these those there here i you he she we they me him her us
    them my your his our their mine yours do does did done have has had not no just really
    very too also can could would should will shall may might must i'm you're that's what
    when how why who which all some any more most much many such than then about into up
    out over again oh well""".split()
)
_FIRST_PERSON = frozenset("i me my mine myself we us our ours ourselves i'm i've i'd".split())
_IRREGULAR_PAST = frozenset(
    """was were had did went got made took saw came gave found knew left felt thought told
    became began brought bought built caught chose drew drove ate fell fought flew forgot
    grew heard held kept lost met paid put ran read rode rang rose said sat sent set shot
    showed sang slept spent spoke stood stole swam taught threw understood woke won wore
    wrote""".split()
)
_FILLER_WORDS = frozenset(
    """haha hahaha lol lmao thanks thank thx wow omg yay awesome cool nice sure ok okay yeah
    yep yup hi hey hello bye cheers great glad totally absolutely definitely amazing love
    lovely congrats congratulations sounds hope fun""".split()
)
_KINDS = {"memory": 0.0, "observation": 1.0}


@lru_cache(maxsize=4)
def _projection(dim: int) -> np.ndarray:
    """A fixed (dim, 16) matrix of N(0, 1) entries, so a unit vector projects to coordinates
    of about unit variance.

    Built by Box-Muller from the raw PCG64 stream of a constant seed rather than with
    `Generator.standard_normal`: numpy keeps bit generators' streams stable across
    releases but not its distribution algorithms, and a changed matrix would silently
    invalidate every trained model. Identical in every process and numpy version.
    """
    n = dim * PROJECTION_DIM
    raw = np.random.PCG64(_PROJECTION_SEED).random_raw(2 * ((n + 1) // 2))
    uniform = ((raw >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53  # in (0, 1)
    u1, u2 = uniform[0::2], uniform[1::2]
    radius = np.sqrt(-2.0 * np.log(u1))
    normal = np.concatenate([radius * np.cos(2 * np.pi * u2), radius * np.sin(2 * np.pi * u2)])
    matrix = normal[:n].reshape(dim, PROJECTION_DIM).astype(np.float32)
    matrix.setflags(write=False)
    return matrix


def text_features(text: str, context: str | None = None) -> tuple[float, ...]:
    """The TEXT_FEATURES of one text, each in [0, 1], in that order. Why each is there:

    - `is_question`: a question asks for knowledge rather than holding it;
    - `function_word_share`: articles, pronouns, auxiliaries; small talk ("that's so true,
      I think so too") is mostly these, a reusable fact carries content words;
    - `filler_word_share`: words of chit-chat and politeness ("haha", "thanks", "awesome")
      that make a turn friendly but not informative;
    - `capitalised_share`: capitalised words past the first (names of people, places,
      products) and privacy placeholders (`<PERSON>`): the specifics questions ask about;
    - `has_number`: dates, times, amounts, versions, identifiers;
    - `first_person`: "I", "my", "we": what the writer did, has, prefers: personal facts
      are what agents that act for people are asked about;
    - `past_event`: a verb in the past tense (regular -ed or a common irregular one): an
      event that happened, as opposed to a reaction to one;
    - `answers_question`: its `context` (what it replied to) ends with a question mark: an
      answer holds what someone wanted to know.
    A leading "speaker: " is left out, so who said it does not count as content.
    """
    head, sep, rest = text.partition(": ")
    if sep and len(head) <= 40 and "\n" not in head:
        text = rest
    words = _WORD.findall(text)
    answers = float(bool(context) and context.rstrip().endswith("?"))  # type: ignore[union-attr]
    if not words:
        return (float(text.rstrip().endswith("?")), 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, answers)
    lower = [w.lower() for w in words]
    n = float(len(words))
    capitalised = sum(
        1
        for i, w in enumerate(words)
        if i > 0 and (w.startswith("<") or (w[0].isupper() and lower[i] not in _FUNCTION_WORDS))
    )
    return (
        float(text.rstrip().endswith("?")),
        sum(w in _FUNCTION_WORDS for w in lower) / n,
        sum(w in _FILLER_WORDS for w in lower) / n,
        capitalised / n,
        float(any(w[0].isdigit() for w in words)),
        float(any(w in _FIRST_PERSON for w in lower)),
        float(any(w in _IRREGULAR_PAST or (len(w) > 4 and w.endswith("ed")) for w in lower)),
        answers,
    )


def _column(name: str, values: Any, n: int) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} values for {n} embeddings")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has non-finite values")
    return arr


def valuation_features_batch(
    *,
    embeddings: np.ndarray,
    novelty: Sequence[float] | np.ndarray,
    reputation: Sequence[float] | np.ndarray,
    kind: Sequence[str] | np.ndarray,
    age_hours: Sequence[float] | np.ndarray,
    text_chars: Sequence[int] | np.ndarray,
    n_tags: Sequence[int] | np.ndarray,
    texts: Sequence[str] | None = None,
    contexts: Sequence[str | None] | None = None,
    dim: int = EMBEDDING_DIM,
) -> np.ndarray:
    """Feature matrix (N, len(FEATURE_NAMES)) float32 for N memories, in FEATURE_NAMES order.

    `embeddings` (N, dim) are L2-normalised; `novelty` is 1 - max cosine similarity to the
    tenant's existing memories (1.0 for an empty pool); `reputation` is the contributor's
    in [0, 1] (0.5 when unknown). Novelty and reputation are clipped to [0, 1], ages below
    zero (clock skew) count as 0, tags are capped at MAX_TAGS; logs tame heavy tails.
    `texts` (the text as stored, after the privacy stage) and `contexts` (what each
    replied to, when known) give the TEXT_FEATURES; without texts those are 0 (a caller
    that has no text, such as a synthetic stream).
    """
    emb = np.asarray(embeddings, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[1] != dim:
        raise ValueError(f"embeddings must have shape (N, {dim}), got {emb.shape}")
    if not np.all(np.isfinite(emb)):
        raise ValueError("embeddings have non-finite values")
    n = emb.shape[0]
    kinds = np.asarray(kind, dtype=object).reshape(-1)
    if kinds.shape[0] != n:
        raise ValueError(f"kind has {kinds.shape[0]} values for {n} embeddings")
    try:
        is_obs = np.fromiter((_KINDS[k] for k in kinds), dtype=np.float64, count=n)
    except KeyError as exc:
        raise ValueError(f"kind must be one of {sorted(_KINDS)}, got {exc.args[0]!r}") from None

    out = np.empty((n, N_FEATURES), dtype=np.float32)
    out[:, _I_NOVELTY] = np.clip(_column("novelty", novelty, n), 0.0, 1.0)
    out[:, _I_REPUTATION] = np.clip(_column("reputation", reputation, n), 0.0, 1.0)
    out[:, _I_OBS] = is_obs
    out[:, _I_LOG_AGE] = np.log1p(np.maximum(_column("age_hours", age_hours, n), 0.0))
    out[:, _I_LOG_CHARS] = np.log1p(np.maximum(_column("text_chars", text_chars, n), 0.0))
    out[:, _I_TAGS] = np.clip(_column("n_tags", n_tags, n), 0.0, MAX_TAGS)
    if texts is None:
        out[:, _I_TEXT:_I_PROJ] = 0.0
    else:
        if len(texts) != n:
            raise ValueError(f"texts has {len(texts)} values for {n} embeddings")
        if contexts is not None and len(contexts) != n:
            raise ValueError(f"contexts has {len(contexts)} values for {n} embeddings")
        around = contexts if contexts is not None else [None] * n
        out[:, _I_TEXT:_I_PROJ] = [text_features(t, c) for t, c in zip(texts, around, strict=True)]
    # float64 so a memory's features do not depend on the batch it came in (float32 BLAS
    # sums in batch-dependent order); the result rounds to the same float32 either way.
    out[:, _I_PROJ:] = emb.astype(np.float64) @ _projection(dim).astype(np.float64)
    return out


def valuation_features(
    *,
    embedding: np.ndarray,
    novelty: float,
    reputation: float,
    kind: str,
    age_hours: float,
    text_chars: int,
    n_tags: int,
    text: str | None = None,
    context: str | None = None,
    dim: int = EMBEDDING_DIM,
) -> np.ndarray:
    """Feature vector (len(FEATURE_NAMES),) float32 of one memory; see the batch version."""
    emb = np.asarray(embedding, dtype=np.float32)
    if emb.shape != (dim,):
        raise ValueError(f"embedding must have shape ({dim},), got {emb.shape}")
    return valuation_features_batch(
        embeddings=emb[None, :],
        novelty=[novelty],
        reputation=[reputation],
        kind=[kind],
        age_hours=[age_hours],
        text_chars=[text_chars],
        n_tags=[n_tags],
        texts=None if text is None else [text],
        contexts=None if text is None else [context],
        dim=dim,
    )[0]


def _as_matrix(features: np.ndarray) -> np.ndarray:
    x = np.asarray(features, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != N_FEATURES:
        raise ValueError(f"features must have shape (N, {N_FEATURES}), got {x.shape}")
    return x


def cold_start_score(features: np.ndarray) -> np.ndarray:
    """Heuristic usefulness in [0, 1] for memories no model has learned about yet.

    score = kind * decay * (0.40 novelty + 0.40 reputation + 0.15 length + 0.05 tags)

    - novelty and reputation weigh most: a memory that repeats the pool adds little, and a
      contributor whose memories helped before is likely to help again;
    - length = log1p(chars) / log1p(SHORT_TEXT_CHARS), capped at 1: very short texts
      ("ok", "done") rarely carry reusable knowledge, past ~200 characters length is no merit;
    - tags = min(n_tags, 4) / 4: a little credit for memories their author bothered to label;
    - kind = 1 for memories, OBSERVATION_FACTOR (0.8) for raw observations;
    - decay = 0.5 + 0.5 * 2^(-age / AGE_HALF_LIFE_HOURS): knowledge goes stale with a one-week
      half-life, but an old memory keeps at least half its score (facts often stay true).
    Strictly increasing in novelty and in reputation. Takes (F,) or (N, F); returns (N,).
    """
    x = _as_matrix(features).astype(np.float64)
    age_hours = np.expm1(x[:, _I_LOG_AGE])
    chars = np.expm1(x[:, _I_LOG_CHARS])
    length = np.minimum(np.log1p(chars) / math.log1p(SHORT_TEXT_CHARS), 1.0)
    tags = np.minimum(x[:, _I_TAGS], 4.0) / 4.0
    quality = 0.40 * x[:, _I_NOVELTY] + 0.40 * x[:, _I_REPUTATION] + 0.15 * length + 0.05 * tags
    kind = np.where(x[:, _I_OBS] > 0.5, OBSERVATION_FACTOR, 1.0)
    decay = 0.5 + 0.5 * np.exp2(-age_hours / AGE_HALF_LIFE_HOURS)
    return np.clip(kind * decay * quality, 0.0, 1.0).astype(np.float32)
