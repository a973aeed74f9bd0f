"""The pool's books (reputation, ledger) rebuilt from the log alone."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from memstream.log.replay.positions import Position, ReplayError
from memstream.log.replay.sources import KafkaRange, _archive_sealer, read_archive_range
from memstream.processors import RawMessage
from memstream.schemas.events import Indexed
from memstream.schemas.topics import DELIVERIES, FEEDBACK, INDEXED
from memstream.settings import Settings

# --- the pool's books ----------------------------------------------------------------------------


def rebuild_books(settings: Settings, messages: Iterable[RawMessage]) -> tuple[Any, Any]:
    """The reputation book and the credit ledger from the log alone, by the worker's
    learner's rules: `indexed` records say who wrote each memory, `feedback` on a memory of
    the same tenant counts (self-feedback dropped), `deliveries` cost their recipients in
    the tenants that keep a ledger. In memory: compare them with the live ones, or write
    nothing. Records that do not parse are skipped (the live worker dead-letters them)."""
    from memstream.models.ledger import Ledger
    from memstream.models.reputation import ReputationBook
    from memstream.schemas.events import Delivery, Feedback

    book = ReputationBook(seeds=settings.reputation_seed_map())
    ledger = Ledger(rules=settings.ledger_rules(), rater_weight=book.rater_weight)
    ledger_tenants = frozenset(settings.ledger_tenants)
    authors: dict[str, tuple[str, str]] = {}
    feedback: list[Feedback] = []
    for message in messages:
        try:
            if message.topic == INDEXED.name:
                record = Indexed.model_validate_json(message.value or b"")
                authors[str(record.event_id)] = (record.tenant, record.agent_id)
            elif message.topic == FEEDBACK.name:
                feedback.append(Feedback.model_validate_json(message.value or b""))
            elif message.topic == DELIVERIES.name:
                delivery = Delivery.model_validate_json(message.value or b"")
                if delivery.tenant in ledger_tenants:
                    ledger.delivery(
                        str(delivery.event_id), delivery.tenant, delivery.payload.recipient
                    )
        except ValueError:
            continue
    for event in feedback:
        author = authors.get(str(event.payload.memory_id))
        if author is None or author[0] != event.tenant:
            continue
        if event.tenant in ledger_tenants:
            ledger.feedback(
                str(event.event_id), event.tenant, event.agent_id, author[1], event.payload.outcome
            )
        book.record(
            *author, event.payload.outcome, rater=event.agent_id, event_id=str(event.event_id)
        )
    return book, ledger


def replay_books(
    settings: Settings,
    *,
    from_archive: Path | None = None,
    bootstrap: str | None = None,
    tenant: str | None = None,
) -> dict[str, Any]:
    """`memstream replay --books`: the reputation book and the ledger rebuilt from the log
    (`indexed`, `feedback`, `deliveries`; the archive keeps no deliveries, so from an archive
    the ledger has no delivery costs), and whether they equal the live ones in the data dir
    (`tenant`: compare that tenant only). Writes nothing."""
    from memstream.models.ledger import Ledger
    from memstream.models.reputation import ReputationBook

    topics = [INDEXED.name, FEEDBACK.name, DELIVERIES.name]
    messages: list[RawMessage] = []
    if from_archive is not None:
        start, stop = Position(), Position()
        for batch in read_archive_range(
            from_archive, topics, start, stop, 1000, _archive_sealer(settings)
        ):
            messages += batch
    else:
        if not (bootstrap or settings.kafka_bootstrap):
            raise ReplayError("no broker: give --bootstrap or set MEMSTREAM_KAFKA_BOOTSTRAP")

        async def read() -> None:
            source = KafkaRange(bootstrap or settings.kafka_bootstrap or "", topics, idle_s=5.0)
            async for batch in source.batches():
                messages.extend(batch)

        asyncio.run(read())
    book, ledger = rebuild_books(settings, messages)
    live_book = ReputationBook(
        settings.data_dir / "reputation.db", seeds=settings.reputation_seed_map()
    )
    live_ledger = Ledger(
        settings.data_dir / "ledger.db", settings.ledger_rules(), live_book.rater_weight
    )

    def mine(values: dict[str, float]) -> dict[str, float]:
        return {k: v for k, v in values.items() if tenant is None or k.startswith(f"{tenant}/")}

    rebuilt = {"reputation": mine(book.to_dict()), "ledger": mine(ledger.to_dict())}
    live = {"reputation": mine(live_book.to_dict()), "ledger": mine(live_ledger.to_dict())}
    return {
        "records_read": len(messages),
        "source": str(from_archive) if from_archive is not None else "broker",
        "tenant": tenant,
        "rebuilt": rebuilt,
        "equal_to_live": {name: rebuilt[name] == live[name] for name in rebuilt},
        "differences": {
            name: sorted(set(rebuilt[name].items()) ^ set(live[name].items()))[:20]
            for name in rebuilt
        },
    }
