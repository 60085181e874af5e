"""`greenroom.web`: a runtime's sessions and blocks over HTTP, for browsers and UIs.

    from greenroom.web import app
    uvicorn.run(app(rt), host="127.0.0.1", port=8765)   # or: greenroom serve app.db

A session's replay buffer is a Server-Sent Events stream: an `EventSource` follows it
live, and after a disconnect it reconnects by itself with the `Last-Event-ID` of the
last event it got, which is that event's cursor, so it gets exactly what it missed (or
a `gap` event saying why it cannot). Read-only; bound to 127.0.0.1 by the command;
an optional bearer token. Needs the `web` extra: `pip install 'greenroom[web]'`.
"""

from __future__ import annotations

from greenroom.web.routes import GreenroomWeb, app
from greenroom.web.serve import serve

__all__ = ["GreenroomWeb", "app", "serve"]
