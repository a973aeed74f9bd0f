"""structlog set-up: JSON lines by default, one key per fact (event_id, topic, offset...)."""

from __future__ import annotations

import logging
import sys

import structlog

TRANSIENT_BROKER_ERRORS = (
    "NotLeaderForPartitionError",
    "LeaderNotAvailableError",
    "GroupCoordinatorNotAvailableError",
    "NotCoordinatorForGroupError",
    "CoordinatorLoadInProgressError",
    "UnknownTopicOrPartitionError",
)
"""Errors a Kafka client retries by itself while leaders are elected (a broker or topic
just started, a node restarting): worth a warning, not an error."""


class TransientBrokerErrors(logging.Filter):
    """Logs aiokafka's and Faust's records of `TRANSIENT_BROKER_ERRORS` at WARNING: at start-up
    they are leader election, and the client retries; a real failure still shows as the
    error that follows them (a timeout, a dead letter, a worker that stops)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and record.name.startswith(("aiokafka", "faust")):
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                text += type(record.exc_info[1]).__name__
            if any(name in text for name in TRANSIENT_BROKER_ERRORS):
                record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Route structlog and the stdlib (Faust, aiokafka) through one renderer on stderr."""
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    handler.addFilter(TransientBrokerErrors())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Faust and aiokafka are chatty at INFO; their warnings still come through.
    for noisy in ("faust", "mode", "aiokafka", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # Presidio warns once per recognizer of a language we do not load
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
