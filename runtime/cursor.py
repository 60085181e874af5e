"""Replay cursors: the opaque strings a client keeps to resume a session's events.

    v1:<epoch>:<revision>:<position>:<session_id>              in-memory buffers
    v2:<epoch>:<revision>:<position>:<stream_id>:<session_id>  buffers on Redis Streams

* `v1` / `v2`: the format's version; any other prefix is refused. `v1` names an event
  of a buffer in one runtime's memory (`greenroom.replay.namespace`), `v2` one of a
  Redis stream (`greenroom.replay.streams`); a cursor of one kind given to the other
  is well-formed, and answered as a `Gap` (`unavailable`).
* `epoch`: 16 lowercase hex digits, new per replay-buffer incarnation (unique, not
  secret: `greenroom.ids`). A buffer made again (after it was dropped, or in a new
  process) has a new epoch, so a cursor from before can never silently replay the
  wrong suffix.
* `revision`: the session revision the cursor was made at (a non-negative integer).
* `position`: the position of the last event the holder has seen (0: none yet).
* `stream_id` (`v2` only): that event's entry id in the stream, `<ms>-<seq>` (`0-0`
  before any), where a read resumes.
* `session_id`: last, so it may itself contain `:`; text a session id can be (no lone
  surrogate).

Clients treat cursors as opaque: they only store them and hand them back. Integers
are canonical (no sign, no leading zero, below 2**63: the same bound the runtime's
facade puts on a revision; a stream id's two parts below 2**64, as Redis keeps them),
so a cursor parses back to exactly the parts it was made from, and formatting them
again gives the same string.
"""

from __future__ import annotations

import attrs

from greenroom.errors import MalformedCursor, WrongSession

__all__ = [
    "CURSOR_VERSION",
    "MAX_CURSOR_INT",
    "STREAM_CURSOR_VERSION",
    "ParsedCursor",
    "format_cursor",
    "format_stream_cursor",
    "parse_cursor",
]

CURSOR_VERSION = "v1"
STREAM_CURSOR_VERSION = "v2"
EPOCH_HEX_DIGITS = 16
MAX_CURSOR_INT = 2**63  # every int a cursor carries is below this (as the facade's)
_MAX_DIGITS = len(str(MAX_CURSOR_INT))  # longer texts are refused before int() runs
_HEX = frozenset("0123456789abcdef")
_SHOWN = 60  # characters of a bad cursor quoted in an error message


@attrs.frozen
class ParsedCursor:
    """The parts of a cursor (see the module docstring)."""

    epoch: str
    revision: int
    position: int
    session_id: str
    stream_id: str | None = None
    """The stream entry id of a `v2` cursor; None for `v1`."""

    def format(self) -> str:
        """The cursor string these parts make."""
        if self.stream_id is None:
            return format_cursor(self.epoch, self.revision, self.position, self.session_id)
        return format_stream_cursor(
            self.epoch, self.revision, self.position, self.stream_id, self.session_id
        )


def format_cursor(epoch: str, revision: int, position: int, session_id: str) -> str:
    """The cursor string for these parts (callers pass parts that are already valid)."""
    return f"{CURSOR_VERSION}:{epoch}:{revision}:{position}:{session_id}"


def format_stream_cursor(
    epoch: str, revision: int, position: int, stream_id: str, session_id: str
) -> str:
    """The `v2` cursor string for these parts (already valid)."""
    return f"{STREAM_CURSOR_VERSION}:{epoch}:{revision}:{position}:{stream_id}:{session_id}"


def _shown(cursor: str) -> str:
    return repr(cursor if len(cursor) <= _SHOWN else cursor[:_SHOWN] + "...")


