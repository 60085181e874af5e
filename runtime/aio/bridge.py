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
    """Wait on the loop until `future` resolves; whether it did within `timeout` s."""
    if future.done:
        await anyio.lowlevel.checkpoint()
        return True
    event = anyio.Event()
    soon = call_soon_threadsafe()
    future.add_done_callback(lambda _future: soon(event.set))
    if timeout is None:
        await event.wait()
        return True
    with anyio.move_on_after(timeout):
        await event.wait()
    return future.done  # it may have resolved just as the time ran out


async def wait(future: GreenroomFuture[T]) -> T:
    """The value of `future` (or its exception, raised), awaited without blocking."""
    await settled(future)
    return future.get(timeout=0)


async def off_loop(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking `fn(*args, **kwargs)` on a worker thread; its result.

    For the few calls that wait for the store or for threads (opening and closing a
    runtime, getting a block's handle). The task waits; the loop does not.
    """
    return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))
