"""What a worker process does: the roles that let each part of the flow scale on its own.

- `model`: validate, privacy, embed, value, compress; writes `memstream.indexed` and dead
  letters. Stateless (no store): add processes up to the input topics' partitions.
- `sink`: `memstream.indexed` into the store (idempotent, by memory id), erasures and
  deletions, expiry, index optimisation, the archive, plug-in processors, the feedback
  learner. With Qdrant Edge it is the one process that owns the store directory; with a
  Qdrant server any number may run.
- `match`: standing subscriptions (rebuilt from `memstream.subscriptions`) against
  `memstream.indexed`; writes `memstream.deliveries`.
- `api`: the HTTP API, MCP and the push gateway; reads the store.

`all` (the default, and what `memstream up` runs) is every role in one process: the
pipeline then writes the store and matches in the same pass, as it always has. A process
may hold any set of roles (`--role sink,match,api`: the store owner beside stateless model
workers). Each set gets its own consumer group, so two roles never split one topic's
events between them.
"""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("model", "sink", "match", "api")


@dataclass(frozen=True)
class Roles:
    """The roles of one worker process."""

    names: frozenset[str]

    @classmethod
    def parse(cls, text: str) -> Roles:
        """`all`, or a comma-separated set of `model`, `sink`, `match`, `api`."""
        parts = {p.strip() for p in text.split(",") if p.strip()}
        if not parts:
            raise ValueError("role is empty: use all, or some of model, sink, match, api")
        if "all" in parts:
            if len(parts) > 1:
                raise ValueError("role `all` already holds every role; give it alone")
            return cls(frozenset(ROLES))
        unknown = parts - set(ROLES)
        if unknown:
            raise ValueError(
                f"unknown role {', '.join(sorted(unknown))}: use all, or some of {', '.join(ROLES)}"
            )
        return cls(frozenset(parts))

    @property
    def everything(self) -> bool:
        return self.names == frozenset(ROLES)

    @property
    def model(self) -> bool:
        return "model" in self.names

    @property
    def sink(self) -> bool:
        return "sink" in self.names

    @property
    def match(self) -> bool:
        return "match" in self.names

    @property
    def api(self) -> bool:
        return "api" in self.names

    @property
    def needs_store(self) -> bool:
        """The store is opened by the sink (writes) and the API (reads) only."""
        return self.sink or self.api

    @property
    def label(self) -> str:
        return "all" if self.everything else ",".join(r for r in ROLES if r in self.names)

    def consumer_group(self, base: str) -> str:
        """`base` for a process that runs the model stage (with or without the rest), so a
        stack split later keeps the input offsets; `<base>-<roles>` otherwise."""
        if self.model:
            return base
        return f"{base}-{'-'.join(r for r in ROLES if r in self.names)}"

    def reads_indexed(self) -> bool:
        """Whether this process consumes `memstream.indexed` to store or match it: only
        when the model stage runs elsewhere (with it, storing and matching happen in the
        pipeline's own pass)."""
        return not self.model and (self.sink or self.match)
