"""Hybrid retrieval over the memory store: dense + lexical fusion, recency, usefulness."""

from memstream.retrieval.ranking import RankingWeights, ScoredMemory, rank
from memstream.retrieval.search import Retriever

__all__ = ["RankingWeights", "Retriever", "ScoredMemory", "rank"]
