"""The plug-in API: third-party stream processors as plain decorated functions.

A processor reads events from one or more topics and may write outputs to one topic:

    @processor("tagger", consumes="memstream.indexed", produces="memstream.plugin.tags")
    def tagger(event):
        return {"memory_id": str(event.event_id), "tags": [...]}

Packages expose processors through the `memstream.processors` entry-point group and
`discover()` loads them, so new processors plug in without touching the core. Nothing here
talks to a broker: the worker hands `run_processor` the messages it consumed and sends the
outputs and dead letters it gets back, so every rule below is unit-tested without Kafka.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata
import inspect
import re
import sys
import time
import types
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

from pydantic import ValidationError
from pydantic_core import to_json

from memstream.logging import get_logger
from memstream.schemas.events import DeadLetter, Event, any_event_adapter
from memstream.streams.validate import dead_letter

log = get_logger("memstream.processors")

ENTRY_POINT_GROUP = "memstream.processors"
SPEC_ATTRIBUTE = "__memstream_processor__"
"""Set on a decorated function: the `ProcessorSpec` it registered."""

MAX_DETAIL_CHARS = 2000
"""Longest exception text kept in a dead letter's `detail`."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
"""Processor names go into dead letters' `stage` and `agent_id` (`processor:<name>`)."""

Output: TypeAlias = "Event | dict[str, Any] | bytes | bytearray | Emit"
"""What a processor may return for one event: an event, a JSON object, raw bytes, or an
`Emit` that also names the key."""

F = TypeVar("F", bound=Callable[..., Any])


class ProcessorError(Exception):
    """A processor was declared or loaded wrongly."""


class DuplicateProcessorError(ProcessorError, ValueError):
    """Two processors share a name; names key metrics, dead letters and consumer groups."""


class ProcessorContractError(ProcessorError, TypeError):
    """A processor returned something the API does not accept."""


@dataclass(frozen=True, slots=True)
class Emit:
    """An output with an explicit key; a bare output is keyed like the event it came from."""

    value: Event | dict[str, Any] | bytes | bytearray
    key: bytes | str | None = None


@dataclass(slots=True)
class ProcessorMetrics:
    """Running totals for one processor, updated by every `run_processor` call."""

    events_in: int = 0
    events_out: int = 0
    failures: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "events_in": self.events_in,
            "events_out": self.events_out,
            "failures": self.failures,
            "seconds": self.seconds,
        }


@dataclass(frozen=True)
class ProcessorSpec:
    """One registered processor. `origin` is the distribution that provided it when loaded
    from an entry point, else the module that defined it."""

    name: str
    func: Callable[..., Any]
    consumes: tuple[str, ...]
    produces: str | None
    batch: bool
    is_async: bool
    origin: str
    metrics: ProcessorMetrics = field(default_factory=ProcessorMetrics, compare=False)

    @property
    def stage(self) -> str:
        """The `stage` of this processor's dead letters."""
        return f"processor:{self.name}"


