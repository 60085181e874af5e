"""Replay buffers: what a client gets back when it resumes a session's events.

A host appends observation events per session (`Runtime.replay_append`); each event
gets the next position in the session's buffer and a cursor naming it. A client that
comes back with the cursor of the last event it saw gets exactly what it missed
(`Replayed`), or is told precisely that it cannot (`Gap`):

    start = rt.current_cursor("s1")
    rt.replay_append("s1", {"type": "turn_started"})
    result = rt.replay_after(start)      # Replayed(events=(ObservationEvent(...),), ...)

    with rt.subscribe_after(start) as sub:   # or a Gap
        event = sub.next_event(timeout=5)    # the replayed events, then live ones

    for item in rt.follow(start):        # recovers from lags and gaps by itself
        ...                              # an ObservationEvent, or a Gap (once per gap)

Gap rules, checked in this order (`Gap.detail` says which one applied):

* `unavailable`: the cursor is from another incarnation of the buffer (another epoch:
  the buffer was dropped and made again, or the process restarted); its position is
  ahead of the buffer's tail; or its revision is ahead of every revision the buffer
  has seen. None of these can be a cursor this buffer gave, so nothing is replayed.
* `trimmed`: events after the cursor were trimmed (`max_events_per_session`,
  `max_event_age_s`); `Gap.oldest_position` is the oldest position still held.

Revisions: events carry the revision they were appended with, and a cursor the
revision it was made at. Within one epoch positions never repeat, so the position
alone fixes the point to resume from; a replay across a revision change delivers the
change in order, so an older revision in a cursor is not a gap. A revision *ahead* of
the buffer (above every revision appended or passed to `current_cursor`) is.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, Literal, Self

import attrs

from actors.futures import in_handler
from runtime.errors import InvalidInput, InvalidTransition, Stopped, SubscriberLagged, Timeout

__all__ = [
    "TRIMMED",
    "UNAVAILABLE",
    "Follower",
    "Gap",
    "ObservationEvent",
    "Replayed",
    "Subscription",
]

TRIMMED = "trimmed"
UNAVAILABLE = "unavailable"


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
    are the buffer's tail now (reload the session's state, then resume from there);
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


_OPEN, _LAGGED, _STOPPED, _CLOSED = "open", "lagged", "stopped", "closed"


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout >= 0
    ):
        raise InvalidInput(f"timeout must be None or a number of seconds >= 0, got {timeout!r}")


class Subscription:
    """A session's events after a cursor: first the replayed ones, then live ones.

    Made by `Runtime.subscribe_after`. The replay and the registration for live
    events happen in one message of the session's buffer actor, so there is no gap
    and no duplicate between them. Lives on the host's threads: the buffer actor puts
    live events into this subscription's bounded queue without ever waiting, and
    `next_event` waits on a lock of its own (one per waiting call), which the buffer
    releases when it puts events in.

    * `next_event(timeout=None)`: the next event. Raises `SubscriberLagged` once more
      than `subscriber_queue_size` live events were waiting (the subscription is then
      over: resume from `lag.resume_cursor`), `Stopped` after `close()` or once the
      runtime closed (events already queued are still given first), `Timeout` when
      nothing came within `timeout` seconds.
    * Iterating yields events until the subscription or the runtime is closed.
    * `close()` (or leaving a `with` block) ends it; safe from any thread, and it wakes
      a `next_event` waiting on another thread.
    """

    __slots__ = (
        "__weakref__",
        "_capacity",
        "_cursor",
        "_live",
        "_missed",
        "_mutex",
        "_on_close",
        "_reason",
        "_replay",
        "_state",
        "_waiters",
        "session_id",
    )

    def __init__(
        self,
        session_id: str,
        cursor: str,
        capacity: int,
        on_close: Callable[[Subscription], None] | None = None,
    ) -> None:
        self.session_id = session_id
        self._cursor = cursor
        self._capacity = capacity
        self._on_close = on_close
        # Guards the queues and the state; held for a few C-level operations only.
        self._mutex = threading.Lock()
        self._replay: deque[ObservationEvent] = deque()
        self._live: deque[ObservationEvent] = deque()
        # A lock per waiting call, held until the buffer (or a close) releases it:
        # waking a waiter costs one C-level release, not a condition's notify.
        self._waiters: list[threading.Lock] = []
        self._state = _OPEN
        self._missed = 0
        self._reason = ""

    # -- the consumer's side (host threads) ---------------------------------------------

    @property
    def cursor(self) -> str:
        """The cursor of the last event given (the starting cursor before any)."""
        return self._cursor

    @property
    def pending(self) -> int:
        """Events waiting to be taken."""
        return len(self._replay) + len(self._live)

    @property
    def closed(self) -> bool:
        """Whether the subscription is over (closed, lagged, or its runtime closed)."""
        return self._state is not _OPEN

    def next_event(self, timeout: float | None = None) -> ObservationEvent:
        """The next event, waiting up to `timeout` seconds (`None`: no limit)."""
        mutex = self._mutex
        waiter = None
        while True:
            with mutex:
                if self._replay:
                    event = self._replay.popleft()
                elif self._live:
                    event = self._live.popleft()
                elif waiter is not None and waiter in self._waiters:
                    # Timed out with nobody releasing us (checked under the mutex).
                    self._waiters.remove(waiter)
                    raise Timeout(
                        f"no event for session {self.session_id!r} within {timeout} s "
                        "(the subscription stays open; call next_event again)"
                    )
                elif self._state is not _OPEN:
                    raise self._ended()
                else:
                    if waiter is None:
                        _check_timeout(timeout)
                        if timeout != 0 and getattr(in_handler, "actor", None) is not None:
                            raise InvalidTransition(
                                f"next_event() would wait inside a handler of actor "
                                f"{in_handler.actor}; handlers must not block a shared "
                                "dispatcher thread. Read subscriptions on a host thread "
                                "(or poll with timeout=0)"
                            )
                    waiter = threading.Lock()
                    waiter.acquire()
                    self._waiters.append(waiter)
                    event = None
                if event is not None:
                    self._cursor = event.cursor
                    return event
            if timeout is None:
                waiter.acquire()
            else:
                waiter.acquire(timeout=timeout)

    def _ended(self) -> Exception:
        if self._state is _LAGGED:
            return SubscriberLagged(self._missed, self._cursor)
        return Stopped(self._reason)

    def _wake(self) -> None:
        # Called with the mutex held.
        waiters = self._waiters
        for waiter in waiters:
            waiter.release()
        waiters.clear()

    def close(self) -> None:
        """End the subscription; events still queued are dropped. Idempotent."""
        with self._mutex:
            if self._state is _CLOSED:
                return
            was_open = self._state is _OPEN
            self._state = _CLOSED
            self._reason = f"subscription to session {self.session_id!r} was closed"
            self._replay.clear()
            self._live.clear()
            self._wake()
        on_close, self._on_close = self._on_close, None
        if was_open and on_close is not None:
            on_close(self)

    def __iter__(self) -> Iterator[ObservationEvent]:
        return self

    def __next__(self) -> ObservationEvent:
        try:
            return self.next_event()
        except Stopped:
            raise StopIteration from None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<Subscription {self.session_id!r} {self._state} pending={self.pending} "
            f"cursor={self._cursor!r}>"
        )

    # -- the buffer actor's side (never waits) --------------------------------------------

    def _start(self, replay: Iterable[ObservationEvent]) -> None:
        """Queue the replayed events (before the subscription is registered)."""
        with self._mutex:
            if self._state is _OPEN:
                self._replay.extend(replay)

    def _offer(self, events: list[ObservationEvent]) -> bool:
        """Queue live events; whether the subscription is still attached.

        Over capacity, it lags: its queue is dropped (counted in `missed`) and its
        next `next_event` raises `SubscriberLagged`.
        """
        with self._mutex:
            if self._state is not _OPEN:
                return False
            live = self._live
            if len(live) + len(events) > self._capacity:
                self._missed = len(self._replay) + len(live) + len(events)
                self._replay.clear()
                live.clear()
                self._state = _LAGGED
                self._wake()
                return False
            live.extend(events)
            if self._waiters:
                self._wake()
            return True

    @property
    def _lagged(self) -> bool:
        return self._state is _LAGGED

    def _stop(self, reason: str) -> None:
        """End the subscription from the runtime's side; queued events are still given."""
        with self._mutex:
            if self._state is not _OPEN:
                return
            self._state = _STOPPED
            self._reason = reason
            self._wake()


