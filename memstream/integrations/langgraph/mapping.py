"""How a LangGraph item maps onto a memstream memory, one item = one memory:

- namespace `("users", "u42", "prefs")` -> topic `lg/users/u42/prefs`. Labels may not hold
  `/` (nor LangGraph's own `.`, NUL, empty labels); the topic is at most 128 characters.
- key -> tag `lg-key:<key>`; a key over 57 characters or ending in whitespace becomes
  `lg-keyh:<sha256 prefix>` instead. The key itself is kept in `metadata["lg_key"]`.
- value -> `metadata["lg_value"]` (a JSON object; memstream bounds metadata to 16 levels and
  64 KiB, so a value may nest 15 levels). The memory's text, which memstream embeds and
  indexes, is rendered from the value: the fields of `put(..., index=[...])`, else the
  `fields` of the store's `index` config, else `value["text"]`, `["content"]` or
  `["memory"]` when one is a string, else the value as JSON. Several fields are joined by
  newlines into one text (memstream keeps one vector per memory). memstream merges a
  memory into an older one only with the same topic and tags (so never two keys) and
  never into one it supersedes (so never two versions of one key).
- `created_at` is kept in `metadata["lg_created_us"]` (microseconds since 1970) across overwrites; `updated_at` is
  the memory's time.
- scope: `scope` of the constructor (default `"tenant"`: every agent of the tenant shares
  the namespaces; `"private"`: this agent only; `"team:<x>"`).

What memstream does to every memory applies here too: secrets in the value, namespace or
key are replaced by placeholders, and the tenant's privacy policy redacts personal values
(e-mail addresses, phone numbers, names in prose, and look-alikes such as identifiers) in
the text, topic, tags and metadata, so a value may come back changed. Keep personal data
out of namespaces and keys (use ids), or a redacted key is not found again; a policy may
exempt exact topics (`topics: {"lg/...": "allow"}`) or entity types.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from langgraph.store.base import (
    InvalidNamespaceError,
    Item,
    MatchCondition,
    SearchItem,
    get_text_at_path,
)

from memstream.sdk.http import (
    MemoryRecord,
)

TOPIC_PREFIX = "lg/"
KEY_TAG = "lg-key:"
HASHED_KEY_TAG = "lg-keyh:"
MAX_TOPIC_CHARS = 128
MAX_TAG_CHARS = 64
MAX_TEXT_CHARS = 262_144
"""memstream's text limit."""
MAX_HITS = 100
"""The most hits one `GET /v1/search` returns."""
MAX_SEARCH_TOPICS = 32
"""The most `topic` filters one `GET /v1/search` takes."""
MAX_SUPERSEDES = 64
PAGE = 1000
RATE_LIMIT_RETRIES = 3

VALUE = "lg_value"
KEY = "lg_key"
CREATED = "lg_created_us"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
INDEXED = "lg_indexed"


# --- the mapping -------------------------------------------------------------------------------


def topic_of(namespace: tuple[str, ...]) -> str:
    """The memstream topic of a namespace; InvalidNamespaceError where none can hold it."""
    if not namespace:
        raise InvalidNamespaceError("namespace cannot be empty")
    for label in namespace:
        if "/" in label:
            raise InvalidNamespaceError(
                f"namespace label {label!r} holds a '/', which memstream topics use to "
                f"separate labels: {namespace}"
            )
    topic = TOPIC_PREFIX + "/".join(namespace)
    if len(topic) > MAX_TOPIC_CHARS:
        raise InvalidNamespaceError(
            f"namespace {namespace} makes a topic of {len(topic)} characters; memstream "
            f"topics hold at most {MAX_TOPIC_CHARS}"
        )
    return topic


def namespace_of(topic: str | None) -> tuple[str, ...] | None:
    """The namespace a topic stands for, or None for a topic this store did not make."""
    if not topic or not topic.startswith(TOPIC_PREFIX):
        return None
    labels = tuple(topic[len(TOPIC_PREFIX) :].split("/"))
    return labels if all(labels) else None


