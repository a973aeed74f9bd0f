"""The errors the HTTP SDK raises: one `MemstreamError` subclass per refused status."""

from __future__ import annotations

import httpx


class MemstreamError(Exception):
    """An answer the API refused; `status` is its HTTP status, `fields` the invalid ones."""

    def __init__(self, status: int, message: str, fields: list[dict[str, str]] | None = None):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.fields = fields or []


class InvalidRequest(MemstreamError):
    """400 or 422: the request names a bad value (see `fields`)."""


class Unauthorized(MemstreamError):
    """401: no token, or one that is unknown or revoked."""


class Forbidden(MemstreamError):
    """403: the token's identity may not do this."""


class NotFound(MemstreamError):
    """404: no such thing visible to this token (not found and not yours look the same)."""


class PayloadTooLarge(MemstreamError):
    """413: the body or event is over the size limit."""


class RateLimited(MemstreamError):
    """429: over the token's rate limit or privacy budget; retry after `retry_after` s."""

    retry_after: float | None = None


_ERRORS: dict[int, type[MemstreamError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    413: PayloadTooLarge,
    422: InvalidRequest,
    429: RateLimited,
}


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except ValueError:
        body = {"error": response.text[:500]}
    message = str(body.get("error", "")) if isinstance(body, dict) else str(body)
    fields = body.get("fields") if isinstance(body, dict) else None
    error = _ERRORS.get(response.status_code, MemstreamError)(response.status_code, message, fields)
    if isinstance(error, RateLimited) and "retry-after" in response.headers:
        error.retry_after = float(response.headers["retry-after"])
    raise error
