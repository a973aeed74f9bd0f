"""An example plug-in processor: keyword tags for every indexed memory."""

from __future__ import annotations

import re
from typing import Any

from memstream.processors import processor

TAGS_TOPIC = "memstream.plugin.tags"

VOCABULARY: dict[str, frozenset[str]] = {
    "infra": frozenset(
        {"infra", "infrastructure", "server", "servers", "kubernetes", "k8s", "cluster", "network"}
    ),
    "billing": frozenset(
        {"billing", "invoice", "invoices", "payment", "payments", "refund", "subscription"}
    ),
    "deploy": frozenset({"deploy", "deployed", "deployment", "release", "rollback", "rollout"}),
    "database": frozenset({"database", "db", "postgres", "postgresql", "mysql", "sql", "query"}),
    "security": frozenset(
        {"security", "password", "credential", "credentials", "vulnerability", "cve"}
    ),
    "incident": frozenset({"incident", "outage", "downtime", "alert", "pager", "sev1"}),
}
"""Tag -> the words that earn it (lower case, whole words)."""

_WORD = re.compile(r"[a-z0-9]+")


def tags_for(text: str) -> list[str]:
    """The vocabulary tags whose words occur in `text`, sorted."""
    words = set(_WORD.findall(text.lower()))
    if "boom" in words:
        raise ValueError("the tagger refuses texts that go boom")
    return sorted(tag for tag, keywords in VOCABULARY.items() if words & keywords)


@processor("tagger", consumes="memstream.indexed", produces=TAGS_TOPIC)
def tagger(event: Any) -> dict[str, Any] | None:
    """Tag one indexed memory; other kinds (none expected on the topic) are ignored."""
    if event.kind != "indexed":
        return None
    return {
        "memory_id": str(event.event_id),
        "tenant": event.tenant,
        "tags": tags_for(event.payload.text),
    }
