"""LangGraph's long-term memory kept in memstream: `MemstreamStore`, a `BaseStore`.

A graph compiled with `store=MemstreamStore(url, token)` reads and writes shared memstream
memories, so what one agent's graph puts, another agent's graph (or any memstream client)
can find by meaning. It speaks the HTTP API through the SDK (`HttpClient` for `batch`,
`AsyncHttpClient` for `abatch`), so the bearer token decides everything about access: its
tenant is the only one the store sees, two tenants' stores never see each other, and
`scope` decides who inside the tenant may read what it writes.

    store = MemstreamStore("http://127.0.0.1:8000", token)
    graph = builder.compile(store=store)

The mapping, one LangGraph item = one memory:

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

Operations:

- `put` of a new key adds a memory; of an existing key, adds the new version with
  `supersedes=[old ids]` and then deletes the old ones; `put(..., None)`/`delete` deletes
  them. memstream lets only a memory's author (or an admin token) delete it, so deleting
  another agent's item raises `Forbidden`; an overwrite still supersedes it.
- With `wait=True` (the default) a put returns once the memory is readable and a delete
  once it is gone (memstream indexes asynchronously, in about 0.1-2 s), so the next read
  sees the write as LangGraph expects. `wait=False` returns as soon as memstream accepted
  the event.
- `get` lists the namespace's topic with the key's tag and returns the newest version that
  is still valid (not superseded).
- `search(prefix, query=...)` runs memstream's hybrid search (semantic + lexical) narrowed
  to every visible topic under the prefix (`GET /v1/topics`; in groups of 32, merged by
  score), reads each hit's value, and applies `filter` client-side, over-fetching for it
  (at most 100 hits are ranked, so `offset + limit` beyond that find nothing more).
  `SearchItem.score` is memstream's score. Items put with `index=False` are left out of
  query searches (they have no vector in LangGraph's sense) but found without a query.
  Without a query it lists the topics' memories, newest `updated_at` first.
- `filter`: equality on value fields (nested dicts and lists compared as JSON), and the
  operators `$eq`, `$ne`, `$gt`, `$gte`, `$lt`, `$lte` (numbers; a value that is no number
  does not match).
- `list_namespaces` reads the caller's visible topics (`GET /v1/topics`, exact counts; the
  1000 largest topics) and applies prefix/suffix (with `*` wildcards), `max_depth`, `limit`
  and `offset`.
- TTL (`supports_ttl = True`): `put(..., ttl=minutes)` becomes memstream's `ttl` in
  seconds, and `ttl=TTLConfig(default_ttl=...)` in the constructor applies to puts that
  give none. memstream hides an expired memory from every read at once and deletes it
  later. Its expiry is fixed when written: reads do not refresh it (`refresh_ttl` and
  `refresh_on_read` are accepted and ignored).

What memstream does to every memory applies here too: secrets in the value, namespace or
key are replaced by placeholders, and the tenant's privacy policy redacts personal values
(e-mail addresses, phone numbers, names in prose, and look-alikes such as identifiers) in
the text, topic, tags and metadata, so a value may come back changed. Keep personal data
out of namespaces and keys (use ids), or a redacted key is not found again; a policy may
exempt exact topics (`topics: {"lg/...": "allow"}`) or entity types.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from langgraph.store.base import (
    BaseStore,
    GetOp,
    IndexConfig,
    InvalidNamespaceError,
    Item,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
    get_text_at_path,
    validate_op_namespace,
)

from memstream.sdk.http import (
    AsyncHttpClient,
    Forbidden,
    HttpClient,
    MemoryRecord,
    NotFound,
    RateLimited,
    SearchHit,
)

__all__ = ["MemstreamStore", "key_tag", "namespace_of", "topic_of"]

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

T = TypeVar("T")


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


# --- requests: each operation is written once, as a generator of SDK calls --------------------


@dataclass(frozen=True)
class _Call:
    """One SDK call an operation needs; the sync or async driver makes it and sends back
    the result (or throws in the error). `gather` makes several at once and sends back
    their results, an exception in place of each that failed."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


Steps = Generator[_Call, Any, T]


