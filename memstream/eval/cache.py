"""`memstream eval cache`: how much duplicate work the semantic result cache saves, and how
often it returns a result for a task that is not a duplicate.

The task stream (seeded; `FAMILIES` below): agents' operational tasks in 14 families, each
with three wordings and typed slots (host, region, number, date, version, service, path,
environment, person, city). Each step, with the shares of `MIX`:

- `new`: a family and fresh slot values (work nobody did yet);
- `repeat`: an earlier task word for word;
- `paraphrase`: an earlier task in another of its family's wordings, same values;
- `near_miss`: an earlier task in the same wording with one slot given another value
  ("restart web-3" -> "restart web-4"): same words, different work.

Every task is looked up first; on a miss or rejection it is "done" and its result published
(verified). A hit is correct when the returned result was computed for the same family and
values. `work_avoided`: correct hits over the tasks whose work had been done before
(repeats and paraphrases of done work); `false_hit_rate`: wrong hits over all lookups that
are not duplicates (new and near-miss tasks), with the near-misses also on their own.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from memstream.models.embedding import Embedder, OnnxEmbedder
from memstream.retrieval.result_cache import DEFAULT_BAR, ResultCache
from memstream.store.base import Caller

MIX = {"new": 0.40, "repeat": 0.20, "paraphrase": 0.25, "near_miss": 0.15}

SLOTS: dict[str, list[str]] = {
    "host": [f"{n}-{i}" for n in ("web", "api", "db", "cache", "worker") for i in range(1, 9)],
    "region": [
        "eu-west-1", "eu-west-2", "eu-central-1", "us-east-1", "us-east-2", "us-west-2",
        "ap-south-1", "ap-northeast-1",
    ],
    "number": [str(n) for n in (2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 50, 64, 100)],
    "date": [f"2026-{m:02d}-{d:02d}" for m in (1, 3, 5, 7, 9, 11) for d in (3, 14, 22)],
    "version": [f"{a}.{b}.{c}" for a in (1, 2, 3) for b in (0, 4, 7) for c in (1, 5)],
    "service": ["payments", "checkout", "search", "billing", "auth", "inventory", "email"],
    "path": ["/var/log/app.log", "/etc/nginx/nginx.conf", "/srv/data/export.csv", "/tmp/dump.sql"],
    "env": ["staging", "prod", "dev", "qa"],
    "person": ["Alice Moreau", "Ben Okafor", "Chen Wei", "Dana Levi", "Emil Novak"],
    "city": ["Paris", "Berlin", "Lagos", "Osaka", "Lima", "Oslo"],
}  # fmt: skip

FAMILIES: list[tuple[str, ...]] = [
    (
        "Restart the {service} service on {host}",
        "restart {service} on host {host}",
        "Please do a restart of the {service} service running on {host}",
    ),
    (
        "How much disk space is free on {host}?",
        "Check the free disk space on {host}",
        "Report remaining disk capacity for {host}",
    ),
    (
        "Scale {service} to {number} replicas in {region}",
        "Set the replica count of {service} in {region} to {number}",
        "In {region}, run {number} replicas of {service}",
    ),
    (
        "Deploy {service} version {version} to {env}",
        "Roll out {service} {version} on {env}",
        "Ship release {version} of {service} to the {env} environment",
    ),
    (
        "Summarise the errors in {path} on {host} since {date}",
        "Give me a summary of errors from {path} on {host} after {date}",
        "What errors appear in {path} on {host} from {date} on?",
    ),
    (
        "What is the p99 latency of {service} in {region}?",
        "Measure {service} p99 latency in {region}",
        "Report the 99th percentile latency for {service} ({region})",
    ),
    (
        "Rotate the credentials of the {service} database in {env}",
        "Rotate {service} DB credentials on {env}",
        "Generate new database credentials for {service} in {env}",
    ),
    (
        "Book a meeting room in {city} for {number} people on {date}",
        "Reserve a room for {number} people in {city} on {date}",
        "Find a meeting room on {date} in {city} that seats {number}",
    ),
    (
        "Send the weekly {service} report to {person}",
        "Email {person} the weekly report for {service}",
        "Forward this week's {service} report to {person}",
    ),
    (
        "Is {host} reachable from {region}?",
        "Check connectivity to {host} from {region}",
        "Test whether {region} can reach {host}",
    ),
    (
        "List open incidents for {service} created after {date}",
        "Show {service} incidents opened since {date} that are still open",
        "Which {service} incidents from after {date} are unresolved?",
    ),
    (
        "Back up {path} on {host} to {region}",
        "Copy a backup of {path} from {host} into {region}",
        "Make a backup of {host}:{path} stored in {region}",
    ),
    (
        "Translate the {service} release notes for version {version} into French",
        "French translation of the {service} {version} release notes",
        "Render the release notes of {service} {version} in French",
    ),
    (
        "What was the {service} error rate in {env} on {date}?",
        "Error rate of {service} on {env} for {date}",
        "On {date}, how many errors per request did {service} have in {env}?",
    ),
]


@dataclass(frozen=True)
class Task:
    family: int
    wording: int
    values: tuple[tuple[str, str], ...]  # (slot, value), in the wording's slot order

    @property
    def text(self) -> str:
        return FAMILIES[self.family][self.wording].format(**dict(self.values))

    @property
    def work(self) -> tuple[int, tuple[tuple[str, str], ...]]:
        """What the task's result depends on: its family and values, not its wording."""
        return self.family, tuple(sorted(self.values))


