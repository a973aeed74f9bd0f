"""`MemstreamStore`, LangGraph's `BaseStore` over the HTTP API, against the session worker:
a real `StateGraph` whose node puts an item that a later graph run of another agent finds
by meaning; tenants that never see each other's namespaces; put/get/overwrite/delete,
filters and namespace listing as LangGraph defines them; times to live; the async path."""

from __future__ import annotations

import time
import uuid
from typing import Any, TypedDict

import pytest
from langgraph.config import get_store
from langgraph.graph import END, START, StateGraph
from langgraph.store.base import (
    BaseStore,
    GetOp,
    InvalidNamespaceError,
    ListNamespacesOp,
    MatchCondition,
    PutOp,
    SearchOp,
)

from memstream.integrations import MemstreamStore
from memstream.integrations.langgraph import key_tag, topic_of
from memstream.sdk.http import HttpClient
from tests.integration.conftest import Worker

FACTS = {
    "deploys": "Production deploys happen on Tuesdays after the change advisory board meets.",
    "oncall": "The on-call rotation hands over every Monday at 09:00 UTC.",
    "coffee": "The espresso machine on the third floor is descaled every month.",
}


def _tenant(name: str) -> str:
    return f"lg-{name}-{uuid.uuid4().hex[:6]}"


def _until(check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition never held")
        time.sleep(0.2)


class State(TypedDict, total=False):
    user: str
    query: str
    found: list[dict[str, Any]]


def _writer_graph(store: BaseStore) -> Any:
    def remember(state: State, *, store: BaseStore) -> State:
        """The store reaches the node as its `store` parameter."""
        for key, fact in FACTS.items():
            store.put(("memories", state["user"]), key, {"text": fact, "source": "handbook"})
        return {}

    builder = StateGraph(State)
    builder.add_node("remember", remember)
    builder.add_edge(START, "remember")
    builder.add_edge("remember", END)
    return builder.compile(store=store)


def _reader_graph(store: BaseStore) -> Any:
    def recall(state: State) -> State:
        """... or from `get_store()`."""
        hits = get_store().search(("memories", state["user"]), query=state["query"], limit=2)
        return {
            "found": [
                {"key": h.key, "namespace": h.namespace, "value": h.value, "score": h.score}
                for h in hits
            ]
        }

    builder = StateGraph(State)
    builder.add_node("recall", recall)
    builder.add_edge(START, "recall")
    builder.add_edge("recall", END)
    return builder.compile(store=store)


def test_a_graph_finds_what_another_graph_run_remembered(worker: Worker) -> None:
    tenant = _tenant("graph")
    with MemstreamStore(worker.url, worker.token(tenant, "writer")) as writer:
        _writer_graph(writer).invoke({"user": "u42"})
    # another agent of the tenant, another store, another run: only memstream links them
    with MemstreamStore(worker.url, worker.token(tenant, "reader")) as reader:
        out = _reader_graph(reader).invoke(
            {"user": "u42", "query": "which day of the week do we ship releases to prod?"}
        )
        found = out["found"]
        assert found, "the reader's graph found nothing"
        assert found[0]["key"] == "deploys", found
        assert found[0]["value"] == {"text": FACTS["deploys"], "source": "handbook"}
        assert found[0]["namespace"] == ("memories", "u42")
        assert isinstance(found[0]["score"], float)
        assert len(found) == 2 and found[0]["score"] >= found[1]["score"]
        # a namespace of another user holds none of it
        other = _reader_graph(reader).invoke({"user": "u7", "query": "release day"})
        assert other["found"] == []


def test_two_tenants_never_see_each_other(worker: Worker) -> None:
    a = MemstreamStore(worker.url, worker.token(_tenant("a"), "agent"))
    b = MemstreamStore(worker.url, worker.token(_tenant("b"), "agent"))
    a.put(
        ("team", "notes"), "plan", {"text": "The migration to the new billing cluster is in May."}
    )
    a.put(("only-a", "drafts"), "memo", {"text": "Quarterly roadmap draft for the billing team."})
    b.put(("team", "notes"), "plan", {"text": "The office picnic is planned for late June."})

    assert a.get(("team", "notes"), "plan").value["text"].startswith("The migration")
    assert b.get(("team", "notes"), "plan").value["text"].startswith("The office picnic")
    assert b.get(("only-a", "drafts"), "memo") is None
    assert a.get(("only-a", "drafts"), "memo") is not None

    hits = b.search((), query="billing cluster migration roadmap", limit=10)
    assert [h.value["text"] for h in hits] == ["The office picnic is planned for late June."]
    assert b.search(("only-a",), query="roadmap") == []
    assert b.search(("only-a",)) == []

    assert a.list_namespaces() == [("only-a", "drafts"), ("team", "notes")]
    assert b.list_namespaces() == [("team", "notes")]

    b.delete(("only-a", "drafts"), "memo")  # nothing of b's there: a's item stays
    assert a.get(("only-a", "drafts"), "memo") is not None
    a.close()
    b.close()


def test_put_get_overwrite_delete_and_namespaces(worker: Worker) -> None:
    token = worker.token(_tenant("crud"), "agent")
    store = MemstreamStore(worker.url, token)
    raw = HttpClient(worker.url, token)
    ns = ("docs", "a")

    assert store.get(ns, "k") is None
    store.put(ns, "k", {"text": "The build cache lives on the shared NFS volume.", "rev": 1})
    first = store.get(ns, "k")
    assert first is not None and first.value["rev"] == 1 and first.key == "k"
    assert first.namespace == ns

    store.put(ns, "k", {"text": "The build cache moved to object storage.", "rev": 2})
    second = store.get(ns, "k")
    assert second is not None and second.value == {
        "text": "The build cache moved to object storage.",
        "rev": 2,
    }
    assert second.created_at == first.created_at and second.updated_at > first.updated_at
    # the old version is superseded at once and deleted soon: one memory stays
    _until(lambda: len(raw.list(topic=topic_of(ns), tags=[key_tag("k")]).memories) == 1)
    assert [i.value["rev"] for i in store.search(ns)] == [2]

    # the same value twice, under two keys and as an overwrite: never merged away
    same = {"text": "Rotate the signing keys every ninety days."}
    store.put(ns, "dup-1", same)
    store.put(ns, "dup-2", same)
    store.put(ns, "dup-2", same)
    assert store.get(ns, "dup-1").value == same
    assert store.get(ns, "dup-2").value == same

    # a long key, and one ending in a space, still address one item each
    long_key = "k" * 100
    store.put(ns, long_key, {"text": "A key longer than a tag."})
    store.put(ns, "spaced ", {"text": "A key with a trailing space."})
    assert store.get(ns, long_key).value["text"] == "A key longer than a tag."
    assert store.get(ns, "spaced ").value["text"] == "A key with a trailing space."
    assert store.get(ns, "spaced") is None

    # filters, client-side, with LangGraph's operators
    for n, color in enumerate(["red", "blue", "red", "green"]):
        store.put(("docs", "b"), f"item-{n}", {"n": n, "color": color, "text": f"item {n}"})
    assert {i.key for i in store.search(("docs", "b"), filter={"color": "red"})} == {
        "item-0",
        "item-2",
    }
    assert {i.key for i in store.search(("docs",), filter={"n": {"$gte": 2}})} == {
        "item-2",
        "item-3",
    }
    assert {i.key for i in store.search(("docs", "b"), filter={"color": {"$ne": "red"}})} == {
        "item-1",
        "item-3",
    }
    newest_first = store.search(("docs", "b"), limit=2, offset=1)
    assert [i.key for i in newest_first] == ["item-2", "item-1"]
    ranked = store.search(("docs", "b"), query="item", filter={"n": {"$lt": 1}})
    assert [i.key for i in ranked] == ["item-0"]

    # index: fields of the value make the text; index=False keeps it out of query search
    store.put(("docs", "c"), "t", {"title": "Kubernetes upgrade runbook", "body": 7}, ["title"])
    record = raw.list(topic=topic_of(("docs", "c"))).memories[0]
    assert record.text == "Kubernetes upgrade runbook"  # the index fields, nothing added
    store.put(("docs", "c"), "hidden", {"text": "Kubernetes secrets are mounted read-only."}, False)
    assert "hidden" not in {i.key for i in store.search(("docs", "c"), query="Kubernetes")}
    assert "hidden" in {i.key for i in store.search(("docs", "c"))}

    # namespaces
    store.put(("docs", "a", "x"), "deep", {"text": "Nested namespace item."})
    everything = [("docs", "a"), ("docs", "a", "x"), ("docs", "b"), ("docs", "c")]
    assert store.list_namespaces() == everything
    assert store.list_namespaces(prefix=("docs", "a")) == [("docs", "a"), ("docs", "a", "x")]
    assert store.list_namespaces(suffix=("x",)) == [("docs", "a", "x")]
    assert store.list_namespaces(prefix=("docs", "*", "x")) == [("docs", "a", "x")]
    assert store.list_namespaces(max_depth=1) == [("docs",)]
    assert store.list_namespaces(max_depth=2) == [("docs", "a"), ("docs", "b"), ("docs", "c")]
    assert store.list_namespaces(limit=2, offset=1) == everything[1:3]

    # delete: get, search and list_namespaces forget it
    store.delete(("docs", "a", "x"), "deep")
    assert store.get(("docs", "a", "x"), "deep") is None
    assert store.search(("docs", "a", "x")) == []
    assert ("docs", "a", "x") not in store.list_namespaces()
    store.put(ns, "k", None)  # type: ignore[arg-type]
    assert store.get(ns, "k") is None
    assert "k" not in {i.key for i in store.search(ns, query="build cache")}

    with pytest.raises(InvalidNamespaceError):
        store.put(("a/b",), "k", {"text": "x"})
    with pytest.raises(InvalidNamespaceError):
        store.put(("n" * 130,), "k", {"text": "x"})
    with pytest.raises(InvalidNamespaceError):
        store.get(("a.b",), "k")
    store.close()
    raw.close()


def test_items_expire_after_their_ttl(worker: Worker) -> None:
    token = worker.token(_tenant("ttl"), "agent")
    store = MemstreamStore(worker.url, token)
    ns = ("scratch",)
    store.put(ns, "brief", {"text": "The temporary VPN password rotation notice."}, ttl=5 / 60)
    store.put(ns, "keep", {"text": "The permanent VPN gateway address notice."})
    started = time.monotonic()
    assert store.get(ns, "brief") is not None
    assert "brief" in {i.key for i in store.search(ns, query="VPN notice")}
    raw = HttpClient(worker.url, token)
    record = raw.list(topic=topic_of(ns), tags=[key_tag("brief")]).memories[0]
    assert record.expires_at is not None
    assert 3 < (record.expires_at - record.ts).total_seconds() <= 5.5
    raw.close()

    time.sleep(max(0.0, 5.5 - (time.monotonic() - started)))
    assert store.get(ns, "brief") is None
    assert "brief" not in {i.key for i in store.search(ns, query="VPN notice")}
    assert "brief" not in {i.key for i in store.search(ns)}
    assert store.get(ns, "keep") is not None

    # the constructor's TTLConfig: puts that name no ttl expire; ttl=None does not
    short = MemstreamStore(worker.url, token, ttl={"default_ttl": 3 / 60})
    short.put(ns, "default", {"text": "Expires by the store's default."})
    short.put(ns, "forever", {"text": "Never expires though the store has a default."}, ttl=None)
    assert short.get(ns, "default") is not None
    _until(lambda: short.get(ns, "default") is None, timeout=15)
    assert short.get(ns, "forever") is not None
    store.close()
    short.close()


async def test_the_async_path(worker: Worker) -> None:
    tenant = _tenant("async")
    store = MemstreamStore(worker.url, worker.token(tenant, "agent"))
    ns = ("async", "notes")
    await store.aput(ns, "a", {"text": "The staging database is restored from snapshots nightly."})
    await store.aput(ns, "b", {"text": "Grafana dashboards are provisioned from the ops repo."})
    item = await store.aget(ns, "a")
    assert item is not None and item.value["text"].startswith("The staging database")
    hits = await store.asearch(ns, query="how is the staging DB backed up?", limit=1)
    assert [h.key for h in hits] == ["a"]
    assert await store.alist_namespaces(prefix=("async",)) == [ns]

    results = await store.abatch(
        [
            PutOp(ns, "c", {"text": "Alerts page the on-call phone after five minutes."}),
            GetOp(ns, "c"),
            SearchOp(ns, query="paging delay for alerts", limit=1),
            ListNamespacesOp(match_conditions=(MatchCondition("prefix", ("async",)),)),
            PutOp(ns, "b", None),
            GetOp(ns, "b"),
        ]
    )
    assert results[0] is None
    assert results[1] is not None and results[1].key == "c"
    assert [h.key for h in results[2]] == ["c"]
    assert results[3] == [ns]
    assert results[4] is None and results[5] is None

    await store.aput(ns, "a", {"text": "The staging database is restored hourly now."})
    item = await store.aget(ns, "a")
    assert item is not None and item.value["text"].endswith("hourly now.")
    await store.adelete(ns, "a")
    assert await store.aget(ns, "a") is None

    # an async graph: the node awaits the store it is given
    async def recall(state: State, *, store: BaseStore) -> State:
        found = await store.asearch(ns, query=state["query"], limit=1)
        return {"found": [{"key": h.key} for h in found]}

    builder = StateGraph(State)
    builder.add_node("recall", recall)
    builder.add_edge(START, "recall")
    graph = builder.compile(store=store)
    out = await graph.ainvoke({"query": "when does an alert page someone?"})
    assert out["found"] == [{"key": "c"}]
    await store.aclose()
