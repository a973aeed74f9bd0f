"""How a replay writes a store version: the worker's own stages over each batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from memstream.processors import RawMessage
from memstream.schemas.events import Indexed, Memory, Observation
from memstream.schemas.topics import INDEXED, INPUT_KINDS
from memstream.settings import Settings
from memstream.streams.validate import InvalidEvent, validate_event

# --- the replay --------------------------------------------------------------------------------


@dataclass
class ReplayStats:
    records_read: int = 0
    skipped_done: int = 0
    skipped_other: int = 0
    rejected: int = 0
    memories_written: int = 0
    duplicates_merged: int = 0
    superseded: int = 0
    processor_outputs: int = 0
    processor_failures: int = 0
    erased: int = 0
    deleted: int = 0
    kept_out: int = 0


_UNSET = object()


class _Pipeline:
    """Validate -> privacy -> model stage -> sink for one replay, with the worker's own
    functions, so a replayed memory is stored exactly as the live pipeline stores it. The
    models load on first use, so an `indexed` replay never loads them."""

    def __init__(self, settings: Settings, store: Any, embedder: Any = None) -> None:
        self.settings = settings
        self.store = store
        self._embedder = embedder
        self._stage: Any = None
        self._privacy: Any = _UNSET
        self._keystore: Any = _UNSET
        self._tombstones: Any = _UNSET
        self._book: Any = _UNSET

    @property
    def stage(self) -> Any:
        if self._stage is None:
            from memstream.models.embedding import load_embedder
            from memstream.models.registry import HotSwapScorer, ModelRegistry
            from memstream.streams.app import annotation_stages
            from memstream.streams.enrich import ModelStage

            embedder = self._embedder or load_embedder(
                self.settings.embedder, self.settings.onnx_provider
            )
            registry = ModelRegistry(self.settings.data_dir / "models", "valuation")
            self._stage = ModelStage(
                embedder,
                HotSwapScorer(registry, check_every_s=self.settings.valuation_check_s),
                duplicate_cosine=self.settings.duplicate_cosine,
                **annotation_stages(self.settings, embedder),
            )
        return self._stage

    @property
    def privacy(self) -> Any:
        """The worker's privacy stage, built the same way (same keystore and master key under
        the data dir, so erased subjects stay erased and pseudonyms match), or None where
        the worker would run none."""
        if self._privacy is _UNSET:
            from memstream.streams import app

            build = getattr(app, "build_privacy_stage", None)
            enabled = getattr(self.settings, "pii_enabled", False)
            self._privacy = build(self.settings) if build is not None and enabled else None
        return self._privacy

    def enrich(self, events: list[Memory | Observation]) -> list[Indexed | str]:
        """The batch through the worker's own privacy and model stages (`enrich_or_reject`:
        on failure event by event); `"rejected"` or `"erased"` for an event the pipeline
        would not keep."""
        from memstream.streams.app import enrich_or_reject
        from memstream.streams.privacy_stage import ErasedSubject

        privacy = self.privacy
        args = (privacy,) if privacy is not None else ()
        results = enrich_or_reject(self.stage, events, *args)
        return [
            r
            if isinstance(r, Indexed)
            else "erased"
            if isinstance(r, ErasedSubject)
            else "rejected"
            for r in results
        ]

    @property
    def keystore(self) -> Any:
        """The data dir's key store (for the erasure tombstones), or None without one."""
        if self._keystore is _UNSET:
            from memstream.privacy.keystore import KeyStore

            path = self.settings.data_dir / "keys.db"
            self._keystore = KeyStore(path) if path.exists() else None
        return self._keystore

    @property
    def tombstones(self) -> Any:
        """The data dir's tombstones (deleted and expired memories), or None without any."""
        if self._tombstones is _UNSET:
            from memstream.store.tombstones import TOMBSTONES_FILE, Tombstones

            path = self.settings.data_dir / TOMBSTONES_FILE
            self._tombstones = Tombstones(path) if path.exists() else None
        return self._tombstones

    def deleted(self, tenant: str, memory_id: Any) -> bool:
        """Whether the memory was deleted (author, admin, time to live): left out, as the
        live pipeline deleted it."""
        marks = self.tombstones
        return marks is not None and bool(marks.deleted(tenant, [memory_id]))

    def erased(self, record: Indexed) -> bool:
        """Whether a stored record holds a value of a subject erased since: it is left
        out, as the live pipeline deleted it."""
        keys = self.keystore
        subjects = record.payload.subjects
        return (
            bool(subjects)
            and keys is not None
            and any(keys.erased(record.tenant, s) for s in subjects)
        )

    def _quarantined(self) -> Any:
        """The data dir's reputation book's quarantine (as it stands now), if it has one."""
        from memstream.models.reputation import ReputationBook

        if self._book is _UNSET:
            path = self.settings.data_dir / "reputation.db"
            self._book = (
                ReputationBook(
                    path,
                    seeds=self.settings.reputation_seed_map(),
                    floor=self.settings.reputation_floor,
                )
                if path.exists()
                else None
            )
        return None if self._book is None else self._book.quarantined

    def run(self, batch: list[RawMessage], stats: ReplayStats) -> list[tuple[RawMessage, Indexed]]:
        """Store one batch; returns the (source record, Indexed) pairs that were stored."""
        from memstream.models.admission import admission_bar
        from memstream.store.conflicts import resolve_conflicts
        from memstream.store.sink import write_records

        pairs: list[tuple[RawMessage, Indexed]] = []
        inputs: list[tuple[RawMessage, Memory | Observation]] = []
        for message in batch:
            if message.topic in INPUT_KINDS:
                try:
                    event = validate_event(
                        message.value, message.topic, self.settings.max_event_bytes
                    )
                except InvalidEvent:
                    stats.rejected += 1
                    continue
                if self.deleted(event.tenant, event.event_id):
                    stats.deleted += 1
                    continue
                inputs.append((message, event))  # type: ignore[arg-type]
            elif message.topic == INDEXED.name:
                try:
                    record = Indexed.model_validate_json(message.value or b"")
                except ValidationError:
                    stats.rejected += 1
                    continue
                if self.erased(record):
                    stats.erased += 1
                elif self.deleted(record.tenant, record.event_id):
                    stats.deleted += 1
                else:
                    pairs.append((message, record))
            else:
                stats.skipped_other += 1
        if inputs:
            results = self.enrich([event for _, event in inputs])
            for (message, _), result in zip(inputs, results, strict=True):
                if result == "erased":
                    stats.erased += 1
                elif isinstance(result, str):
                    stats.rejected += 1
                else:
                    pairs.append((message, result))
        bar = admission_bar(self.settings.admission_bar, self._quarantined())
        if bar is not None:  # the live sink's admission bar, so a rebuild holds what it holds
            admitted = [(m, r) for m, r in pairs if bar.admits(r)]
            stats.kept_out += len(pairs) - len(admitted)
            pairs = admitted
        if pairs:
            records = [record for _, record in pairs]
            written = write_records(self.store, records)
            stats.memories_written += written.written
            stats.duplicates_merged += written.merged
            # the live sink's conflict rule, so a rebuild holds the same timelines (the
            # events are the live worker's to publish: a replay publishes nothing)
            stats.superseded += written.superseded + len(resolve_conflicts(self.store, records))
        return pairs
