"""The plug-in API: third-party stream processors as plain decorated functions.

A processor reads events from one or more topics and may write outputs to one topic:

    @processor("tagger", consumes="memstream.indexed", produces="memstream.plugin.tags")
    def tagger(event):
        return {"memory_id": str(event.event_id), "tags": [...]}

Packages expose processors through the `memstream.processors` entry-point group and
`discover()` loads them. This module is the public import path; the implementation lives
in `memstream.streams.plugins` (`registry`, `running`), next to the worker's runtime.
"""

from memstream.streams.plugins.registry import (
    _REGISTRY,
    ENTRY_POINT_GROUP,
    MAX_DETAIL_CHARS,
    SPEC_ATTRIBUTE,
    DiscoveryFailure,
    DuplicateProcessorError,
    Emit,
    Output,
    ProcessorContractError,
    ProcessorError,
    ProcessorFailure,
    ProcessorMetrics,
    ProcessorOutput,
    ProcessorResult,
    ProcessorSpec,
    RawMessage,
    discover,
    get_processor,
    load_entry_points,
    processor,
    registered,
    specs_in,
    unregister,
)
from memstream.streams.plugins.running import (
    decode,
    decode_all,
    failure_for,
    normalize_output,
    run_processor,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "MAX_DETAIL_CHARS",
    "SPEC_ATTRIBUTE",
    "_REGISTRY",
    "DiscoveryFailure",
    "DuplicateProcessorError",
    "Emit",
    "Output",
    "ProcessorContractError",
    "ProcessorError",
    "ProcessorFailure",
    "ProcessorMetrics",
    "ProcessorOutput",
    "ProcessorResult",
    "ProcessorSpec",
    "RawMessage",
    "decode",
    "decode_all",
    "discover",
    "failure_for",
    "get_processor",
    "load_entry_points",
    "normalize_output",
    "processor",
    "registered",
    "run_processor",
    "specs_in",
    "unregister",
]
