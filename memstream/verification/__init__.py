"""Verification of shared facts: verifiers as plain decorated functions, like processors.

A verifier reads a memory's text and returns a verdict for each claim it can check:

    @verifier("units")
    def check_units(text: str) -> list[Verdict]:
        return [Verdict(claim="1 km = 1000 m", status="verified", verifier="units")]

The model stage runs every registered verifier (the built-in SymPy one, and any a package
exposes in the `memstream.verifiers` entry-point group) on each memory, after the privacy
stage, and records the outcome on the `Indexed` record: `verified` when every checked
claim holds, `refuted` when one does not. A refuted memory is stored (its author and
auditors can read it, marked) but never pushed to subscribers, and its verdicts are
published on `memstream.verdicts`. A verifier that raises is logged and counts as no
verdict: verification never takes a memory down.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal, TypeVar

from memstream.logging import get_logger

log = get_logger("memstream.verification")

ENTRY_POINT_GROUP = "memstream.verifiers"
Status = Literal["verified", "refuted"]
MAX_CLAIMS = 32
"""Most verdicts kept per memory: a memory is a message, not a worksheet."""

F = TypeVar("F", bound=Callable[[str], list["Verdict"]])


@dataclass(frozen=True, slots=True)
class Verdict:
    """One checked claim: what was claimed, whether it holds, and why."""

    claim: str
    status: Status
    verifier: str
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Verification:
    """All verdicts on one memory; `status` is None when nothing in it was checkable."""

    verdicts: tuple[Verdict, ...] = ()

    @property
    def status(self) -> Status | None:
        if not self.verdicts:
            return None
        return "refuted" if any(v.status == "refuted" for v in self.verdicts) else "verified"


_VERIFIERS: dict[str, Callable[[str], list[Verdict]]] = {}
_loaded_entry_points = False


def verifier(name: str) -> Callable[[F], F]:
    """Register `func(text) -> list[Verdict]` under `name` (unique)."""

    def decorate(func: F) -> F:
        existing = _VERIFIERS.get(name)
        if existing is not None and existing is not func:
            raise ValueError(f"a verifier named {name!r} is registered already")
        _VERIFIERS[name] = func
        return func

    return decorate


def unregister(name: str) -> None:
    _VERIFIERS.pop(name, None)


def registered() -> dict[str, Callable[[str], list[Verdict]]]:
    """The verifiers that run: the built-ins, entry points (loaded once) and any registered
    in this process."""
    global _loaded_entry_points
    import memstream.verification.arithmetic  # noqa: F401  (registers the built-in)

    if not _loaded_entry_points:
        _loaded_entry_points = True
        for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                func = entry.load()
                verifier(entry.name)(func)
            except Exception:
                log.exception("verifier entry point failed to load", name=entry.name)
    return dict(_VERIFIERS)


def verify_text(text: str) -> Verification:
    """Every verifier's verdicts on `text`; one that raises is logged and skipped."""
    verdicts: list[Verdict] = []
    for name, func in sorted(registered().items()):
        try:
            verdicts.extend(func(text))
        except Exception:
            log.exception("verifier failed", verifier=name)
    return Verification(tuple(verdicts[:MAX_CLAIMS]))


__all__ = [
    "ENTRY_POINT_GROUP",
    "Verdict",
    "Verification",
    "registered",
    "unregister",
    "verifier",
    "verify_text",
]
