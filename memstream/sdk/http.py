"""The HTTP SDK: `HttpClient` (sync) and `AsyncHttpClient` (asyncio), over httpx.

Both speak to the memstream API with a bearer token; the token, not the client, decides
tenant, agent, teams and clearance, so an agent outside the cluster's trust boundary uses
this (the Kafka `memstream.Client` is for services inside it). Every method maps to one
endpoint; a 4xx answer raises a `MemstreamError` subclass naming what was wrong.

    with HttpClient("http://127.0.0.1:8000", token) as ms:
        event_id = ms.add("the staging DB moved to eu-west-2", tags=["infra"])
        ms.wait_for(event_id)
        for hit in ms.search("where is the staging database?", k=3):
            print(hit.score, hit.text)

The requests and their answers are built in `calls.py`, the errors in `errors.py`; the two
transports in `sync_client.py` and `async_client.py`.
"""

from memstream.schemas.answers import (
    CachedResult,
    CacheLookup,
    MemoryPage,
    MemoryView,
    ModelVersion,
    SearchResult,
    SubscriptionView,
)
from memstream.sdk.async_client import AsyncHttpClient
from memstream.sdk.calls import MAX_ROW_BYTES, _Call, _delivery, _import_row, _SseParser
from memstream.sdk.errors import (
    Forbidden,
    InvalidRequest,
    MemstreamError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
    _raise_for,
)
from memstream.sdk.results import (
    DeliveredMemory,
    ImportSummary,
    MemoryRecord,
    Outcome,
    SearchHit,
    SubscriptionInfo,
)
from memstream.sdk.sync_client import HttpClient

__all__ = [
    "MAX_ROW_BYTES",
    "AsyncHttpClient",
    "CacheLookup",
    "CachedResult",
    "DeliveredMemory",
    "Forbidden",
    "HttpClient",
    "ImportSummary",
    "InvalidRequest",
    "MemoryPage",
    "MemoryRecord",
    "MemoryView",
    "MemstreamError",
    "ModelVersion",
    "NotFound",
    "Outcome",
    "PayloadTooLarge",
    "RateLimited",
    "SearchHit",
    "SearchResult",
    "SubscriptionInfo",
    "SubscriptionView",
    "Unauthorized",
    "_Call",
    "_SseParser",
    "_delivery",
    "_import_row",
    "_raise_for",
]