class Follower:
    """An iterator over a session's events that recovers by itself; see `Runtime.follow`.

    Yields `ObservationEvent`s, and a `Gap` once for each gap (then goes on from the
    gap's `latest_cursor`). When its subscription lags it subscribes again from the
    last cursor it yielded, so no event is skipped or repeated (events trimmed in the
    meantime come as a `Gap`). Iteration ends when `close()` is called (from any
    thread) or the runtime closes. One thread iterates; `close()` may come from any.
    """

    def __init__(self, subscribe: Callable[[str], Subscription | Gap], cursor: str) -> None:
        self._subscribe = subscribe
        self._cursor = cursor
        self._lock = threading.Lock()
        self._sub: Subscription | None = None
        self._gap: Gap | None = None
        self._closed = False
        self.lags = 0
        """How many times the subscription lagged and was made again."""
        self.gaps = 0
        """How many gaps were yielded."""
        self._connect()

    @property
    def cursor(self) -> str:
        """The cursor of the last event yielded (or of the last gap's tail)."""
        return self._cursor

    def _connect(self) -> None:
        result = self._subscribe(self._cursor)
        with self._lock:
            if self._closed:
                if isinstance(result, Subscription):
                    result.close()
                return
            if isinstance(result, Gap):
                self._gap = result
                self._cursor = result.latest_cursor
            else:
                self._sub = result

    def next_item(self, timeout: float | None = None) -> ObservationEvent | Gap:
        """The next event or gap, waiting up to `timeout` seconds for an event.

        Raises `Stopped` once closed (or the runtime closed), `Timeout` when nothing
        came in time.
        """
        while True:
            if self._closed:
                raise Stopped("this follow() was closed")
            if self._gap is not None:
                gap, self._gap = self._gap, None
                self.gaps += 1
                return gap
            sub = self._sub
            if sub is None:
                self._connect()
                continue
            try:
                event = sub.next_event(timeout)
            except SubscriberLagged as lag:
                self.lags += 1
                self._cursor = lag.resume_cursor
                self._sub = None
                continue
            self._cursor = event.cursor
            return event

    def close(self) -> None:
        """Stop following; a `next_item` waiting on another thread ends. Idempotent."""
        with self._lock:
            self._closed = True
            sub, self._sub = self._sub, None
        if sub is not None:
            sub.close()

    def __iter__(self) -> Iterator[ObservationEvent | Gap]:
        return self

    def __next__(self) -> ObservationEvent | Gap:
        try:
            return self.next_item()
        except Stopped:
            raise StopIteration from None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Follower cursor={self._cursor!r} lags={self.lags} gaps={self.gaps}>"
