"""Greenroom futures awaited on any anyio event loop (asyncio or trio), never blocking it.

    value = await wait(future)                  # the future's value, or its exception
    done = await settled(future, timeout=0.5)   # whether it resolved in time
    handle = await off_loop(rt.blocks.get, "pane-1")   # a blocking call, on a worker

Why. A greenroom future's `get()` blocks, and an ask that waits may even run the
actor's turn on the waiting thread ("caller runs"): either would hold the event loop.
Here the future's done-callback (`GreenroomFuture.add_done_callback`, on the thread that
resolved it) hands a wake-up to the loop through the loop's own thread-safe entry
(`call_soon_threadsafe` on asyncio, `TrioToken.run_sync_soon` on trio) and nothing
else: no thread per call, no actor turn on the loop's thread, no blocking `get()` on a
future that has not resolved.

Cancelling the awaiting task stops the wait, not the work: the message was sent, the
actor does what it asked; the result is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread

from greenroom.futures import GreenroomFuture

__all__ = ["call_soon_threadsafe", "off_loop", "settled", "wait"]

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
    if future.done:
        await anyio.lowlevel.checkpoint()
        return True
    if timeout is not None and timeout <= 0:
        await anyio.lowlevel.checkpoint()
        return future.done
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


async def wait(future: GreenroomFuture[T]) -> T:
    """The value of `future` (or its exception, raised), awaited without blocking."""
    await settled(future)
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
