"""Follow a session's events across reconnects: `Follower`, the iterator `follow` returns."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Protocol, Self

from greenroom.checks import check_timeout
from greenroom.clock import stopwatch
from greenroom.errors import Stopped, SubscriberLagged, Timeout
from greenroom.replay.records import Gap, ObservationEvent
from greenroom.replay.subscription import Subscription, time_left

__all__ = ["Follower", "PendingSubscription", "adopt_subscribed"]


class PendingSubscription(Protocol):
    """A subscribe the buffer has not answered yet (what `Runtime.replay.follow` re-subscribes
    with, so that `Follower.next_item`'s timeout bounds the re-subscribe too): a
    `greenroom.replay.namespace.PendingSubscribe`."""

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
    """Take a subscribe's answer into a follower (`Follower`, or the async one of
    `greenroom.aio.replay`): a subscription to read from, or a gap to yield and go on
    after. Closed meanwhile: the new subscription is closed at once."""
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
    """An iterator over a session's events that recovers by itself; see `Runtime.replay.follow`.

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
            answer = self._subscribe(self._cursor)
            if isinstance(answer, Subscription | Gap):
                adopt_subscribed(self, answer)
                return
            pending = answer
            with self._lock:
                if self._closed:
                    pending.cancel()
                    return
                self._pending = pending
        # Timeout: it stays pending, for the next call to pick up.
        result = pending.wait(time_left(deadline))
        self._pending = None
        adopt_subscribed(self, result)

    def next_item(self, timeout: float | None = None) -> ObservationEvent | Gap:
        """The next event or gap, waiting up to `timeout` seconds in all.

        Raises `Stopped` once closed (or the runtime closed), `Timeout` when nothing
        came in time. Timeouts are as for `Subscription.next_event`.
        """
        limit = check_timeout(timeout)
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
                event = sub.next_event(time_left(deadline))
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
