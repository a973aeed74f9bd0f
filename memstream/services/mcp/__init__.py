"""memstream as an MCP server: its memory tools for model hosts (Claude, IDEs, agents).

Two doors, one set of tools:

- streamable HTTP at `/mcp` on the worker's API port (`mount_mcp`), authenticated with
  the API's own bearer tokens (`Authorization: Bearer <token>`; 401 without a valid one,
  and a session answers only to the token that opened it);
- stdio (`memstream mcp`, `run_stdio`) for hosts that start a local process.

Every tool is a call to the memstream HTTP API through `AsyncHttpClient` with the caller's
own token (in-process through `httpx.ASGITransport` for `/mcp`, over the network for stdio),
so tenant, agent, teams and clearance, and every access rule, are exactly the API's: there
is no second implementation of who may see what. API refusals become tool errors whose text
names what was wrong.

Deliveries of subscriptions can be pulled with the `poll_deliveries` tool, or pushed: a
client that subscribes to the resource `memstream://deliveries` (`resources/subscribe`)
gets `notifications/resources/updated` for it whenever new deliveries arrive for its agent,
and reading the resource returns those not yet read by this session. The push needs a
session with a back-channel (stdio, or streamable HTTP at the handshake protocol versions);
sessionless clients (the 2026-07-28 revision) poll.
"""

from memstream.services.mcp.doors import (
    BearerGate,
    create_mcp,
    mount_mcp,
    run_stdio,
    serve_stdio,
)
from memstream.services.mcp.server import build_server
from memstream.services.mcp.session import DELIVERIES_URI, INSTRUCTIONS, ClientFor, describe

__all__ = [
    "DELIVERIES_URI",
    "INSTRUCTIONS",
    "BearerGate",
    "ClientFor",
    "build_server",
    "create_mcp",
    "describe",
    "mount_mcp",
    "run_stdio",
    "serve_stdio",
]
