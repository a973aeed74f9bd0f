"""Store faults: which errors are the store's (retried) and which one record's (dead-
lettered), the shared status /healthz reads, and the Edge store's free-space guard."""

from __future__ import annotations

import base64
import errno
import sqlite3
import threading
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from memstream.models.compression import CODEC_NAME, encode_vector
from memstream.schemas.events import Indexed, IndexedPayload
from memstream.services.api import create_api
from memstream.services.auth import TokenStore
from memstream.store import open_store
from memstream.store.faults import (
    StoreFull,
    StoreStatus,
    ensure_writable,
    free_bytes,
    store_fault,
)
from memstream.store.sink import (
    call_retrying,
    open_when_available,
    store_healthy,
    write_isolated,
    write_records,
)


def _chained() -> Exception:
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise RuntimeError("flush failed") from inner
    except RuntimeError as outer:
        return outer


def _response(status: int, body: bytes) -> UnexpectedResponse:
    return UnexpectedResponse(status, "", body, httpx.Headers())


STORE_FAULTS = [
    OSError(errno.ENOSPC, "No space left on device"),
    OSError(errno.EDQUOT, "Disk quota exceeded"),
    OSError(errno.EIO, "Input/output error"),
    OSError(errno.EROFS, "Read-only file system"),
    StoreFull(errno.ENOSPC, "1 bytes free"),
    ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
    TimeoutError("timed out"),
    sqlite3.OperationalError("database or disk is full"),
    sqlite3.OperationalError("disk I/O error"),
    sqlite3.OperationalError("attempt to write a readonly database"),
    ResponseHandlingException(httpx.ConnectError("[Errno 111] Connection refused")),
    ResponseHandlingException(httpx.ReadTimeout("read timed out")),
    _response(503, b"Service Unavailable"),
    _response(429, b"Too many requests"),
    _response(500, b'{"status":{"error":"Service internal error: No space left on device"}}'),
    RuntimeError("Service internal error: No space left on device (os error 28)"),
    _chained(),
]

RECORD_FAULTS = [
    ValueError("expected (1, 384) vectors, got (1, 12)"),
    _response(400, b'{"status":{"error":"Wrong input: Vector dimension error"}}'),
    _response(500, b'{"status":{"error":"Service internal error: bad payload"}}'),
    KeyError("supersedes"),
    sqlite3.IntegrityError("UNIQUE constraint failed"),
    OSError(errno.EINVAL, "Invalid argument"),
]


@pytest.mark.parametrize("exc", STORE_FAULTS, ids=lambda e: f"{type(e).__name__}-{e}"[:60])
def test_infrastructure_errors_are_store_faults(exc: BaseException) -> None:
    assert store_fault(exc)


@pytest.mark.parametrize("exc", RECORD_FAULTS, ids=lambda e: f"{type(e).__name__}-{e}"[:60])
def test_errors_of_one_record_are_not_store_faults(exc: BaseException) -> None:
    assert not store_fault(exc)


def test_status_goes_down_once_counts_and_comes_back() -> None:
    status = StoreStatus(metrics=False)
    assert status.up and status.snapshot()["store"] == "ok"
    assert status.failed(OSError(errno.ENOSPC, "full"))  # the outage begins
    since = status.snapshot()["since"]
    assert not status.failed(OSError(errno.ENOSPC, "still full"))  # the same outage
    status.retried()
    snap = status.snapshot()
    assert snap["store"] == "unavailable" and snap["since"] == since
    assert snap["error"] == "OSError: [Errno 28] still full"
    assert (snap["failures"], snap["retries"]) == (2, 1)
    assert status.succeeded() is not None and status.up
    assert status.succeeded() is None  # already up
    snap = status.snapshot()
    assert (snap["store"], snap["error"], snap["since"], snap["failures"]) == ("ok", None, None, 2)


