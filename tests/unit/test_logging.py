"""Log lines: JSON on stderr, and a client's retried leader-election errors are warnings."""

from __future__ import annotations

import json
import logging

import pytest

from memstream.logging import configure_logging


@pytest.fixture
def restore_logging():  # type: ignore[no-untyped-def]
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _lines(err: str) -> list[dict]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def test_leader_election_errors_at_start_up_are_warnings(
    capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    configure_logging("INFO", "json")
    fetcher = logging.getLogger("aiokafka.consumer.fetcher")
    fetcher.error(
        "Failed fetch offsets from 0: [Error 6] NotLeaderForPartitionError: "
        "TopicPartition(topic='memstream.indexed', partition=0)"
    )
    fetcher.error("Unexpected error in fetcher routine")  # not a transient one: stays an error
    logging.getLogger("memstream.x").error("NotLeaderForPartitionError in our own code")
    levels = [(line["logger"], line["level"]) for line in _lines(capsys.readouterr().err)]
    assert levels == [
        ("aiokafka.consumer.fetcher", "warning"),
        ("aiokafka.consumer.fetcher", "error"),
        ("memstream.x", "error"),
    ]


def test_no_terminal_escape_codes_when_stderr_is_not_a_terminal(
    capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    configure_logging("INFO", "console")
    logging.getLogger("memstream.y").warning("plain words")
    err = capsys.readouterr().err
    assert "plain words" in err and "\x1b" not in err
