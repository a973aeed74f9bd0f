"""memstream: an event-driven memory bus for AI agents.

`HttpClient` / `AsyncHttpClient`: the HTTP SDK, for agents anywhere (the token decides who
they are). `Client`: the Kafka producer, for services inside the cluster's trust boundary.
"""

from memstream.client import Client, EventTooLarge
from memstream.schemas import Feedback, Memory, Observation
from memstream.sdk.http import AsyncHttpClient, HttpClient, MemstreamError, NotFound

__version__ = "0.1.0"

__all__ = [
    "AsyncHttpClient",
    "Client",
    "EventTooLarge",
    "Feedback",
    "HttpClient",
    "Memory",
    "MemstreamError",
    "NotFound",
    "Observation",
    "__version__",
]
