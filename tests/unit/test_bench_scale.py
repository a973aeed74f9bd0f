"""`memstream bench scale`: the pure parts (argument parsing, the rate from timestamps, the
scaling ratio and the diagnosis); the bench itself needs Apache Kafka and real workers."""

from __future__ import annotations

import pytest

from memstream.bench.scale import (
    descendants,
    diagnose,
    first_to_last_rate,
    fitted_rate,
    metric_value,
    parse_workers,
    scaling,
    schedule,
    steady_rate,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1,2", (1, 2)), (" 2 , 1 ", (2, 1)), ("1", (1,)), ("1,2,4,", (1, 2, 4))],
)
def test_parse_workers(text: str, expected: tuple[int, ...]) -> None:
    assert parse_workers(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        (" , ", "empty"),
        ("1,x", "not a whole number"),
        ("1.5", "not a whole number"),
        ("0,1", "not a positive"),
        ("-1", "not a positive"),
        ("1,1", "twice"),
    ],
)
def test_parse_workers_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_workers(text)


def test_schedule_interleaves_configurations() -> None:
    assert schedule((1, 2), 2) == [(1, 0), (2, 0), (1, 1), (2, 1)]
    assert schedule((2,), 1) == [(2, 0)]


def test_steady_rate_is_the_window_from_10_to_90_percent() -> None:
    # 100 events, one every 0.1 s, then a slow tail the window leaves out
    times = [i * 0.1 for i in range(95)] + [100.0 + i for i in range(5)]
    got = steady_rate(times, 100)
    assert got is not None
    # record 10 (index 9, t=0.9) to record 90 (index 89, t=8.9): 80 events in 8 s
    assert got["start"] == pytest.approx(0.9)
    assert got["end"] == pytest.approx(8.9)
    assert got["events_in_window"] == 80
    assert got["rate_per_s"] == pytest.approx(10.0)
    assert first_to_last_rate(times) == pytest.approx(99 / 104.0)


def test_steady_rate_ignores_order_and_waits_for_every_worker() -> None:
    times = [float(i) for i in range(100)]
    shuffled = times[::-1]
    assert steady_rate(shuffled, 100) == steady_rate(times, 100)
    # the second worker produced its first record at t=30: the window opens there
    late = steady_rate(times, 100, not_before=30.0)
    assert late is not None and late["start"] == 30.0 and late["end"] == 89.0
    assert late["rate_per_s"] == pytest.approx(1.0)


def test_steady_rate_without_a_window() -> None:
    assert steady_rate([1.0, 2.0], 100) is None  # the run never reached 90 %
    assert steady_rate([float(i) for i in range(100)], 100, not_before=95.0) is None
    assert steady_rate([5.0] * 100, 100) is None  # no time passed
    assert first_to_last_rate([1.0]) is None
    with pytest.raises(ValueError):
        steady_rate([1.0, 2.0], 2, lo=0.9, hi=0.1)


def test_metric_value_sums_samples_of_one_name() -> None:
    text = "\n".join(
        [
            "# HELP memstream_memories_indexed_total memories written to the store",
            "# TYPE memstream_memories_indexed_total counter",
            "memstream_memories_indexed_total 128.0",
            "memstream_memories_indexed_created 1.7e9",
            'memstream_dead_letters_total{reason="x"} 2',
            'memstream_dead_letters_total{reason="y"} 3',
        ]
    )
    assert metric_value(text, "memstream_memories_indexed_total") == 128.0
    assert metric_value(text, "memstream_dead_letters_total") == 5.0
    assert metric_value(text, "memstream_memories_indexed") == 0.0  # a prefix is not a name
    assert metric_value("", "memstream_memories_indexed_total") == 0.0


def test_scaling_ratio() -> None:
    assert scaling({1: 10.0, 2: 18.0}) == pytest.approx(1.8)
    assert scaling({1: 10.0, 2: None}) is None
    assert scaling({2: 18.0}) is None
    assert scaling({1: 10.0, 4: 30.0}, 1, 4) == pytest.approx(3.0)


def _run(k: int, rate: float, cpu: list[float], others: float, per_worker: list[float]) -> dict:
    return {
        "workers": k,
        "rate_per_s": rate,
        "events_per_worker_cpu_s": rate / sum(cpu),
        "assignment": [
            {"topics": {"memstream.memories": list(range(i * 8 // k, (i + 1) * 8 // k))}}
            for i in range(k)
        ],
        "in_window": {
            "workers_cpu_cores": sum(cpu),
            "workers": [
                {
                    "worker": i,
                    "cpu_cores_worker": c * 0.7,
                    "cpu_cores_pii_child": c * 0.3,
                    "rate_per_s_metrics": r,
                }
                for i, (c, r) in enumerate(zip(cpu, per_worker, strict=True))
            ],
            "broker_cpu_cores": 0.1,
            "bench_cpu_cores": 0.05,
            "other_cpu_cores": others,
            "other_processes_cpu_cores": {"123 someone else": others},
        },
    }


def test_diagnose_splits_the_shortfall_into_cpu_and_work_per_cpu() -> None:
    runs = [_run(1, 8.0, [1.0], 0.7, [8.0]), _run(2, 11.2, [1.0, 0.4], 0.7, [8.0, 3.2])]
    notes = diagnose(runs, 11.2 / 8.0)
    assert any(n.startswith("1 worker(s): workers got 1.00 cores") for n in notes)
    assert any("other processes 0.70 cores" in n for n in notes)
    below = [n for n in notes if n.startswith("below the bar")]
    assert below and "1.40x the CPU of 1" in below[0] and "1.00x the work" in below[0]
    assert not any("handed on nothing" in n or "unequal" in n for n in notes)


def test_diagnose_names_an_idle_worker_and_an_unequal_assignment() -> None:
    two = _run(2, 8.0, [1.0, 0.05], 0.0, [8.0, 0.0])
    two["assignment"] = [
        {"topics": {"memstream.memories": [0, 1, 2, 3, 4, 5, 6, 7]}},
        {"topics": {"memstream.memories": []}},
    ]
    notes = diagnose([_run(1, 8.0, [1.0], 0.0, [8.0]), two], 1.0)
    assert any("handed on nothing in the window: [1]" in n for n in notes)
    assert any(n.startswith("unequal partition assignment") for n in notes)
    assert diagnose(
        [_run(1, 8.0, [1.0], 0.0, [8.0]), _run(2, 16.0, [1.0, 1.0], 0.0, [8.0, 8.0])], 2.0
    )


def test_descendants_follow_the_tree() -> None:
    procs = {
        10: ("python3", 1, 5.0),  # the worker
        11: ("python3", 10, 3.0),  # its PII child
        12: ("python3", 11, 0.1),  # a grandchild
        20: ("java", 1, 9.0),  # not ours
    }
    assert sorted(descendants(10, procs)) == [11, 12]
    assert descendants(20, procs) == []


def test_fitted_rate_averages_over_sub_batches() -> None:
    # 64 records at once every 4 s: 16/s, whatever record the window starts and ends on
    times = [4.0 * (i // 64) + 0.001 * (i % 64) for i in range(64 * 20)]
    fit = fitted_rate(times, 10.0, 70.0)
    assert fit is not None and fit == pytest.approx(16.0, rel=0.05)
    assert fitted_rate(times, 100.0, 200.0) is None
    assert fitted_rate([1.0, 1.0, 1.0], 0.0, 2.0) is None
