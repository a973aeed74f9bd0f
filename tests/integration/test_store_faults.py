"""Store faults for real: a full disk (a small tmpfs filled by a ballast file) under a
store and under a worker's store. The write waits, /healthz and /metrics say so, nothing is
dead-lettered or lost, and the backlog drains once the disk is freed. Mounting a tmpfs
needs root (CAP_SYS_ADMIN): elsewhere these tests skip, saying so."""

from __future__ import annotations

import base64
import errno
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from memstream.bench.store_faults import Ballast, MountUnavailable, run_store_faults, tmpfs
from memstream.broker import BrokerHandle
from memstream.models.compression import CODEC_NAME, encode_vector
from memstream.schemas.events import Indexed, IndexedPayload
from memstream.store import open_store
from memstream.store.faults import StoreStatus, free_bytes, store_fault
from memstream.store.sink import open_when_available, write_isolated

MIB = 1_048_576


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    try:
        with tmpfs(tmp_path / "disk", 64) as mount:
            yield mount
    except MountUnavailable as err:
        pytest.skip(f"no full-disk fault here: {err}")


def _records(n: int, start: int = 0) -> list[Indexed]:
    rng = np.random.default_rng(start)
    return [
        Indexed(
            tenant="t",
            agent_id="a",
            scope="tenant",
            payload=IndexedPayload(
                source_kind="memory",
                text=f"memory {i}: the billing queue drained after the replica caught up",
                topic="billing",
                vector_codec=CODEC_NAME,
                vector_b64=base64.b64encode(
                    encode_vector(rng.standard_normal(384).astype(np.float32))
                ).decode(),
                usefulness=0.5,
                novelty=0.5,
                features=[0.0],
                models={"embedding": "test"},
            ),
        )
        for i in range(start, start + n)
    ]


def _write_through_a_full_disk(store, mount: Path, leave_first: int) -> dict:  # type: ignore[no-untyped-def]
    """Fill the disk (to `leave_first` bytes free, then to the last byte), write a batch
    meanwhile, free the disk: the write waits, then lands."""
    assert write_isolated(store, _records(20)) == [None] * 20
    ballast = Ballast(mount)
    ballast.fill(leave_first)
    status = StoreStatus(metrics=False)
    out: dict = {}
    writer = threading.Thread(
        target=lambda: out.update(
            outcomes=write_isolated(store, _records(30, 100), status=status, max_wait_s=1.0)
        )
    )
    writer.start()
    deadline = time.monotonic() + 20
    while status.up and time.monotonic() < deadline:
        time.sleep(0.05)
    out["down"] = status.snapshot()
    out["ballast_stopped_by"] = ballast.fill(0)
    assert free_bytes(mount) == 0
    time.sleep(2.5)  # a few retries against a disk with no byte free
    out["still_waiting"] = writer.is_alive()
    out["count_while_full"] = store.count()
    ballast.remove()
    writer.join(30)
    out["up_after"] = status.up
    out["count_after"] = store.count()
    return out


def test_edge_store_waits_out_a_full_disk(small_disk: Path) -> None:
    store = open_store(str(small_disk / "store"), min_free_bytes=16 * MIB)
    try:
        out = _write_through_a_full_disk(store, small_disk, leave_first=8 * MIB)
    finally:
        store.close()
    assert out["down"]["store"] == "unavailable" and "No space left" in out["down"]["error"]
    assert "No space left on device" in out["ballast_stopped_by"]  # the disk really was full
    assert out["still_waiting"] and out["count_while_full"] == 20  # reads still worked
    assert out["outcomes"] == [None] * 30 and out["up_after"] and out["count_after"] == 50


