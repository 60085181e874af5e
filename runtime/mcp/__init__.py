"""`greenroom.mcp`: registered strategies served to MCP clients, on the official SDK.

    pip install 'greenroom[mcp]'
    greenroom mcp --db host.db --strategies my_package.strategies   # stdio

    from greenroom.mcp import build_server, serve_stdio
    server = build_server("host.db", my_strategies)
    anyio.run(serve_stdio, server)

Each strategy is a tool that speaks the 2026-07-28 revision's multi round-trip
requests (see `greenroom.mcp.server`); the `greenroom_*` tools serve older clients.
"""

from __future__ import annotations

from greenroom.mcp.serve import serve_http, serve_stdio
from greenroom.mcp.server import EXPLICIT_TOOLS, build_server, runtime_of
from greenroom.mcp.state import RequestState, StateSigner

__all__ = [
    "EXPLICIT_TOOLS",
    "RequestState",
    "StateSigner",
    "build_server",
    "runtime_of",
    "serve_http",
    "serve_stdio",
]
