"""`art.replay`: the replay buffers for async hosts (asyncio or trio), never blocking the loop.

    replay = AsyncReplay(rt.replay)                  # or `art.replay` of an AsyncRuntime
    start = await replay.current_cursor("s1")
    event = await replay.append("s1", {"type": "commit"}, revision=3)
    replay.publish("s1", {"type": "turn_activity"})   # a plain call: it never waits
    result = await replay.after(start)               # Replayed or Gap
    async with await replay.subscribe(start) as sub:  # (or a Gap: check first)
        event = await sub.next_event(timeout=5)
    async with replay.follow(start) as follower:     # recovers from lags and gaps
        async for item in follower:                  # an ObservationEvent, or a Gap
            ...

Every method has the name, arguments, results and errors of `Runtime.replay`'s
(`greenroom.replay.namespace.Replay`) and is built on its public seam: the steps of
`append_steps`, `append_many_steps`, `current_cursor_steps` and `after_steps` are run
here with each future they yield awaited through `greenroom.aio.bridge` (never with
`caller_runs`, so no buffer's turn runs on the loop's thread), and `subscribe` and
`follow` await a `PendingSubscribe`. Checks run when the method is called, before
anything is sent.

Waiting for an event uses no thread: the subscription lists a waker
(`Subscription.take`), which the session's buffer actor releases when it puts events
in; the release hands the wake-up to the loop through `bridge.call_soon_threadsafe`.

Cancelling a task that awaits a call stops the wait, not the work (an append sent is
appended). A cancelled iteration of a follower or a subscription (`async for`, or
`anext` under a timeout of the caller's) ends it, as an async generator would be
finished; `next_item(timeout)` / `next_event(timeout)` wait with a bound and leave it
open.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio
import anyio.lowlevel

from greenroom.aio.bridge import call_soon_threadsafe, settling
from greenroom.checks import check_timeout
from greenroom.errors import InvalidInput, InvalidTransition, Stopped, SubscriberLagged, Timeout
from greenroom.futures import GreenroomFuture, Steps
from greenroom.replay.follower import adopt_subscribed
from greenroom.replay.namespace import PendingSubscribe, Replay
from greenroom.replay.records import Gap, ObservationEvent, Replayed
from greenroom.replay.subscription import Subscription

__all__ = ["AsyncFollower", "AsyncReplay", "AsyncSubscription"]

T = TypeVar("T")

_Soon = Callable[[Callable[[], object]], None]


async def _run(steps: Steps[T]) -> T:
    """Run `steps` (see `greenroom.futures.drive`) on the loop: each future is awaited."""
    try:
        future = next(steps)
        while True:
            await settling(future)
            future = steps.send(None)
    except StopIteration as stop:
        result: T = stop.value
        return result
    finally:
        steps.close()


async def _answer(pending: PendingSubscribe) -> Subscription | Gap:
    """The answer of `pending`, awaited on the loop (given up if the wait is cancelled)."""
    try:
        while (result := pending.poll()) is None:
            await settling(pending.future)
    except BaseException:
        pending.cancel()  # cancelled, or the runtime closed: nobody will read it
        raise
    return result


class _LoopWakes:
    """Wakes a loop's waiting tasks from the buffers' threads, in batches.

    A buffer appending one event releases every waiting subscriber: one hand-off to
    the loop each (a self-pipe write and a wake-up) would cost a thousand per event
    with a thousand subscribers. Wakes queued while one hand-off is on its way ride
    with it. One per loop.
    """

    __slots__ = ("__weakref__", "_lock", "_pending", "_scheduled", "_soon", "event")

    def __init__(self, soon: _Soon, event: Callable[[], Any]) -> None:
        self._soon = soon
        self.event = event
        """Makes the event a waiting task waits on (the loop's own: cheaper)."""
        self._lock = threading.Lock()
        self._pending: list[Callable[[], object]] = []
        self._scheduled = False

    def __call__(self, fn: Callable[[], object]) -> None:
        with self._lock:
            self._pending.append(fn)
            if self._scheduled:
                return
            self._scheduled = True
        self._soon(self._drain)

    def _drain(self) -> None:
        with self._lock:
            ready, self._pending = self._pending, []
            self._scheduled = False
        for fn in ready:
            fn()


# By loop (its id): each subscription and follower holds its loop's, so the entry goes
# with the last of them, and never keeps a closed loop (and its file descriptors) alive.
_wakes: weakref.WeakValueDictionary[int, _LoopWakes] = weakref.WeakValueDictionary()
_wakes_lock = threading.Lock()


def _loop_soon(what: str) -> _LoopWakes:
    """The running loop's `_LoopWakes`; `InvalidTransition` off a loop."""
    try:
        native = anyio.lowlevel.current_token().native_token
        soon = call_soon_threadsafe()
    except RuntimeError:  # sniffio's AsyncLibraryNotFoundError: no loop runs this call
        raise InvalidTransition(
            f"{what} is called from a coroutine (a task on an asyncio or trio loop): it "
            "wakes that loop when events come; on a thread use Runtime.replay instead"
        ) from None
    with _wakes_lock:
        found = _wakes.get(id(native))
        if found is None:
            event = asyncio.Event if isinstance(native, asyncio.AbstractEventLoop) else anyio.Event
            found = _LoopWakes(soon, event)
            _wakes[id(native)] = found
        return found


class _Wake:
    """Listed with a subscription while a task waits: the buffer's thread calls
    `release()` (under the subscription's mutex), which only hands the wake-up to
    the loop."""

    __slots__ = ("_event", "_soon")

    def __init__(self, soon: _LoopWakes) -> None:
        self._soon = soon
        self._event = soon.event()

    def release(self) -> None:
        self._soon(self._event.set)

    async def wait(self) -> None:
        await self._event.wait()


async def _next_event(sub: Subscription, soon: _LoopWakes) -> ObservationEvent:
    """The next event of `sub`, awaited without a thread; raises as `next_event`."""
    while True:
        waker = _Wake(soon)
        event = sub.take(waker)
        if event is not None:
            return event
        try:
            await waker.wait()
        finally:
            sub.drop_waker(waker)


class AsyncReplay:
    """`Runtime.replay` for async hosts: the waiting calls are coroutines; see the module."""

    __slots__ = ("_replay",)

    def __init__(self, replay: Replay) -> None:
        """Wrap `replay` (a runtime's `rt.replay`); `InvalidInput` for anything else."""
        if not isinstance(replay, Replay):
            raise InvalidInput(
                f"AsyncReplay wraps a Replay (rt.replay), got {type(replay).__name__}"
            )
        self._replay = replay

    @property
    def sync(self) -> Replay:
        """The wrapped `Replay` (its waiting calls are not for the loop's thread)."""
        return self._replay

    async def append(self, session_id: str, payload: Any, *, revision: int = 0) -> ObservationEvent:
        """`Replay.append`, awaited: the event appended, with its cursor."""
        return await _run(self._replay.append_steps(session_id, payload, revision=revision))

    async def append_many(
        self, session_id: str, payloads: Iterable[Any], *, revision: int = 0
    ) -> list[ObservationEvent]:
        """`Replay.append_many`, awaited: the events, in order; all or none."""
        return await _run(self._replay.append_many_steps(session_id, payloads, revision=revision))

    def publish(self, session_id: str, payload: Any, *, revision: int = 0) -> None:
        """`Replay.publish`: append without waiting (a plain call: it never waits)."""
        self._replay.publish(session_id, payload, revision=revision)

    def publish_many(self, session_id: str, payloads: Iterable[Any], *, revision: int = 0) -> None:
        """`Replay.publish_many`: a batch without waiting, all or none (a plain call)."""
        self._replay.publish_many(session_id, payloads, revision=revision)

    async def current_cursor(self, session_id: str, revision: int = 0) -> str:
        """`Replay.current_cursor`, awaited: the cursor at the session's tail now."""
        return await _run(self._replay.current_cursor_steps(session_id, revision))

    async def after(self, cursor: str, *, session_id: str | None = None) -> Replayed | Gap:
        """`Replay.after`, awaited: the events after `cursor` (`Replayed`), or a `Gap`."""
        return await _run(self._replay.after_steps(cursor, session_id=session_id))

    async def subscribe(
        self, cursor: str, *, session_id: str | None = None
    ) -> AsyncSubscription | Gap:
        """`Replay.subscribe`, awaited: an `AsyncSubscription` (the events after `cursor`,
        then live ones), or a `Gap`. Cancelled while waiting, it subscribes nothing."""
        result = await _answer(self._replay.subscribe_pending(cursor, session_id=session_id))
        if isinstance(result, Gap):
            return result
        return AsyncSubscription(result)

    def follow(self, cursor: str, *, session_id: str | None = None) -> AsyncFollower:
        """`Replay.follow` for `async for`: the session's events after `cursor`, and gaps.

        A plain call, made from a coroutine: it checks the cursor (errors as for
        `after`) and sends the subscribe at once, so events appended after it returns
        are never missed; see `AsyncFollower`.
        """
        return AsyncFollower(self._replay, cursor, session_id=session_id)

    def __repr__(self) -> str:
        return f"<AsyncReplay of {self._replay!r}>"


class AsyncSubscription:
    """A `Subscription` read on an event loop: the replayed events, then live ones.

    Got from `await art.replay.subscribe(cursor)`, or made from a `Subscription` on the
    loop (`AsyncSubscription(sub)`). `await next_event(timeout=None)` as
    `Subscription.next_event` (`SubscriberLagged`, `Stopped`, `Timeout`; the wait has
    no thread); `async for` yields events until it or the runtime is closed; `close()`
    / `aclose()` / `async with` end it. One task reads it.
    """

    __slots__ = ("_soon", "_sub")

    def __init__(self, subscription: Subscription) -> None:
        """Read `subscription` on the running loop (call from a coroutine)."""
        if not isinstance(subscription, Subscription):
            raise InvalidInput(
                f"AsyncSubscription wraps a Subscription, got {type(subscription).__name__}"
            )
        self._soon = _loop_soon("AsyncSubscription()")
        self._sub = subscription

    @property
    def subscription(self) -> Subscription:
        """The sync `Subscription` (its `next_event` waits: not on the loop's thread)."""
        return self._sub

    @property
    def session_id(self) -> str:
        """The session subscribed to."""
        return self._sub.session_id

    @property
    def cursor(self) -> str:
        """The cursor of the last event given (the starting cursor before any)."""
        return self._sub.cursor

    @property
    def pending(self) -> int:
        """Events waiting to be taken."""
        return self._sub.pending

    @property
    def closed(self) -> bool:
        """Whether the subscription is over (closed, lagged, or its runtime closed)."""
        return self._sub.closed

    async def next_event(self, timeout: float | None = None) -> ObservationEvent:
        """The next event, waiting up to `timeout` seconds (`None`: no limit).

        `Timeout` leaves the subscription open (call again); errors as for
        `Subscription.next_event`.
        """
        limit = check_timeout(timeout)
        with anyio.move_on_after(limit):
            return await _next_event(self._sub, self._soon)
        raise Timeout(
            f"no event for session {self.session_id!r} within {timeout} s "
            "(the subscription stays open; call next_event again)"
        )

    def close(self) -> None:
        """End the subscription; events still queued are dropped. Idempotent."""
        self._sub.close()

    async def aclose(self) -> None:
        """`close()`, awaitable (for `contextlib.aclosing` and the like)."""
        self.close()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ObservationEvent:
        try:
            return await _next_event(self._sub, self._soon)
        except Stopped:
            raise StopAsyncIteration from None
        except anyio.get_cancelled_exc_class():
            self.close()  # a cancelled iteration has stopped reading (see the module)
            raise

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<AsyncSubscription {self._sub!r}>"


class AsyncFollower:
    """`async for` over a session's events that recovers by itself; see `Replay.follow`.

    Yields `ObservationEvent`s, and a `Gap` once per gap (then goes on from the gap's
    `latest_cursor`); when its subscription lags it subscribes again from the last
    cursor it yielded, so nothing is skipped or repeated. Iteration ends on `close()` /
    `aclose()` (or leaving `async with`) and when the runtime closes. One task iterates;
    `close()` may come from any thread.

    Its subscription ends when it is closed, when the task awaiting `__anext__` is
    cancelled (an `async for` in a cancelled task, or a timeout of the caller's around
    `anext`: a cancelled iteration has stopped following, as an async generator would
    be finished), and when the follower is dropped (breaking out of `async for
    art.replay.follow(...)` drops it). To wait with a bound and go on following, use
    `await follower.next_item(timeout)`, which raises `Timeout` and leaves it as it was
    (a re-subscribe in flight stays pending for the next call).

    No thread: the buffer actor puts events into the subscription's queue and wakes
    the loop through `bridge.call_soon_threadsafe`.
    """

    def __init__(self, replay: Replay, cursor: str, *, session_id: str | None = None) -> None:
        """Subscribe now (see `AsyncReplay.follow`, which makes these); on a loop."""
        self._soon = _loop_soon("replay.follow()")
        self._replay = replay
        self._cursor = cursor
        self._lock = threading.Lock()
        self._sub: Subscription | None = None
        self._gap: Gap | None = None
        self._closed = False
        # The loop's wake-up for the pending subscribe's future: one per future, however
        # often `next_item` times out while the buffer has not answered.
        self._answered: tuple[GreenroomFuture[Any], anyio.Event] | None = None
        self.lags = 0
        """How many times the subscription lagged and was made again."""
        self.gaps = 0
        """How many gaps were yielded."""
        # Sent now, answered later: what is appended after this returns is never missed.
        pending = replay.subscribe_pending(cursor, session_id=session_id)
        self._session_id = pending.session_id
        self._pending: PendingSubscribe | None = pending

    @property
    def cursor(self) -> str:
        """The cursor of the last event yielded (or of the last gap's tail)."""
        return self._cursor

    @property
    def session_id(self) -> str:
        """The session followed."""
        return self._session_id

    @property
    def closed(self) -> bool:
        """Whether `close()` was called (or iteration ended)."""
        return self._closed

    @property
    def pending(self) -> int:
        """Items the next calls yield without waiting (events queued, a gap to report);
        0 while it subscribes again. A caller with a timeout per item can skip the
        timeout while this is not 0 (`greenroom.web` does: a timeout costs more than
        taking an event)."""
        sub = self._sub
        return (self._gap is not None) + (sub.pending if sub is not None else 0)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ObservationEvent | Gap:
        try:
            return await self._next()
        except Stopped:
            self.close()  # closed, or the runtime closed
            raise StopAsyncIteration from None
        except anyio.get_cancelled_exc_class():
            self.close()  # a cancelled iteration has stopped following (see above)
            raise

    async def next_item(self, timeout: float | None = None) -> ObservationEvent | Gap:
        """The next event or gap, waiting up to `timeout` seconds in all (`None`: no limit).

        As `Follower.next_item`: `Timeout` when nothing came in time (the follower goes
        on: call again; a re-subscribe in flight stays pending), `Stopped` once closed
        or the runtime closed; a bad timeout is `InvalidInput`.
        """
        limit = check_timeout(timeout)
        with anyio.move_on_after(limit):
            return await self._next()
        raise Timeout(
            f"no event within {timeout} s (still following from cursor {self._cursor!r}; "
            "call next_item again)"
        )

    async def _next(self) -> ObservationEvent | Gap:
        while True:
            if self._closed:
                raise Stopped("this follow() was closed")
            if self._gap is not None:
                gap, self._gap = self._gap, None
                self.gaps += 1
                return gap
            sub = self._sub
            if sub is None:
                await self._connect()
                continue
            try:
                event = await _next_event(sub, self._soon)
            except SubscriberLagged as lag:
                self.lags += 1
                self._cursor = lag.resume_cursor
                self._sub = None
                continue
            self._cursor = event.cursor
            return event

    async def _connect(self) -> None:
        """Subscribe (again) from the cursor, and take the answer in."""
        pending = self._pending
        if pending is None:
            pending = self._replay.subscribe_pending(self._cursor, session_id=self._session_id)
            with self._lock:
                if self._closed:
                    pending.cancel()
                    return
                self._pending = pending
        try:
            while (result := pending.poll()) is None:
                await self._answer_of(pending.future).wait()
                if self._closed:
                    return  # close() cancelled the pending subscribe and woke us
        except anyio.get_cancelled_exc_class():
            raise  # still pending: the next call picks it up
        except BaseException:
            self._pending = self._answered = None
            raise
        self._pending = self._answered = None
        adopt_subscribed(self, result)

    def _answer_of(self, future: GreenroomFuture[Any]) -> anyio.Event:
        """The loop's event set once `future` resolves (made once per future)."""
        held = self._answered
        if held is not None and held[0] is future:
            return held[1]
        event = anyio.Event()
        soon = self._soon
        future.add_done_callback(lambda _future: soon(event.set))
        self._answered = (future, event)
        return event

    def close(self) -> None:
        """Stop following; an `__anext__` awaiting ends. Safe from any thread; idempotent."""
        with self._lock:
            self._closed = True
            sub, self._sub = self._sub, None
            pending, self._pending = self._pending, None
            answered = self._answered
        _close_parts(sub, pending)
        if answered is not None:
            self._soon(answered[1].set)  # a task awaiting the subscribe wakes, and ends

    async def aclose(self) -> None:
        """`close()`, awaitable (for `contextlib.aclosing` and the like)."""
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # Dropped without a close (a `break` out of `async for art.replay.follow(...)`):
        # end the subscription on the loop's thread, as the loop finalises async
        # generators. Not here: a collection can run while this thread holds a lock
        # close() takes. (getattr: __init__ may have failed half way.)
        sub = getattr(self, "_sub", None)
        pending = getattr(self, "_pending", None)
        if getattr(self, "_closed", True) or (sub is None and pending is None):
            return
        self._soon(lambda: _close_parts(sub, pending))

    def __repr__(self) -> str:
        return f"<AsyncFollower cursor={self._cursor!r} lags={self.lags} gaps={self.gaps}>"


def _close_parts(sub: Subscription | None, pending: PendingSubscribe | None) -> None:
    if sub is not None:
        sub.close()
    if pending is not None:
        pending.cancel()
