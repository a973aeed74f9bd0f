"""The plug-in API's declarations: `@processor`, its registry and entry-point discovery.

A processor reads events from one or more topics and may write outputs to one topic:

    @processor("tagger", consumes="memstream.indexed", produces="memstream.plugin.tags")
    def tagger(event):
        return {"memory_id": str(event.event_id), "tags": [...]}

Packages expose processors through the `memstream.processors` entry-point group and
`discover()` loads them, so new processors plug in without touching the core. The public
import path is `memstream.processors`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import re
import sys
import types
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

from memstream.logging import get_logger
from memstream.schemas.events import DeadLetter, Event

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
        return asdict(self)


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
