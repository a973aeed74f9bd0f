"""Who calls: the bearer token's identity and the scope each route needs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Request

from memstream.services import auth
from memstream.services.auth import InvalidToken
from memstream.store.base import Caller


def current_caller(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> Caller:
    """The identity of the bearer token; 401 for anything else, 429 (with `Retry-After`)
    when the token is over its rate limit."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(
            401,
            "an `Authorization: Bearer <token>` header is required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    token = token.strip()
    try:
        caller = request.app.state.tokens.verify(token)
    except InvalidToken as err:
        raise HTTPException(401, str(err), headers={"WWW-Authenticate": "Bearer"}) from err
    retry_after = request.app.state.limiter.take(auth.token_id(token))
    if retry_after is not None:
        raise HTTPException(
            429,
            f"rate limit of this token exceeded; retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )
    return caller


def bearer_token(request: Request) -> str:
    """The token of the request's `Authorization: Bearer` header ("" without one)."""
    return request.headers.get("authorization", "").partition(" ")[2].strip()


def require_member(who: Caller, scope: str) -> None:
    """403 unless a `team:<x>` scope names one of the caller's own teams."""
    if scope.startswith("team:") and scope[5:] not in who.teams:
        raise HTTPException(403, f"agent {who.agent_id!r} is not in team {scope[5:]!r}")


Identity = Annotated[Caller, Depends(current_caller)]


def _scoped(scope: str) -> Any:
    def caller_with(who: Identity) -> Caller:
        if scope not in who.scopes:
            raise HTTPException(403, f"this token's scopes do not include {scope!r}")
        return who

    caller_with.__name__ = f"caller_with_{scope}"
    return Depends(caller_with)


Reader = Annotated[Caller, _scoped("read")]
Writer = Annotated[Caller, _scoped("write")]
Subscriber = Annotated[Caller, _scoped("subscribe")]
Administrator = Annotated[Caller, _scoped("admin")]
"""A caller whose token has that scope (403 otherwise)."""
