from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import zstandard
from structlog.testing import capture_logs

from memstream.log.archive import HOUR_MS, ArchivedRecord, ArchiveReader, ArchiveWriter

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def _record(topic: str, partition: int, offset: int, ts: int) -> ArchivedRecord:
    value = None if offset % 7 == 3 else f"{topic}/{partition}/{offset}".encode()
    key = None if offset % 5 == 0 else f"k{offset}".encode()
    return ArchivedRecord(topic, partition, offset, ts, key, value)


def _write(writer: ArchiveWriter, records: list[ArchivedRecord]) -> None:
    for r in records:
        writer.append(r.topic, r.partition, r.offset, r.timestamp_ms, r.key, r.value)


def _sample() -> list[ArchivedRecord]:
    """Two topics, three partitions, records spread over three hours."""
    records = []
    for topic in ("memstream.memories", "memstream.indexed"):
        for partition in range(3):
            for offset in range(60):
                records.append(_record(topic, partition, offset, T0 + offset * 3 * 60_000))
    return records


def _ordered(records: list[ArchivedRecord]) -> list[ArchivedRecord]:
    return sorted(records, key=lambda r: (r.topic, r.partition, r.offset))


def test_round_trip_across_topics_partitions_and_hours(tmp_path: Path) -> None:
    records = _sample()
    with ArchiveWriter(tmp_path, max_records=25) as writer:
        _write(writer, records)
    reader = ArchiveReader(tmp_path)
    assert reader.topics() == ["memstream.indexed", "memstream.memories"]
    assert list(reader.read()) == _ordered(records)
    assert list(reader.read("memstream.memories")) == [
        r for r in _ordered(records) if r.topic == "memstream.memories"
    ]
    assert reader.count("memstream.indexed") == 180
    assert reader.count("memstream.unknown") == 0
    assert not reader.skipped

    hours = sorted(p.relative_to(tmp_path / "memstream.indexed") for p in reader_hours(tmp_path))
    assert hours == [Path("2026-01-01/00"), Path("2026-01-01/01"), Path("2026-01-01/02")]
    first = tmp_path / "memstream.indexed/2026-01-01/00/seg-1-0.jsonl.zst"
    line = json.loads(zstandard.ZstdDecompressor().decompress(first.read_bytes()).splitlines()[1])
    assert line == {
        "t": "memstream.indexed",
        "p": 1,
        "o": 1,
        "ts": T0 + 3 * 60_000,
        "k": "azE=",
        "v": "bWVtc3RyZWFtLmluZGV4ZWQvMS8x",
    }


def reader_hours(root: Path) -> list[Path]:
    return [p for p in (root / "memstream.indexed").glob("*/*") if p.is_dir()]


def test_duplicates_from_replays_are_read_once(tmp_path: Path) -> None:
    records = _sample()
    with ArchiveWriter(tmp_path, max_records=40) as writer:
        _write(writer, records)
    # a second writer (after a crash) replays part of the log, some from the same offsets
    with ArchiveWriter(tmp_path, max_records=40) as writer:
        _write(writer, records[10:100])
        _write(writer, records[:20])
    # one writer that rewinds (a rebalance) mid-segment
    with ArchiveWriter(tmp_path / "rewind") as writer:
        _write(writer, records[:30] + records[15:45])
    reader = ArchiveReader(tmp_path)
    assert list(reader.read()) == _ordered(records)
    assert list(ArchiveReader(tmp_path / "rewind").read()) == records[:45]


def test_order_holds_when_written_out_of_order(tmp_path: Path) -> None:
    records = _sample()
    shuffled = sorted(records, key=lambda r: (r.offset % 4, -r.partition, r.topic))
    with ArchiveWriter(tmp_path, max_records=7) as writer:
        _write(writer, shuffled)
    assert list(ArchiveReader(tmp_path).read()) == _ordered(records)


def test_since_and_until_filter_by_record_time(tmp_path: Path) -> None:
    records = _sample()
    with ArchiveWriter(tmp_path) as writer:
        _write(writer, records)
    reader = ArchiveReader(tmp_path)
    since, until = T0 + HOUR_MS + 15 * 60_000, T0 + 2 * HOUR_MS + 6 * 60_000
    expected = [r for r in _ordered(records) if since <= r.timestamp_ms < until]
    assert expected and list(reader.read(since_ms=since, until_ms=until)) == expected
    assert reader.count(since_ms=T0 + 2 * HOUR_MS) == sum(
        r.timestamp_ms >= T0 + 2 * HOUR_MS for r in records
    )
    assert reader.count(until_ms=T0) == 0
    # whole hours outside the window are not even opened
    assert all(
        "/01/" in str(p)
        for p in reader.segments("memstream.indexed", T0 + HOUR_MS, T0 + 2 * HOUR_MS)
    )


def test_flush_makes_records_durable_and_keeps_the_segment_open(tmp_path: Path) -> None:
    writer = ArchiveWriter(tmp_path)
    _write(writer, [_record("t", 0, i, T0) for i in range(10)])
    assert ArchiveReader(tmp_path).count("t") == 0  # in memory until flushed
    writer.flush()
    assert ArchiveReader(tmp_path).count("t") == 10
    _write(writer, [_record("t", 0, i, T0) for i in range(10, 20)])
    writer.flush()
    writer.flush()  # nothing new: nothing rewritten
    segments = list(tmp_path.rglob("*.jsonl.zst"))
    assert [p.name for p in segments] == ["seg-0-0.jsonl.zst"]
    assert ArchiveReader(tmp_path).count("t") == 20
    assert not list(tmp_path.rglob("*.tmp"))
    writer.close()
    with pytest.raises(RuntimeError):
        writer.append("t", 0, 99, T0, None, b"x")


