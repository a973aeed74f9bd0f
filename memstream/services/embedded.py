"""The HTTP servers a worker runs inside its own event loop (the API, or health alone)."""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import faust
import uvicorn

from memstream.logging import get_logger
from memstream.settings import Settings

if TYPE_CHECKING:
    from memstream.services.runtime import WorkerServices

log = get_logger("memstream.services")


class EmbeddedServer(uvicorn.Server):
    """uvicorn inside the worker's event loop: Faust owns the signals, not uvicorn."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def embedded_server(api: Any, settings: Settings) -> EmbeddedServer:
    """uvicorn serving `api` on the settings' host and web port, lifespan off."""
    return EmbeddedServer(
        uvicorn.Config(
            api,
            host=settings.api_host,
            port=settings.web_port,
            log_level="warning",
            lifespan="off",
        )
    )


def attach_api(app: faust.App, services: WorkerServices, settings: Settings) -> None:
    """Serve the HTTP API from this worker (a Faust task)."""
    from memstream.privacy.dp import PrivacyBudget
    from memstream.retrieval.result_cache import ResultCache
    from memstream.services.api import create_api
    from memstream.services.auth import TokenStore
    from memstream.services.mcp import mount_mcp

    data_dir = settings.data_dir
    services.results = ResultCache(
        services.embedder, bar=settings.cache_bar, path=data_dir / "result_cache.db"
    )
    services.budget = PrivacyBudget(
        data_dir / "dp_budget.db",
        epsilon_per_tenant=settings.dp_epsilon_per_tenant,
        agent_share=settings.dp_agent_share,
    )
    api = create_api(
        services,
        TokenStore(data_dir / "tokens.db"),
        max_body_bytes=settings.max_event_bytes,
        rate_per_s=settings.rate_limit_per_s,
        rate_burst=settings.rate_limit_burst,
    )
    mcp_sessions = mount_mcp(api)  # MCP (streamable HTTP) at /mcp, same tokens

    @app.task
    async def serve_api() -> None:
        server = embedded_server(api, settings)
        log.info("api listening", url=f"http://{settings.api_host}:{settings.web_port}")
        async with mcp_sessions.run():  # lifespan is off: the MCP sessions start here
            await server.serve()


def attach_health(app: faust.App, services: WorkerServices, settings: Settings) -> None:
    """Serve /healthz, /livez and /metrics alone from a worker without the `api` role."""
    from memstream.services.api import create_health_api

    api = create_health_api(services)

    @app.task
    async def serve_health() -> None:
        server = embedded_server(api, settings)
        log.info("health listening", url=f"http://{settings.api_host}:{settings.web_port}")
        await server.serve()
