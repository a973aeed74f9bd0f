"""The worker under faults: its supervisor, and what it indexed and stored."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from memstream.bench.faults.counts import MAX_WORKER_RESTARTS
from memstream.schemas.topics import INDEXED


class Supervisor:
    """One `memstream worker`, restarted when it exits, as `memstream up` does."""

    def __init__(self, bootstrap: str, data_dir: Path, env: dict[str, str], say: Any) -> None:
        self.bootstrap = bootstrap
        self.data_dir = data_dir
        self.env = env
        self.say = say
        self.log = data_dir / "worker.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts: list[dict[str, Any]] = []
        self.started_at = time.monotonic()

    def spawn(self) -> None:
        from memstream.services.stack import spawn_worker

        self.proc = spawn_worker(
            self.bootstrap,
            log_path=self.log,
            MEMSTREAM_DATA_DIR=str(self.data_dir),
            **self.env,
        )

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            if self.proc is None or self.proc.poll() is None:
                continue
            code = self.proc.returncode
            if len(self.restarts) >= MAX_WORKER_RESTARTS:
                raise RuntimeError(f"the worker exited {len(self.restarts) + 1} times")
            self.restarts.append({"t": round(time.monotonic() - self.started_at, 1), "exit": code})
            self.say(f"worker exited with status {code}; restarting it (as `memstream up` does)")
            await asyncio.sleep(1.0)
            self.spawn()

    def stop(self) -> int | None:
        from memstream.services.stack import stop_process

        if self.proc is None:
            return None
        code = stop_process(self.proc, timeout=30)
        self.proc = None
        return code

    def log_lines(self, levels: tuple[str, ...] = ("error", "critical")) -> dict[str, int]:
        """How often each message at `levels` appears in the worker log (JSON lines)."""
        seen: Counter[str] = Counter()
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return {}
        for line in text.splitlines():
            start = line.find("{")
            try:
                record = json.loads(line[start:]) if start >= 0 else None
            except ValueError:
                continue
            if isinstance(record, dict) and str(record.get("level", "")).lower() in levels:
                seen[str(record.get("event", ""))[:200]] += 1
        return dict(seen.most_common(20))


async def _read_indexed(
    bootstrap: str,
    wanted: set[str],
    *,
    drain_s: float,
    idle_s: float,
    settle_s: float,
    alive: Callable[[], None],
) -> list[str]:
    """Keys of every record on `indexed` from the beginning, read until every `wanted` id
    was seen (then `settle_s` more, for late duplicates), nothing new came for `idle_s`,
    or `drain_s` passed."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        INDEXED.name,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=16 * 1_048_576,
        fetch_max_bytes=64 * 1_048_576,
    )
    await consumer.start()
    keys: list[str] = []
    missing = set(wanted)
    try:
        start = last_new = time.monotonic()
        done_at: float | None = None
        while time.monotonic() - start < drain_s:
            alive()
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for messages in batches.values():
                for message in messages:
                    key = (message.key or b"").decode(errors="replace")
                    keys.append(key)
                    if key in missing:
                        missing.discard(key)
                        last_new = time.monotonic()
            now = time.monotonic()
            if not missing and done_at is None:
                done_at = now + settle_s
            if done_at is not None and now >= done_at:
                break
            if now - last_new > idle_s:
                break
        return keys
    finally:
        await consumer.stop()


def _store_ids(store_path: Path, tenant: str) -> tuple[list[str], int]:
    """Every point id the store lists for `tenant`, and its exact point count."""
    from memstream.store import open_store
    from memstream.store.base import Caller

    store = open_store(str(store_path))
    try:
        caller = Caller(tenant, "faults-reader")
        ids: list[str] = []
        start = None
        while True:
            page, start = store.page(caller, 500, start)
            ids.extend(str(m.memory_id) for m in page)
            if start is None:
                break
        return ids, store.count(tenant)
    finally:
        store.close()
