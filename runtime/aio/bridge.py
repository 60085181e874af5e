"""Greenroom futures awaited on any anyio event loop (asyncio or trio), never blocking it.

    value = await wait(future)                  # the future's value, or its exception
    done = await settled(future, timeout=0.5)   # whether it resolved in time
    handle = await off_loop(rt.blocks.get, "pane-1")   # a blocking call, on a worker

Why. A greenroom future's `get()` blocks, and an ask that waits may even run the
actor's turn on the waiting thread ("caller runs"): either would hold the event loop.
Here the future's done-callback (`GreenroomFuture.add_done_callback`, on the thread that
resolved it) hands a wake-up to the loop through the loop's own thread-safe entry
(`call_soon_threadsafe` on asyncio, `TrioToken.run_sync_soon` on trio) and nothing
else: no thread per call, no blocking `get()` on a future that has not resolved. (An
actor's turn may run on the loop's thread only where a caller asks for it: see
`greenroom.aio.executions`.)

Cancelling the awaiting task stops the wait, not the work: the message was sent, the
actor does what it asked; the result is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import weakref
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread

from greenroom.clock import stopwatch
from greenroom.futures import GreenroomFuture

__all__ = [
    "LOOP_SLICE_S",
    "LoopShare",
    "call_soon_threadsafe",
    "fair_turn",
    "loop_share",
    "off_loop",
    "settled",
    "settling",
    "wait",
]

LOOP_SLICE_S = 0.002
"""How long greenroom's calls may keep an asyncio loop busy before they let the rest of
the loop (its timers, its I/O) run: a host with thousands of calls in flight at once
would otherwise run all of their sends, or all of their answers, in one go. (0: each
call waits for an iteration of the loop of its own.)"""

T = TypeVar("T")


def call_soon_threadsafe() -> Callable[[Callable[[], object]], None]:
    """A function that runs a callback on the current event loop, from any thread.

    Call it on the loop; the function it returns may be called from any thread. A call
    after the loop has closed does nothing (nobody is left to wake).
    """
    native = anyio.lowlevel.current_token().native_token
    if isinstance(native, asyncio.AbstractEventLoop):
        loop = native

        def on_asyncio(fn: Callable[[], object]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop was closed
                loop.call_soon_threadsafe(fn)

        return on_asyncio
    run_sync_soon = native.run_sync_soon  # type: ignore[attr-defined]  # a TrioToken

    def on_trio(fn: Callable[[], object]) -> None:
        with contextlib.suppress(RuntimeError):  # trio.RunFinishedError: the run ended
            run_sync_soon(fn)

    return on_trio


async def settled(future: GreenroomFuture[Any], timeout: float | None = None) -> bool:
    """Wait on the loop until `future` resolves; whether it did within `timeout` s.

    A wait that ends without the value (the timeout, or the task cancelled) takes its
    callback off the future, so polling a pending future piles nothing up.
    """
    return await settling(future, timeout)


def settling(
    future: GreenroomFuture[Any], timeout: float | None = None
) -> Coroutine[Any, Any, bool]:
    """`settled`, as the coroutine that does the waiting, made here and not awaited:
    greenroom's own calls await it directly, so a call in flight keeps one coroutine
    fewer for the cyclic GC to walk (a thousand calls in flight: a thousand objects).
    Call it from a coroutine running on the loop (it looks the loop up now)."""
    if future.done or (timeout is not None and timeout <= 0):
        return _done_yet(future)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not asyncio (trio): anyio's own event
        return _settled_on_anyio(future, timeout)
    return _settled_on_asyncio(loop, future, timeout)


async def _done_yet(future: GreenroomFuture[Any]) -> bool:
    """Whether `future` has resolved, after letting the loop run once."""
    await anyio.lowlevel.checkpoint()
    return future.done


async def _settled_on_anyio(future: GreenroomFuture[Any], timeout: float | None) -> bool:
    """`settled` off asyncio (trio): anyio's own event, set through the loop's entry."""
    event = anyio.Event()
    soon = call_soon_threadsafe()
    fired: list[bool] = []

    def resolved(_future: GreenroomFuture[Any]) -> None:
        # On the resolving thread. `fired` also tells a derived future's arrival, whose
        # `done` stays False until `get()` computes it.
        fired.append(True)
        soon(event.set)

    future.add_done_callback(resolved)
    try:
        with anyio.move_on_after(math.inf if timeout is None else timeout):
            await event.wait()
    finally:
        if not fired:
            future.remove_done_callback(resolved)
    return bool(fired) or future.done


class LoopShare:
    """Greenroom's share of one asyncio loop.

    `began` is when the current slice began; `queue` holds, in order, the futures of
    the calls waiting for a later slice; `pumping` says a `_pump` is due to admit the
    next of them; `calls` counts the calls in flight that may run turns on the loop.
    """

    __slots__ = ("began", "calls", "pumping", "queue", "seen")

    def __init__(self) -> None:
        self.began = stopwatch()
        self.seen = self.began  # the last time a call passed here
        self.queue: deque[asyncio.Future[None]] = deque()
        self.pumping = False
        self.calls = 0


# By loop, weakly: a loop's entry goes with it.
_SLICES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopShare] = (
    weakref.WeakKeyDictionary()
)


def loop_share() -> LoopShare | None:
    """The running asyncio loop's `LoopShare` (made on first use); None off asyncio."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    share = _SLICES.get(loop)
    if share is None:
        share = _SLICES[loop] = LoopShare()
    return share


