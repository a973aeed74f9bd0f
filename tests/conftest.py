"""Session fixtures: one real broker for the integration tests, named in the pytest header.

`MEMSTREAM_TEST_BROKER` picks it: `auto` (default: Apache Kafka where Java 17 and Maven
exist, else Tansu), `kafka`, `tansu`, or `external` (uses `MEMSTREAM_KAFKA_BOOTSTRAP`).
Testcontainers needs a Docker engine; none runs on these machines, so the local launchers
are used (see docs/testing.md).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from memstream.broker import BrokerHandle, BrokerUnavailable, external_broker, start_broker

_broker: BrokerHandle | None = None
_broker_note = ""

# Tests run the plug-ins they install themselves, never whatever the environment holds (a
# user who pip-installs a plug-in into .venv must still get a green `make test`); a test
# that wants plug-ins sets MEMSTREAM_PROCESSORS_ENABLED=true for its own worker.
os.environ["MEMSTREAM_PROCESSORS_ENABLED"] = "false"


def _wanted_kind() -> str:
    return os.environ.get("MEMSTREAM_TEST_BROKER", "auto")


def _needs_broker(config: pytest.Config) -> bool:
    if "not integration" in (config.getoption("markexpr") or ""):
        return False
    args = [str(a) for a in config.args] or ["tests"]
    return any("unit" not in arg for arg in args)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """Start the broker before the header is printed, so the header can name it."""
    global _broker, _broker_note
    if not _needs_broker(session.config) or hasattr(session.config, "workerinput"):
        _broker_note = "none (unit tests only)"
        return
    kind = _wanted_kind()
    fallback = ""
    if kind == "external":
        _broker = external_broker(os.environ["MEMSTREAM_KAFKA_BOOTSTRAP"])
    else:
        try:
            _broker = start_broker("kafka" if kind == "auto" else kind, fast_start=True)
        except BrokerUnavailable as err:
            if kind != "auto":
                raise pytest.UsageError(f"cannot start the {kind} test broker: {err}") from err
            fallback = f" (Apache Kafka could not start: {str(err).splitlines()[0]})"
            _broker = start_broker("tansu")
    _broker_note = f"{_broker.label} at {_broker.bootstrap}{fallback}"


def pytest_report_header(config: pytest.Config) -> str:
    return f"memstream broker: {_broker_note}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _broker is not None:
        _broker.stop()


@pytest.fixture(scope="session")
def broker() -> Iterator[BrokerHandle]:
    if _broker is None:
        pytest.skip("no test broker in this session (unit tests only)")
    yield _broker
