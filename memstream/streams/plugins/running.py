"""Running one processor over consumed messages: outputs to send, dead letters to write.

Nothing here talks to a broker: the worker hands `run_processor` the messages it consumed
and sends what it gets back, so every rule is unit-tested without Kafka.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor
from typing import Any, TypeAlias

from pydantic import ValidationError
from pydantic_core import to_json

from memstream.schemas.events import Event, any_event_adapter
from memstream.streams.plugins.registry import (
    MAX_DETAIL_CHARS,
    Emit,
    Output,
    ProcessorContractError,
    ProcessorFailure,
    ProcessorOutput,
    ProcessorResult,
    ProcessorSpec,
    RawMessage,
    log,
)
from memstream.streams.validate import dead_letter


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


def processor_letter(spec: ProcessorSpec, message: RawMessage, reason: str, detail: str) -> Any:
    """A dead letter for `message` under `spec`'s stage, with the original bytes and origin
    offset; `detail` is prefixed with the processor's name and cut to `MAX_DETAIL_CHARS`."""
    return dead_letter(
        reason=reason,
        detail=f"{spec.name}: {detail}"[:MAX_DETAIL_CHARS],
        stage=spec.stage,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
    )


def failure_for(spec: ProcessorSpec, message: RawMessage, exc: Exception) -> ProcessorFailure:
    """The dead letter for an event `spec` failed on: reason `processor_error`, stage
    `processor:<name>`, with the original bytes and origin offset."""
    letter = processor_letter(spec, message, "processor_error", repr(exc))
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
