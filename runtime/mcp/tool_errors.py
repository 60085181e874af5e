"""What an MCP client's model reads when a call fails: what to do, in the protocol's
terms (which tool, which id), never a Python call."""

from __future__ import annotations

import logging

import attrs

from greenroom.errors import (
    AlreadyResponded,
    Conflict,
    ExecutionLost,
    ExecutionTimeout,
    GreenroomError,
    InvalidInput,
    InvalidRequestState,
    InvalidTransition,
    NotFound,
    Stopped,
    StorageError,
    StrategyNotRegistered,
    UnknownQuery,
)

__all__ = ["Call", "error_text"]

log = logging.getLogger("greenroom.mcp")


@attrs.frozen
class Call:
    """The call that failed: its tool, the session it was about (if any), and how to
    start over (the strategy's own tool, or `greenroom_start`)."""

    tool: str
    session_id: str | None = None
    query_id: str | None = None
    restart: str = "greenroom_start"


def error_text(error: BaseException, call: Call) -> str:
    """The tool error's text for `error`, raised while serving `call`."""
    sid = call.session_id
    session = f"session {sid}" if sid else "the session"
    status = f"call greenroom_status with session_id {sid!r}" if sid else "call greenroom_status"
    if isinstance(error, InvalidRequestState):
        return (
            f"{error}. Call {call.tool} again without requestState to start a new "
            "execution, or retry with the requestState of your last result."
        )
    if isinstance(error, StrategyNotRegistered):
        return (
            f"{error.args[0].split(';')[0]}. Call greenroom_strategies for the strategies "
            "this server runs."
        )
    if isinstance(error, UnknownQuery):
        which = f"query {call.query_id!r}" if call.query_id else "that query"
        return (
            f"{session} is not waiting for {which}. {status.capitalize()} for the "
            "pending query ids and answer those."
        )
    if isinstance(error, AlreadyResponded):
        return (
            f"{error.args[0].split(';')[0]}. An answer cannot be changed; answer the "
            f"pending queries ({status})."
        )
    if isinstance(error, ExecutionLost):
        return (
            f"{session} cannot come back: it ran in memory only and the server that ran "
            f"it stopped. Start it again with {call.restart}."
        )
    if isinstance(error, NotFound):
        return (
            f"there is no {session} on this server: it never started here, or it ended "
            f"too long ago to be kept. Start it again with {call.restart}."
        )
    if isinstance(error, Conflict):
        return f"{session} moved on in another server process meanwhile. Call again."
    if isinstance(error, InvalidTransition) and "already" in str(error):
        return f"{session} has ended; {status} for its final result."
    if isinstance(error, ExecutionTimeout):
        return (
            f"{session} is still running after the time this call waits; it goes on. "
            f"{status.capitalize()} later for its next step."
        )
    if isinstance(error, Stopped):
        return "the server is shutting down. Call again once it is back."
    if isinstance(error, InvalidInput):
        return f"invalid input: {error}"
    if isinstance(error, StorageError):
        log.error("MCP call %s failed on the store: %s", call.tool, error)
        return f"the server could not read or write its store ({error}). Call again later."
    if isinstance(error, GreenroomError):
        return f"{type(error).__name__}: {error}"
    log.error("MCP call %s failed unexpectedly", call.tool, exc_info=error)
    return f"internal error in the server ({type(error).__name__}); call again later."
