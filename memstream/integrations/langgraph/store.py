"""LangGraph's long-term memory kept in memstream: `MemstreamStore`, a `BaseStore`.

A graph compiled with `store=MemstreamStore(url, token)` reads and writes shared memstream
memories, so what one agent's graph puts, another agent's graph (or any memstream client)
can find by meaning. It speaks the HTTP API through the SDK (`HttpClient` for `batch`,
`AsyncHttpClient` for `abatch`), so the bearer token decides everything about access: its
tenant is the only one the store sees, two tenants' stores never see each other, and
`scope` decides who inside the tenant may read what it writes.

    store = MemstreamStore("http://127.0.0.1:8000", token)
    graph = builder.compile(store=store)

The mapping of items onto memories is in `mapping.py`.

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
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from langgraph.store.base import (
    BaseStore,
    GetOp,
    IndexConfig,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
    validate_op_namespace,
)

from memstream.integrations.langgraph.mapping import (
    CREATED,
    INDEXED,
    KEY,
    MAX_HITS,
    MAX_SEARCH_TOPICS,
    MAX_SUPERSEDES,
    PAGE,
    RATE_LIMIT_RETRIES,
    VALUE,
    _is_item,
    _item,
    _micros,
    _namespace_matches,
    _newest,
    _plain,
    key_tag,
    matches,
    memory_text,
    namespace_of,
    topic_of,
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

T = TypeVar("T")


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
    """A LangGraph `BaseStore` whose items are memstream memories (see mapping.py
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