def test_segments_close_by_count_and_by_age(tmp_path: Path) -> None:
    writer = ArchiveWriter(tmp_path, max_records=5, max_age_s=60)
    _write(writer, [_record("t", 0, i, T0) for i in range(12)])
    names = sorted(p.name for p in tmp_path.rglob("*.jsonl.zst"))
    assert names == ["seg-0-0.jsonl.zst", "seg-0-5.jsonl.zst"]
    assert writer.rotate() == 0
    assert writer.rotate(time.monotonic() + 61) == 1
    assert ArchiveReader(tmp_path).count("t") == 12
    _write(writer, [_record("t", 0, 12, T0)])
    writer.close()
    assert ArchiveReader(tmp_path).count("t") == 13


def test_unknown_timestamp_is_now_and_bad_topics_refused(tmp_path: Path) -> None:
    with ArchiveWriter(tmp_path) as writer:
        writer.append("t", 0, 0, None, None, b"a")
        writer.append("t", 0, 1, -1, None, b"b")
        with pytest.raises(ValueError):
            writer.append("../escape", 0, 0, T0, None, b"x")
    now = time.time() * 1000
    assert all(abs(r.timestamp_ms - now) < 60_000 for r in ArchiveReader(tmp_path).read())


def test_a_torn_tmp_file_is_ignored(tmp_path: Path) -> None:
    records = [_record("t", 0, i, T0) for i in range(20)]
    with ArchiveWriter(tmp_path) as writer:
        _write(writer, records)
    hour = next(tmp_path.rglob("seg-0-0.jsonl.zst")).parent
    (hour / "seg-0-20.jsonl.zst.tmp").write_bytes(b"(\xb5/\xfd half a fra")
    reader = ArchiveReader(tmp_path)
    assert list(reader.read()) == records and not reader.skipped


def test_a_corrupted_segment_is_skipped_with_a_warning(tmp_path: Path) -> None:
    records = [_record("t", p, i, T0) for p in range(2) for i in range(30)]
    with ArchiveWriter(tmp_path, max_records=10) as writer:
        _write(writer, records)
    hour = next(tmp_path.rglob("seg-0-0.jsonl.zst")).parent
    flipped = bytearray((hour / "seg-0-10.jsonl.zst").read_bytes())
    flipped[len(flipped) // 2] ^= 0xFF
    (hour / "seg-0-10.jsonl.zst").write_bytes(bytes(flipped))
    truncated = (hour / "seg-1-20.jsonl.zst").read_bytes()
    (hour / "seg-1-20.jsonl.zst").write_bytes(truncated[: len(truncated) - 9])
    (hour / "seg-1-0.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(b"not json\n"))

    reader = ArchiveReader(tmp_path)
    with capture_logs() as logs:
        got = list(reader.read())
    lost = {(0, o) for o in range(10, 20)} | {(1, o) for o in range(20, 30)}
    lost |= {(1, o) for o in range(10)}
    assert got == [r for r in records if (r.partition, r.offset) not in lost]
    assert sorted(p.name for p, _ in reader.skipped) == [
        "seg-0-10.jsonl.zst",
        "seg-1-0.jsonl.zst",
        "seg-1-20.jsonl.zst",
    ]
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 3 and all("path" in e and "error" in e for e in warnings)


def test_an_empty_or_missing_root_reads_nothing(tmp_path: Path) -> None:
    assert ArchiveReader(tmp_path / "nope").topics() == []
    assert list(ArchiveReader(tmp_path).read()) == []


def test_hundred_thousand_records_write_and_read_quickly(tmp_path: Path) -> None:
    value = b'{"kind":"memory","payload":{"text":"' + b"x" * 200 + b'"}}'
    started = time.perf_counter()
    with ArchiveWriter(tmp_path) as writer:
        for i in range(100_000):
            writer.append("memstream.memories", i % 3, i // 3, T0 + i * 50, b"agent-1", value)
    wrote = time.perf_counter() - started
    started = time.perf_counter()
    count = 0
    last = (-1, -1)
    for record in ArchiveReader(tmp_path).read("memstream.memories"):
        assert (record.partition, record.offset) > last
        last = (record.partition, record.offset)
        count += 1
    read = time.perf_counter() - started
    assert count == 100_000
    assert wrote + read < 5.0, f"write {wrote:.2f}s, read {read:.2f}s"


def test_broker_incarnations_never_drop_each_others_records(tmp_path: Path) -> None:
    """A memory-only broker restarts its offsets at 0; with the broker's epoch in the
    segment names, the second incarnation's records are not taken for repeats of the
    first's (the archive used to count 21 of 25 records after a Tansu restart)."""
    first = [_record("memstream.memories", 0, o, T0 + o * 1000) for o in range(15)]
    second = [_record("memstream.memories", 0, o, T0 + 60_000 + o * 1000) for o in range(10)]
    with ArchiveWriter(tmp_path, epoch="tansu-1") as writer:
        _write(writer, first)
    with ArchiveWriter(tmp_path, epoch="tansu-2") as writer:
        _write(writer, second)
    with ArchiveWriter(tmp_path, epoch="tansu-2") as writer:  # a re-read after a crash
        _write(writer, second[5:])
    read = list(ArchiveReader(tmp_path).read("memstream.memories"))
    assert len(read) == 25
    assert read == first + second  # the older incarnation first
    with pytest.raises(ValueError, match="epoch"):
        ArchiveWriter(tmp_path, epoch="../x")