def key_tag(key: str) -> str:
    """The tag that finds a key's memories: the key itself where a tag can hold it (tags
    are at most 64 characters and lose trailing whitespace), else a hash of it."""
    tag = KEY_TAG + key
    if len(tag) <= MAX_TAG_CHARS and tag == tag.strip():
        return tag
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return (HASHED_KEY_TAG + digest)[:MAX_TAG_CHARS]


def memory_text(value: Mapping[str, Any], fields: list[str] | None) -> str:
    """What memstream embeds for an item (see the module docstring)."""
    text = ""
    if fields:
        parts = [t for path in fields for t in get_text_at_path(value, path)]
        text = "\n".join(p for p in parts if p.strip())
    else:
        for name in ("text", "content", "memory"):
            candidate = value.get(name)
            if isinstance(candidate, str) and candidate.strip():
                text = candidate
                break
    if not text.strip():
        text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return text[:MAX_TEXT_CHARS]


def matches(value: Mapping[str, Any], filter: Mapping[str, Any]) -> bool:
    """Whether an item's value passes a LangGraph search filter."""
    return all(_compare(value.get(k), expected) for k, expected in filter.items())


def _compare(actual: Any, expected: Any) -> bool:
    if isinstance(expected, Mapping):
        if any(isinstance(k, str) and k.startswith("$") for k in expected):
            return all(_operator(actual, op, operand) for op, operand in expected.items())
        if not isinstance(actual, Mapping):
            return False
        return all(_compare(actual.get(k), v) for k, v in expected.items())
    if isinstance(expected, list | tuple):
        return (
            isinstance(actual, list | tuple)
            and len(actual) == len(expected)
            and all(_compare(a, e) for a, e in zip(actual, expected, strict=True))
        )
    return bool(actual == expected)


def _operator(actual: Any, op: str, operand: Any) -> bool:
    if op == "$eq":
        return bool(actual == operand)
    if op == "$ne":
        return bool(actual != operand)
    ordered: dict[str, Callable[[float, float], bool]] = {
        "$gt": lambda a, b: a > b,
        "$gte": lambda a, b: a >= b,
        "$lt": lambda a, b: a < b,
        "$lte": lambda a, b: a <= b,
    }
    if op not in ordered:
        raise ValueError(f"unsupported filter operator {op!r}")
    if isinstance(actual, bool) or not isinstance(actual, int | float):
        return False
    try:
        return ordered[op](float(actual), float(operand))
    except (TypeError, ValueError):
        return False


def _namespace_matches(namespace: tuple[str, ...], condition: MatchCondition) -> bool:
    path = tuple(condition.path)
    if len(namespace) < len(path):
        return False
    if condition.match_type == "prefix":
        pairs = zip(namespace, path, strict=False)
    elif condition.match_type == "suffix":
        pairs = zip(reversed(namespace), reversed(path), strict=False)
    else:
        raise ValueError(f"unsupported match type {condition.match_type!r}")
    return all(want == "*" or have == want for have, want in pairs)


def _is_item(record: MemoryRecord) -> bool:
    """A current version of an item this store wrote (not superseded)."""
    return (
        record.valid_to is None
        and isinstance(record.metadata.get(VALUE), dict)
        and isinstance(record.metadata.get(KEY), str)
    )


def _newest(records: Iterable[MemoryRecord]) -> MemoryRecord | None:
    return max(records, key=lambda r: (r.ts, r.memory_id.int), default=None)


def _item(
    record: MemoryRecord, namespace: tuple[str, ...], key: str, score: float | None = None
) -> SearchItem:
    created = record.metadata.get(CREATED)
    created_at = record.ts
    if isinstance(created, int) and not isinstance(created, bool):
        created_at = EPOCH + timedelta(microseconds=created)
    return SearchItem(
        namespace=namespace,
        key=key,
        value=dict(record.metadata[VALUE]),
        created_at=created_at,
        updated_at=record.ts,
        score=score,
    )


def _micros(at: datetime) -> int:
    return (at - EPOCH) // timedelta(microseconds=1)


def _plain(item: SearchItem) -> Item:
    return Item(
        value=item.value,
        key=item.key,
        namespace=item.namespace,
        created_at=item.created_at,
        updated_at=item.updated_at,
    )
