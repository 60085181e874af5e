"""Running a server on a transport: stdio, or the SDK's streamable HTTP."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

import uvicorn
from mcp.server import Server

from greenroom.mcp.stdio import loop_stdio

__all__ = ["serve_http", "serve_stdio"]

log = logging.getLogger("greenroom.mcp")


async def serve_stdio(server: Server[Any]) -> None:
    """Serve `server` on this process's stdin and stdout until the client closes them
    (read and written on the loop on asyncio: `greenroom.mcp.stdio`)."""
    async with loop_stdio() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


async def serve_http(
    server: Server[Any],
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve `server` over streamable HTTP at `http://host:port/mcp` until cancelled.

    Bound to 127.0.0.1 by default (DNS-rebinding protection on); another `host`
    exposes it to whoever can reach that address. Port 0 takes a free port.
    `on_ready` is called with the URL once the port listens (connections made from
    then on wait for the server, none is refused).
    """
    app = server.streamable_http_app(streamable_http_path="/mcp", host=host)
    # Listening before uvicorn starts: the URL is known (port 0 included) and true.
    listener = socket.create_server((host, port))
    url = f"http://{host}:{listener.getsockname()[1]}/mcp"
    log.info("greenroom MCP server on %s", url)
    if on_ready is not None:
        on_ready(url)
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    await uvicorn.Server(config).serve(sockets=[listener])