async def fair_turn() -> None:
    """On asyncio: if greenroom's calls have kept this loop busy for `LOOP_SLICE_S`,
    wait for a later turn: the loop's due timers and I/O run first. Else nothing.

    Waiting calls are admitted one per iteration of the loop, in the order they came,
    each on a future of its own (waking only the call whose turn it is: a thousand
    waiting calls cost a thousand wake-ups, not a thousand each).
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return  # not asyncio: trio schedules fairly on its own
    share = _SLICES.get(loop)
    now = stopwatch()
    if share is None:
        _SLICES[loop] = LoopShare()
        return
    if not share.queue:
        if 0 < LOOP_SLICE_S <= now - share.seen:
            # The first call after a pause as long as a slice: the loop had its share
            # of time meanwhile, so this call opens a new slice rather than wait.
            share.began = now
        elif now - share.began >= LOOP_SLICE_S:
            waiter = loop.create_future()
            share.queue.append(waiter)
            _pump_soon(loop, share)
            await _admitted(loop, share, waiter)
            return
        share.seen = now
        return
    waiter = loop.create_future()
    share.queue.append(waiter)
    await _admitted(loop, share, waiter)


async def _admitted(
    loop: asyncio.AbstractEventLoop, share: LoopShare, waiter: asyncio.Future[None]
) -> None:
    """Wait for `waiter`'s turn; then let the next waiting call in after this one yields."""
    try:
        await waiter
    except asyncio.CancelledError:
        if waiter.done() and not waiter.cancelled():
            _pump_soon(loop, share)  # admitted, then cancelled: pass the turn on
        raise
    share.seen = share.began = stopwatch()
    if share.queue:
        _pump_soon(loop, share)  # runs once this call yields, in the loop's next iteration


def _pump_soon(loop: asyncio.AbstractEventLoop, share: LoopShare) -> None:
    if not share.pumping:
        share.pumping = True
        loop.call_soon(_pump, share)


def _pump(share: LoopShare) -> None:
    """Admit the next waiting call (skipping those cancelled meanwhile)."""
    share.pumping = False
    queue = share.queue
    while queue:
        waiter = queue.popleft()
        if not waiter.done():
            waiter.set_result(None)
            return


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def _settled_on_asyncio(
    loop: asyncio.AbstractEventLoop, future: GreenroomFuture[Any], timeout: float | None
) -> bool:
    """`settled` on asyncio: a bare loop future, woken through the loop's thread-safe
    entry (anyio's event and cancel scope cost several times more on the loop's
    thread, which a host with thousands of calls in flight feels as a stalled loop)."""
    waiter = loop.create_future()
    resolved = _Resolved(loop, waiter)
    future.add_done_callback(resolved)
    timer = None if timeout is None else loop.call_later(timeout, _wake, waiter)
    try:
        await waiter
    finally:
        if timer is not None:
            timer.cancel()
        if not resolved.fired:
            future.remove_done_callback(resolved)
    await fair_turn()  # thousands of answers arriving at once: not all in one go
    return resolved.fired or future.done


class _Resolved:
    """`_settled_on_asyncio`'s done callback: wakes the waiter on its loop, notes it fired.

    One object where a closure took a function, a list and three cells: thousands are
    alive at once while calls wait, and the cyclic GC walks every one.
    """

    __slots__ = ("fired", "loop", "waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[Any]) -> None:
        self.loop = loop
        self.waiter = waiter
        self.fired = False

    def __call__(self, _future: GreenroomFuture[Any]) -> None:
        self.fired = True  # (on the resolving thread)
        with contextlib.suppress(RuntimeError):  # the loop was closed
            self.loop.call_soon_threadsafe(_wake, self.waiter)


async def wait(future: GreenroomFuture[T]) -> T:
    """The value of `future` (or its exception, raised), awaited without blocking."""
    await settling(future)
    return future.get(timeout=0)


async def off_loop(
    fn: Callable[..., T], *args: Any, abandon_on_cancel: bool = False, **kwargs: Any
) -> T:
    """Run a blocking `fn(*args, **kwargs)` on a worker thread; its result.

    For the few calls that wait for the store or for threads (opening and closing a
    runtime, getting a block's handle). The task waits; the loop does not. With
    `abandon_on_cancel=True` (calls with no side effect, such as `settle`) a cancelled
    task stops waiting at once and the thread's result is dropped; otherwise the task
    is cancelled once the call has returned.
    """
    return await anyio.to_thread.run_sync(
        lambda: fn(*args, **kwargs), abandon_on_cancel=abandon_on_cancel
    )
