"""Clients: the HTTP SDK (`HttpClient`, `AsyncHttpClient`) for agents anywhere."""

from memstream.sdk.http import (
    AsyncHttpClient,
    CachedResult,
    CacheLookup,
    DeliveredMemory,
    Forbidden,
    HttpClient,
    InvalidRequest,
    MemoryPage,
    MemoryRecord,
    MemstreamError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    SearchHit,
    SubscriptionInfo,
    Unauthorized,
)

__all__ = [
    "AsyncHttpClient",
    "CacheLookup",
    "CachedResult",
    "DeliveredMemory",
    "Forbidden",
    "HttpClient",
    "InvalidRequest",
    "MemoryPage",
    "MemoryRecord",
    "MemstreamError",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "SearchHit",
    "SubscriptionInfo",
    "Unauthorized",
]
