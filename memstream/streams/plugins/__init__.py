"""Plug-in processors: the `@processor` API (`registry`, `running`; plug-ins import it as
`memstream.processors`) and the worker's runtime for them and the topic archive (`runtime`)."""

from memstream.streams.plugins.runtime import (
    ARCHIVE_GROUP,
    archive_group,
    attach_archive,
    attach_processors,
    bootstrap_of,
    ensure_output_topics,
    group_for,
    process_and_send,
    undecodable_letter,
)

__all__ = [
    "ARCHIVE_GROUP",
    "archive_group",
    "attach_archive",
    "attach_processors",
    "bootstrap_of",
    "ensure_output_topics",
    "group_for",
    "process_and_send",
    "undecodable_letter",
]
