"""Replay buffers: what a client gets back when it resumes a session's events.

A host appends observation events per session (`Runtime.replay.append`); each event
gets the next position in the session's buffer and a cursor naming it. A client that
comes back with the cursor of the last event it saw gets exactly what it missed
(`Replayed`), or is told precisely that it cannot (`Gap`):

    start = rt.replay.current_cursor("s1")
    rt.replay.append("s1", {"type": "turn_started"})     # waits; returns the event
    rt.replay.publish("s1", {"type": "turn_activity"})   # never waits; returns None
    result = rt.replay.after(start)      # Replayed(events=(ObservationEvent(...), ...), ...)

    with rt.replay.subscribe(start) as sub:   # or a Gap
        event = sub.next_event(timeout=5)    # the replayed events, then live ones

    for item in rt.replay.follow(start):        # recovers from lags and gaps by itself
        ...                              # an ObservationEvent, or a Gap (once per gap)

Gap rules, checked in this order (`Gap.detail` says which one applied):

* `unavailable`: the cursor is from another incarnation of the buffer (another epoch:
  the buffer was dropped and made again, or the process restarted); its position is
  ahead of the buffer's tail; or its revision is ahead of every revision the buffer
  has seen. None of these can be a cursor this buffer gave, so nothing is replayed.
  A session with no buffer (none made yet, or dropped) answers reads as an empty
  buffer at the epoch reserved for its next buffer, without making one: so every
  cursor of it is `unavailable` except that reserved epoch's own at position 0, which
  replays nothing (see `greenroom.replay.namespace`).
* `trimmed`: events after the cursor were trimmed (`max_events_per_session`,
  `max_event_age_s`); `Gap.oldest_position` is the oldest position still held.

Gap.latest_revision is the revision of the buffer that answers: the highest revision
appended to *this incarnation* or passed to `current_cursor` for it. After the buffer
was made again it knows nothing of the old one, so an `unavailable` gap for a stale
cursor at revision 7 may well say `latest_revision=0`: it is not the session's
revision (the host owns that; reload the session's state from the host), only the
revision `latest_cursor` carries.

Revisions: events carry the revision they were appended with, and a cursor the
revision it was made at. Within one epoch positions never repeat, so the position
alone fixes the point to resume from; a replay across a revision change delivers the
change in order, so an older revision in a cursor is not a gap. A revision *ahead* of
the buffer (above every revision appended or passed to `current_cursor`) is.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import attrs

__all__ = [
    "TRIMMED",
    "UNAVAILABLE",
    "Gap",
    "ObservationEvent",
    "Replayed",
]

TRIMMED: Final = "trimmed"
UNAVAILABLE: Final = "unavailable"


@attrs.frozen
class ObservationEvent:
    """One event of a session's replay buffer; immutable.

    `position` counts from 1 within the buffer's incarnation; `cursor` names this
    event (resume after it with `replay_after(event.cursor)`). `payload` is stored as
    given, shared by every subscriber: do not change it after appending.
    """

    session_id: str
    revision: int
    position: int
    cursor: str
    payload: Any


@attrs.frozen
class Replayed:
    """The events after a cursor, in order (none when the cursor is at the tail).

    `latest_cursor` is the cursor to resume from next: the last event's, or the
    requested one when there were no events.
    """

    session_id: str
    events: tuple[ObservationEvent, ...]
    latest_cursor: str


@attrs.frozen
class Gap:
    """The events after `requested_cursor` cannot be replayed; see the module docstring.

    `reason` is `"trimmed"` or `"unavailable"`; `latest_cursor` and `latest_revision`
    are the buffer's tail now (reload the session's state, then resume from there;
    `latest_revision` is the answering buffer incarnation's, which after a re-creation
    may be below the requested cursor's: see the module docstring);
    `oldest_position` is the oldest position still held for `trimmed` (`None` when the
    buffer holds nothing, and for `unavailable`); `detail` says why, in words.
    """

    session_id: str
    reason: Literal["trimmed", "unavailable"]
    requested_cursor: str
    latest_cursor: str
    latest_revision: int
    oldest_position: int | None = None
    detail: str = ""
