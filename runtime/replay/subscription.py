"""A live subscription to one replay buffer: replayed events first, then live ones."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Protocol, Self

from greenroom.checks import check_timeout
from greenroom.clock import stopwatch
from greenroom.errors import InvalidInput, Stopped, SubscriberLagged, Timeout
from greenroom.futures import refuse_waiting_in_handler
from greenroom.replay.records import ObservationEvent

log = logging.getLogger("greenroom.replay")

__all__ = ["Subscription", "Waker", "time_left"]

_OPEN, _LAGGED, _STOPPED, _CLOSED = "open", "lagged", "stopped", "closed"


def time_left(deadline: float | None) -> float | None:
    """The seconds until `deadline` (a `stopwatch()` reading), at least 0; `None`: none."""
    return None if deadline is None else max(0.0, deadline - stopwatch())


class Waker(Protocol):
    """What a subscription wakes when an event comes or it ends (see `Subscription.take`).

    A held `threading.Lock` (what `next_event` waits on), or an event loop's waker
    (`greenroom.aio.replay`). `release()` is called once, on the buffer's (or the
    closer's) thread, with the subscription's mutex held: it must only hand the news
    on, never wait or call back into the subscription.
    """

    def release(self) -> None:
        """Wake whoever waits."""


class Subscription:
    """A session's events after a cursor: first the replayed ones, then live ones.

    Made by `Runtime.replay.subscribe`. The replay and the registration for live
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
      consumer of the same subscription took does not restart it). `timeout=None`
      waits with no limit; a timeout is a number of seconds from 0 to ten years
      (`greenroom.checks.check_timeout`), anything else is `InvalidInput`.
    * `take(waker)`: the next event without waiting, or `None` with `waker` registered
      to be released when one comes (for a waiter that is not a thread, such as an
      event loop: `greenroom.aio.replay`).
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
        # event loop's waiter (`take`) lists an object whose `release` wakes its loop.
        self._waiters: list[Waker] = []
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

    @property
    def waiting(self) -> int:
        """How many waiters wait for an event now (`next_event` calls, `take` wakers)."""
        return len(self._waiters)

    def next_event(self, timeout: float | None = None) -> ObservationEvent:
        """The next event, waiting up to `timeout` seconds (`None`: no limit)."""
        # Checked first, so a bad timeout is refused even when an event is ready.
        limit = check_timeout(timeout)
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
                            # First time round: fix the deadline once.
                            checked = True
                            if limit != 0:
                                refuse_waiting_in_handler(
                                    "next_event()",
                                    "Read subscriptions on a host thread (or poll with timeout=0)",
                                )
                            if limit is not None:
                                deadline = stopwatch() + limit
                        remaining = time_left(deadline)
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
                assert waiter is not None  # (made above: no event was ready)
                if remaining is None:
                    waiter.acquire()
                else:
                    waiter.acquire(timeout=remaining)
        finally:
            if waiter is not None:
                with mutex:
                    if waiter in self._waiters:
                        self._waiters.remove(waiter)

    def take(self, waker: Waker) -> ObservationEvent | None:
        """The next queued event without waiting, or `None` with `waker` registered.

        A registered `waker` has its `release()` called once, under this subscription's
        mutex on the buffer's (or the closer's) thread, at the next put or end: it must
        only hand the news on (`greenroom.aio.replay` calls its loop's
        `call_soon_threadsafe`), then `take` again. A waker that stops waiting before it
        is released is taken off with `drop_waker`. Raises as `next_event` does once the
        subscription is over and drained (`SubscriberLagged`, `Stopped`).
        """
        if not callable(getattr(waker, "release", None)):
            raise InvalidInput(f"take() needs a waker with a release() method, got {waker!r}")
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

    def drop_waker(self, waker: Waker) -> None:
        """Unregister a `waker` of `take` that no longer waits (idempotent)."""
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
            try:
                waiter.release()
            except Exception:
                # A waker must only hand the news on; one that fails must not take the
                # buffer (and every other subscriber) down with it.
                log.exception("a waker of a subscription to %r failed; ignored", self.session_id)
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

    def _fall_behind(self, missed: int) -> None:
        """Lag now because `missed` events it was not given are gone (trimmed before
        they reached it: `greenroom.replay.streams`). Events already queued are still
        given, then `SubscriberLagged` from the last of them."""
        with self._mutex:
            if self._state is not _OPEN:
                return
            self._missed = missed
            self._state = _LAGGED
            self._wake()

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
