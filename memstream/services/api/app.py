"""The app factory: error handlers, metrics, size limit, and every route group."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from memstream.logging import get_logger
from memstream.schemas.events import Event
from memstream.schemas.topics import MAX_EVENT_BYTES
from memstream.services.api.admin import add_admin_routes
from memstream.services.api.agents import add_agent_routes
from memstream.services.api.backend import Backend
from memstream.services.api.memories import add_memory_routes
from memstream.services.api.models import add_model_routes
from memstream.services.api.subscriptions import add_subscription_routes
from memstream.services.api.teams import add_team_routes
from memstream.services.auth import TokenStore
from memstream.services.dashboard import mount_dashboard
from memstream.services.http_guard import BodyGuard, CatchAll
from memstream.services.ratelimit import RateLimiter

log = get_logger("memstream.api")

REQUESTS = Counter("memstream_http_requests_total", "HTTP requests", ["route", "status"])
PUBLISHED = Counter("memstream_api_published_total", "events published by the API", ["kind"])


# --- the app -----------------------------------------------------------------------------------


def _invalid(error: str, exc: RequestValidationError | ValidationError) -> JSONResponse:
    """422 naming each invalid field and what is wrong with it."""
    fields = [
        {"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"]}
        for err in exc.errors()
    ]
    return JSONResponse({"error": error, "fields": fields}, status_code=422)


def create_api(
    backend: Backend,
    tokens: TokenStore,
    *,
    max_body_bytes: int = MAX_EVENT_BYTES,
    rate_per_s: float = 0.0,
    rate_burst: int = 200,
) -> FastAPI:
    """The API over `backend`; each token may make `rate_per_s` requests a second on
    average and `rate_burst` at once (`rate_per_s=0`: no limit)."""
    api = FastAPI(
        title="memstream",
        version="0.1.0",
        description="Shared memory for AI agents over a message bus.",
        docs_url=None,  # served below from the swagger-ui-bundle package: no CDN
        redoc_url=None,
    )
    _mount_docs(api)

    @api.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _invalid("invalid request", exc)

    @api.exception_handler(ValidationError)
    async def invalid_event(request: Request, exc: ValidationError) -> JSONResponse:
        return _invalid("invalid event", exc)

    @api.middleware("http")
    async def count(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        route = request.scope.get("route")
        REQUESTS.labels(getattr(route, "path", "unmatched"), str(response.status_code)).inc()
        return response

    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    api.state.tokens = tokens
    api.state.limiter = RateLimiter(rate_per_s, rate_burst)

    async def publish(topic: str, event: Event, key: str) -> None:
        size = len(event.to_json())
        if size > max_body_bytes:
            raise HTTPException(413, f"event is {size} bytes; the limit is {max_body_bytes}")
        await backend.publish(topic, event, key)
        PUBLISHED.labels(event.kind).inc()

    add_memory_routes(api, backend, publish, max_body_bytes)
    add_agent_routes(api, backend, publish)
    add_admin_routes(api, backend, tokens)
    add_team_routes(api, backend)
    add_model_routes(api, backend)
    add_subscription_routes(api, backend, publish, tokens)

    add_health_routes(api, backend)
    mount_dashboard(api, backend)  # `/`: the operator's pages (admin token)

    api.add_middleware(BodyGuard, limit=max_body_bytes)
    api.add_middleware(CatchAll)  # outermost: a bug is a JSON 500, never a dropped connection
    return api


def add_health_routes(api: FastAPI, backend: object) -> None:
    """/healthz (readiness: the store takes writes), /livez and /metrics; every worker role
    serves them, the full API and a health-only one alike."""

    @api.get("/healthz", response_model=None)
    async def healthz() -> dict[str, str] | JSONResponse:
        """200 `{"status": "ok"}`; 503 `{"status": "degraded", "store": "unavailable",
        "error", "since", ...}` while the store fails the worker's writes (they are retried
        until it returns; nothing is acknowledged past them). A readiness check: for a
        liveness probe use /livez, since restarting the worker does not fix its disk."""
        store = getattr(backend, "store_status", None)
        if store is not None and not store.up:
            return JSONResponse({"status": "degraded", **store.snapshot()}, status_code=503)
        return {"status": "ok"}

    @api.get("/livez")
    async def livez() -> dict[str, str]:
        """200 while the process serves, whatever its store does (liveness)."""
        return {"status": "alive"}

    @api.get("/metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def create_health_api(backend: object) -> FastAPI:
    """Health and metrics alone: what a worker without the `api` role serves (probes and
    Prometheus scrapes, `deploy/k8s`)."""
    api = FastAPI(title="memstream worker", docs_url=None, redoc_url=None, openapi_url=None)
    add_health_routes(api, backend)
    return api


def _mount_docs(api: FastAPI) -> None:
    """/docs with Swagger UI's files from the swagger-ui-bundle package (works offline)."""
    import swagger_ui_bundle
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    api.mount(
        "/docs-assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets"
    )

    @api.get("/docs", include_in_schema=False)
    async def docs() -> Any:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="memstream API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )
