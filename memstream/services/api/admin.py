"""Tenant administration: taxonomy, tokens, aggregates, erasures and stats."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Query, Request

from memstream.models.taxonomy import validate_taxonomy
from memstream.services import auth
from memstream.services.api.backend import Backend
from memstream.services.api.bodies import ErasureIn, TaxonomyIO, TokenView
from memstream.services.api.identity import Administrator, Identity, Reader, bearer_token
from memstream.services.auth import TokenStore

MIN_EPSILON = 0.001
"""Smallest epsilon an aggregate may ask for: below it the noise drowns every count, and
OpenDP's calibration cannot represent the scale."""


def add_admin_routes(api: FastAPI, backend: Backend, tokens: TokenStore) -> None:
    @api.get("/v1/taxonomy", response_model=TaxonomyIO)
    async def get_taxonomy(who: Reader) -> TaxonomyIO:
        """The tenant's taxonomy for tag by example: tag -> example texts."""
        return TaxonomyIO(tags=await backend.taxonomy(who, None))

    @api.put("/v1/taxonomy", response_model=TaxonomyIO)
    async def put_taxonomy(body: TaxonomyIO, who: Administrator) -> TaxonomyIO:
        """Replace the tenant's taxonomy (`admin` scope): new memories get the likeliest of
        these tags (`auto_tags`); memories agents tag with them teach the tagger."""
        try:
            validate_taxonomy(body.tags)
        except ValueError as err:
            raise HTTPException(422, str(err)) from err
        return TaxonomyIO(tags=await backend.taxonomy(who, body.tags))

    @api.get("/v1/tokens", response_model=list[TokenView])
    async def list_tokens(who: Administrator) -> list[TokenView]:
        """The tokens of the caller's tenant (admin clearance), never their secrets."""
        if "admin" not in who.clearance:
            raise HTTPException(403, "listing tokens needs a token with the admin clearance")
        return [TokenView(**row) for row in tokens.listing(who.tenant)]  # type: ignore[arg-type]

    @api.delete("/v1/tokens/{token_id}", status_code=204)
    async def revoke_token(token_id: str, who: Identity, request: Request) -> None:
        """Revoke a token of the caller's tenant (admin clearance), or the caller's own."""
        own = auth.token_id(bearer_token(request))
        if token_id != own and "admin" not in who.clearance:
            raise HTTPException(403, "revoking another token needs the admin clearance")
        if not tokens.revoke_id(token_id, who.tenant):
            raise HTTPException(404, "no such token in this tenant")

    @api.get("/v1/aggregates/{field}")
    async def aggregates(
        field: Literal["topic", "tags"],
        who: Reader,
        epsilon: Annotated[float, Query(ge=MIN_EPSILON, le=10)] = 0.1,
    ) -> dict[str, Any]:
        """Memories per topic or tag among those the caller may see, with differential
        privacy: safe to share across teams or tenants. Each call spends `epsilon` of the
        caller's share of its tenant's budget (429 once spent)."""
        from memstream.privacy.dp import BudgetExceeded

        try:
            counts = await backend.private_counts(who, field, epsilon)
        except BudgetExceeded as err:
            raise HTTPException(429, str(err)) from err
        return {"field": field, "epsilon": epsilon, "counts": counts}

    @api.post("/v1/erasures", status_code=202)
    async def post_erasures(body: ErasureIn, who: Administrator) -> dict[str, Any]:
        """Forget data subjects of the caller's tenant (as `memstream erase`); needs a token
        with the `admin` clearance. 503 where this worker keeps no key store."""
        if "admin" not in who.clearance:
            raise HTTPException(403, "erasing subjects needs a token with the admin clearance")
        try:
            erasures = await backend.erase(who.tenant, body.values)
        except LookupError as err:
            raise HTTPException(503, str(err)) from err
        return {"erasures": erasures}

    @api.get("/v1/stats")
    async def stats(who: Reader) -> dict[str, Any]:
        return await backend.stats(who)