@dataclass(frozen=True, slots=True)
class RawMessage:
    """A consumed Kafka record as the worker saw it; dead letters carry its bytes."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None


@dataclass(frozen=True, slots=True)
class ProcessorOutput:
    """One message to produce to `topic`, with the consumed message that caused it."""

    topic: str
    key: bytes | None
    value: bytes
    origin: RawMessage


@dataclass(frozen=True, slots=True)
class ProcessorFailure:
    """One event a processor failed on, and the dead letter that records it."""

    origin: RawMessage
    error: Exception
    dead_letter: DeadLetter


@dataclass(slots=True)
class ProcessorResult:
    """What one `run_processor` call produced: outputs in input order, and failures."""

    outputs: list[ProcessorOutput] = field(default_factory=list)
    failures: list[ProcessorFailure] = field(default_factory=list)

    @property
    def dead_letters(self) -> list[DeadLetter]:
        return [failure.dead_letter for failure in self.failures]


@dataclass(frozen=True, slots=True)
class DiscoveryFailure:
    """An entry point that could not be loaded; discovery goes on without it."""

    entry_point: str
    distribution: str | None
    error: Exception


# --- registry ----------------------------------------------------------------------------------

_REGISTRY: dict[str, ProcessorSpec] = {}


def _same_function(a: Callable[..., Any], b: Callable[..., Any]) -> bool:
    """True for the same function, or the same definition imported again (a reload)."""
    if a is b:
        return True
    return (
        getattr(a, "__module__", None) == getattr(b, "__module__", None)
        and getattr(a, "__qualname__", None) == getattr(b, "__qualname__", None)
        and "<locals>" not in getattr(a, "__qualname__", "<locals>")
    )


def _register(spec: ProcessorSpec) -> ProcessorSpec:
    existing = _REGISTRY.get(spec.name)
    if existing is not None and not _same_function(existing.func, spec.func):
        raise DuplicateProcessorError(
            f"processor name {spec.name!r} is already taken by "
            f"{_describe_func(existing.func)} (from {existing.origin}); "
            f"{_describe_func(spec.func)} (from {spec.origin}) needs another name"
        )
    _REGISTRY[spec.name] = spec
    try:
        setattr(spec.func, SPEC_ATTRIBUTE, spec)
    except (AttributeError, TypeError):  # e.g. a builtin; the registry still holds it
        pass
    return spec


def _describe_func(func: Callable[..., Any]) -> str:
    module = getattr(func, "__module__", "?")
    return f"{module}.{getattr(func, '__qualname__', repr(func))}"


def registered() -> dict[str, ProcessorSpec]:
    """A copy of the registry, by name."""
    return dict(_REGISTRY)


def get_processor(name: str) -> ProcessorSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"no processor named {name!r}; known: {sorted(_REGISTRY)}") from None


def unregister(name: str) -> ProcessorSpec | None:
    """Remove a processor (tests, hot reload); returns it if it was there."""
    return _REGISTRY.pop(name, None)


def _is_async(func: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - an object with an async __call__
    )


def processor(
    name: str,
    *,
    consumes: str | Sequence[str],
    produces: str | None = None,
    batch: bool = False,
) -> Callable[[F], F]:
    """Register a function as a stream processor; the function itself is returned unchanged.

    Per event (default) it gets one parsed event and returns None, one output or a list of
    outputs. With `batch=True` it gets a list of events and returns a list aligned with
    it: one entry (None, an output or a list of outputs) per event, so that every output
    keeps its origin and a failure can be traced to one event.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ProcessorError(
            f"processor name {name!r} must be 1-100 characters of letters, digits, '_', '.' "
            "or '-', starting with a letter or digit"
        )
    topics = (consumes,) if isinstance(consumes, str) else tuple(consumes)
    if not topics or not all(isinstance(t, str) and t for t in topics):
        raise ProcessorError(f"processor {name!r}: consumes must name at least one topic")
    if produces is not None and (not isinstance(produces, str) or not produces):
        raise ProcessorError(f"processor {name!r}: produces must be a topic name or None")

    def decorate(func: F) -> F:
        if not callable(func):
            raise ProcessorError(f"@processor({name!r}) must decorate a function")
        _register(
            ProcessorSpec(
                name=name,
                func=func,
                consumes=topics,
                produces=produces,
                batch=batch,
                is_async=_is_async(func),
                origin=getattr(func, "__module__", None) or "?",
            )
        )
        return func

    return decorate


# --- discovery ---------------------------------------------------------------------------------


def specs_in(obj: object) -> list[ProcessorSpec]:
    """The processors an entry point's target defines: a decorated function, or every
    decorated function of a module."""
    spec = getattr(obj, SPEC_ATTRIBUTE, None)
    if isinstance(spec, ProcessorSpec):
        return [spec]
    if isinstance(obj, types.ModuleType):
        found = []
        for value in vars(obj).values():
            candidate = getattr(value, SPEC_ATTRIBUTE, None)
            # only its own: a processor imported from elsewhere belongs to its own package
            if (
                isinstance(candidate, ProcessorSpec)
                and getattr(value, "__module__", None) == obj.__name__
                and candidate not in found
            ):
                found.append(candidate)
        return found
    return []


