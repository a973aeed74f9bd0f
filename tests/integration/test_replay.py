"""Acceptance: the worker archives the log; after the broker is gone, a replay from the
archive rebuilds the store on a fresh broker, idempotently; plug-ins installed later catch
up on every historical event (in the worker and in a replay), and a plug-in that raises
dead-letters only its events.

Runs on its own Tansu brokers (the test stops one), not the session broker.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from memstream.broker import BrokerHandle, start_tansu
from memstream.log.archive import ArchiveReader
from memstream.log.replay import replay
from memstream.schemas import Memory
from memstream.schemas.topics import DEAD_LETTER, INDEXED, MEMORIES
from memstream.services.stack import spawn_worker, stop_process
from memstream.settings import Settings
from memstream.store.collections import CollectionSet
from memstream.streams.admin import ensure_topics
from tests.integration.conftest import read_topic

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plugin-tagger"
TAGS = "memstream.plugin.tags"
EVENTS = 500
BOOMS = 5


@pytest.fixture(scope="module")
def tagger_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plug-in pip-installed into a private --target directory."""
    tmp = tmp_path_factory.mktemp("tagger")
    source = tmp / "src"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    site = tmp / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), source],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    return site


@pytest.fixture
def tansu() -> Iterator[list[BrokerHandle]]:
    """Brokers this test starts; all stopped at the end."""
    started: list[BrokerHandle] = []
    yield started
    for handle in started:
        handle.stop()


def _pythonpath(*paths: Path) -> str:
    return os.pathsep.join([*map(str, paths), *filter(None, [os.environ.get("PYTHONPATH")])])


def _worker(bootstrap: str, data_dir: Path, log: str, *site: Path):
    env = {
        "MEMSTREAM_DATA_DIR": str(data_dir),
        "MEMSTREAM_ARCHIVE_ENABLED": "true",
        # plug-ins only where the test installs its own: never what the venv happens to hold
        "MEMSTREAM_PROCESSORS_ENABLED": "true" if site else "false",
        "MEMSTREAM_LEARNER_ENABLED": "false",
        "MEMSTREAM_LOG_LEVEL": "WARNING",
    }
    if site:
        env["PYTHONPATH"] = _pythonpath(*site)
    return spawn_worker(bootstrap, log_path=data_dir / log, **env)


