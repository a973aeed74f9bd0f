"""The MCP server with every tool group registered."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
from mcp.server.mcpserver import MCPServer

from memstream.services.mcp.delivery_tools import add_delivery_tools
from memstream.services.mcp.memory_tools import add_memory_tools
from memstream.services.mcp.session import INSTRUCTIONS, ClientFor, _remember_request, _Runtime
from memstream.services.mcp.team_tools import add_team_tools


def build_server(client_for: ClientFor) -> MCPServer[Any]:
    """The MCP server whose tools call the API through `client_for` (one per door)."""

    @asynccontextmanager
    async def lifespan(_: MCPServer[Any]) -> AsyncIterator[_Runtime]:
        async with anyio.create_task_group() as tasks:
            try:
                yield _Runtime(tasks)
            finally:
                tasks.cancel_scope.cancel()

    server: MCPServer[Any] = MCPServer(
        "memstream",
        title="memstream shared memory",
        instructions=INSTRUCTIONS,
        log_level="WARNING",
        lifespan=lifespan,
        middleware=[_remember_request],
    )

    add_memory_tools(server, client_for)
    add_team_tools(server, client_for)
    add_delivery_tools(server, client_for)
    return server