def test_status_is_consistent_under_concurrent_writers_and_readers() -> None:
    status = StoreStatus(metrics=False)
    stop = threading.Event()
    bad: list[dict] = []

    def flap() -> None:
        while not stop.is_set():
            status.failed(OSError(errno.EIO, "io"))
            status.retried()
            status.succeeded()

    def read() -> None:
        while not stop.is_set():
            snap = status.snapshot()
            if (snap["store"] == "ok") != (snap["error"] is None and snap["since"] is None):
                bad.append(snap)

    threads = [threading.Thread(target=flap) for _ in range(2)] + [threading.Thread(target=read)]
    for t in threads:
        t.start()
    threading.Event().wait(0.3)
    stop.set()
    for t in threads:
        t.join()
    assert not bad
    snap = status.snapshot()
    assert snap["failures"] == snap["retries"]


class _DiskStore:
    """A store whose reads work while its writes fail with `write_error` `fails` times:
    a full disk (reads never needed space)."""

    def __init__(self, write_error: Exception, fails: int) -> None:
        self.write_error, self.fails, self.written, self.counts = write_error, fails, [], 0

    def count(self, tenant: str | None = None) -> int:
        self.counts += 1
        return len(self.written)


def _patch_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    import memstream.store.sink as sink

    def write(store, records):  # type: ignore[no-untyped-def]
        if store.fails > 0:
            store.fails -= 1
            raise store.write_error
        if "bad" in records:
            raise ValueError("the store refused this value")
        store.written.extend(records)

    monkeypatch.setattr(sink, "write_records", write)


