"""The shared pool's admission bar: memories predicted to be useless stay out of the store.

A memory whose learned usefulness is under the bar is kept on the log (`memstream.memories`
and its `indexed` record) but not written to the store, so no search or push returns it; a
replay with another bar, or none, admits it later. The bar needs a learned valuation model:
under the cold-start heuristic nothing is known about usefulness and everything is
admitted. Private memories are an agent's own notes, not part of the shared pool: always
admitted. A shared memory by a quarantined author (its reputation sank under the floor in a
tenant with seeds: `ReputationBook.quarantined`) is kept out too, whatever its value.
`memstream eval valuation --dataset F` measures what a bar keeps out and costs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from memstream.schemas.events import Indexed


@dataclass(frozen=True)
class AdmissionBar:
    """`bar`: the lowest learned usefulness a shared memory needs to enter the pool (None:
    no bar on value); `excluded_author(tenant, agent)`: authors whose shared memories are
    kept out whatever their value."""

    bar: float | None
    excluded_author: Callable[[str, str], bool] | None = None

    def admits(self, record: Indexed) -> bool:
        payload = record.payload
        if record.scope == "private":
            return True
        if self.excluded_author is not None and self.excluded_author(
            record.tenant, record.agent_id
        ):
            return False
        if self.bar is None:
            return True
        # `models["valuation"]` is `HotSwapScorer.label`: `<name>:cold-start` or `<name>:vN`
        if payload.models.get("valuation", ":cold-start").endswith(":cold-start"):
            return True  # no learned model scored it: no grounds to keep it out
        return payload.usefulness >= self.bar

    def split(self, records: Sequence[Indexed]) -> tuple[list[Indexed], list[Indexed]]:
        """(admitted, kept out), each in the order given."""
        admitted: list[Indexed] = []
        kept_out: list[Indexed] = []
        for record in records:
            (admitted if self.admits(record) else kept_out).append(record)
        return admitted, kept_out


def admission_bar(
    bar: float | None, excluded_author: Callable[[str, str], bool] | None = None
) -> AdmissionBar | None:
    """The bar a setting asks for, with the quarantine; None when neither applies."""
    if bar is None and excluded_author is None:
        return None
    return AdmissionBar(None if bar is None else float(bar), excluded_author)
