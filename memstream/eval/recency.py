"""`memstream eval recency`: facts that change over time; does the newest version win?

The generator (seeded): `entities` people, each with the attributes below; every
(person, attribute) fact gets 2-5 versions with different values, spaced 1-90 days apart,
all stored as memories of one tenant by assorted agents, mixed with every other fact's
versions. Each question ("What is <person>'s <attribute>?") is asked 0-60 days after that
fact's last version. A question passes when the top result is the newest version.

Two runs: `recency_weighting` (no links between versions: only the ranking's recency term
can tell them apart) and `supersedes` (each version names the one it replaces, so older
ones are closed bi-temporally and filtered out as not valid now).
"""

from __future__ import annotations

import random
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from memstream.models.embedding import Embedder, OnnxEmbedder
from memstream.models.registry import HotSwapScorer, ModelRegistry
from memstream.retrieval import RankingWeights, Retriever
from memstream.schemas.events import Memory
from memstream.store.base import Caller
from memstream.streams.enrich import ModelStage

FIRST = ["Alice", "Bruno", "Chen", "Dana", "Emeka", "Farah", "Goran", "Hana", "Ivan", "Jia",
         "Kofi", "Lena", "Mateo", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tara",
         "Uma", "Viktor", "Wen", "Ximena", "Yusuf", "Zoe"]  # fmt: skip
ATTRIBUTES: dict[str, tuple[str, list[str]]] = {
    "phone number": ("{p}'s phone number is {v}.", [f"+1 555 01{i:02d}" for i in range(60)]),
    "home city": ("{p} lives in {v} now.", ["Lisbon", "Osaka", "Denver", "Nairobi", "Oslo",
                  "Lima", "Hanoi", "Tunis", "Perth", "Quito", "Riga", "Seoul"]),
    "favourite food": ("{p}'s favourite food is {v}.", ["ramen", "paella", "pho", "tacos",
                       "falafel", "pierogi", "sushi", "biryani", "goulash", "ceviche"]),
    "job": ("{p} works as a {v}.", ["nurse", "pilot", "carpenter", "chemist", "teacher",
            "data engineer", "chef", "architect", "librarian", "welder"]),
    "car": ("{p} drives a {v}.", ["red Volvo", "blue Toyota", "white Tesla", "green Fiat",
            "black Ford", "silver Honda", "yellow Renault", "grey Skoda"]),
    "team": ("{p} is on the {v} team.", ["billing", "search", "payments", "infra",
             "mobile", "growth", "security", "data"]),
}  # fmt: skip


def facts(seed: int, entities: int) -> tuple[list[dict[str, Any]], datetime]:
    """Every version of every fact, oldest first per fact, and the stream's start time."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    out = []
    for person in rng.sample(FIRST, min(entities, len(FIRST))):
        for attribute, (template, values) in ATTRIBUTES.items():
            n = rng.randint(2, 5)
            chosen = rng.sample(values, n)
            t = start + timedelta(days=rng.uniform(0, 30))
            for version, value in enumerate(chosen):
                out.append(
                    {
                        "person": person,
                        "attribute": attribute,
                        "version": version,
                        "latest": version == n - 1,
                        "text": template.format(p=person, v=value),
                        "ts": t,
                        "agent": f"agent-{rng.randint(1, 6)}",
                    }
                )
                t += timedelta(days=rng.uniform(1, 90))
    return out, start


def _run(
    stream: list[dict[str, Any]],
    embedder: Embedder,
    link: bool,
    seed: int,
    weights: RankingWeights | None,
) -> dict[str, Any]:
    from memstream.store.edge import EdgeStore
    from memstream.store.sink import write_records

    rng = random.Random(seed + 1)
    tenant = "recency-eval"
    with tempfile.TemporaryDirectory(prefix="memstream-recency-") as tmp:
        stage = ModelStage(embedder, HotSwapScorer(ModelRegistry(Path(tmp) / "m", "valuation")))
        store = EdgeStore(Path(tmp) / "store")
        try:
            previous: dict[tuple[str, str], UUID] = {}
            memories, newest = [], {}
            for fact in sorted(stream, key=lambda f: f["ts"]):
                key = (fact["person"], fact["attribute"])
                supersedes = [previous[key]] if link and key in previous else []
                memory = Memory(
                    tenant=tenant,
                    agent_id=fact["agent"],
                    scope="tenant",
                    ts=fact["ts"],
                    payload={"text": fact["text"], "supersedes": supersedes},
                )
                previous[key] = memory.event_id
                memories.append(memory)
                newest[key] = (memory.event_id, fact["ts"])
            for start in range(0, len(memories), 128):
                write_records(store, stage.process(memories[start : start + 128]))
            store.optimize()
            retriever = Retriever(store, embedder, weights)
            caller = Caller(tenant, "asker")
            passed = 0
            for (person, attribute), (memory_id, last_ts) in sorted(newest.items()):
                now = last_ts + timedelta(days=rng.uniform(0, 60))
                top = retriever.search(caller, f"What is {person}'s {attribute}?", 1, now=now)
                passed += bool(top) and top[0].memory.memory_id == memory_id
            return {"questions": len(newest), "newest_first": round(passed / len(newest), 4)}
        finally:
            store.close()


def run_recency_eval(
    seed: int = 0,
    entities: int = 20,
    embedder: Embedder | None = None,
    weights: RankingWeights | None = None,
) -> dict[str, Any]:
    embedder = embedder or OnnxEmbedder()
    stream, _ = facts(seed, entities)
    return {
        "recency_weighting": _run(stream, embedder, link=False, seed=seed, weights=weights),
        "supersedes": _run(stream, embedder, link=True, seed=seed, weights=weights),
        "memories": len(stream),
        "seed": seed,
        "weights": vars(weights or RankingWeights()),
        "generator": "people x 6 attributes, 2-5 versions each 1-90 days apart; asked 0-60 days after the last",
    }