def test_a_full_disk_whose_reads_still_work_is_retried_not_dead_lettered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reproduction: ENOSPC while `count()` answers used to dead-letter every record
    (`store_error`) and commit past it; now the write waits for the space to come back."""
    _patch_writes(monkeypatch)
    store = _DiskStore(sqlite3.OperationalError("database or disk is full"), fails=4)
    status, slept = StoreStatus(metrics=False), []
    seen: list[bool] = []
    outcomes = write_isolated(
        store,  # type: ignore[arg-type]
        ["a", "b", "c"],  # type: ignore[list-item]
        sleep=lambda s: (slept.append(s), seen.append(status.up)),
        status=status,
    )
    assert outcomes == [None, None, None] and store.written == ["a", "b", "c"]
    assert slept == [0.5, 1.0, 2.0, 4.0]  # the batch retried whole, backoff doubling
    assert seen == [False] * 4 and status.up  # down while it waited, up once written
    assert status.snapshot()["failures"] == 4 and status.snapshot()["retries"] == 4


def test_a_record_the_healthy_store_refuses_is_still_its_dead_letter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _patch_writes(monkeypatch)
    store = _DiskStore(OSError(errno.ENOSPC, "No space left on device"), fails=1)
    status, slept = StoreStatus(metrics=False), []
    outcomes = write_isolated(
        store,  # type: ignore[arg-type]
        ["a", "bad", "c"],  # type: ignore[list-item]
        sleep=slept.append,
        status=status,
    )
    assert [type(o) for o in outcomes] == [type(None), ValueError, type(None)]
    assert store.written == ["a", "c"] and slept == [0.5]
    assert status.up  # a record's fault says nothing about the store


def test_open_when_available_waits_for_the_store_and_raises_other_errors() -> None:
    tries: list[int] = []

    def opener() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise ResponseHandlingException(httpx.ConnectError("Connection refused"))
        return "store"

    slept: list[float] = []
    assert open_when_available(opener, sleep=slept.append) == "store"  # type: ignore[arg-type,return-value]
    assert slept == [0.5, 1.0]

    def broken() -> None:
        raise ValueError("edge_config.json names another dimension")

    with pytest.raises(ValueError):
        open_when_available(broken, sleep=slept.append)  # type: ignore[arg-type]


def test_deletions_and_erasures_wait_for_the_store_and_raise_their_own_errors() -> None:
    store = _DiskStore(OSError(errno.EIO, "Input/output error"), fails=2)
    status, slept = StoreStatus(metrics=False), []

    def delete(ids: list[str]) -> int:
        if store.fails > 0:
            store.fails -= 1
            raise store.write_error
        return len(ids)

    assert call_retrying(store, delete, ["a", "b"], status=status, sleep=slept.append) == 2  # type: ignore[arg-type]
    assert slept == [0.5, 1.0] and status.up and status.snapshot()["retries"] == 2

    def refuse(ids: list[str]) -> int:
        raise ValueError("not a memory id")

    with pytest.raises(ValueError):
        call_retrying(store, refuse, ["x"], status=status, sleep=slept.append)  # type: ignore[arg-type]
    assert slept == [0.5, 1.0]


def test_free_space_check(tmp_path: Path) -> None:
    ensure_writable(tmp_path, 0)
    ensure_writable(tmp_path, 1)
    with pytest.raises(StoreFull) as err:
        ensure_writable(tmp_path, free_bytes(tmp_path) + (1 << 40))
    assert err.value.errno == errno.ENOSPC and store_fault(err.value)


def _record(i: int, code: bytes | None = None) -> Indexed:
    rng = np.random.default_rng(i)
    vector = rng.standard_normal(384).astype(np.float32)
    return Indexed(
        tenant="t",
        agent_id="a",
        scope="tenant",
        payload=IndexedPayload(
            source_kind="memory",
            text=f"memory number {i} about the billing queue",
            topic="billing",
            vector_codec=CODEC_NAME,
            vector_b64=base64.b64encode(
                code if code is not None else encode_vector(vector)
            ).decode(),
            usefulness=0.5,
            novelty=0.5,
            features=[0.0],
            models={"embedding": "test"},
        ),
    )


def test_edge_store_refuses_writes_below_its_reserve_and_the_sink_waits(tmp_path: Path) -> None:
    """A real Edge store: below `min_free_bytes` writes raise StoreFull before touching the
    memory-mapped shard (where a full disk is a SIGBUS), reads still work, the health check
    fails, and a waiting write goes through once the reserve is there again."""
    store = open_store(str(tmp_path / "store"), min_free_bytes=1)
    try:
        assert write_isolated(store, [_record(0)]) == [None]
        store.store.min_free_bytes = 1 << 60  # "the disk is full"
        with pytest.raises(StoreFull):
            write_records(store, [_record(9)])
        assert store.count() == 1 and not store_healthy(store)
        status = StoreStatus(metrics=False)

        def free_the_disk(seconds: float) -> None:
            assert not status.up
            store.store.min_free_bytes = 1

        assert write_isolated(
            store, [_record(1), _record(2)], sleep=free_the_disk, status=status
        ) == [
            None,
            None,
        ]
        assert store.count() == 3 and status.up and store_healthy(store)
    finally:
        store.close()


def test_edge_store_dead_letters_only_a_record_with_a_bad_vector(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"), min_free_bytes=1)
    try:
        status = StoreStatus(metrics=False)
        outcomes = write_isolated(
            store, [_record(0), _record(1, code=b"\x01" * 7), _record(2)], status=status
        )
        assert [o is None for o in outcomes] == [True, False, True]
        assert store.count() == 2 and status.up
    finally:
        store.close()


def test_edge_store_will_not_open_on_a_full_disk(tmp_path: Path) -> None:
    with pytest.raises(StoreFull):
        open_store(str(tmp_path / "store"), min_free_bytes=1 << 60)


async def test_healthz_is_503_with_the_error_while_the_store_fails(tmp_path: Path) -> None:
    status = StoreStatus(metrics=False)
    api = create_api(SimpleNamespace(store_status=status), TokenStore(tmp_path / "t.db"))  # type: ignore[arg-type]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api), base_url="http://test"
    ) as client:
        ok = await client.get("/healthz")
        assert ok.status_code == 200 and ok.json() == {"status": "ok"}
        status.failed(StoreFull(errno.ENOSPC, "No space left for the store"))
        down = await client.get("/healthz")
        body = down.json()
        assert down.status_code == 503
        assert (body["status"], body["store"]) == ("degraded", "unavailable")
        assert "No space left" in body["error"] and body["since"]
        assert (await client.get("/livez")).json() == {"status": "alive"}  # liveness: still up
        status.succeeded()
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        metrics = (await client.get("/metrics")).text
        for name in ("memstream_store_up", "memstream_store_failures_total"):
            assert name in metrics
        assert "memstream_store_write_retries_total" in metrics
