"""Semantic result cache: an agent asks whether a task was already done before doing it.

Agents publish `task -> result` with a verification status; `lookup(task)` returns the
stored result of a near-duplicate task, or nothing. Two tests, both must pass:

1. **Meaning**: the cosine of the two tasks' embeddings reaches `bar` (paraphrases pass).
2. **Values**: the tasks name the same values: numbers, dates and times, hosts, IP
   addresses, URLs, e-mail addresses, paths and file names, cloud regions, identifiers
   (tokens with digits, `_`, `-` or inner capitals), quoted strings, capitalised names and
   deployment environments (`prod`, `staging`, ...). "restart web-3 in eu-west-2" and
   "restart web-4 in eu-west-2" embed almost identically, and the second must not get the
   first one's result: a candidate above the bar whose values differ is a **rejection**,
   counted apart from a miss.

A result marked `failed` is never returned. Visibility is the memory rule (`Caller.may_see`:
tenant, scope, teams, own private entries). Entries persist in a SQLite file when a path is
given; each tenant's vectors are held in memory for the dot products.
"""

from __future__ import annotations

import difflib
import re
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from prometheus_client import Counter

from memstream.models.embedding import Embedder
from memstream.store.base import Caller
from memstream.store.sqlite_file import SqliteFile

Verification = Literal["verified", "unverified", "failed"]
Outcome = Literal["hit", "miss", "rejected"]

DEFAULT_BAR = 0.90
"""Cosine (MiniLM) a cached task needs to stand for the asked one, before the value test."""

LOOKUPS = Counter(
    "memstream_cache_lookups_total",
    "semantic result cache lookups by outcome (hit, miss, rejected: similar but another value)",
    ["outcome"],
)
PUBLISHED = Counter("memstream_cache_results_published_total", "results published to the cache")

_ENVIRONMENTS = frozenset(
    "prod production staging stage dev development test testing qa uat canary sandbox "
    "preprod demo".split()
)
_NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve".split()
    )
}
_VALUE = re.compile(
    r"""(?x)
      "[^"]{1,200}" | '[^'\s][^']{0,199}'                  # quoted strings
    | [a-z][a-z0-9+.-]*://\S+                              # URLs
    | [\w.+-]+@[\w-]+(?:\.[\w-]+)+                         # e-mail addresses
    | (?:~|\.{1,2})?/[\w.\-/]+                             # paths
    | \d{4}-\d{2}-\d{2}(?:[T\s]\d{1,2}:\d{2}(?::\d{2})?)?  # ISO dates and times
    | \d{1,2}:\d{2}(?::\d{2})?\s?(?:[ap]\.?m\.?)?          # times
    | [\w-]+(?:\.[\w-]+)+                                  # hosts, IPs, versions, files, 2.5
    | [A-Za-z]*\d[\w-]*                                    # ids and numbers: web-3, 40k, 2024
    | [A-Za-z]+(?:[_-][A-Za-z0-9]+)+                       # identifiers: eu-west, user_id
    | [a-z]+[A-Z]\w*                                       # camelCase
    | [A-Z][\w']*                                          # capitalised words
    | [a-z]+                                               # other words (environments, 1-12)
    """
)
_MONTHS = frozenset(
    "january february march april may june july august september october november "
    "december jan feb mar apr jun jul aug sep sept oct nov dec monday tuesday wednesday "
    "thursday friday saturday sunday today tomorrow yesterday".split()
)


_SAME_VALUE = {
    "production": "prod",
    "development": "dev",
    "testing": "test",
    "stage": "staging",
}


