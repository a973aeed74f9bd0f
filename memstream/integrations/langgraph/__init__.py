"""LangGraph's long-term memory kept in memstream: `MemstreamStore`, a `BaseStore`
(store.py), whose items map onto memstream memories as mapping.py says."""

from memstream.integrations.langgraph.mapping import key_tag, namespace_of, topic_of
from memstream.integrations.langgraph.store import MemstreamStore

__all__ = ["MemstreamStore", "key_tag", "namespace_of", "topic_of"]
