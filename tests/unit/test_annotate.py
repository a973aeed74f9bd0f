"""Tagging and linking in the model stage (no broker)."""

from __future__ import annotations

from pathlib import Path

from memstream.models.registry import HotSwapScorer, ModelRegistry
from memstream.models.static import StaticEmbedder
from memstream.models.taxonomy import TaxonomyBook
from memstream.schemas import Memory
from memstream.streams.annotate import LinkingStage, TaggingStage, may_link
from memstream.streams.enrich import ModelStage, links_event

TAXONOMY = {
    "billing": [
        "invoice totals were wrong",
        "refund the customer payment",
        "card was charged twice",
    ],
    "infra": [
        "the kafka broker ran out of disk",
        "redis cluster failover",
        "deploy the new node pool",
    ],
}


def _stage(tmp_path: Path, book: TaxonomyBook | None = None) -> ModelStage:
    embedder = StaticEmbedder()
    return ModelStage(
        embedder,
        HotSwapScorer(ModelRegistry(tmp_path / "models", "valuation")),
        tagging=TaggingStage(book or TaxonomyBook(tmp_path / "taxonomy.db"), embedder),
        linking=LinkingStage(),
    )


def _memory(
    text: str,
    tenant: str = "t",
    tags: list[str] | None = None,
    scope: str = "tenant",
    agent: str = "a",
) -> Memory:
    return Memory(
        tenant=tenant, agent_id=agent, scope=scope, payload={"text": text, "tags": tags or []}
    )


def test_memories_of_a_tenant_with_a_taxonomy_get_its_tags(tmp_path: Path) -> None:
    book = TaxonomyBook(tmp_path / "taxonomy.db")
    book.set("t", TAXONOMY)
    stage = _stage(tmp_path, book)
    records = stage.process(
        [
            _memory("the customer was charged twice for one invoice"),
            _memory("kafka broker disk is full"),
            _memory("anything", tenant="other"),
        ]
    )
    assert records[0].payload.auto_tags[0].tag == "billing"
    assert records[1].payload.auto_tags[0].tag == "infra"
    assert records[2].payload.auto_tags == []  # no taxonomy, no tags


def test_agent_tagged_memories_teach_the_tagger_and_reach_other_workers(tmp_path: Path) -> None:
    book = TaxonomyBook(tmp_path / "taxonomy.db")
    book.set("t", TAXONOMY)
    stage = _stage(tmp_path, book)
    probe = "the grafana dashboard for latency is blank"
    before = stage.process([_memory(probe)])[0].payload.auto_tags
    taught = [
        _memory(f"grafana dashboard panel {i} is blank for latency", tags=["infra"])
        for i in range(60)
    ]
    assert all(r.payload.auto_tags == [] for r in stage.process(taught))  # learned, not predicted
    after = stage.process([_memory(probe)])[0].payload.auto_tags
    assert after[0].tag == "infra" and after[0].score > next(
        t.score for t in before if t.tag == "infra"
    )
    # a second worker on the same data dir learns the same examples from the file
    other = _stage(tmp_path / "other", TaxonomyBook(tmp_path / "taxonomy.db"))
    assert other.process([_memory(probe)])[0].payload.auto_tags[0].tag == "infra"


def test_links_never_name_a_memory_a_reader_of_the_new_one_cannot_see() -> None:
    assert may_link("team:x", "a", "tenant", "b")
    assert may_link("team:x", "a", "team:x", "b")
    assert not may_link("tenant", "a", "team:x", "b")
    assert not may_link("private", "a", "private", "b")
    assert may_link("private", "a", "private", "a")
    assert not may_link("private", "a", "team:x", "a")


def test_a_memory_links_to_its_outstanding_neighbours_and_the_event_says_so(tmp_path: Path) -> None:
    stage = _stage(tmp_path)
    filler = [
        _memory(f"note {i}: {w} meeting about quarterly planning {i}")
        for i, w in enumerate("abcdefghijklmnop")
    ]
    first = _memory("the payment gateway returned 502 errors after the deploy")
    hidden = _memory(
        "the payment gateway returned 502 errors in the team channel", scope="team:x", agent="b"
    )
    records = stage.process([first, hidden, *filler])
    follow = stage.process([_memory("payment gateway 502 errors again after deploy")])[0]
    linked = {link.memory_id for link in follow.payload.links}
    assert records[0].event_id in linked
    assert records[1].event_id not in linked  # a team memory is hidden from tenant readers
    event = links_event(follow)
    assert event is not None and event.payload.memory_id == follow.event_id


def test_a_memory_processed_again_keeps_its_links_and_never_links_to_later_ones(
    tmp_path: Path,
) -> None:
    stage = _stage(tmp_path)
    filler = [
        _memory(f"note {i}: {w} meeting about quarterly planning {i}")
        for i, w in enumerate("abcdefghijklmnop")
    ]
    first = _memory("the payment gateway returned 502 errors after the deploy")
    stage.process([first, *filler])
    follow = _memory("payment gateway 502 errors again after deploy")
    once = stage.process([follow])[0].payload.links
    stage.process([_memory("payment gateway 502 errors a third time after a deploy")])
    again = stage.process([follow])[0].payload.links  # a re-read: the same links
    assert once and again == once
    # the first memory, processed again after the others, links to nothing newer than it
    assert all(
        link.memory_id != follow.event_id for link in stage.process([first])[0].payload.links
    )
