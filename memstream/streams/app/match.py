"""The match stage in the worker: fresh stored records against the subscriptions, and the
deliveries sent."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from memstream.schemas.events import Indexed
from memstream.streams import stage_metrics

if TYPE_CHECKING:
    from memstream.streams.app.wiring import Worker


async def match(w: Worker, written: list[Indexed]) -> None:
    """Deliveries for the records (match role), or only counted as indexed here."""
    if w.roles.match:
        loop = asyncio.get_running_loop()
        fresh = [r for r in written if r.payload.duplicate_of is None]
        with stage_metrics.timed("match", len(fresh)):
            deliveries = await loop.run_in_executor(w.executor, w.services.match, fresh)
        await w.services.send_deliveries(deliveries)
    else:
        w.services.note_indexed(len(written))
