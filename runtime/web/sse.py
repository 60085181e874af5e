"""Server-Sent Events of a replay buffer: each event with its cursor as `id`, gaps as
`event: gap`, a comment as heartbeat; resumed from `Last-Event-ID`."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from greenroom.aio.replay import AsyncFollower
from greenroom.errors import Timeout
from greenroom.replay.records import Gap, ObservationEvent

__all__ = ["FrameCache", "event_json", "gap_json", "sse_stream"]

log = logging.getLogger("greenroom.web")


def event_json(event: ObservationEvent) -> dict[str, Any]:
    """An event as the stream's `data:` carries it."""
    return {
        "session_id": event.session_id,
        "revision": event.revision,
        "position": event.position,
        "cursor": event.cursor,
        "payload": event.payload,
    }


def gap_json(gap: Gap) -> dict[str, Any]:
    """A gap as the stream's `data:` carries it."""
    return {
        "session_id": gap.session_id,
        "reason": gap.reason,
        "detail": gap.detail,
        "requested_cursor": gap.requested_cursor,
        "latest_cursor": gap.latest_cursor,
        "latest_revision": gap.latest_revision,
        "oldest_position": gap.oldest_position,
    }


def _frame(event: str, ident: str, data: dict[str, Any]) -> bytes:
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    # One `data:` line: JSON has no raw newline, and ids (cursors) hold none either.
    return f"id: {ident}\nevent: {event}\ndata: {text}\n\n".encode()


class FrameCache:
    """The frames of the latest events, by cursor: every client of a session gets the
    same bytes for an event, so each is encoded once, not once per client."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._frames: dict[str, bytes] = {}

    def frame(self, event: ObservationEvent) -> bytes:
        """The `observation` frame of `event`."""
        found = self._frames.get(event.cursor)
        if found is None:
            found = _frame("observation", event.cursor, event_json(event))
            if len(self._frames) >= self._size:
                del self._frames[next(iter(self._frames))]  # the oldest in
            self._frames[event.cursor] = found
        return found


async def sse_stream(
    follower: AsyncFollower, heartbeat_s: float, retry_ms: int, frames: FrameCache
) -> AsyncIterator[bytes]:
    """The bytes of a stream following `follower` until it is closed (or the runtime
    closes, or the client goes: the response then cancels this)."""
    yield f"retry: {retry_ms}\n\n".encode()
    try:
        while True:
            try:
                # A timeout only to wait: queued events are taken without one.
                timeout = None if follower.pending else heartbeat_s
                item = await follower.next_item(timeout)
            except Timeout:
                yield b": heartbeat\n\n"
                continue
            except Exception as error:  # closed (Stopped) or the runtime went away
                log.debug("stream of %s ends: %s", follower.session_id, error)
                return
            if isinstance(item, Gap):
                yield _frame("gap", item.latest_cursor, gap_json(item))
            else:
                yield frames.frame(item)
    finally:
        follower.close()
