"""The greenroom exception hierarchy: every error the library raises on purpose.

All of them derive from `GreenroomError`, so a host can catch the library's errors in
one place. Each also derives from the closest built-in exception (`LookupError`,
`ValueError`, `TimeoutError`, ...) so generic handlers keep working. Messages say what
was wrong and with which id, so they can be shown to a user as they are.

Later parts of greenroom add subclasses of these; they never add a second root.
"""

from __future__ import annotations

import pykka

__all__ = [
    "AlreadyResponded",
    "CompactionError",
    "Conflict",
    "ExecutionCancelled",
    "ExecutionLost",
    "ExecutionTimeout",
    "FutureTimeout",
    "GreenroomError",
    "InvalidInput",
    "InvalidRequestState",
    "InvalidTransition",
    "LeaseHeld",
    "MalformedCursor",
    "NonDeterministicStrategy",
    "NotFound",
    "SchemaTooNew",
    "SettleTimeout",
    "Stopped",
    "StorageError",
    "StrategyNotRegistered",
    "SubscriberLagged",
    "Timeout",
    "UnknownQuery",
    "WrongSession",
]


class GreenroomError(Exception):
    """Base class of every error greenroom raises on purpose."""


class NotFound(GreenroomError, LookupError):
    """The named thing (object, file, actor, session, ...) does not exist."""


class InvalidInput(GreenroomError, ValueError):
    """An argument was malformed or out of range; nothing was changed."""


class InvalidTransition(GreenroomError):
    """The request is well-formed but not allowed in the target's current state."""


class StorageError(GreenroomError):
    """The store or a file on disk could not be read or written."""


class SchemaTooNew(StorageError):
    """The database was written by a newer greenroom than this one."""

    def __init__(self, path: str, found: int, supported: int) -> None:
        self.path = path
        self.found = found
        self.supported = supported
        super().__init__(
            f"store {path!r} has schema version {found}, but this greenroom supports "
            f"versions up to {supported}; upgrade greenroom to open it"
        )


class Stopped(GreenroomError):
    """The runtime (or the part asked) has been closed and accepts no more calls."""


class Timeout(GreenroomError, TimeoutError):
    """Something did not finish within the time allowed."""


class FutureTimeout(Timeout, pykka.Timeout):
    """An actor's reply did not arrive within the `timeout` given to `Future.get`.

    Also a `pykka.Timeout`, so code written against pykka's futures keeps working.
    """


class SettleTimeout(Timeout):
    """Actors were still busy when a settle ran out of time.

    `busy` maps each busy actor's name to the number of messages it still had queued
    or in hand when the wait gave up.
    """

    def __init__(self, timeout_s: float, busy: dict[str, int]) -> None:
        self.timeout_s = timeout_s
        self.busy = dict(busy)
        shown = sorted(self.busy.items(), key=lambda item: (-item[1], item[0]))[:10]
        names = ", ".join(f"{name} ({count} pending)" for name, count in shown)
        more = len(self.busy) - len(shown)
        if more > 0:
            names += f", and {more} more"
        super().__init__(
            f"actors did not settle within {timeout_s:g} s; still busy: {names or 'none'}"
            " (a handler may be blocking, or actors may be messaging each other forever)"
        )


class Conflict(InvalidTransition):
    """A conditional write found the stored state changed since it was read; nothing
    was written (another process, or another writer, got there first)."""


class LeaseHeld(InvalidTransition):
    """Another host serves this durable execution or block now (several hosts on one
    store): `owner` is that host's `RuntimeConfig.host_id`, `until_ms` when its lease
    ends if it does not renew it (Unix milliseconds); `kind` is "execution" or "block"."""

    def __init__(self, session_id: str, owner: str, until_ms: int, kind: str = "execution") -> None:
        self.session_id = session_id
        self.owner = owner
        self.until_ms = until_ms
        self.kind = kind
        super().__init__(
            f"{kind} {session_id} is served by host {owner!r} (its lease runs until "
            f"{until_ms} ms, Unix time, and is renewed while that host lives): send this "
            "call to that host, or call again once the lease has run out (a host that "
            "died leaves it to run out; then any host takes it over)"
        )


# -- executions ---------------------------------------------------------------------------


class UnknownQuery(NotFound):
    """A feed named a query id the execution session never asked."""


class AlreadyResponded(InvalidTransition):
    """A query was already answered, with a different response."""


class ExecutionTimeout(Timeout):
    """An execution neither paused nor finished within the `timeout` given.

    The session goes on (an answer already fed stays applied) and stays visible and
    cancellable: `session_id` names it.
    """

    def __init__(self, message: str, session_id: str) -> None:
        super().__init__(message)
        self.session_id = session_id


class ExecutionCancelled(GreenroomError):
    """The execution was cancelled (by the host or the GC) while waiting for an answer."""


class ExecutionLost(NotFound):
    """The execution existed but cannot come back: it was not durable (its strategy was
    not registered by name) and the process that ran it stopped."""


class StrategyNotRegistered(NotFound):
    """A durable execution's strategy name is not registered in this process, so it
    cannot be re-driven here; register it (`rt.executions.register`) and call again.
    The execution and its journal are kept."""


class NonDeterministicStrategy(GreenroomError):
    """On re-drive, the strategy asked something else than its journal holds (another
    prompt, another number of queries, another step); the execution ends in `error`."""


class InvalidRequestState(InvalidInput):
    """An MCP `requestState` this server did not issue for this call (forged, altered,
    or from another tool call); nothing was fed."""


# -- transcripts --------------------------------------------------------------------------


class CompactionError(GreenroomError):
    """Compaction failed (for example the summarizer raised); nothing was changed."""


# -- replay buffers -----------------------------------------------------------------------


class MalformedCursor(InvalidInput):
    """A replay cursor string could not be parsed; the message names the bad part."""


class WrongSession(InvalidInput):
    """A cursor belongs to another session than the one the call is about."""


class SubscriberLagged(GreenroomError):
    """A subscriber fell behind and its bounded queue overflowed.

    `missed` is how many events it lost; `resume_cursor` is the cursor of the last
    event it was given, to re-subscribe (or replay) from.
    """

    def __init__(self, missed: int, resume_cursor: str) -> None:
        self.missed = missed
        self.resume_cursor = resume_cursor
        super().__init__(
            f"subscriber lagged and missed {missed} events; re-subscribe from "
            f"cursor {resume_cursor!r} to get them (or a Gap if they are gone)"
        )
