from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memstream import processors
from memstream.processors import (
    DuplicateProcessorError,
    Emit,
    ProcessorContractError,
    ProcessorError,
    RawMessage,
    decode,
    decode_all,
    discover,
    get_processor,
    load_entry_points,
    normalize_output,
    processor,
    run_processor,
)
from memstream.schemas.events import Event, Indexed, IndexedPayload, Memory
from memstream.schemas.topics import INDEXED

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plugin-tagger"


@pytest.fixture(autouse=True)
def isolated_registry() -> Iterator[None]:
    """Each test sees only the processors it declares."""
    saved = dict(processors._REGISTRY)
    processors._REGISTRY.clear()
    yield
    processors._REGISTRY.clear()
    processors._REGISTRY.update(saved)


def indexed(text: str, tenant: str = "acme") -> Indexed:
    return Indexed(
        tenant=tenant,
        agent_id="a1",
        payload=IndexedPayload(
            source_kind="memory",
            text=text,
            vector_codec="test",
            vector_b64="",
            usefulness=0.5,
            novelty=1.0,
            features=[],
            models={},
        ),
    )


def consumed(events: list[Event], topic: str = INDEXED.name) -> list[tuple[RawMessage, Event]]:
    """Events as the worker would hand them over: each with the message it came in."""
    return [
        (
            RawMessage(topic, i % 3, 100 + i, str(e.event_id).encode(), e.to_json(), 1_000 + i),
            e,
        )
        for i, e in enumerate(events)
    ]


# --- the decorator -----------------------------------------------------------------------------


def test_decorator_registers_and_returns_the_function() -> None:
    @processor("upper", consumes=INDEXED.name, produces="out")
    def upper(event: Any) -> dict[str, Any]:
        return {"text": event.payload.text.upper()}

    spec = get_processor("upper")
    assert spec.func is upper and upper(indexed("hi")) == {"text": "HI"}
    assert spec.consumes == (INDEXED.name,) and spec.produces == "out"
    assert not spec.batch and not spec.is_async
    assert spec.origin == __name__
    assert spec.stage == "processor:upper"


def test_async_and_several_topics() -> None:
    @processor("a", consumes=["memstream.indexed", "memstream.feedback"], batch=True)
    async def handle(events: list[Any]) -> list[None]:
        return [None for _ in events]

    spec = get_processor("a")
    assert spec.is_async and spec.batch
    assert spec.consumes == ("memstream.indexed", "memstream.feedback")


def test_duplicate_names_are_refused_naming_both() -> None:
    @processor("dup", consumes="t")
    def first(event: Any) -> None:
        return None

    with pytest.raises(DuplicateProcessorError, match="dup") as info:

        @processor("dup", consumes="t")
        def second(event: Any) -> None:
            return None

    assert "first" in str(info.value) and "second" in str(info.value)
    assert get_processor("dup").func is first


