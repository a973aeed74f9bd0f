"""The HTTP API (FastAPI): publish, search, subscribe, stream; bearer-token identities.

Every identity fact (tenant, agent, teams, clearance) comes from the token, never from the
request body, so a client cannot widen what it sees. Malformed requests get a 4xx JSON
error naming the field and never reach the bus; bodies over the limit get 413. One module
per route group; `app` builds the app from them.
"""

from memstream.services.api.admin import MIN_EPSILON
from memstream.services.api.app import (
    PUBLISHED,
    REQUESTS,
    add_health_routes,
    create_api,
    create_health_api,
)
from memstream.services.api.backend import Backend, Publish
from memstream.services.api.identity import (
    Administrator,
    Identity,
    Reader,
    Subscriber,
    Writer,
    bearer_token,
    current_caller,
    require_member,
)

__all__ = [
    "MIN_EPSILON",
    "PUBLISHED",
    "REQUESTS",
    "Administrator",
    "Backend",
    "Identity",
    "Publish",
    "Reader",
    "Subscriber",
    "Writer",
    "add_health_routes",
    "bearer_token",
    "create_api",
    "create_health_api",
    "current_caller",
    "require_member",
]