def _slots(template: str) -> list[str]:
    import string

    return [f for _, f, _, _ in string.Formatter().parse(template) if f]


def task_stream(n: int, seed: int = 0) -> list[tuple[str, Task]]:
    """(kind, task) for `n` steps; see the module docstring."""
    rng = np.random.default_rng(seed)
    kinds, shares = zip(*MIX.items(), strict=True)
    done: list[Task] = []
    out: list[tuple[str, Task]] = []
    while len(out) < n:
        kind = str(rng.choice(kinds, p=shares)) if done else "new"
        if kind == "new":
            family = int(rng.integers(len(FAMILIES)))
            wording = int(rng.integers(3))
            slots = _slots(FAMILIES[family][0])
            task = Task(family, wording, tuple((s, str(rng.choice(SLOTS[s]))) for s in slots))
        else:
            before = done[int(rng.integers(len(done)))]
            if kind == "repeat":
                task = before
            elif kind == "paraphrase":
                others = [w for w in range(3) if w != before.wording]
                task = Task(before.family, int(rng.choice(others)), before.values)
            else:
                values = list(before.values)
                j = int(rng.integers(len(values)))
                slot, value = values[j]
                values[j] = (slot, str(rng.choice([v for v in SLOTS[slot] if v != value])))
                task = Task(before.family, before.wording, tuple(values))
        out.append((kind, task))
        done.append(task)
    return out