class MemstreamStore(BaseStore):
    """A LangGraph `BaseStore` whose items are memstream memories (see the module docstring
    for the mapping). `url` and `token` are the memstream API and a bearer token;
    `index` takes LangGraph's `IndexConfig`, of which only `fields` matters (memstream
    embeds server-side: `dims` and `embed` are ignored); `ttl` is LangGraph's `TTLConfig`
    (`default_ttl` in minutes); `wait` makes each write readable before it returns."""

    supports_ttl: bool = True

    def __init__(
        self,
        url: str,
        token: str,
        *,
        scope: str = "tenant",
        index: IndexConfig | None = None,
        ttl: TTLConfig | None = None,
        wait: bool = True,
        wait_timeout: float = 30.0,
        timeout: float = 30.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.scope = scope
        self.index_config = index
        self.ttl_config = ttl
        self.wait = wait
        self.wait_timeout = wait_timeout
        self._token = token
        self._timeout = timeout
        self._client = HttpClient(self.url, token, timeout=timeout)
        self._async: AsyncHttpClient | None = None
        self._async_loop: asyncio.AbstractEventLoop | None = None

    # --- BaseStore -----------------------------------------------------------------------------

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Run the operations in order over `HttpClient`."""
        return [self._run(self._steps(op)) for op in ops]

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """Run the operations in order over `AsyncHttpClient`."""
        return [await self._arun(self._steps(op)) for op in ops]

    def close(self) -> None:
        """Close the sync client's connections (an async client needs `aclose`)."""
        self._client.close()

    async def aclose(self) -> None:
        """Close both clients' connections."""
        self._client.close()
        if self._async is not None:
            await self._async.aclose()
            self._async = None

    def __enter__(self) -> MemstreamStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> MemstreamStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- the operations ------------------------------------------------------------------------

    def _steps(self, op: Op) -> Steps[Result]:
        validate_op_namespace(op)
        if isinstance(op, GetOp):
            return self._get(op)
        if isinstance(op, PutOp):
            return self._put(op)
        if isinstance(op, SearchOp):
            return self._search(op)
        if isinstance(op, ListNamespacesOp):
            return self._list_namespaces(op)
        raise ValueError(f"unknown store operation {type(op).__name__}")

    def _versions(self, topic: str, key: str) -> Steps[list[MemoryRecord]]:
        """Every visible memory of (namespace, key): the current one, and older ones whose
        deletion is still on its way."""
        found: list[MemoryRecord] = []
        cursor = None
        while True:
            page = yield _Call(
                "list", kwargs={"topic": topic, "tags": [key_tag(key)], "cursor": cursor}
            )
            found += [m for m in page.memories if m.metadata.get(KEY, key) == key]
            if page.next_cursor is None:
                return found
            cursor = page.next_cursor

    def _get(self, op: GetOp) -> Steps[Item | None]:
        versions = yield from self._versions(topic_of(op.namespace), op.key)
        current = _newest(r for r in versions if _is_item(r))
        return _plain(_item(current, op.namespace, op.key)) if current else None

    def _put(self, op: PutOp) -> Steps[None]:
        topic = topic_of(op.namespace)
        versions = yield from self._versions(topic, op.key)
        old = [r.memory_id for r in versions]
        if op.value is None:
            for memory_id in old:
                try:
                    yield _Call("delete", (memory_id,))
                except NotFound:
                    pass  # gone already (expired, or deleted by someone else)
            if self.wait:
                for memory_id in old:
                    yield _Call("wait_gone", (memory_id,), {"timeout": self.wait_timeout})
            return None
        if op.ttl is not None and op.ttl <= 0:
            raise ValueError(f"ttl must be a positive number of minutes, not {op.ttl}")
        value = dict(op.value)
        current = _newest(r for r in versions if _is_item(r))
        metadata: dict[str, Any] = {VALUE: value, KEY: op.key, INDEXED: op.index is not False}
        if current is not None:
            # a number, not an ISO string: the privacy stage may read a date string as personal
            metadata[CREATED] = current.metadata.get(CREATED) or _micros(current.ts)
        if op.index is False or op.index is None:
            fields = (self.index_config or {}).get("fields") if op.index is None else None
        else:
            fields = list(op.index)
        new_id = yield _Call(
            "add",
            (memory_text(value, fields),),
            {
                "scope": self.scope,
                "tags": [key_tag(op.key)],
                "topic": topic,
                "metadata": metadata,
                "supersedes": old[-MAX_SUPERSEDES:],
                "ttl": op.ttl * 60 if op.ttl is not None else None,
            },
        )
        if self.wait:
            yield _Call("wait_for", (new_id,), {"timeout": self.wait_timeout})
        for memory_id in old:  # superseded already: deleting them only tidies up
            try:
                yield _Call("delete", (memory_id,))
            except (NotFound, Forbidden):
                pass
        return None

    def _topics_under(self, prefix: tuple[str, ...]) -> Steps[list[str]]:
        topics = yield _Call("topics")
        n = len(prefix)
        return sorted(
            t for t in topics if (ns := namespace_of(t)) is not None and ns[:n] == tuple(prefix)
        )

    def _search(self, op: SearchOp) -> Steps[list[SearchItem]]:
        if op.limit <= 0:
            return []
        topics = yield from self._topics_under(op.namespace_prefix)
        if not topics:
            return []  # no filter at all would search every memory: never
        if op.query:
            return (yield from self._query(op, topics))
        return (yield from self._scan(op, topics))

    def _scan(self, op: SearchOp, topics: list[str]) -> Steps[list[SearchItem]]:
        """Without a query: every current item of the topics, newest first."""
        latest: dict[tuple[str, str], MemoryRecord] = {}
        for topic in topics:
            cursor = None
            while True:
                page = yield _Call("list", kwargs={"topic": topic, "limit": PAGE, "cursor": cursor})
                for record in page.memories:
                    if not _is_item(record):
                        continue
                    slot = (topic, record.metadata[KEY])
                    if slot not in latest or _newest([latest[slot], record]) is record:
                        latest[slot] = record
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
        items = [_item(r, namespace_of(t) or (), key) for (t, key), r in latest.items()]
        if op.filter:
            items = [i for i in items if matches(i.value, op.filter)]
        items.sort(key=lambda i: i.updated_at, reverse=True)
        return items[op.offset : op.offset + op.limit]

    def _query(self, op: SearchOp, topics: list[str]) -> Steps[list[SearchItem]]:
        """With a query: memstream's ranking, each hit's value read, the filter applied."""
        assert op.query is not None
        wanted = op.offset + op.limit
        k = min(MAX_HITS, wanted * (4 if op.filter else 2))
        hits: list[SearchHit] = []
        for i in range(0, len(topics), MAX_SEARCH_TOPICS):
            hits += yield _Call(
                "search", (op.query, k), {"topics": topics[i : i + MAX_SEARCH_TOPICS]}
            )
        hits.sort(key=lambda h: -h.score)
        unique = list({h.memory_id: h for h in reversed(hits)}.values())[::-1]
        found: list[SearchItem] = []
        seen: set[tuple[tuple[str, ...], str]] = set()
        step = max(wanted, 10)
        for start in range(0, len(unique), step):
            chunk = unique[start : start + step]
            records = yield _Call("gather", ([_Call("get", (h.memory_id,)) for h in chunk],))
            for hit, record in zip(chunk, records, strict=True):
                if isinstance(record, NotFound):
                    continue  # deleted or expired since the search
                if isinstance(record, BaseException):
                    raise record
                namespace = namespace_of(record.topic)
                if (
                    namespace is None
                    or not _is_item(record)
                    or not record.metadata.get(INDEXED, True)
                ):
                    continue
                key = record.metadata[KEY]
                if (namespace, key) in seen:
                    continue
                seen.add((namespace, key))
                item = _item(record, namespace, key, hit.score)
                if not op.filter or matches(item.value, op.filter):
                    found.append(item)
            if len(found) >= wanted:
                break
        return found[op.offset : wanted]

    def _list_namespaces(self, op: ListNamespacesOp) -> Steps[list[tuple[str, ...]]]:
        topics = yield _Call("topics")
        namespaces = {ns for t in topics if (ns := namespace_of(t)) is not None}
        for condition in op.match_conditions or ():
            namespaces = {ns for ns in namespaces if _namespace_matches(ns, condition)}
        if op.max_depth is not None:
            namespaces = {ns[: op.max_depth] for ns in namespaces}
        return sorted(namespaces)[op.offset : op.offset + op.limit]

    # --- the drivers ---------------------------------------------------------------------------

    def _run(self, steps: Steps[T]) -> T:
        try:
            call = next(steps)
            while True:
                try:
                    result = self._call(call)
                except Exception as err:  # the operation may expect it (NotFound, ...)
                    call = steps.throw(err)
                else:
                    call = steps.send(result)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    async def _arun(self, steps: Steps[T]) -> T:
        try:
            call = next(steps)
            while True:
                try:
                    result = await self._acall(call)
                except Exception as err:
                    call = steps.throw(err)
                else:
                    call = steps.send(result)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    def _call(self, call: _Call) -> Any:
        if call.method == "gather":
            return [self._outcome(c) for c in call.args[0]]
        method = getattr(self._client, call.method)
        for attempt in range(RATE_LIMIT_RETRIES + 1):
            try:
                return method(*call.args, **call.kwargs)
            except RateLimited as err:
                if attempt == RATE_LIMIT_RETRIES:
                    raise
                time.sleep(min(err.retry_after or 1.0, 10.0))
        raise AssertionError("unreachable")

    def _outcome(self, call: _Call) -> Any:
        try:
            return self._call(call)
        except Exception as err:
            return err

    async def _acall(self, call: _Call) -> Any:
        if call.method == "gather":
            return await asyncio.gather(
                *(self._acall(c) for c in call.args[0]), return_exceptions=True
            )
        client = self._aclient()
        if call.method == "wait_gone":
            return await self._await_gone(client, *call.args, **call.kwargs)
        method = getattr(client, call.method)
        for attempt in range(RATE_LIMIT_RETRIES + 1):
            try:
                return await method(*call.args, **call.kwargs)
            except RateLimited as err:
                if attempt == RATE_LIMIT_RETRIES:
                    raise
                await asyncio.sleep(min(err.retry_after or 1.0, 10.0))
        raise AssertionError("unreachable")

    def _aclient(self) -> AsyncHttpClient:
        """The async client of the running event loop: an httpx pool cannot outlive the
        loop it was made in, and LangGraph may run each invocation in a loop of its own."""
        loop = asyncio.get_running_loop()
        if self._async is None or self._async_loop is not loop:
            self._async = AsyncHttpClient(self.url, self._token, timeout=self._timeout)
            self._async_loop = loop
        return self._async

    @staticmethod
    async def _await_gone(client: AsyncHttpClient, memory_id: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                await client.get(memory_id)
            except NotFound:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"memory {memory_id} still readable after {timeout} s")
            await asyncio.sleep(0.1)