def _number(text: str, part: str, cursor: str) -> int:
    if not text:
        raise MalformedCursor(f"malformed cursor {_shown(cursor)}: its {part} is empty")
    if not (text.isascii() and text.isdigit()):
        raise MalformedCursor(
            f"malformed cursor {_shown(cursor)}: its {part} {text[:20]!r} is not a "
            "non-negative integer"
        )
    if len(text) > 1 and text[0] == "0":
        raise MalformedCursor(
            f"malformed cursor {_shown(cursor)}: its {part} {text[:20]!r} has a leading zero"
        )
    if len(text) > _MAX_DIGITS or int(text) >= MAX_CURSOR_INT:
        raise MalformedCursor(
            f"malformed cursor {_shown(cursor)}: its {part} is not below 2**63 "
            f"({MAX_CURSOR_INT}); use a cursor this runtime gave"
        )
    return int(text)


def parse_cursor(cursor: object, *, session_id: str | None = None) -> ParsedCursor:
    """The parts of `cursor`; `MalformedCursor` naming the part that is wrong.

    With `session_id`, a cursor of another session raises `WrongSession`.
    """
    if not isinstance(cursor, str):
        raise MalformedCursor(f"a cursor is a str, got {type(cursor).__name__}")
    version = cursor.partition(":")[0]
    if version not in (CURSOR_VERSION, STREAM_CURSOR_VERSION):
        raise MalformedCursor(
            f"malformed cursor {_shown(cursor)}: it does not start with "
            f"{CURSOR_VERSION + ':'!r} or {STREAM_CURSOR_VERSION + ':'!r} (its version "
            "prefix); use a cursor this runtime gave"
        )
    stream = version == STREAM_CURSOR_VERSION
    names: tuple[str, ...] = ("epoch", "revision", "position", "session id")
    if stream:
        names = ("epoch", "revision", "position", "stream id", "session id")
    parts = cursor.split(":", len(names))
    if len(parts) <= len(names):
        missing = names[len(parts) - 1]
        raise MalformedCursor(f"malformed cursor {_shown(cursor)}: its {missing} is missing")
    stream_id: str | None = None
    if stream:
        _version, epoch, revision, position, stream_id, sid = parts
        _check_stream_id(stream_id, cursor)
    else:
        _version, epoch, revision, position, sid = parts
    if len(epoch) != EPOCH_HEX_DIGITS or not _HEX.issuperset(epoch):
        raise MalformedCursor(
            f"malformed cursor {_shown(cursor)}: its epoch {epoch[:20]!r} is not "
            f"{EPOCH_HEX_DIGITS} lowercase hex digits"
        )
    parsed_revision = _number(revision, "revision", cursor)
    parsed_position = _number(position, "position", cursor)
    if not sid:
        raise MalformedCursor(f"malformed cursor {_shown(cursor)}: its session id is empty")
    if not sid.isascii():
        try:
            sid.encode("utf-8")
        except UnicodeEncodeError as error:
            # No session of this runtime has such an id (append refuses it).
            raise MalformedCursor(
                f"malformed cursor {_shown(cursor)}: its session id is not valid Unicode "
                f"(a lone surrogate at position {error.start})"
            ) from None
    if session_id is not None and sid != session_id:
        raise WrongSession(
            f"cursor belongs to session {sid!r}, not {session_id!r}; use a cursor of "
            f"session {session_id!r}"
        )
    return ParsedCursor(epoch, parsed_revision, parsed_position, sid, stream_id)


_MAX_STREAM_PART = 2**64


def _check_stream_id(stream_id: str, cursor: str) -> None:
    """`MalformedCursor` unless `stream_id` is `<ms>-<seq>`, both canonical, below 2**64."""
    ms, dash, seq = stream_id.partition("-")
    for text in (ms, seq):
        if (
            not dash
            or not text
            or not (text.isascii() and text.isdigit())
            or (len(text) > 1 and text[0] == "0")
            or len(text) > 20
            or int(text) >= _MAX_STREAM_PART
        ):
            raise MalformedCursor(
                f"malformed cursor {_shown(cursor)}: its stream id {stream_id[:40]!r} is "
                "not <ms>-<seq> (two non-negative integers below 2**64)"
            )
