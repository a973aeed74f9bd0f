"""Adapters that let agent frameworks keep their memory in memstream.

Each one is built on the HTTP SDK (`memstream.sdk.http`), so what it may read and write is
decided by its bearer token, exactly as for any other agent. The adapters load lazily:
importing this package imports no framework.

    from memstream.integrations import MemstreamStore  # LangGraph's BaseStore
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from memstream.integrations.langgraph import MemstreamStore

__all__ = ["MemstreamStore"]


def __getattr__(name: str) -> Any:
    if name == "MemstreamStore":
        from memstream.integrations.langgraph import MemstreamStore

        return MemstreamStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