def run_cache_eval(
    n: int = 2000,
    seed: int = 0,
    bar: float = DEFAULT_BAR,
    bars: tuple[float, ...] = (0.75, 0.80, 0.85, 0.90, 0.95),
    embedder: Embedder | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The stream through a fresh cache at `bar` (the headline) and at each of `bars`, and
    through the same cache without its value test (what meaning alone would return)."""
    say = progress or (lambda line: print(f"[cache] {line}", file=sys.stderr, flush=True))
    embedder = embedder or OnnxEmbedder()
    stream = task_stream(n, seed)
    memo: dict[str, np.ndarray] = {}

    class _Memo:  # one embedding per distinct text for all the runs below
        dim = embedder.dim
        version = embedder.version

        def embed(self, texts: list[str]) -> np.ndarray:
            missing = [t for t in texts if t not in memo]
            if missing:
                for t, v in zip(missing, embedder.embed(missing), strict=True):
                    memo[t] = v
            return np.stack([memo[t] for t in texts])

    cached = _Memo()
    cached.embed(sorted({t.text for _, t in stream}))
    runs = {}
    for b in sorted({bar, *bars}):
        runs[f"{b:.2f}"] = _run(stream, ResultCache(cached, bar=b), values=True)  # type: ignore[arg-type]
        say(f"bar {b:.2f}: {runs[f'{b:.2f}']['summary']}")
    meaning_only = _run(stream, ResultCache(cached, bar=bar), values=False)  # type: ignore[arg-type]
    head = runs[f"{bar:.2f}"]
    return {
        "work_avoided": head["work_avoided"],
        "false_hit_rate": head["false_hit_rate"],
        "near_miss_false_hit_rate": head["near_miss_false_hit_rate"],
        "bar": bar,
        "counts": head["counts"],
        "by_bar": {b: r["summary"] | {"counts": r["counts"]} for b, r in runs.items()},
        "without_value_test": meaning_only["summary"],
        "seed_figure_to_beat": {"work_avoided": 0.45, "source": "../shared/seed-report.md"},
        "stream": {"tasks": n, "mix": MIX, "families": len(FAMILIES), "seed": seed},
        "embedding_model": embedder.version,
    }


def _run(stream: list[tuple[str, Task]], cache: ResultCache, *, values: bool) -> dict[str, Any]:
    caller = Caller("eval-cache", "agent")
    done: set[tuple[int, tuple[tuple[str, str], ...]]] = set()
    result_of: dict[str, tuple[int, tuple[tuple[str, str], ...]]] = {}
    counts: Counter[str] = Counter()
    for kind, task in stream:
        duplicate = task.work in done
        found = cache.lookup(caller, task.text) if values else _meaning_only(cache, caller, task)
        hit = found.outcome == "hit" and found.result is not None
        correct = hit and result_of[found.result.result_id] == task.work  # type: ignore[union-attr]
        label = "duplicate" if duplicate else "not_duplicate"
        counts[f"{label}.{found.outcome}"] += 1
        counts[f"{kind}.{found.outcome}"] += 1
        if hit and not correct:
            counts[f"{label}.wrong_hit"] += 1
            counts[f"{kind}.wrong_hit"] += 1
        if hit and correct:
            counts[f"{label}.correct_hit"] += 1
        counts[label] += 1
        counts[kind] += 1
        if not correct:  # do the work, publish the result
            entry = cache.publish(caller, task.text, f"result of {task.work}", "verified")
            result_of[entry.result_id] = task.work
            done.add(task.work)

    def share(a: str, b: str) -> float:
        return round(counts[a] / counts[b], 4) if counts[b] else 0.0

    work_avoided = share("duplicate.correct_hit", "duplicate")
    false_hits = share("not_duplicate.wrong_hit", "not_duplicate")
    near_miss = share("near_miss.wrong_hit", "near_miss")
    return {
        "work_avoided": work_avoided,
        "false_hit_rate": false_hits,
        "near_miss_false_hit_rate": near_miss,
        "counts": dict(sorted(counts.items())),
        "summary": {
            "work_avoided": work_avoided,
            "false_hit_rate": false_hits,
            "near_miss_false_hit_rate": near_miss,
            "all_work_avoided": round(counts["duplicate.correct_hit"] / len(stream), 4),
        },
    }


def _meaning_only(cache: ResultCache, caller: Caller, task: Task):
    """The nearest visible result above the bar, values ignored (the ablation)."""
    from memstream.retrieval.result_cache import Lookup

    tenant = cache._tenants.get(caller.tenant)
    if tenant is None or tenant.vectors is None:
        return Lookup("miss")
    scores = tenant.vectors @ cache.embedder.embed([task.text])[0]
    i = int(np.argmax(scores))
    if scores[i] >= cache.bar:
        return Lookup("hit", tenant.entries[i], float(scores[i]))
    return Lookup("miss", None, float(scores[i]))
