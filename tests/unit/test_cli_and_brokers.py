from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from memstream.broker import BrokerUnavailable, start_broker, start_tansu
from memstream.cli import app

runner = CliRunner()


@pytest.mark.parametrize(
    "command", [[], ["broker"], ["worker"], ["up"], ["bench", "pipeline"], ["schemas", "export"]]
)
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_schemas_check_passes_on_the_committed_files() -> None:
    root = Path(__file__).resolve().parents[2]
    result = runner.invoke(app, ["schemas", "check", "--dir", str(root / "schemas")])
    assert result.exit_code == 0, result.output


def test_schemas_export_then_check(tmp_path: Path) -> None:
    assert runner.invoke(app, ["schemas", "export", "--dir", str(tmp_path)]).exit_code == 0
    assert runner.invoke(app, ["schemas", "check", "--dir", str(tmp_path)]).exit_code == 0
    (tmp_path / "memory.schema.json").write_text("{}")
    result = runner.invoke(app, ["schemas", "check", "--dir", str(tmp_path)])
    assert result.exit_code == 1


def test_broker_rejects_two_nodes() -> None:
    result = runner.invoke(app, ["broker", "--nodes", "2"])
    assert result.exit_code == 2
    assert "--nodes must be 1 or 3" in result.output


def test_worker_without_a_broker_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMSTREAM_KAFKA_BOOTSTRAP", raising=False)
    result = runner.invoke(app, ["worker"])
    assert result.exit_code == 2
    assert "MEMSTREAM_KAFKA_BOOTSTRAP" in result.output


def test_tansu_starts_answers_and_stops() -> None:
    """The embedded broker is a real process; a metadata request proves it speaks Kafka."""
    from aiokafka.admin import AIOKafkaAdminClient

    async def brokers(bootstrap: str) -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            return len((await admin.describe_cluster())["brokers"])
        finally:
            await admin.close()

    with start_tansu() as handle:
        assert handle.kind == "tansu" and handle.version.startswith("0.")
        assert asyncio.run(brokers(handle.bootstrap)) == 1
    assert handle._stop is None


def test_tansu_has_one_node_only() -> None:
    with pytest.raises(ValueError, match="single"):
        start_broker("tansu", nodes=3)


def test_external_needs_bootstrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMSTREAM_KAFKA_BOOTSTRAP", raising=False)
    with pytest.raises(BrokerUnavailable, match="MEMSTREAM_KAFKA_BOOTSTRAP"):
        start_broker("external")
    monkeypatch.setenv("MEMSTREAM_KAFKA_BOOTSTRAP", "k1:9092,k2:9092")
    assert start_broker("external").bootstrap == "k1:9092,k2:9092"


def test_doctor_without_a_stack_fails_with_a_fix_and_json_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It used to print facts and exit 0 whatever it found."""
    import json

    for name in ("MEMSTREAM_KAFKA_BOOTSTRAP", "MEMSTREAM_API_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MEMSTREAM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MEMSTREAM_CACHE_DIR", str(tmp_path / "cache"))  # no stack registered
    result = runner.invoke(app, ["doctor", "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["stack"]["status"] == "fail" and "memstream up" in checks["stack"]["hint"]
    assert checks["broker"]["status"] == "skip" and checks["models"]["status"] == "ok"
    text = runner.invoke(app, ["doctor"])
    assert text.exit_code == 1 and "FAIL  stack" in text.stdout and "fix: " in text.stdout


def test_doctor_names_a_broker_that_does_not_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from memstream.broker.base import free_port

    monkeypatch.setenv("MEMSTREAM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MEMSTREAM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MEMSTREAM_KAFKA_BOOTSTRAP", f"127.0.0.1:{free_port()}")
    monkeypatch.delenv("MEMSTREAM_API_URL", raising=False)
    result = runner.invoke(app, ["doctor", "--json"])
    assert result.exit_code == 1
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["stack"]["status"] == "ok"  # named by the settings
    assert checks["broker"]["status"] == "fail"
    assert "MEMSTREAM_KAFKA_BOOTSTRAP" in checks["broker"]["hint"]


def test_consumer_lag_from_a_broker_that_does_not_answer_is_logged_not_raised() -> None:
    from memstream.broker.base import free_port
    from memstream.streams.lag import CONSUMER_LAG, LagMonitor

    CONSUMER_LAG.labels(group="g", topic="t", partition="0").set(7)
    monitor = LagMonitor(f"127.0.0.1:{free_port()}")
    assert asyncio.run(monitor.refresh()) is False
    assert CONSUMER_LAG.labels(group="g", topic="t", partition="0")._value.get() == 7  # kept
    CONSUMER_LAG.clear()


def test_topics_list_json_is_the_catalogue_and_nothing_else() -> None:
    import json

    from memstream.schemas.topics import CATALOGUE

    result = runner.invoke(app, ["topics", "list", "--json"])
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == [t.name for t in CATALOGUE]
