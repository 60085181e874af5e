"""Running the app with uvicorn until SIGINT or SIGTERM, event streams closed first."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from types import FrameType

import uvicorn

from greenroom.runtime import Runtime
from greenroom.web.routes import GreenroomWeb, app

__all__ = ["serve"]

log = logging.getLogger("greenroom.web")


class _Server(uvicorn.Server):
    """uvicorn's server, ending the event streams when told to exit: uvicorn waits for
    open connections before it stops, and an event stream never ends by itself."""

    def __init__(self, config: uvicorn.Config, web: GreenroomWeb) -> None:
        super().__init__(config)
        self._web = web

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._web.close_streams()
        super().handle_exit(sig, frame)


def serve(
    runtime: Runtime,
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    token: str | None = None,
    heartbeat_s: float = 15.0,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve `app(runtime)` at `http://host:port/` until SIGINT or SIGTERM.

    127.0.0.1 by default; port 0 takes a free one. `on_ready` is called with the URL
    once the port listens. On the signal, every event stream ends cleanly (clients
    reconnect with their last event's id once a server is back), then uvicorn stops.
    """
    web = app(runtime, token=token, heartbeat_s=heartbeat_s)
    listener = socket.create_server((host, port))
    url = f"http://{host}:{listener.getsockname()[1]}/"
    log.info("greenroom web on %s", url)
    if on_ready is not None:
        on_ready(url)
    server = _Server(uvicorn.Config(web, log_level="warning", lifespan="off"), web)
    server.run(sockets=[listener])
