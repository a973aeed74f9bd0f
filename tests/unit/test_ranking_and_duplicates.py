from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from memstream.eval.locomo import normalise_dia_id, recall_at_k
from memstream.eval.retrieval import session_time
from memstream.models.compression import same_words, word_set
from memstream.retrieval.ranking import RankingWeights, rank
from memstream.retrieval.search import named_agents, without_agents
from memstream.store.base import Caller, Hit, StoredMemory

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _memory(
    text: str, age_days: float = 0.0, usefulness: float = 0.5, agent: str = "a"
) -> StoredMemory:
    ts = NOW - timedelta(days=age_days)
    return StoredMemory(uuid4(), "t", agent, "tenant", text, ts, ts, usefulness=usefulness)


def test_updated_values_are_not_duplicates() -> None:
    a = word_set("Alice's phone number is 555-0199.")
    assert same_words(a, word_set("alice's PHONE number is 555-0199"))
    assert not same_words(a, word_set("Alice's phone number is 555-0123."))
    assert not same_words(word_set("Alice lives in Paris"), word_set("Alice lives in Berlin"))


def test_word_sets_are_compact_and_the_word_cache_bounded() -> None:
    """Issue 14 point 5: the model stage's pool keeps a word set for each of up to 20,000
    recent memories; as frozensets of tuples they were 85 MB of worker RSS at 20k."""
    from memstream.models.linking import content_words

    text = "Caroline: I went to a LGBTQ support group yesterday and it was so powerful."
    words = word_set(text)
    assert words.dtype.name == "int64" and words.nbytes == 8 * len(words) <= 8 * 14
    assert same_words(words, word_set(text.upper())) and same_words(word_set(""), word_set(""))
    assert content_words.cache_info().maxsize <= 4096


def test_lexical_leads_and_dense_breaks_ties() -> None:
    hits = [
        Hit(_memory("lexical winner"), dense_score=0.2, sparse_score=9.0),
        Hit(_memory("dense winner"), dense_score=0.9, sparse_score=1.0),
        Hit(_memory("middle"), dense_score=0.5, sparse_score=5.0),
    ]
    ranked = rank(hits, NOW, RankingWeights(recency=0, usefulness=0))
    assert [r.memory.text for r in ranked] == ["lexical winner", "middle", "dense winner"]


def test_missing_scores_count_as_the_lowest() -> None:
    hits = [
        Hit(_memory("only dense"), dense_score=0.9),
        Hit(_memory("both"), 0.5, 3.0),
        Hit(_memory("only lexical"), None, 5.0),
    ]
    ranked = rank(hits, NOW, RankingWeights(recency=0, usefulness=0))
    assert {r.memory.text: r.lexical for r in ranked}["only dense"] == 3.0


def test_recency_orders_equally_relevant_versions() -> None:
    old, new = _memory("v1", age_days=90), _memory("v2", age_days=1)
    ranked = rank([Hit(old, 0.8, 4.0), Hit(new, 0.8, 4.0)], NOW)
    assert ranked[0].memory is new
    assert ranked[0].recency > ranked[1].recency


def test_caller_visibility_rule() -> None:
    caller = Caller("acme", "a1", frozenset({"ops"}))
    assert caller.may_see("acme", "tenant", "x") and caller.may_see("acme", "public", "x")
    assert caller.may_see("acme", "team:ops", "x") and not caller.may_see("acme", "team:hr", "x")
    assert caller.may_see("acme", "private", "a1") and not caller.may_see("acme", "private", "a2")
    assert not caller.may_see("other", "public", "x")


def test_locomo_helpers() -> None:
    assert normalise_dia_id("D:11:26") == "D11:26" and normalise_dia_id("D30:05") == "D30:5"
    assert normalise_dia_id("session 1") is None
    assert recall_at_k(["D1:1", "D1:2", "D1:3"], ("D1:2", "D9:9"), 2) == 0.5
    assert session_time("1:56 pm on 8 May, 2023", NOW) == datetime(2023, 5, 8, 13, 56, tzinfo=UTC)
    assert session_time("not a date", NOW) == NOW


def test_memories_by_the_agent_a_query_names_are_boosted() -> None:
    by_other = _memory("melanie has two cats, says caroline", agent="caroline")
    by_subject = _memory("we got another cat named bailey", agent="melanie")
    by_bot = _memory("cats are great", agent="ai")
    hits = [Hit(by_other, 0.6, 5.0), Hit(by_subject, 0.6, 4.0), Hit(by_bot, 0.1, 1.0)]
    query = "What pets does Melanie have?"
    named = named_agents(query, hits)
    assert named == frozenset({"melanie"})  # "ai" is too short to be matched as a word
    weights = RankingWeights(recency=0, usefulness=0)
    assert rank(hits, NOW, weights)[0].memory is by_other
    assert rank(hits, NOW, weights, named)[0].memory is by_subject
    assert named_agents("What did agent-7 report?", [Hit(_memory("x", agent="agent-7"))]) == {
        "agent-7"
    }
    assert not named_agents("What do cats eat?", hits)


def test_dense_query_without_the_named_agents() -> None:
    melanie = frozenset({"melanie"})
    assert without_agents("What pets does Melanie have?", melanie) == "What pets does have?"
    assert without_agents("Where is Melanie\u2019s studio?", melanie) == "Where is studio?"
    assert without_agents("Did Jon and Gina dance?", frozenset({"jon", "gina"})) == "Did and dance?"
    assert without_agents("Melanie?", melanie) == "Melanie?"  # nothing left: keep the query
    assert without_agents("What do melanies eat?", melanie) == "What do melanies eat?"
    assert without_agents("What pets?", frozenset()) == "What pets?"