@pytest.mark.parametrize("name", ["", "has space", "-leading", "x" * 101, "a/b"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(ProcessorError):
        processor(name, consumes="t")


def test_consumes_must_name_a_topic() -> None:
    with pytest.raises(ProcessorError):
        processor("x", consumes=[])


def test_outputs_are_normalised_to_key_and_value_bytes() -> None:
    event = indexed("hello")
    assert normalize_output(event, b"k") == (b"k", event.to_json())
    key, value = normalize_output({"id": event.event_id, "ts": event.ts}, None)
    assert key is None and json.loads(value)["id"] == str(event.event_id)
    assert normalize_output(b"raw", b"k") == (b"k", b"raw")
    assert normalize_output(bytearray(b"raw"), None) == (None, b"raw")
    assert normalize_output(Emit({"a": 1}, key="mine"), b"k") == (b"mine", b'{"a":1}')
    assert normalize_output(Emit(b"v", key=None), b"k") == (None, b"v")
    with pytest.raises(ProcessorContractError):
        normalize_output("a str", None)  # type: ignore[arg-type]


# --- running -----------------------------------------------------------------------------------


async def test_sync_per_event_none_one_or_many_outputs() -> None:
    @processor("fan", consumes=INDEXED.name, produces="out")
    def fan(event: Any) -> Any:
        n = len(event.payload.text)
        if n == 1:
            return None
        if n == 2:
            return {"n": n}
        return [b"x", Emit(b"y", key="k")]

    spec = get_processor("fan")
    pairs = consumed([indexed("a"), indexed("ab"), indexed("abc")])
    result = await run_processor(spec, pairs)
    assert not result.failures
    assert [(o.key, o.value) for o in result.outputs] == [
        (pairs[1][0].key, b'{"n":2}'),
        (pairs[2][0].key, b"x"),
        (b"k", b"y"),
    ]
    assert all(o.topic == "out" for o in result.outputs)
    assert [o.origin.offset for o in result.outputs] == [101, 102, 102]
    assert (spec.metrics.events_in, spec.metrics.events_out, spec.metrics.failures) == (3, 3, 0)
    assert spec.metrics.seconds > 0


async def test_async_per_event_event_outputs() -> None:
    @processor("echo", consumes=INDEXED.name, produces="out")
    async def echo(event: Any) -> Memory:
        return Memory(tenant=event.tenant, agent_id="echo", payload={"text": event.payload.text})

    result = await run_processor(get_processor("echo"), consumed([indexed("one"), indexed("two")]))
    texts = [Memory.model_validate_json(o.value).payload.text for o in result.outputs]
    assert texts == ["one", "two"]


async def test_a_raising_event_is_dead_lettered_and_the_rest_flow() -> None:
    @processor("picky", consumes=INDEXED.name, produces="out")
    def picky(event: Any) -> dict[str, str]:
        if "boom" in event.payload.text:
            raise RuntimeError("cannot handle this")
        return {"text": event.payload.text}

    spec = get_processor("picky")
    pairs = consumed([indexed("fine"), indexed("boom here", tenant="globex"), indexed("also fine")])
    result = await run_processor(spec, pairs)
    assert [json.loads(o.value)["text"] for o in result.outputs] == ["fine", "also fine"]
    assert len(result.failures) == 1
    failure = result.failures[0]
    assert isinstance(failure.error, RuntimeError)
    letter = failure.dead_letter
    assert letter.payload.reason == "processor_error"
    assert letter.payload.stage == "processor:picky"
    assert letter.payload.detail.startswith("picky: RuntimeError(")
    assert (letter.payload.origin_topic, letter.payload.origin_offset) == (INDEXED.name, 101)
    assert base64.b64decode(letter.payload.original_value_b64 or "") == pairs[1][0].value
    assert letter.tenant == "globex" and letter.parent_ids == [pairs[1][1].event_id]
    assert result.dead_letters == [letter]
    assert (spec.metrics.events_in, spec.metrics.events_out, spec.metrics.failures) == (3, 2, 1)


async def test_bad_outputs_and_undeclared_outputs_fail_only_their_event() -> None:
    @processor("weird", consumes=INDEXED.name, produces="out")
    def weird(event: Any) -> Any:
        return 42 if event.payload.text == "bad" else b"ok"

    @processor("sink", consumes=INDEXED.name)
    def sink(event: Any) -> Any:
        return None if event.payload.text == "quiet" else b"loud"

    result = await run_processor(get_processor("weird"), consumed([indexed("bad"), indexed("x")]))
    assert [o.value for o in result.outputs] == [b"ok"]
    assert isinstance(result.failures[0].error, ProcessorContractError)

    result = await run_processor(get_processor("sink"), consumed([indexed("quiet"), indexed("y")]))
    assert not result.outputs and len(result.failures) == 1
    assert "produces" in result.failures[0].dead_letter.payload.detail


@pytest.mark.parametrize("is_async", [False, True])
async def test_batch_failure_is_isolated_event_by_event(is_async: bool) -> None:
    calls: list[list[str]] = []

    def body(events: list[Any]) -> list[Any]:
        texts = [e.payload.text for e in events]
        calls.append(texts)
        if any("boom" in t for t in texts):
            raise ValueError("boom in batch")
        return [{"text": t} if t != "none" else None for t in texts]

    if is_async:

        async def func(events: list[Any]) -> list[Any]:
            return body(events)
    else:
        func = body
    processor("batcher", consumes=INDEXED.name, produces="out", batch=True)(func)
    spec = get_processor("batcher")
    assert spec.is_async is is_async

    texts = ["a", "boom", "none", "b"]
    result = await run_processor(spec, consumed([indexed(t) for t in texts]))
    assert calls == [texts, ["a"], ["boom"], ["none"], ["b"]]
    assert [json.loads(o.value)["text"] for o in result.outputs] == ["a", "b"]
    assert [f.origin.offset for f in result.failures] == [101]
    assert result.failures[0].dead_letter.payload.detail == "batcher: ValueError('boom in batch')"

    calls.clear()
    result = await run_processor(spec, consumed([indexed("x"), indexed("y")]))
    assert calls == [["x", "y"]] and len(result.outputs) == 2


async def test_batch_must_return_one_entry_per_event() -> None:
    @processor("short", consumes=INDEXED.name, produces="out", batch=True)
    def short(events: list[Any]) -> list[Any]:
        return []

    result = await run_processor(get_processor("short"), consumed([indexed("a"), indexed("b")]))
    assert not result.outputs and len(result.failures) == 2
    assert all(isinstance(f.error, ProcessorContractError) for f in result.failures)
    assert "one entry" in result.failures[0].dead_letter.payload.detail


async def test_no_events_no_call() -> None:
    @processor("never", consumes=INDEXED.name)
    def never(event: Any) -> None:
        raise AssertionError("called")

    result = await run_processor(get_processor("never"), [])
    assert not result.outputs and not result.failures


def test_decode_any_kind_and_split_bad_messages() -> None:
    good = consumed([indexed("x")])[0][0]
    bad = RawMessage(INDEXED.name, 0, 7, None, b"{not json")
    assert decode(good).kind == "indexed"
    events, rejects = decode_all([good, bad])
    assert [m.offset for m, _ in events] == [100] and [m.offset for m, _ in rejects] == [7]


# --- discovery ---------------------------------------------------------------------------------


def _fake_distribution(site: Path, name: str, group: str, entry_points: dict[str, str]) -> None:
    """A distribution on disk as pip would leave it, minus pip: dist-info and entry points."""
    info = site / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{group}]\n{lines}\n")


@pytest.fixture
def clean_imports(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """sys.path and the modules imported by a test are put back afterwards."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith(("memstream_tagger", "plug_")):
            del sys.modules[name]


def test_discovery_loads_functions_and_modules_and_reports_broken_ones(
    tmp_path: Path, clean_imports: None
) -> None:
    group = "memstream.test-processors"
    (tmp_path / "plug_good.py").write_text(
        textwrap.dedent(
            """
            from memstream.processors import processor

            @processor("one", consumes="memstream.indexed")
            def one(event):
                return None

            @processor("two", consumes="memstream.indexed", batch=True)
            async def two(events):
                return [None] * len(events)
            """
        )
    )
    (tmp_path / "plug_broken.py").write_text("raise ImportError('missing dependency xyz')\n")
    (tmp_path / "plug_plain.py").write_text("def not_a_processor(event):\n    return None\n")
    _fake_distribution(
        tmp_path,
        "plug-good",
        group,
        {"one": "plug_good:one", "all": "plug_good"},
    )
    _fake_distribution(
        tmp_path,
        "plug-bad",
        group,
        {"broken": "plug_broken:thing", "plain": "plug_plain:not_a_processor"},
    )

    specs, failures = load_entry_points(group, paths=[tmp_path])
    assert sorted(s.name for s in specs) == ["one", "two"]
    assert {s.origin for s in specs} == {"plug-good"}
    assert get_processor("one").origin == "plug-good"
    assert sorted(f.entry_point.split(" ")[0] for f in failures) == ["broken", "plain"]
    by_name = {f.entry_point.split(" ")[0]: f for f in failures}
    assert "missing dependency xyz" in repr(by_name["broken"].error)
    assert by_name["broken"].distribution == "plug-bad"
    assert isinstance(by_name["plain"].error, ProcessorError)

    # again: already imported, still found, no duplicate-name error
    assert sorted(s.name for s in discover(group)) == ["one", "two"]


def test_discovery_reports_a_plugin_whose_name_is_taken(
    tmp_path: Path, clean_imports: None
) -> None:
    @processor("taken", consumes="t")
    def mine(event: Any) -> None:
        return None

    group = "memstream.test-processors-dup"
    (tmp_path / "plug_taken.py").write_text(
        "from memstream.processors import processor\n"
        "@processor('taken', consumes='t')\n"
        "def theirs(event):\n    return None\n"
    )
    _fake_distribution(tmp_path, "plug-taken", group, {"taken": "plug_taken:theirs"})
    specs, failures = load_entry_points(group, paths=[tmp_path])
    assert specs == [] and isinstance(failures[0].error, DuplicateProcessorError)
    assert get_processor("taken").func is mine


@pytest.fixture
def tagger_site(tmp_path: Path) -> Path:
    """The example plug-in pip-installed into a private directory, not the dev venv."""
    source = tmp_path / "src"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    site = tmp_path / "site"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(site),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    return site


@pytest.mark.slow
async def test_the_example_plugin_installs_is_discovered_and_dead_letters_boom(
    tagger_site: Path, clean_imports: None
) -> None:
    site = tagger_site
    specs = discover(paths=[site])
    tagger = {s.name: s for s in specs}["tagger"]
    assert tagger.origin == "memstream-plugin-tagger"
    assert tagger.consumes == (INDEXED.name,) and tagger.produces == "memstream.plugin.tags"

    events = [
        indexed("Deploy failed: the postgres database ran out of disk"),
        indexed("This one goes boom", tenant="globex"),
        indexed("Invoice sent to the customer"),
        indexed("Nothing to see"),
    ]
    result = await run_processor(tagger, consumed(events))
    tags = [json.loads(o.value) for o in result.outputs]
    assert tags == [
        {"memory_id": str(events[0].event_id), "tenant": "acme", "tags": ["database", "deploy"]},
        {"memory_id": str(events[2].event_id), "tenant": "acme", "tags": ["billing"]},
        {"memory_id": str(events[3].event_id), "tenant": "acme", "tags": []},
    ]
    assert [o.key for o in result.outputs] == [str(events[i].event_id).encode() for i in (0, 2, 3)]
    assert len(result.failures) == 1
    letter = result.failures[0].dead_letter
    assert letter.payload.reason == "processor_error"
    assert letter.payload.stage == "processor:tagger"
    assert letter.payload.detail.startswith("tagger: ValueError(")
    assert letter.tenant == "globex" and letter.payload.origin_offset == 101