def load_entry_points(
    group: str = ENTRY_POINT_GROUP, *, paths: Iterable[str | Path] | None = None
) -> tuple[list[ProcessorSpec], list[DiscoveryFailure]]:
    """Load every entry point of `group`: the processors found and the entry points that
    failed (import error, not a processor, duplicate name). `paths` are put at the front of
    `sys.path` first (and stay there, since plug-ins import lazily), e.g. a `pip --target`
    directory."""
    if paths:
        for path in reversed([str(p) for p in paths]):
            if path not in sys.path:
                sys.path.insert(0, path)
        importlib.invalidate_caches()
    specs: dict[str, ProcessorSpec] = {}
    failures: list[DiscoveryFailure] = []
    seen: set[tuple[str, str]] = set()
    for ep in importlib.metadata.entry_points(group=group):
        if (ep.name, ep.value) in seen:  # the same distribution on sys.path twice
            continue
        seen.add((ep.name, ep.value))
        dist = ep.dist.name if ep.dist is not None else None
        label = f"{ep.name} = {ep.value}"
        try:
            found = specs_in(ep.load())
            if not found:
                raise ProcessorError(
                    f"{ep.value} is not a @processor function nor a module with one"
                )
            for spec in found:
                specs[spec.name] = _register(replace(spec, origin=dist or spec.origin))
        except Exception as exc:
            failures.append(DiscoveryFailure(label, dist, exc))
    return list(specs.values()), failures


def discover(
    group: str = ENTRY_POINT_GROUP, *, paths: Iterable[str | Path] | None = None
) -> list[ProcessorSpec]:
    """The installed plug-in processors; a broken plug-in is logged and skipped, so one bad
    package cannot stop the worker."""
    specs, failures = load_entry_points(group, paths=paths)
    for failure in failures:
        log.error(
            "processor entry point failed to load",
            entry_point=failure.entry_point,
            distribution=failure.distribution,
            error=repr(failure.error),
        )
    for spec in specs:
        log.info(
            "processor loaded",
            processor=spec.name,
            origin=spec.origin,
            consumes=list(spec.consumes),
            produces=spec.produces,
            batch=spec.batch,
        )
    return specs


# --- running -----------------------------------------------------------------------------------


def decode(message: RawMessage) -> Event:
    """The event in a consumed message (any kind); raises pydantic's ValidationError."""
    return any_event_adapter.validate_json(message.value or b"")


def decode_all(
    messages: Iterable[RawMessage],
) -> tuple[list[tuple[RawMessage, Event]], list[tuple[RawMessage, ValidationError]]]:
    """Split consumed messages into parsed events and the ones that are not events."""
    good: list[tuple[RawMessage, Event]] = []
    bad: list[tuple[RawMessage, ValidationError]] = []
    for message in messages:
        try:
            good.append((message, decode(message)))
        except ValidationError as exc:
            bad.append((message, exc))
    return good, bad


def _as_key(key: bytes | str | None) -> bytes | None:
    if key is None or isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode()
    raise ProcessorContractError(f"an output key must be bytes, str or None, not {type(key)}")


def normalize_output(
    output: Output, default_key: bytes | None = None
) -> tuple[bytes | None, bytes]:
    """(key, value) bytes for one output; a bare output gets `default_key`."""
    key = default_key
    if isinstance(output, Emit):
        key = _as_key(output.key)
        output = output.value
    if isinstance(output, Event):
        return key, output.to_json()
    if isinstance(output, dict):
        return key, to_json(output)
    if isinstance(output, bytes | bytearray):
        return key, bytes(output)
    raise ProcessorContractError(
        f"an output must be an Event, a dict, bytes or Emit, not {type(output).__name__}"
    )


def _collect(spec: ProcessorSpec, message: RawMessage, returned: Any) -> list[ProcessorOutput]:
    """The outputs for one event from what the function returned for it."""
    if returned is None:
        return []
    items = returned if isinstance(returned, list | tuple) else [returned]
    if items and spec.produces is None:
        raise ProcessorContractError(
            f"processor {spec.name!r} returned output but declares no `produces` topic"
        )
    outputs = []
    for item in items:
        key, value = normalize_output(item, message.key)
        outputs.append(ProcessorOutput(spec.produces or "", key, value, message))
    return outputs


_Outcome: TypeAlias = "list[ProcessorOutput] | Exception"
"""Per event: its outputs, or why it failed."""


def _aligned(spec: ProcessorSpec, events: list[tuple[RawMessage, Event]], returned: Any) -> list:
    if not isinstance(returned, list | tuple):
        raise ProcessorContractError(
            f"batch processor {spec.name!r} must return a list, not {type(returned).__name__}"
        )
    if len(returned) != len(events):
        raise ProcessorContractError(
            f"batch processor {spec.name!r} returned {len(returned)} results for "
            f"{len(events)} events; it must return one entry (None, an output or a list) "
            "per event"
        )
    return list(returned)


