"""Replay from an archive (no broker), its checkpoint and resume, and the dead-letter helpers."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from memstream.log.archive import ArchiveWriter
from memstream.log.dead_letters import matches, original_of, parse_row, select
from memstream.log.replay import (
    CHECKPOINT_FILE,
    Checkpoint,
    Position,
    ReplayError,
    _Pipeline,
    in_range,
    parse_position,
    replay,
)
from memstream.processors import RawMessage
from memstream.schemas.events import Memory
from memstream.schemas.topics import DEAD_LETTER, INDEXED, MEMORIES
from memstream.settings import Settings
from memstream.store.collections import CollectionSet
from memstream.streams.validate import dead_letter

T0 = 1_795_000_000_000


def memories(n: int, tenant: str = "acme") -> list[Memory]:
    return [
        Memory(tenant=tenant, agent_id=f"a{i % 3}", payload={"text": f"fact {i}: node {i} ok"})
        for i in range(n)
    ]


def write_archive(root: Path, topic: str, values: list[bytes], partitions: int = 2) -> None:
    offsets = [0] * partitions
    with ArchiveWriter(root, fsync=False) as writer:
        for i, value in enumerate(values):
            p = i % partitions
            writer.append(topic, p, offsets[p], T0 + i, b"k", value)
            offsets[p] += 1


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", embedder="static", batch_size=16)


def test_positions() -> None:
    assert parse_position("beginning") == Position() == parse_position(None)
    assert parse_position("end").edge
    assert parse_position("120") == Position(offset=120)
    assert parse_position("2026-11-25T10:00:00Z").time_ms == 1_795_600_800_000
    with pytest.raises(ReplayError, match="ISO time"):
        parse_position("yesterday")
    msg = RawMessage("t", 0, 5, None, b"x", 1000)
    assert in_range(msg, Position(offset=5), Position(offset=6))
    assert not in_range(msg, Position(offset=6), Position())
    assert not in_range(msg, Position(), Position(time_ms=1000))
    assert in_range(msg, Position(time_ms=1000), Position())


def test_checkpoint_round_trip_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / CHECKPOINT_FILE
    cp = Checkpoint(path, {"kind": "archive"})
    cp.advance([RawMessage("t", 0, 3, None, b""), RawMessage("t", 1, 9, None, b"")])
    cp.advance([RawMessage("t", 0, 2, None, b"")])  # never goes back
    cp.save()
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_FILE]
    loaded = Checkpoint.load(path)
    assert loaded is not None and loaded.offsets == {"t": {0: 3, 1: 9}}
    assert loaded.done(RawMessage("t", 0, 3, None, b""))
    assert not loaded.done(RawMessage("t", 0, 4, None, b""))
    assert not loaded.done(RawMessage("t", 2, 0, None, b""))
    path.write_text("{not json")
    assert Checkpoint.load(path) is None


def test_replay_from_archive_is_complete_idempotent_and_swaps(
    tmp_path: Path, settings: Settings
) -> None:
    events = memories(40)
    bad = b'{"kind": "memory"}'
    write_archive(tmp_path / "archive", MEMORIES.name, [e.to_json() for e in events] + [bad])
    store_root = tmp_path / "store"
    first = replay(
        settings, from_archive=tmp_path / "archive", store_root=store_root, progress=False
    )
    assert first["records_read"] == 41 and first["rejected"] == 1
    assert first["memories_written"] == 40 and first["version"] == 1
    again = replay(
        settings,
        from_archive=tmp_path / "archive",
        store_root=store_root,
        into=1,
        restart=True,
        swap=True,
        progress=False,
    )
    assert again["memories_written"] == 40 and again["swapped"]
    sets = CollectionSet(store_root)
    assert sets.live_version() == 1 and sets.versions() == [1]
    with sets.open(1) as store:
        assert store.count("acme") == 40
    cp = json.loads((sets.path(1) / CHECKPOINT_FILE).read_text())
    assert cp["complete"] is True and cp["offsets"][MEMORIES.name] == {"0": 20, "1": 19}


@pytest.mark.slow
def test_a_crashed_replay_resumes_after_its_checkpoint(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = memories(64)
    write_archive(tmp_path / "archive", MEMORIES.name, [e.to_json() for e in events])
    store_root = tmp_path / "store"
    real_run = _Pipeline.run
    calls = {"n": 0}

    def crashing(self: Any, batch: list[RawMessage], stats: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("power cut")
        return real_run(self, batch, stats)

    monkeypatch.setattr(_Pipeline, "run", crashing)
    with pytest.raises(RuntimeError, match="power cut"):
        replay(
            settings,
            from_archive=tmp_path / "archive",
            store_root=store_root,
            progress=False,
            checkpoint_every_s=0,
        )
    monkeypatch.setattr(_Pipeline, "run", real_run)
    # the same command (`--into new`) finds the unfinished version and resumes it
    summary = replay(
        settings, from_archive=tmp_path / "archive", store_root=store_root, progress=False
    )
    assert summary["resumed"] and summary["version"] == 1 and not summary["created"]
    assert summary["skipped_already_done"] == 32 and summary["memories_written"] == 32
    with CollectionSet(store_root).open(1) as store:
        assert store.count("acme") == 64
    # finished: `new` now means a new version
    fresh = replay(
        settings, from_archive=tmp_path / "archive", store_root=store_root, progress=False
    )
    assert fresh["version"] == 2 and fresh["memories_written"] == 64


@pytest.mark.slow
def test_indexed_records_are_stored_without_embedding(tmp_path: Path, settings: Settings) -> None:
    first = replay(
        settings,
        from_archive=_archive_of(tmp_path, memories(10)),
        store_root=tmp_path / "s1",
        progress=False,
    )
    assert first["memories_written"] == 10
    # build indexed records with the stage, archive them, replay the fast path
    pipeline = _Pipeline(settings, store=None)
    records = pipeline.stage.process(memories(12, tenant="globex"))
    write_archive(tmp_path / "idx", INDEXED.name, [r.to_json() for r in records] + [b"junk"])

    class Boom:
        def embed(self, texts: list[str]) -> None:
            raise AssertionError("the indexed path must not embed")

    summary = replay(
        settings,
        topics=[INDEXED.name],
        from_archive=tmp_path / "idx",
        store_root=tmp_path / "s2",
        embedder=Boom(),
        progress=False,
    )
    assert summary["memories_written"] == 12 and summary["rejected"] == 1
    with CollectionSet(tmp_path / "s2").open(1) as store:
        assert store.count("globex") == 12


def _archive_of(tmp_path: Path, events: list[Memory]) -> Path:
    root = tmp_path / "a"
    write_archive(root, MEMORIES.name, [e.to_json() for e in events])
    return root


def test_processors_need_a_broker_and_bad_requests_are_refused(
    tmp_path: Path, settings: Settings
) -> None:
    from memstream.processors import ProcessorSpec

    spec = ProcessorSpec("t1", lambda e: None, (INDEXED.name,), None, False, False, "test")
    archive = _archive_of(tmp_path, memories(2))
    with pytest.raises(ReplayError, match="needs a broker"):
        replay(
            settings.model_copy(update={"kafka_bootstrap": None}),
            from_archive=archive,
            store_root=tmp_path / "s",
            processors=["t1"],
            processor_specs=[spec],
            progress=False,
        )
    with pytest.raises(ReplayError, match="no processor named"):
        replay(settings, from_archive=archive, processors=["nope"], processor_specs=[spec])
    with pytest.raises(ReplayError, match="nothing to read"):
        replay(settings.model_copy(update={"kafka_bootstrap": None}), store_root=tmp_path / "s")
    with pytest.raises(ReplayError, match="not one"):
        replay(settings, from_archive=archive, store_root="http://qdrant:6333")


# --- dead letters ------------------------------------------------------------------------------


def _letter(offset: int, reason: str, stage: str, value: bytes, **kw: Any) -> RawMessage:
    letter = dead_letter(
        reason=reason,
        detail="d",
        stage=stage,
        topic=kw.get("topic", MEMORIES.name),
        partition=1,
        offset=offset * 10,
        key=b"agent-1",
        value=value,
    )
    return RawMessage(
        DEAD_LETTER.name, kw.get("partition", 0), offset, b"agent-1", letter.to_json()
    )


def test_dead_letter_rows_filters_and_originals(monkeypatch: pytest.MonkeyPatch) -> None:
    event = memories(1)[0].to_json()
    a = _letter(0, "not_json", "validate", b"{oops")
    b = _letter(1, "processor_error", "processor:tagger", event, topic=INDEXED.name)
    c = _letter(1, "invalid_fields", "validate", event, partition=2)
    junk = RawMessage(DEAD_LETTER.name, 0, 2, None, b"not a letter")
    rows = [parse_row(m) for m in (a, b, c, junk)]
    assert rows[1]["id"] == "0:1" and rows[1]["stage"] == "processor:tagger"
    assert rows[1]["origin_topic"] == INDEXED.name and rows[1]["origin_offset"] == 10
    assert rows[1]["tenant"] == "acme" and rows[1]["replayable"]
    assert rows[3]["reason"] == "unreadable" and not rows[3]["replayable"]
    assert [r["id"] for r in rows if matches(r, stage="processor:*")] == ["0:1"]
    assert [r["id"] for r in rows if matches(r, reason="not_json")] == ["0:0"]

    pairs = list(zip((a, b, c, junk), rows, strict=True))
    assert [m.offset for m, _ in select(pairs, ["0:1"])] == [1]
    assert [m.partition for m, _ in select(pairs, ["2:1"])] == [2]
    with pytest.raises(LookupError, match="ambiguous"):
        select(pairs, ["1"])
    assert select(pairs, [rows[0]["event_id"]])[0][0] is a
    assert [r["id"] for _, r in select(pairs, reason="invalid_fields")] == ["2:1"]
    with pytest.raises(LookupError):
        select(pairs, ["9:9"])

    assert original_of(b) == (INDEXED.name, b"agent-1", event)
    assert original_of(junk) is None


def test_truncated_dead_letters_are_not_replayable(monkeypatch: pytest.MonkeyPatch) -> None:
    import memstream.streams.validate as validate

    monkeypatch.setattr(validate, "DEAD_LETTER_KEEP_BYTES", 4)
    letter = _letter(0, "oversize", "validate", b"0123456789")
    assert parse_row(letter)["truncated"] is True
    assert original_of(letter) is None
    kept = json.loads(letter.value or b"")["payload"]["original_value_b64"]
    assert base64.b64decode(kept) == b"0123"


def test_cli_commands_are_registered_and_archive_stats(tmp_path: Path) -> None:
    import typer

    from memstream.cli.log_commands import register

    app = typer.Typer()
    register(app)
    write_archive(tmp_path / "arch", MEMORIES.name, [e.to_json() for e in memories(5)])
    runner = CliRunner()
    out = runner.invoke(app, ["archive", "stats", "--root", str(tmp_path / "arch"), "--json"])
    assert out.exit_code == 0, out.output
    stats = json.loads(out.stdout)
    assert stats["topics"][MEMORIES.name]["records"] == 5
    assert stats["topics"][MEMORIES.name]["partitions"] == [0, 1]
    for args in (["replay", "--help"], ["dlq", "list", "--help"], ["processors", "list"]):
        assert runner.invoke(app, args).exit_code == 0, args


def test_replay_protects_personal_data_like_the_worker(tmp_path: Path) -> None:
    from memstream.streams import app

    if not hasattr(app, "build_privacy_stage"):
        pytest.skip("the worker has no privacy stage in this tree")
    settings = Settings(data_dir=tmp_path / "data", embedder="static", pii_tier="fast")
    event = Memory(tenant="acme", agent_id="a1", payload={"text": "mail jane.doe@example.com now"})
    write_archive(tmp_path / "a", MEMORIES.name, [event.to_json()])
    summary = replay(
        settings, from_archive=tmp_path / "a", store_root=tmp_path / "s", progress=False
    )
    assert summary["memories_written"] == 1
    from memstream.store import Caller

    with CollectionSet(tmp_path / "s").open(1) as store:
        [stored] = store.get(Caller("acme", "a1"), [event.event_id])
    assert "jane.doe@example.com" not in stored.text


def test_a_replay_applies_the_admission_bar_of_the_live_sink(
    tmp_path: Path, settings: Settings
) -> None:
    """Records a learned model scored under the bar stay out of the rebuilt store, as the
    live sink keeps them out; private ones and cold-start ones are admitted."""
    pipeline = _Pipeline(settings, store=None)
    records = pipeline.stage.process(memories(9, tenant="globex"))
    scored = []
    for i, record in enumerate(records):
        payload = record.payload.model_copy(
            update={"usefulness": 0.1 if i % 3 else 0.9, "models": {"valuation": "valuation:v4"}}
        )
        scope = "private" if i == 1 else "tenant"
        scored.append(record.model_copy(update={"payload": payload, "scope": scope}))
    write_archive(tmp_path / "idx", INDEXED.name, [r.to_json() for r in scored])
    barred = settings.model_copy(update={"admission_bar": 0.5})
    summary = replay(
        barred,
        topics=[INDEXED.name],
        from_archive=tmp_path / "idx",
        store_root=tmp_path / "s",
        progress=False,
    )
    # 0, 3, 6 score 0.9; 1 is private; 2, 4, 5, 7, 8 are kept out
    assert summary["kept_out_of_pool"] == 5 and summary["memories_written"] == 4
    with CollectionSet(tmp_path / "s").open(1) as store:
        assert store.count("globex") == 4
    everything = replay(
        settings,
        topics=[INDEXED.name],
        from_archive=tmp_path / "idx",
        store_root=tmp_path / "s-all",
        progress=False,
    )
    assert everything["kept_out_of_pool"] == 0 and everything["memories_written"] == 9
