"""Broker faults without a broker: node control on stand-in processes, the fault bench's
node choice and counts, and the durability configs replicated topics get."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from memstream.bench.faults import pick_nodes, tally
from memstream.broker.base import BrokerHandle
from memstream.broker.kafka.launcher import _Node, _NodeControl
from memstream.cli import app
from memstream.schemas.topics import CATALOGUE, MEMORIES, TopicSpec


def _state(pid: int) -> str:
    """The process state letter from /proc (R, S, T for stopped, Z...)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text.rsplit(")", 1)[1].split()[0]


def _wait_state(pid: int, wanted: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    state = _state(pid)
    while state != wanted and time.monotonic() < deadline:
        time.sleep(0.02)
        state = _state(pid)
    return state


@pytest.fixture
def control(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A _NodeControl over two `sleep` processes standing in for broker JVMs."""
    cluster = []
    for i in range(2):
        node = _Node(i, 0, 0, tmp_path / f"node-{i}", f"dir-{i}")
        node.directory.mkdir()
        node.proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
        cluster.append(node)
    pids = [n.proc.pid for n in cluster]  # type: ignore[union-attr]
    stopped = threading.Event()
    yield _NodeControl(cluster, "127.0.0.1:1", pids, stopped), cluster, pids, stopped
    for node in cluster:
        if node.proc is not None and node.proc.poll() is None:
            node.proc.kill()
            node.proc.wait()


def test_pause_resume_and_kill_one_node_only(control) -> None:  # type: ignore[no-untyped-def]
    ctl, cluster, _, _ = control
    ctl.pause(0)
    assert _wait_state(cluster[0].proc.pid, "T") == "T"
    assert _state(cluster[1].proc.pid) != "T"
    assert ctl.paused == {0}
    ctl.resume(0)
    assert _wait_state(cluster[0].proc.pid, "S") != "T"
    assert ctl.paused == set()

    ctl.pause(1)
    ctl.kill(1)  # SIGKILL reaches a stopped process too
    assert cluster[1].proc.returncode == -9
    assert cluster[0].proc.poll() is None
    assert ctl.paused == set()
    with pytest.raises(RuntimeError, match="not running"):
        ctl.pause(1)


def test_restart_refuses_a_running_node_and_a_stopped_cluster(control) -> None:  # type: ignore[no-untyped-def]
    ctl, _, _, stopped = control
    with pytest.raises(RuntimeError, match="still running"):
        ctl.restart(0, 1.0)
    with pytest.raises(ValueError, match="no node 5"):
        ctl.kill(5)
    stopped.set()
    with pytest.raises(RuntimeError, match="stopped"):
        ctl.kill(0)


def test_restart_runs_the_same_command_again(control) -> None:  # type: ignore[no-untyped-def]
    """Same argv, same directory; a node that exits on restart is reported with its log."""
    ctl, cluster, pids, _ = control
    node = cluster[0]
    node.proc.kill()
    node.proc.wait()
    node.proc = subprocess.Popen(["false"], cwd=node.directory, start_new_session=True)
    node.proc.wait()
    from memstream.broker.base import BrokerUnavailable

    with pytest.raises(BrokerUnavailable, match="exited with code 1 on restart"):
        ctl.restart(0, 5.0)
    assert node.proc.args == ["false"]
    assert pids[0] == node.proc.pid  # the handle's pid list follows the new process


def test_resume_all_before_stop(control) -> None:  # type: ignore[no-untyped-def]
    ctl, cluster, _, _ = control
    ctl.pause(0)
    ctl.pause(1)
    ctl.resume_all()
    assert ctl.paused == set()
    assert all(_wait_state(n.proc.pid, "S") != "T" for n in cluster)


def test_brokers_without_node_control_say_so() -> None:
    handle = BrokerHandle(kind="tansu", version="0.6.0", bootstrap="127.0.0.1:9092")
    for call in (
        lambda: handle.kill_node(0),
        lambda: handle.restart_node(0),
        lambda: handle.pause_node(0),
        lambda: handle.resume_node(0),
    ):
        with pytest.raises(NotImplementedError, match="tansu broker does not support"):
            call()


def test_replicated_topics_need_two_in_sync_replicas() -> None:
    assert "min.insync.replicas" not in MEMORIES.broker_config(True)
    assert "min.insync.replicas" not in MEMORIES.broker_config(True, replication_factor=1)
    assert MEMORIES.broker_config(True, replication_factor=2)["min.insync.replicas"] == "2"
    assert all(
        spec.broker_config(True, replication_factor=3)["min.insync.replicas"] == "2"
        for spec in CATALOGUE
    )
    own = TopicSpec("x", "k", "d", config={"min.insync.replicas": "3"})
    assert own.broker_config(True, replication_factor=3)["min.insync.replicas"] == "3"


def test_pick_nodes_faults_the_coordinator_then_another_leader() -> None:
    assert pick_nodes({0: 1, 1: 1, 2: 1}, coordinator=2) == (2, 0)
    assert pick_nodes({0: 0, 1: 2, 2: 1}, coordinator=1) == (1, 2)
    assert pick_nodes({0: 0, 1: 2, 2: 1}, coordinator=None) == (1, 2)
    a, b = pick_nodes({}, coordinator=7)  # unknown coordinator: still two nodes
    assert a != b and {a, b} <= {0, 1, 2}


def test_tally_counts_by_memory_id() -> None:
    counts = tally(
        published=["a", "b", "c", "d"],
        acknowledged=["a", "b", "c"],
        indexed_keys=["a", "b", "b", "d", "probe", "a", "a"],
        store_ids=["a", "b", "d"],
    )
    assert counts == {
        "published": 4,
        "acknowledged": 3,
        "failed": 1,
        "indexed": 2,
        "indexed_unacknowledged": 1,
        "indexed_records": 6,
        "duplicated": 2,
        "duplicate_records": 3,
        "lost": 1,
        "store_points": 3,
        "store_distinct_ids": 3,
        "store_duplicates": 0,
        "store_missing": 1,
    }


def test_bench_faults_cli_checks_its_options() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["bench", "faults", "--help"])
    assert result.exit_code == 0 and "--fault" in result.output
    result = runner.invoke(app, ["bench", "faults", "--fault", "flood"])
    assert result.exit_code == 2
    result = runner.invoke(app, ["bench", "faults", "--events", "0"])
    assert result.exit_code == 2
