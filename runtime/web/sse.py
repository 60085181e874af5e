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

__all__ = ["event_json", "gap_json", "sse_stream"]

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


async def sse_stream(
    follower: AsyncFollower, heartbeat_s: float, retry_ms: int
) -> AsyncIterator[bytes]:
    """The bytes of a stream following `follower` until it is closed (or the runtime
    closes, or the client goes: the response then cancels this)."""
    yield f"retry: {retry_ms}\n\n".encode()
    try:
        while True:
            try:
                item = await follower.next_item(heartbeat_s)
            except Timeout:
                yield b": heartbeat\n\n"
                continue
            except Exception as error:  # closed (Stopped) or the runtime went away
                log.debug("stream of %s ends: %s", follower.session_id, error)
                return
            if isinstance(item, Gap):
                yield _frame("gap", item.latest_cursor, gap_json(item))
            else:
                yield _frame("observation", item.cursor, event_json(item))
    finally:
        follower.close()