def _per_event_outcomes(
    spec: ProcessorSpec, events: list[tuple[RawMessage, Event]], returned: list
) -> list[_Outcome]:
    outcomes: list[_Outcome] = []
    for (message, _), item in zip(events, returned, strict=True):
        try:
            outcomes.append(_collect(spec, message, item))
        except Exception as exc:
            outcomes.append(exc)
    return outcomes


def _run_sync(spec: ProcessorSpec, events: list[tuple[RawMessage, Event]]) -> list[_Outcome]:
    """All of a sync processor's calls for these events (in a worker thread)."""
    func = spec.func
    if spec.batch:
        try:
            returned = _aligned(spec, events, func([event for _, event in events]))
            return _per_event_outcomes(spec, events, returned)
        except Exception as exc:
            if len(events) == 1:
                return [exc]
            _log_batch_failure(spec, len(events), exc)
        return [outcome for pair in events for outcome in _run_sync(spec, [pair])]
    outcomes: list[_Outcome] = []
    for message, event in events:
        try:
            outcomes.append(_collect(spec, message, func(event)))
        except Exception as exc:
            outcomes.append(exc)
    return outcomes


async def _call_async(func: Callable[..., Any], arg: Any) -> Any:
    result = func(arg)
    if inspect.isawaitable(result):
        result = await result
    return result


async def _run_async(spec: ProcessorSpec, events: list[tuple[RawMessage, Event]]) -> list[_Outcome]:
    """All of an async processor's calls for these events, one at a time, in order."""
    if spec.batch:
        try:
            returned = await _call_async(spec.func, [event for _, event in events])
            return _per_event_outcomes(spec, events, _aligned(spec, events, returned))
        except Exception as exc:
            if len(events) == 1:
                return [exc]
            _log_batch_failure(spec, len(events), exc)
        outcomes: list[_Outcome] = []
        for pair in events:
            outcomes.extend(await _run_async(spec, [pair]))
        return outcomes
    outcomes = []
    for message, event in events:
        try:
            outcomes.append(_collect(spec, message, await _call_async(spec.func, event)))
        except Exception as exc:
            outcomes.append(exc)
    return outcomes


def _log_batch_failure(spec: ProcessorSpec, size: int, exc: Exception) -> None:
    log.warning(
        "processor failed on a batch; retrying event by event",
        processor=spec.name,
        size=size,
        error=repr(exc)[:MAX_DETAIL_CHARS],
    )


def failure_for(spec: ProcessorSpec, message: RawMessage, exc: Exception) -> ProcessorFailure:
    """The dead letter for an event `spec` failed on: reason `processor_error`, stage
    `processor:<name>`, with the original bytes and origin offset."""
    letter = dead_letter(
        reason="processor_error",
        detail=f"{spec.name}: {exc!r}"[:MAX_DETAIL_CHARS],
        stage=spec.stage,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
    )
    return ProcessorFailure(message, exc, letter)


async def run_processor(
    spec: ProcessorSpec,
    events: Sequence[tuple[RawMessage, Event]],
    *,
    executor: Executor | None = None,
) -> ProcessorResult:
    """Run one processor over consumed events: outputs to send and failures to dead-letter.

    A sync function runs in `executor` (the loop's default when None), so a slow plug-in
    does not stall the consumer's event loop. An exception fails only its event; in batch
    mode it fails the batch, which is then retried event by event to isolate the bad ones.
    """
    pairs = list(events)
    result = ProcessorResult()
    if not pairs:
        return result
    started = time.perf_counter()
    if spec.is_async:
        outcomes = await _run_async(spec, pairs)
    else:
        loop = asyncio.get_running_loop()
        outcomes = await loop.run_in_executor(executor, _run_sync, spec, pairs)
    for (message, _), outcome in zip(pairs, outcomes, strict=True):
        if isinstance(outcome, Exception):
            result.failures.append(failure_for(spec, message, outcome))
            log.warning(
                "processor failed on an event",
                processor=spec.name,
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                error=repr(outcome)[:MAX_DETAIL_CHARS],
            )
        else:
            result.outputs.extend(outcome)
    metrics = spec.metrics
    metrics.events_in += len(pairs)
    metrics.events_out += len(result.outputs)
    metrics.failures += len(result.failures)
    metrics.seconds += time.perf_counter() - started
    return result


__all__ = [
    "ENTRY_POINT_GROUP",
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