def task_values(task: str) -> frozenset[str]:
    """The values a task names (lower-cased; number words up to twelve as digits), the
    first word excepted when it is only capitalised because it starts the sentence."""
    values: set[str] = set()
    for i, m in enumerate(_VALUE.finditer(task)):
        token = m.group(0)
        lower = token.lower().strip("\"'").rstrip(".")
        if token[0].isupper() and token[1:].islower() and token.isalpha():
            if i == 0 and lower not in _MONTHS:
                continue  # "Restart ...": the sentence's first word
            values.add(lower)
        elif token.isalpha() and token.islower():
            if lower in _ENVIRONMENTS or lower in _MONTHS:
                values.add(lower)
            elif lower in _NUMBER_WORDS:
                values.add(_NUMBER_WORDS[lower])
        else:
            values.add(re.sub(r"^v(?=\d)", "", lower))  # v2.4.1 and 2.4.1 are one version
    return frozenset(_SAME_VALUE.get(v, v) for v in values)


def _normal(task: str) -> str:
    return " ".join(task.lower().split())


_FUNCTION = frozenset("a an the of on in at to for from by with and or is are please".split())


def substituted_words(a: str, b: str) -> list[tuple[str, str]]:
    """Words swapped between two tasks worded alike: [] unless the tasks are the same
    words in the same order but for a few content words replaced one for one ("restart
    payments on web-3" / "restart checkout on web-3" -> [("payments", "checkout")]). Such a
    pair is a change of what the task is about, whatever kind of word it is; a paraphrase
    rewords more than that, and passes."""
    ta = [w.strip(".,;:!?") for w in a.lower().split()]
    tb = [w.strip(".,;:!?") for w in b.lower().split()]
    ops = difflib.SequenceMatcher(a=ta, b=tb, autojunk=False).get_opcodes()
    if any(tag in ("insert", "delete") for tag, *_ in ops):
        return []
    pairs = []
    for tag, i1, i2, j1, j2 in ops:
        if tag != "replace":
            continue
        if i2 - i1 != j2 - j1 or i2 - i1 > 3:
            return []  # reworded, not a value swapped in place
        for x, y in zip(ta[i1:i2], tb[j1:j2], strict=True):
            if x in _FUNCTION and y in _FUNCTION:
                continue
            if _SAME_VALUE.get(x, x) != _SAME_VALUE.get(y, y):
                pairs.append((x, y))
    changed = sum(i2 - i1 for tag, i1, i2, _, _ in ops if tag == "replace")
    return pairs if pairs and changed <= max(3, len(ta) // 3) else []


@dataclass(frozen=True)
class CachedResult:
    result_id: str
    tenant: str
    agent_id: str
    scope: str
    task: str
    result: str
    verification: Verification
    ts: float


@dataclass(frozen=True)
class Lookup:
    outcome: Outcome
    result: CachedResult | None = None
    score: float | None = None
    """cosine of the returned (hit) or best refused (rejected) or nearest (miss) task"""
    reason: str | None = None


@dataclass
class _Tenant:
    entries: list[CachedResult] = field(default_factory=list)
    values: list[frozenset[str]] = field(default_factory=list)
    buffer: np.ndarray | None = None  # rows [0, len(entries)) are the vectors; grows by doubling

    @property
    def vectors(self) -> np.ndarray | None:
        """(n, dim) float32, rows in entries' order (a view: a later add never changes it)."""
        return None if self.buffer is None else self.buffer[: len(self.entries)]

    def add(self, entry: CachedResult, vector: np.ndarray) -> None:
        row = np.asarray(vector, dtype=np.float32).reshape(-1)
        n = len(self.entries)
        if self.buffer is None or n == self.buffer.shape[0]:
            grown = np.empty((max(16, 2 * n), row.shape[0]), dtype=np.float32)
            if self.buffer is not None:
                grown[:n] = self.buffer
            self.buffer = grown
        self.buffer[n] = row
        self.values.append(task_values(entry.task))
        self.entries.append(entry)  # last: `vectors` covers the new row only once it is set


class ResultCache:
    def __init__(self, embedder: Embedder, *, bar: float = DEFAULT_BAR, path: Path | None = None):
        if not 0.0 < bar <= 1.0:
            raise ValueError("bar must be in (0, 1]")
        self.embedder = embedder
        self.bar = bar
        self._tenants: dict[str, _Tenant] = {}
        self._lock = threading.Lock()
        self._db = (
            SqliteFile(
                path,
                [
                    "create table if not exists results (result_id text primary key, tenant "
                    "text, agent_id text, scope text, task text, result text, verification "
                    "text, ts real, vector blob)"
                ],
            )
            if path is not None
            else None
        )
        if self._db is not None:
            self._load()

    def _load(self) -> None:
        assert self._db is not None
        rows = self._db.rows(
            "select result_id, tenant, agent_id, scope, task, result, verification, ts, vector "
            "from results order by ts"
        )
        for *fields, blob in rows:
            self._add(CachedResult(*fields), np.frombuffer(blob, dtype=np.float32))

    def _add(self, entry: CachedResult, vector: np.ndarray) -> None:
        self._tenants.setdefault(entry.tenant, _Tenant()).add(entry, vector)

    def publish(
        self,
        caller: Caller,
        task: str,
        result: str,
        verification: Verification = "unverified",
        scope: str = "tenant",
    ) -> CachedResult:
        """Store `task -> result` for the caller's tenant, visible by `scope` as memories are."""
        if not task.strip():
            raise ValueError("task is empty")
        if verification not in ("verified", "unverified", "failed"):
            raise ValueError("verification must be verified, unverified or failed")
        entry = CachedResult(
            str(uuid.uuid4()), caller.tenant, caller.agent_id, scope, task, result,
            verification, time.time(),
        )  # fmt: skip
        vector = np.asarray(self.embedder.embed([task])[0], dtype=np.float32)
        with self._lock:
            if self._db is not None:
                with self._db.transaction() as db:
                    db.execute(
                        "insert into results values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (*_row(entry), vector.tobytes()),
                    )
            self._add(entry, vector)
        PUBLISHED.inc()
        return entry

    def lookup(self, caller: Caller, task: str) -> Lookup:
        """The most similar visible, not failed result whose task means the same and names
        the same values; else a miss, or a rejection when only tasks with other values were
        similar enough."""
        found = self._lookup(caller, task)
        LOOKUPS.labels(found.outcome).inc()
        return found

    def _lookup(self, caller: Caller, task: str) -> Lookup:
        with self._lock:
            tenant = self._tenants.get(caller.tenant)
            if tenant is None or tenant.vectors is None:
                return Lookup("miss", reason="nothing cached for this tenant")
            entries, values, vectors = list(tenant.entries), list(tenant.values), tenant.vectors
        query = np.asarray(self.embedder.embed([task])[0], dtype=np.float32)
        scores = vectors @ query
        wanted = task_values(task)
        asked = _normal(task)
        best_refused: tuple[float, CachedResult] | None = None
        nearest = None
        for i in np.argsort(-scores, kind="stable"):
            entry, score = entries[int(i)], float(scores[int(i)])
            if entry.verification == "failed" or not caller.may_see(
                entry.tenant, entry.scope, entry.agent_id
            ):
                continue
            nearest = score if nearest is None else nearest
            if _normal(entry.task) == asked:
                return Lookup("hit", entry, score)
            if score < self.bar:
                break
            swapped = substituted_words(entry.task, task)
            if values[int(i)] == wanted and not swapped:
                return Lookup("hit", entry, score)
            if best_refused is None:
                other = sorted(values[int(i)] ^ wanted) or [f"{x} -> {y}" for x, y in swapped]
                best_refused = (score, f"a similar task names other values: {other}")
        if best_refused is not None:
            return Lookup("rejected", None, best_refused[0], best_refused[1])
        return Lookup("miss", None, nearest, "no task similar enough")

    def count(self, tenants: Iterable[str] | None = None) -> int:
        with self._lock:
            chosen = (
                self._tenants
                if tenants is None
                else {t: self._tenants[t] for t in tenants if t in self._tenants}
            )
            return sum(len(t.entries) for t in chosen.values())


def _row(entry: CachedResult) -> tuple[object, ...]:
    return (
        entry.result_id, entry.tenant, entry.agent_id, entry.scope, entry.task, entry.result,
        entry.verification, entry.ts,
    )  # fmt: skip