async def _publish(bootstrap: str, events: list[Memory]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(MEMORIES.name, e.to_json(), key=e.agent_id.encode()) for e in events
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def _archived_ids(root: Path, topic: str, tenant: str) -> set[str]:
    ids = set()
    for record in ArchiveReader(root).read(topic):
        if record.sealed_with is not None:  # raw input: encrypted, named `<tenant>/<event id>`
            owner, _, event_id = record.sealed_with.partition("/")
            if owner == tenant:
                ids.add(event_id)
            continue
        data = json.loads(record.value or b"{}")
        if data.get("tenant") == tenant:
            ids.add(data["event_id"])
    return ids


async def _wait_archived(root: Path, tenant: str, want: set[str], timeout: float = 60) -> None:
    for _ in range(int(timeout * 4)):
        memories = await asyncio.to_thread(_archived_ids, root, MEMORIES.name, tenant)
        indexed = await asyncio.to_thread(_archived_ids, root, INDEXED.name, tenant)
        if memories >= want and indexed >= want:
            return
        await asyncio.sleep(0.25)
    raise AssertionError(
        f"archive has {len(memories)} memories, {len(indexed)} indexed of {len(want)}; is the "
        "worker archive wired (settings.archive_enabled -> attach_archive in create_app)?"
    )


def _tagged(records: list, tenant: str) -> dict[str, list[str]]:
    found = {}
    for record in records:
        data = json.loads(record.value)
        if data.get("tenant") == tenant:
            found[data["memory_id"]] = data["tags"]
    return found


def _tagger_letters(records: list, tenant: str) -> list[dict]:
    letters = [json.loads(r.value) for r in records]
    return [
        d for d in letters if d["tenant"] == tenant and d["payload"]["stage"] == "processor:tagger"
    ]


async def _read_outputs(bootstrap: str, tenant: str) -> tuple[dict[str, list[str]], list[dict]]:
    tags = await read_topic(
        bootstrap, TAGS, until=lambda rs: len(_tagged(rs, tenant)) >= EVENTS - BOOMS
    )
    dead = await read_topic(
        bootstrap, DEAD_LETTER.name, until=lambda rs: len(_tagger_letters(rs, tenant)) >= BOOMS
    )
    return _tagged(tags, tenant), _tagger_letters(dead, tenant)


def _ops(*args: str, site: Path, data_dir: Path, timeout: float = 300) -> dict:
    """`memstream replay ...` in a child process with the plug-in on its PYTHONPATH, on the
    worker's data dir (its keystore and master key: replayed memories are protected the
    same way)."""
    launcher = (
        "import typer; from memstream.cli.log_commands import register; "
        "app = typer.Typer(); register(app); app()"
    )
    done = subprocess.run(
        [sys.executable, "-c", launcher, *args],
        env={
            **os.environ,
            "PYTHONPATH": _pythonpath(site),
            "MEMSTREAM_LOG_LEVEL": "WARNING",
            "MEMSTREAM_DATA_DIR": str(data_dir),
        },
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout)


async def test_worker_archive_replays_into_a_new_store_on_a_fresh_broker(
    tmp_path: Path, tagger_site: Path, tansu: list[BrokerHandle]
) -> None:
    tenant = f"replay-{uuid.uuid4().hex[:6]}"
    events = [
        Memory(
            tenant=tenant,
            agent_id=f"agent-{i % 7}",
            payload={
                "text": (
                    f"incident {i}: the boom gate {i} jammed"
                    if i % (EVENTS // BOOMS) == 0
                    else f"note {i}: deploy {i} of the billing service used {i * 3} MB"
                )
            },
        )
        for i in range(EVENTS)
    ]
    ids = {str(e.event_id) for e in events}
    booms = {str(e.event_id) for e in events if "boom" in e.payload.text}
    assert len(booms) == BOOMS

    # 1. a worker with the archive on, and no plug-in installed yet
    first = start_tansu()
    tansu.append(first)
    await ensure_topics(first.bootstrap, partitions=3)
    data_dir = tmp_path / "worker"
    data_dir.mkdir()
    archive = data_dir / "archive"
    worker = _worker(first.bootstrap, data_dir, "worker-a.log")
    try:
        await _publish(first.bootstrap, events)
        await _wait_archived(archive, tenant, ids, timeout=120)
    finally:
        assert stop_process(worker) == 0, (data_dir / "worker-a.log").read_text()[-4000:]

    # 2. the tagger is installed later: the worker runs it in its own group, from the start
    worker = _worker(first.bootstrap, data_dir, "worker-b.log", tagger_site)
    try:
        tags, letters = await _read_outputs(first.bootstrap, tenant)
    finally:
        assert stop_process(worker) == 0, (data_dir / "worker-b.log").read_text()[-4000:]
    assert set(tags) == ids - booms
    assert {d["parent_ids"][0] for d in letters} == booms
    assert {d["payload"]["reason"] for d in letters} == {"processor_error"}

    # 3. the broker and its log are gone; a fresh one knows nothing
    first.stop()
    second = start_tansu()
    tansu.append(second)
    store = tmp_path / "store"
    summary = _ops(
        "replay",
        "--from-archive",
        str(archive),
        "--topic",
        MEMORIES.name,
        "--store",
        str(store),
        "--processors",
        "tagger",
        "--bootstrap",
        second.bootstrap,
        "--json",
        site=tagger_site,
        data_dir=data_dir,
    )
    assert summary["rejected"] == 0 and summary["processor_failures"] == BOOMS
    assert summary["memories_written"] >= EVENTS  # + the worker's probe, if any
    version = summary["version"]
    sets = CollectionSet(store)
    with sets.open(version) as opened:
        assert opened.count(tenant) == EVENTS
        codes = {str(m.memory_id): m.vector_code for m in _all(opened, tenant, ids)}
    assert set(codes) == ids

    tags, letters = await _read_outputs(second.bootstrap, tenant)
    assert set(tags) == ids - booms
    assert {d["parent_ids"][0] for d in letters} == booms
    assert all(d["payload"]["origin_topic"] == INDEXED.name for d in letters)

    # 4. the same range again changes nothing
    again = await asyncio.to_thread(
        replay,
        Settings(data_dir=data_dir),
        topics=[MEMORIES.name],
        from_archive=archive,
        store_root=store,
        into=version,
        restart=True,
        progress=False,
    )
    assert again["version"] == version and again["memories_written"] == summary["memories_written"]
    with sets.open(version) as opened:
        assert opened.count(tenant) == EVENTS
        assert {str(m.memory_id): m.vector_code for m in _all(opened, tenant, ids)} == codes
    assert sets.versions() == [version]


def _all(store, tenant: str, ids: set[str]) -> list:
    from memstream.store import Caller

    wanted = [uuid.UUID(i) for i in sorted(ids)]
    return store.get(Caller(tenant, "auditor"), wanted)


async def test_replay_from_a_topic_range_and_dead_letters_sent_round_again(
    worker: object, topics: BrokerHandle, tmp_path: Path
) -> None:
    """On the session broker: a time range of `memories` (and of `indexed`) replays only
    the events published in it; a dead letter re-published by id fails the same way again."""
    from datetime import UTC, datetime, timedelta

    from memstream.log.dead_letters import list_dead_letters, replay_dead_letters

    tenant = f"range-{uuid.uuid4().hex[:6]}"
    since = datetime.now(UTC) - timedelta(seconds=1)
    events = [
        Memory(tenant=tenant, agent_id="ranger", payload={"text": f"range fact {i}: port {i}"})
        for i in range(12)
    ]
    bad = json.loads(events[0].to_json())
    bad["event_id"] = str(uuid.uuid4())  # not a UUIDv7: invalid_fields, tenant readable
    await _publish(topics.bootstrap, events)
    producer = AIOKafkaProducer(bootstrap_servers=topics.bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(MEMORIES.name, json.dumps(bad).encode(), key=b"ranger")
    finally:
        await producer.stop()
    await read_topic(
        topics.bootstrap,
        INDEXED.name,
        until=lambda rs: sum(tenant.encode() in r.value for r in rs) >= len(events),
        timeout=120,
    )
    settings = Settings(data_dir=tmp_path / "data", batch_size=64)
    for topic in (MEMORIES.name, INDEXED.name):
        summary = await asyncio.to_thread(
            replay,
            settings,
            topics=[topic],
            start=since.isoformat(),
            bootstrap=topics.bootstrap,
            store_root=tmp_path / "store",
            progress=False,
        )
        with CollectionSet(tmp_path / "store").open(summary["version"]) as opened:
            assert opened.count(tenant) == len(events), (topic, summary)

    def mine(row: dict) -> bool:
        return row["tenant"] == tenant and row["reason"] == "invalid_fields"

    rows = []
    for _ in range(60):
        rows = [
            r for r in await asyncio.to_thread(list_dead_letters, topics.bootstrap, 0) if mine(r)
        ]
        if rows:
            break
        await asyncio.sleep(0.5)
    assert len(rows) == 1 and rows[0]["stage"] == "validate" and rows[0]["replayable"], rows
    assert rows[0]["origin_topic"] == MEMORIES.name and "event_id" in rows[0]["detail"]
    sent = await asyncio.to_thread(replay_dead_letters, topics.bootstrap, [rows[0]["id"]])
    assert sent == 1
    for _ in range(60):
        again = [
            r for r in await asyncio.to_thread(list_dead_letters, topics.bootstrap, 0) if mine(r)
        ]
        if len(again) == 2:
            break
        await asyncio.sleep(0.5)
    assert len(again) == 2 and again[1]["origin_offset"] > again[0]["origin_offset"]
