"""Replay buffers: what a client gets back when it resumes a session's events.

A host appends observation events per session (`Runtime.replay_append`); each event
gets the next position in the session's buffer and a cursor naming it. A client that
comes back with the cursor of the last event it saw gets exactly what it missed
(`Replayed`), or is told precisely that it cannot (`Gap`):

    start = rt.current_cursor("s1")
    rt.replay_append("s1", {"type": "turn_started"})     # waits; returns the event
    rt.replay_publish("s1", {"type": "turn_activity"})   # never waits; returns None
    result = rt.replay_after(start)      # Replayed(events=(ObservationEvent(...), ...), ...)

    with rt.subscribe_after(start) as sub:   # or a Gap
        event = sub.next_event(timeout=5)    # the replayed events, then live ones

    for item in rt.follow(start):        # recovers from lags and gaps by itself
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

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, Literal, Protocol, Self

import attrs
from greenroom.clock import stopwatch
from greenroom.errors import InvalidInput, InvalidTransition, Stopped, SubscriberLagged, Timeout
from greenroom.futures import in_handler

__all__ = [
    "TRIMMED",
    "UNAVAILABLE",
    "Follower",
    "Gap",
    "ObservationEvent",
    "PendingSubscription",
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


_OPEN, _LAGGED, _STOPPED, _CLOSED = "open", "lagged", "stopped", "closed"


def wait_limit(timeout: float | None) -> float | None:
    """The seconds a call may wait for `timeout` (`None`: no limit); `InvalidInput` if bad.

    `None`, and any timeout of `threading.TIMEOUT_MAX` or more (`float("inf")`
    included), mean no limit; NaN, negative numbers and non-numbers are refused.
    """
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout >= 0:
        raise InvalidInput(
            f"timeout must be None or a number of seconds >= 0 (inf: no limit), got {timeout!r}"
        )
    if timeout >= threading.TIMEOUT_MAX:
        return None
    return float(timeout)


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - stopwatch())


class _Releasable(Protocol):
    """What a subscription wakes: a held `threading.Lock`, or an asyncio waker."""

    def release(self) -> None: ...


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
      over: resume from `lag.resume_cursor`; `lag.missed` counts the events dropped
      from its queue at the overflow, not those appended after it, which it was no
      longer given: the resume gets them all), `Stopped` after `close()` or once the
      runtime closed (events already queued are still given first), `Timeout` when
      nothing came within `timeout` seconds in all (a deadline: an event another
      consumer of the same subscription took does not restart it). `timeout=None`,
      and any timeout of `threading.TIMEOUT_MAX` or more (`inf` included), wait with no
      limit; NaN or a negative timeout is `InvalidInput`.
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
        # waking a waiter costs one C-level release, not a condition's notify. An
        # asyncio waiter (`greenroom.aio`) lists an object whose `release` wakes its loop.
        self._waiters: list[_Releasable] = []
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
        deadline = None
        remaining = None
        checked = False
        try:
            while True:
                with mutex:
                    if waiter is not None:
                        # Released by a put or a close, or timed out (then still listed).
                        if waiter in self._waiters:
                            self._waiters.remove(waiter)
                        waiter = None
                    event = self._pop_ready()
                    if event is None:
                        if not checked:
                            # First time round: check, then fix the deadline once.
                            checked = True
                            limit = wait_limit(timeout)
                            if limit != 0 and getattr(in_handler, "actor", None) is not None:
                                raise InvalidTransition(
                                    f"next_event() would wait inside a handler of actor "
                                    f"{in_handler.actor}; handlers must not block a shared "
                                    "dispatcher thread. Read subscriptions on a host thread "
                                    "(or poll with timeout=0)"
                                )
                            if limit is not None:
                                deadline = stopwatch() + limit
                        remaining = _remaining(deadline)
                        if remaining is not None and remaining <= 0:
                            raise Timeout(
                                f"no event for session {self.session_id!r} within {timeout} s "
                                "(the subscription stays open; call next_event again)"
                            )
                        waiter = threading.Lock()
                        waiter.acquire()
                        self._waiters.append(waiter)
                    if event is not None:
                        self._cursor = event.cursor
                        return event
                if remaining is None:
                    waiter.acquire()
                else:
                    waiter.acquire(timeout=remaining)
        finally:
            if waiter is not None:
                with mutex:
                    if waiter in self._waiters:
                        self._waiters.remove(waiter)

    def _take_or_wake(self, waker: _Releasable) -> ObservationEvent | None:
        """The next queued event without waiting, or `None` with `waker` registered.

        A registered `waker` has its `release()` called once, under this subscription's
        mutex on the buffer's (or the closer's) thread, at the next put or end: it must
        only hand the news on (`greenroom.aio` calls its loop's `call_soon_threadsafe`).
        Raises as `next_event` does once the subscription is over and drained.
        """
        with self._mutex:
            event = self._pop_ready()
            if event is None:
                if waker not in self._waiters:
                    self._waiters.append(waker)
                return None
            self._cursor = event.cursor
            return event

    def _pop_ready(self) -> ObservationEvent | None:
        """The next queued event, `None` if none yet; raises once over and drained.
        Called holding the mutex."""
        if self._replay:
            return self._replay.popleft()
        if self._live:
            return self._live.popleft()
        if self._state is not _OPEN:
            raise self._ended()
        return None

    def _drop_waker(self, waker: _Releasable) -> None:
        """Unregister a `waker` of `_take_or_wake` that no longer waits."""
        with self._mutex:
            if waker in self._waiters:
                self._waiters.remove(waker)

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


class PendingSubscription(Protocol):
    """A subscribe the buffer has not answered yet (what `Runtime.follow` re-subscribes
    with, so that `Follower.next_item`'s timeout bounds the re-subscribe too)."""

    def wait(self, timeout: float | None) -> Subscription | Gap:
        """The answer, waiting up to `timeout`; `Timeout` leaves it pending."""
        ...

    def cancel(self) -> None:
        """Give it up: the subscription it would give is closed."""
        ...


class _FollowerState(Protocol):
    _lock: threading.Lock
    _closed: bool
    _gap: Gap | None
    _cursor: str
    _sub: Subscription | None


def adopt_subscribed(follower: _FollowerState, result: Subscription | Gap) -> None:
    """Take a subscribe's answer into a follower (this module's, or `greenroom.aio`'s):
    a subscription to read from, or a gap to yield and go on after. Closed meanwhile:
    the new subscription is closed at once."""
    with follower._lock:
        if follower._closed:
            if isinstance(result, Subscription):
                result.close()
            return
        if isinstance(result, Gap):
            follower._gap = result
            follower._cursor = result.latest_cursor
        else:
            follower._sub = result


class Follower:
    """An iterator over a session's events that recovers by itself; see `Runtime.follow`.

    Yields `ObservationEvent`s, and a `Gap` once for each gap (then goes on from the
    gap's `latest_cursor`). When its subscription lags it subscribes again from the
    last cursor it yielded, so no event is skipped or repeated (events trimmed in the
    meantime come as a `Gap`). Iteration ends when `close()` is called (from any
    thread) or the runtime closes. One thread iterates; `close()` may come from any.

    `next_item(timeout)` keeps one deadline for the whole call: waiting for events,
    recovering from lags and re-subscribing all count against it. A re-subscribe not
    answered in time stays pending and the next call picks it up (a poll with
    `timeout=0` never waits for it, and never sends it twice).
    """

    def __init__(
        self,
        subscribe: Callable[[str], Subscription | Gap | PendingSubscription],
        cursor: str,
    ) -> None:
        self._subscribe = subscribe
        self._cursor = cursor
        self._lock = threading.Lock()
        self._sub: Subscription | None = None
        self._pending: PendingSubscription | None = None
        self._gap: Gap | None = None
        self._closed = False
        self.lags = 0
        """How many times the subscription lagged and was made again."""
        self.gaps = 0
        """How many gaps were yielded."""
        self._connect(None)

    @property
    def cursor(self) -> str:
        """The cursor of the last event yielded (or of the last gap's tail)."""
        return self._cursor

    def _connect(self, deadline: float | None) -> None:
        pending = self._pending
        if pending is None:
            result = self._subscribe(self._cursor)
            if not isinstance(result, Subscription | Gap):
                pending = result
                with self._lock:
                    if self._closed:
                        pending.cancel()
                        return
                    self._pending = pending
        if pending is not None:
            # Timeout: it stays pending, for the next call to pick up.
            result = pending.wait(_remaining(deadline))
            self._pending = None
        adopt_subscribed(self, result)

    def next_item(self, timeout: float | None = None) -> ObservationEvent | Gap:
        """The next event or gap, waiting up to `timeout` seconds in all.

        Raises `Stopped` once closed (or the runtime closed), `Timeout` when nothing
        came in time. Timeouts are as for `Subscription.next_event`.
        """
        limit = wait_limit(timeout)
        deadline = None if limit is None else stopwatch() + limit
        while True:
            if self._closed:
                raise Stopped("this follow() was closed")
            if self._gap is not None:
                gap, self._gap = self._gap, None
                self.gaps += 1
                return gap
            sub = self._sub
            if sub is None:
                try:
                    self._connect(deadline)
                except Timeout:
                    raise Timeout(
                        f"no event within {timeout} s: re-subscribing from cursor "
                        f"{self._cursor!r} is not answered yet (it stays pending; call "
                        "next_item again)"
                    ) from None
                continue
            try:
                event = sub.next_event(_remaining(deadline))
            except Timeout:
                raise Timeout(
                    f"no event for session {sub.session_id!r} within {timeout} s (still "
                    "following; call next_item again)"
                ) from None
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
            pending, self._pending = self._pending, None
        if sub is not None:
            sub.close()
        if pending is not None:
            pending.cancel()

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
