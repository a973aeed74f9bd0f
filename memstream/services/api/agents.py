"""Routes about agents: feedback, reputation, the ledger and the result cache."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Path

from memstream.schemas.answers import CachedResult, CacheLookup
from memstream.schemas.events import Feedback, FeedbackPayload
from memstream.schemas.topics import FEEDBACK
from memstream.services.api.backend import Backend, Publish
from memstream.services.api.bodies import (
    Accepted,
    CachedResultIn,
    CacheLookupIn,
    FeedbackIn,
    LedgerBalance,
    LedgerView,
    Reputation,
)
from memstream.services.api.identity import Administrator, Reader, Writer, require_member
from memstream.store.base import Caller


def _cached(entry: Any) -> CachedResult:
    """The answer for a `ResultCache` entry (its tenant and timestamp stay inside)."""
    return CachedResult.model_validate(entry, from_attributes=True)


def add_agent_routes(api: FastAPI, backend: Backend, publish: Publish) -> None:
    @api.post("/v1/feedback", status_code=202, response_model=Accepted)
    async def post_feedback(body: FeedbackIn, who: Writer) -> Accepted:
        """How useful a memory was; only on a memory the caller may see (404 otherwise)."""
        if await backend.visible(who, body.memory_id) is None:
            raise HTTPException(404, f"no memory {body.memory_id} visible to this agent")
        event = Feedback(
            tenant=who.tenant, agent_id=who.agent_id, payload=FeedbackPayload(**body.model_dump())
        )
        await publish(FEEDBACK.name, event, str(body.memory_id))
        return Accepted(event_id=event.event_id)

    @api.get("/v1/agents/{agent_id}/reputation", response_model=Reputation)
    async def reputation(
        agent_id: Annotated[str, Path(min_length=1, max_length=256)], who: Reader
    ) -> Reputation:
        """An agent's reputation in the caller's tenant: how the memories it wrote fared,
        each rating weighted by the trust of its rater (self-feedback does not count)."""
        found = await backend.standing(who, agent_id)
        return Reputation.model_validate(found, from_attributes=True)

    async def _ledger(who: Caller, everyone: bool) -> LedgerView:
        found = await backend.balances(who, everyone)
        if found is None:
            raise HTTPException(
                404, f"tenant {who.tenant!r} keeps no ledger (MEMSTREAM_LEDGER_TENANTS)"
            )
        return LedgerView(
            tenant=who.tenant,
            balances=[LedgerBalance.model_validate(b, from_attributes=True) for b in found],
        )

    @api.get("/v1/ledger", response_model=LedgerView)
    async def ledger(who: Reader) -> LedgerView:
        """The caller's credit balance: deliveries and memories it used cost credits, its
        memories rated helpful earn them (404 where its tenant keeps no ledger)."""
        return await _ledger(who, everyone=False)

    @api.get("/v1/ledger/agents", response_model=LedgerView)
    async def ledger_of_tenant(who: Administrator) -> LedgerView:
        """Every agent's balance in the caller's tenant (`admin` scope)."""
        return await _ledger(who, everyone=True)

    @api.post("/v1/cache", status_code=201, response_model=CachedResult)
    async def cache_result(body: CachedResultIn, who: Writer) -> CachedResult:
        """Publish a task's result to the semantic result cache, so that an agent about to
        do the same task can look it up first; visible by `scope` like a memory."""
        require_member(who, body.scope)
        entry = await backend.cache_publish(
            who, body.task, body.result, body.verification, body.scope
        )
        return _cached(entry)

    @api.post("/v1/cache/lookup", response_model=CacheLookup)
    async def cache_lookup(body: CacheLookupIn, who: Reader) -> CacheLookup:
        """The stored result of a task that means the same and names the same values (host,
        region, number, date, identifier, ...), or none: `miss`, or `rejected` when only
        tasks with other values were similar."""
        found = await backend.cache_lookup(who, body.task)
        return CacheLookup(
            outcome=found.outcome,
            result=_cached(found.result) if found.result is not None else None,
            score=found.score,
            reason=found.reason,
        )
