"""The ASGI app: a session's events as Server-Sent Events, and the blocks, read-only."""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import AsyncIterator, Callable
from importlib import resources
from typing import Any

import attrs
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from greenroom.aio.bridge import off_loop, wait
from greenroom.aio.replay import AsyncReplay
from greenroom.archives import check_block_id
from greenroom.blocks.records import SessionStats
from greenroom.cursor import ParsedCursor, parse_cursor
from greenroom.errors import GreenroomError, InvalidInput, MalformedCursor, NotFound
from greenroom.replay.messages import check_session_id
from greenroom.replay.records import Gap
from greenroom.runtime import Runtime
from greenroom.web.sse import FrameCache, sse_stream

__all__ = ["GreenroomWeb", "app"]

log = logging.getLogger("greenroom.web")

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_CHUNK = 256 * 1024


class GreenroomWeb(Starlette):
    """The app `app()` returns (a Starlette app): `close_streams()` ends every event
    stream cleanly, as a server's shutdown must before it waits for connections."""

    def __init__(self, runtime: Runtime, token: str | None, heartbeat_s: float) -> None:
        self.runtime = runtime
        self._token = token.encode() if token is not None else None
        self._heartbeat_s = heartbeat_s
        self._replay = AsyncReplay(runtime.replay)
        self._followers: set[Any] = set()
        self._frames = FrameCache()
        routes = [
            Route("/", self._page),
            Route("/sessions/{session_id:path}/events", self._events),
            Route("/blocks", self._blocks),
            Route("/blocks/{block_id:path}/output", self._output),
            Route("/blocks/{block_id:path}", self._block),
        ]
        super().__init__(routes=routes)

    def close_streams(self) -> None:
        """End every open event stream (their clients see the stream end, and
        reconnect with their last event's id)."""
        for follower in list(self._followers):
            follower.close()

    # -- access ---------------------------------------------------------------------------

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self._token is not None and not self._allowed(scope):
            response = JSONResponse(
                {"error": "unauthorized: send Authorization: Bearer <token> (or ?token=)"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
            await response(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def _allowed(self, scope: Any) -> bool:
        assert self._token is not None
        request = Request(scope)
        given = request.headers.get("authorization", "")
        token = given[7:] if given.lower().startswith("bearer ") else ""
        # EventSource cannot send headers: the page passes the token as a parameter.
        token = token or request.query_params.get("token", "")
        return hmac.compare_digest(token.encode(), self._token)

    # -- routes ---------------------------------------------------------------------------

    async def _page(self, _request: Request) -> Response:
        page = resources.files("greenroom.web").joinpath("page.html").read_text("utf-8")
        return HTMLResponse(page)

    async def _events(self, request: Request) -> Response:
        session_id = request.path_params["session_id"]
        try:
            check_session_id(session_id)
            _check_printable(session_id, "session id")
            cursor = request.headers.get("last-event-id") or request.query_params.get("cursor")
            if cursor:
                parse_cursor(cursor)
            else:
                cursor = await self._oldest_cursor(session_id)
            follower = self._replay.follow(cursor, session_id=session_id)
        except (InvalidInput, MalformedCursor) as error:
            return _error(400, str(error))
        self._followers.add(follower)

        async def body() -> AsyncIterator[bytes]:
            try:
                async for chunk in sse_stream(follower, self._heartbeat_s, 1000, self._frames):
                    yield chunk
            finally:
                self._followers.discard(follower)

        return StreamingResponse(
            body(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def _oldest_cursor(self, session_id: str) -> str:
        """A cursor before the oldest event the buffer holds: a new client gets all
        of them, then live events (no gap for what was trimmed before it came)."""
        tail = parse_cursor(await self._replay.current_cursor(session_id))
        start = _before(tail, 0)
        found = await self._replay.after(start, session_id=session_id)
        if isinstance(found, Gap) and found.reason == "trimmed" and found.oldest_position:
            return _before(tail, found.oldest_position - 1)
        return start

    async def _blocks(self, _request: Request) -> Response:
        # The store is read on a worker thread: the loop goes on serving the streams.
        rows = await off_loop(self._list_blocks)
        return JSONResponse(rows)

    def _list_blocks(self) -> list[dict[str, Any]]:
        return [
            {"id": obj.id, "view": obj.meta.get("view"), **_stats(obj.meta)}
            for obj in self.runtime.store.list_objects("block", unreadable=[])
        ]

    async def _block(self, request: Request) -> Response:
        block_id = request.path_params["block_id"]
        found = await off_loop(_checked, lambda: self._find_block(block_id))
        if isinstance(found, Response):
            return found
        return JSONResponse({"id": block_id, "stats": _stats(found), "meta": found})

    def _find_block(self, block_id: str) -> dict[str, Any]:
        check_block_id(block_id)
        _check_printable(block_id, "block id")
        obj = self.runtime.store.find_object("block", block_id)
        if obj is None:
            raise NotFound(f"no block {block_id!r}")
        return dict(obj.meta)

    async def _output(self, request: Request) -> Response:
        block_id = request.path_params["block_id"]
        found = await off_loop(_checked, lambda: self._find_block(block_id))
        if isinstance(found, Response):
            return found
        view = str(found.get("view") or "agent")
        handle = await off_loop(self.runtime.blocks.get, block_id, view=view)
        data = (await wait(handle.read_output_future())).data
        size = len(data)
        start, end, status = 0, size, 200
        header = request.headers.get("range")
        if header:
            match = _RANGE.fullmatch(header.strip())
            if match is None or not (match.group(1) or match.group(2)):
                return _error(416, f"unsupported Range {header!r}: one bytes=a-b range")
            first, last = match.group(1), match.group(2)
            if first:
                start = int(first)
                end = min(size, int(last) + 1) if last else size
            else:  # the last N bytes
                start = max(0, size - int(last))
            if start >= size or start >= end:
                return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
            status = 206
        headers = {"Accept-Ranges": "bytes", "Content-Length": str(end - start)}
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"

        async def chunks() -> AsyncIterator[bytes]:
            for at in range(start, end, _CHUNK):
                yield data[at : min(end, at + _CHUNK)]

        return StreamingResponse(
            chunks(), status_code=status, media_type="application/octet-stream", headers=headers
        )


def app(runtime: Runtime, *, token: str | None = None, heartbeat_s: float = 15.0) -> GreenroomWeb:
    """The ASGI app (Starlette) serving `runtime`, read-only.

    `GET /sessions/{id}/events`: the session's replay buffer as Server-Sent Events
    (each event's `id` is its cursor; resumes after `Last-Event-ID` or `?cursor=`,
    from the oldest event held without either; gaps as `event: gap`, after which the
    stream goes on from the gap's `latest_cursor`; a comment every
    `heartbeat_s`). `GET /blocks`, `GET /blocks/{id}`, `GET /blocks/{id}/output`
    (`Range` honoured). `GET /` is a page that lists the blocks and follows a session.
    With `token`, every route wants `Authorization: Bearer <token>` (or `?token=`).
    Serve it on 127.0.0.1 (`greenroom serve`); call `close_streams()` before a server
    waits for its connections on shutdown.
    """
    if token is not None and (not isinstance(token, str) or len(token) < 16):
        raise InvalidInput("a token is a str of at least 16 characters")
    if not heartbeat_s > 0:
        raise InvalidInput(f"heartbeat_s must be > 0, got {heartbeat_s!r}")
    return GreenroomWeb(runtime, token, heartbeat_s)


def _check_printable(text: str, what: str) -> None:
    """Ids from a URL: at most 1,024 characters, no control character."""
    if len(text) > 1024 or any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise InvalidInput(f"a {what} in a URL is 1 to 1,024 printable characters")


def _stats(meta: dict[str, Any]) -> dict[str, Any]:
    stats = SessionStats.from_meta(meta)
    return {
        "line_count": stats.line_count,
        "token_estimate": stats.token_estimate,
        "start_ts_ms": stats.start_ts_ms,
        "last_activity_ms": stats.last_activity_ms,
        "exit_code": meta.get("session:exit_code"),
        "ended_ms": meta.get("session:ended_ms"),
    }


def _checked(get: Callable[[], dict[str, Any]]) -> dict[str, Any] | Response:
    try:
        return get()
    except InvalidInput as error:
        return _error(400, str(error))
    except NotFound as error:
        return _error(404, str(error))
    except GreenroomError as error:
        log.warning("web: %s", error)
        return _error(500, str(error))


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _before(tail: ParsedCursor, position: int) -> str:
    """A cursor of `tail`'s buffer at `position`, before what it holds after it: for a
    stream's buffer (`v2`), one that reads from its first entry on (stream id `0-0`)."""
    stream_id = None if tail.stream_id is None else "0-0"
    return attrs.evolve(tail, position=position, stream_id=stream_id).format()