def test_server_store_waits_out_a_full_disk(small_disk: Path) -> None:
    """`QdrantServerStore` on qdrant-client's local mode (SQLite under the tmpfs): the
    kernel's own ENOSPC, which SQLite reports as "database or disk is full" while reads
    answer; it used to be dead-lettered `store_error`, record by record."""
    store = open_store(f"qdrant-local:{small_disk / 'store'}")
    try:
        out = _write_through_a_full_disk(store, small_disk, leave_first=0)
    finally:
        store.close()
    assert out["down"]["store"] == "unavailable"
    assert "database or disk is full" in out["down"]["error"]
    assert out["still_waiting"] and out["count_while_full"] == 20
    assert out["outcomes"] == [None] * 30 and out["up_after"] and out["count_after"] == 50


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


def test_a_store_on_a_read_only_file_system_is_waited_for(tmp_path: Path) -> None:
    """A read-only file system (what ext4 remounts itself as on I/O errors; here a
    read-only bind mount): opening the Edge store fails with EROFS, a store fault, so the
    worker's start waits for it instead of crashing, and goes on once it is writable."""
    rw, ro = tmp_path / "rw", tmp_path / "ro"
    rw.mkdir()
    ro.mkdir()
    store = open_store(str(rw / "store"), min_free_bytes=1)
    assert write_isolated(store, _records(5)) == [None] * 5
    store.close()
    if not (_mount("--bind", str(rw), str(ro)) and _mount("-o", "remount,bind,ro", str(ro))):
        subprocess.run(["umount", str(ro)], capture_output=True)
        pytest.skip("no read-only bind mount here (needs root or CAP_SYS_ADMIN)")
    try:
        with pytest.raises(OSError) as err:
            open_store(str(ro / "store"), min_free_bytes=1)
        assert err.value.errno == errno.EROFS and store_fault(err.value)
        tries: list[float] = []

        def writable_again(seconds: float) -> None:
            tries.append(seconds)
            if len(tries) == 2:
                assert _mount("-o", "remount,bind,rw", str(ro))

        store = open_when_available(
            lambda: open_store(str(ro / "store"), min_free_bytes=1), sleep=writable_again
        )
        try:
            assert tries == [0.5, 1.0] and store.count() == 5
            assert write_isolated(store, _records(3, 10)) == [None] * 3
        finally:
            store.close()
    finally:
        subprocess.run(["umount", str(ro)], capture_output=True)


def test_a_worker_whose_store_disk_fills_mid_stream_loses_nothing(topics: BrokerHandle) -> None:
    """The bench's run, small: a worker (its own group, its store on a tmpfs) indexes a
    steady stream; the disk fills for 6 s, then is freed. /healthz is 503 with the error
    meanwhile, /metrics says `memstream_store_up 0`, the group commits nothing it has not
    written, and every acknowledged memory ends in the store and on `memstream.indexed`.
    (Duplicates on `indexed` are not asserted: the session's worker indexes these events
    too, on the same topic.)"""
    try:
        result = run_store_faults(
            "edge",
            120,
            rate=20,
            fault_s=6,
            bootstrap=topics.bootstrap,
            worker_env={"MEMSTREAM_EMBEDDER": "static"},  # starts in seconds, not 15
        )
    except MountUnavailable as err:
        pytest.skip(f"no full-disk fault here: {err}")
    fault = result["fault"]
    assert result["acknowledged"] == result["published"] == 120, result
    assert result["lost"] == 0 and result["dead_lettered"] == 0, result
    assert result["indexed"] == 120 and result["duplicated"]["store_points_beyond_ids"] == 0
    assert result["drained"], result
    assert fault["healthz_during"]["status"] == "degraded", fault
    assert fault["healthz_during"]["store"] == "unavailable" and fault["healthz_during"]["since"]
    assert fault["samples_degraded"] >= 1 and fault["samples_store_up_0"] >= 1, fault
    assert fault["free_during_bytes"] == 0, fault
    assert fault["committed_at_fault_end"] <= fault["indexed_at_fault_end"], fault
    assert fault["healthz_ok_after_free_s"] is not None, fault
    assert result["worker"]["metrics_final"]["memstream_store_up"] == 1.0
    assert result["worker"]["metrics_final"]["memstream_store_write_retries_total"] >= 1
    assert result["worker"]["log_tracebacks"] == 0
