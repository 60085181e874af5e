"""The asyncio facade: `AsyncRuntime`, whose methods are coroutines that never block the loop.

    async with AsyncRuntime.open("app.db") as art:            # or AsyncRuntime(rt)
        step = await art.start_execution(strategy, "topic")
        step = await art.feed(step.session_id, "an answer")
        pane = await art.block("pane-1")
        await pane.append_output(b'{"type":"text"}\\n')
        print(await pane.stats())
        async for item in art.follow(cursor):                 # events, and gaps
            ...

Why. pykka's `await future` calls the blocking `get()`, and a greenroom `ask` that waits
may even run the actor's turn on the waiting thread ("caller runs"): either would hold
the event loop. Here every call sends its message without waiting (`ask(block=False)`
and proxy calls, whose turns run on the dispatcher's workers) and awaits an asyncio
future that the greenroom future's done-callback (`GreenroomFuture.add_done_callback`)
completes through the loop's `call_soon_threadsafe`, from the thread that resolved it.
No thread per call and none per follower; no actor turn on the loop's thread; no
blocking `get()` on a future that is not resolved yet.

Semantics. Every method has the same name, arguments, results and errors as the `Runtime`
method it mirrors, and shares its code: the checks and the result rules of executions
(`ExecutionsAPI._exec_*`), the retry steps of replay calls (`greenroom.futures.Steps`,
driven here on the loop instead of a thread). Timeouts (`start_execution`, `feed`,
`feed_many`) are kept by the loop (`asyncio.timeout`), in real seconds, and raise the
same `ExecutionTimeout`.

What runs off the loop, in its default executor (`loop.run_in_executor(None, ...)`),
because it waits for the store or for threads: `AsyncRuntime.open` (opens SQLite),
`aclose` (stops every actor and joins the runtime's threads), and `block()` (it may
create the block's record in the store, start the block services, and wait for a
stopped actor of the block to leave) together with an `AsyncBlock` call that finds the
block's actor stopped and reconnects (as `Block` does). Keep the `AsyncBlock` a call
returns: its calls are messages and callbacks only. Everything else never leaves the
loop's thread and never blocks it.

Cancelling an awaiting task (or `asyncio.timeout` around it) stops the wait, not the
work: a feed sent is applied, a block archive goes on; the result is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

from pykka import ActorDeadError

from greenroom.blocks.handle import Block
from greenroom.blocks.messages import line_message, output_message
from greenroom.blocks.records import ArchiveResult, OutputRead, RestoreResult, SessionStats
from greenroom.errors import InvalidInput, Stopped, SubscriberLagged, Timeout
from greenroom.executions import namespace
from greenroom.executions.records import FeedResult
from greenroom.futures import GreenroomFuture, Steps
from greenroom.replay.follower import adopt_subscribed
from greenroom.replay.records import Gap, ObservationEvent, Replayed
from greenroom.replay.subscription import Subscription, wait_limit
from greenroom.runtime import Runtime

if TYPE_CHECKING:
    from greenroom.clock import Clock
    from greenroom.config import RuntimeConfig
    from greenroom.replay.namespace import _PendingSubscribe

__all__ = ["AsyncBlock", "AsyncFollower", "AsyncRuntime", "wrap_future"]

log = logging.getLogger("greenroom.aio")

T = TypeVar("T")


# -- greenroom futures on an event loop -----------------------------------------------------


def _on_loop(future: GreenroomFuture[Any], loop: asyncio.AbstractEventLoop, fn: Any) -> None:
    """Call `fn()` on `loop` once `future` has resolved (never waits, starts no thread)."""

    def resolved(_future: GreenroomFuture[Any]) -> None:
        # On the resolving thread (a dispatcher worker, usually): hand over, nothing more.
        with contextlib.suppress(RuntimeError):  # the loop was closed: nobody awaits
            loop.call_soon_threadsafe(fn)

    future.add_done_callback(resolved)


def _set_none(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():  # (cancelled: its awaiter gave up)
        waiter.set_result(None)


async def _settled(future: GreenroomFuture[Any], timeout: float | None = None) -> bool:
    """Wait on the loop until `future` resolves; whether it did within `timeout` s."""
    if future.done:
        return True
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    _on_loop(future, loop, functools.partial(_set_none, waiter))
    if timeout is None:
        await waiter
        return True
    try:
        async with asyncio.timeout(timeout):
            await waiter
    except TimeoutError:
        return future.done  # it may have resolved just as the time ran out
    return True


def wrap_future(
    future: GreenroomFuture[T], *, loop: asyncio.AbstractEventLoop | None = None
) -> asyncio.Future[T]:
    """An asyncio future with the value (or exception) of a greenroom `future`.

    For a host's own actors: `await wrap_future(ref.ask(msg, block=False))` or
    `await wrap_future(ref.proxy().method())` never blocks `loop` (default: the running
    loop), where `await future` would. The greenroom future's done-callback completes it
    through `loop.call_soon_threadsafe`. Derived futures (`map`, `filter`, `join`,
    `reduce` of greenroom futures) are computed on the loop once their sources have
    resolved; a future derived any other way is refused (`InvalidTransition`).
    Cancelling the asyncio future does not cancel the actor's work.
    """
    if loop is None:
        loop = asyncio.get_running_loop()
    out: asyncio.Future[T] = loop.create_future()

    def transfer() -> None:
        if out.done():
            return  # cancelled by its awaiter
        try:
            value = future.get(timeout=0)  # resolved: never waits
        except StopIteration as error:  # an asyncio future cannot hold StopIteration
            out.set_exception(RuntimeError(f"the future resolved with {error!r}"))
        except BaseException as error:
            out.set_exception(error)
        else:
            out.set_result(value)

    _on_loop(future, loop, transfer)
    return out


async def _drive(steps: Steps[T]) -> T:
    """Run `steps` (see `greenroom.futures.drive`) on the loop: each future is awaited."""
    try:
        future = next(steps)
        while True:
            await _settled(future)
            future = steps.send(None)
    except StopIteration as stop:
        return stop.value
    finally:
        steps.close()


async def _in_executor(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` on the loop's default executor (for calls that must wait)."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(fn, *args, **kwargs))


# -- the runtime ---------------------------------------------------------------------------


class AsyncRuntime:
    """A `Runtime` for asyncio hosts: its calls are coroutines that never block the loop.

    Wrap a running runtime, `AsyncRuntime(rt)`, or open one: `art = await
    AsyncRuntime.open(path, clock=..., config=...)`, or `async with AsyncRuntime.open(...)
    as art:` (closed at the block's end). `runtime` is the wrapped `Runtime`, for
    everything the facade does not cover (its never-waiting calls, such as
    `execution_status` or `replay_publish`, are safe on the loop; its waiting calls are
    not). See the module docstring for what runs where.
    """

    __slots__ = ("_rt",)

    def __init__(self, runtime: Runtime) -> None:
        if not isinstance(runtime, Runtime):
            raise InvalidInput(f"AsyncRuntime wraps a Runtime, got {type(runtime).__name__}")
        self._rt = runtime

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        clock: Clock | None = None,
        config: RuntimeConfig | None = None,
    ) -> _Opening:
        """Open a runtime as `Runtime.open` does, on the loop's default executor.

        `await AsyncRuntime.open(...)` gives the `AsyncRuntime`; `async with
        AsyncRuntime.open(...) as art:` also closes it at the end of the block.
        """
        return _Opening(path, clock, config)

    @property
    def runtime(self) -> Runtime:
        """The wrapped `Runtime`."""
        return self._rt

    @property
    def closed(self) -> bool:
        """Whether the runtime has been closed."""
        return self._rt.closed

    async def aclose(self) -> None:
        """Close the runtime (`Runtime.close`: stops every actor, joins its threads) on the
        loop's default executor; the loop goes on meanwhile. Idempotent."""
        await _in_executor(self._rt.close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<AsyncRuntime {self._rt!r}>"

    # -- executions ------------------------------------------------------------------------

    async def start_execution(
        self,
        strategy: Callable[..., Any],
        /,
        *args: Any,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> FeedResult:
        """`Runtime.executions.start`, awaited: the session's first pause or its end.

        `timeout` (real seconds) raises `ExecutionTimeout` as the sync call does; the
        strategy's first step runs on a dispatcher worker (async strategies) or a
        strategy thread (plain ones), never on the loop.
        """
        rt = self._rt
        session_id, future = rt.executions._exec_start(strategy, args, kwargs, timeout, here=False)
        if not await _settled(future, timeout):
            raise rt.executions._exec_timeout(session_id, timeout, "start")
        return rt.executions._exec_wait(session_id, future, 0, "start")

    async def feed(
        self,
        session_id: str,
        response: str,
        *,
        query_id: str | None = None,
        usage: dict[str, int] | None = None,
        timeout: float | None = None,
    ) -> FeedResult:
        """`Runtime.executions.feed`, awaited: answer one query; the session's next `FeedResult`."""
        items = self._rt.executions._exec_feed_items(session_id, response, query_id, usage, timeout)
        return await self._feed(session_id, items, timeout)

    async def feed_many(
        self,
        session_id: str,
        items: list[tuple[str, str, dict[str, int] | None]],
        *,
        timeout: float | None = None,
    ) -> FeedResult:
        """`Runtime.executions.feed_many`, awaited: answer several queries at once, all or none."""
        checked = self._rt.executions._exec_feed_many_items(session_id, items, timeout)
        return await self._feed(session_id, checked, timeout)

    async def _feed(
        self, session_id: str, items: tuple[Any, ...], timeout: float | None
    ) -> FeedResult:
        rt = self._rt
        future = rt.executions._exec_feed_send(session_id, items, here=False)
        if future is not None and not await _settled(future, timeout):
            raise rt.executions._exec_timeout(session_id, timeout, "feed")
        return rt.executions._exec_feed_result(session_id, items, future, 0)

    async def cancel(self, session_id: str) -> FeedResult:
        """`Runtime.executions.cancel`, awaited: `cancelled` (deferred after
        `CANCEL_WAIT_S` when the session is busy in a strategy step, as the sync call)."""
        rt = self._rt
        entry, future = rt.executions._exec_cancel_send(session_id)
        await _settled(future, namespace.CANCEL_WAIT_S)
        return rt.executions._exec_cancel_result(session_id, entry, future, 0)

    async def execution_status(self, session_id: str) -> dict[str, Any]:
        """`Runtime.executions.status` (which never waits)."""
        return self._rt.executions.status(session_id)

    async def execution_snapshots(self) -> dict[str, dict[str, Any]]:
        """`Runtime.executions.snapshots` (which never waits)."""
        return self._rt.executions.snapshots()

    # -- blocks ----------------------------------------------------------------------------

    async def block(self, block_id: str, *, view: str = "agent") -> AsyncBlock:
        """`Runtime.blocks.get`, on the loop's default executor: an `AsyncBlock` handle.

        Getting the handle may write to the store and wait for a stopping actor, so it
        runs off the loop; keep the handle, whose calls never leave the loop.
        """
        return AsyncBlock(self, await _in_executor(self._rt.blocks.get, block_id, view=view))

    # -- replay ----------------------------------------------------------------------------

    async def replay_append(
        self, session_id: str, payload: Any, *, revision: int = 0
    ) -> ObservationEvent:
        """`Runtime.replay.append`, awaited: the event appended, with its cursor."""
        rt = self._rt
        message = rt.replay._replay_append_message(session_id, payload, revision)
        return await _drive(rt.replay._replay_ask_steps(session_id, message))

    async def replay_append_many(
        self, session_id: str, payloads: Iterable[Any], *, revision: int = 0
    ) -> list[ObservationEvent]:
        """`Runtime.replay.append_many`, awaited: the events, in order; all or none."""
        rt = self._rt
        message = rt.replay._replay_batch_message(session_id, payloads, revision)
        if message is None:
            return []
        return await _drive(rt.replay._replay_ask_steps(session_id, message))

    def replay_publish(self, session_id: str, payload: Any, *, revision: int = 0) -> None:
        """`Runtime.replay.publish`: append without waiting (a plain call: it never waits)."""
        self._rt.replay.publish(session_id, payload, revision=revision)

    def replay_publish_many(
        self, session_id: str, payloads: Iterable[Any], *, revision: int = 0
    ) -> None:
        """`Runtime.replay.publish_many` (a plain call: it never waits)."""
        self._rt.replay.publish_many(session_id, payloads, revision=revision)

    async def current_cursor(self, session_id: str, revision: int = 0) -> str:
        """`Runtime.replay.current_cursor`, awaited: the cursor at the session's tail now."""
        rt = self._rt
        message = rt.replay._replay_cursor_message(session_id, revision)
        return await _drive(rt.replay._replay_ask_steps(session_id, message))

    async def replay_after(self, cursor: str, *, session_id: str | None = None) -> Replayed | Gap:
        """`Runtime.replay.after`, awaited: the events after `cursor`, or a `Gap`."""
        return await _drive(self._rt.replay._replay_after_steps(cursor, session_id, here=False))

    def follow(self, cursor: str, *, session_id: str | None = None) -> AsyncFollower:
        """`Runtime.replay.follow` for `async for`: the session's events after `cursor`, and gaps.

        A plain call, from a coroutine: it checks the cursor (errors as for
        `replay_after`) and sends the subscribe at once, so events appended after it
        returns are never missed; see `AsyncFollower`.
        """
        return AsyncFollower(self._rt.replay._replay_follow_subscriber(cursor, session_id), cursor)


class _Opening:
    """What `AsyncRuntime.open` returns: awaitable, and an async context manager."""

    __slots__ = ("_art", "_clock", "_config", "_path")

    def __init__(self, path: str | Path, clock: Clock | None, config: RuntimeConfig | None):
        self._path = path
        self._clock = clock
        self._config = config
        self._art: AsyncRuntime | None = None

    async def _open(self) -> AsyncRuntime:
        rt = await _in_executor(Runtime.open, self._path, clock=self._clock, config=self._config)
        return AsyncRuntime(rt)

    def __await__(self) -> Any:
        return self._open().__await__()

    async def __aenter__(self) -> AsyncRuntime:
        self._art = await self._open()
        return self._art

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._art is not None
        await self._art.aclose()


# -- blocks --------------------------------------------------------------------------------


class AsyncBlock:
    """An asyncio handle on one block: `Block`'s calls as coroutines that never block.

    Get one with `await art.block(block_id)`. Each call is a message to the block's
    actor (`append_output` and `record_line` are tells; the others await the actor's
    answer). If the block's actor was stopped, the call reconnects once, as `Block`
    does, through `Runtime.blocks.get` on the loop's default executor.
    """

    __slots__ = ("_art", "_handle", "block_id")

    def __init__(self, art: AsyncRuntime, handle: Block) -> None:
        self._art = art
        self._handle = handle
        self.block_id = handle.block_id

    @property
    def handle(self) -> Block:
        """The sync `Block` handle (its calls wait: not for the loop's thread)."""
        return self._handle

    async def _reconnect(self) -> None:
        # `Stopped` once the runtime is closed, as for Block.
        self._handle = await _in_executor(self._art.runtime.blocks.get, self.block_id)

    async def _tell(self, message: Any) -> None:
        try:
            self._handle._tell_once(message)
        except ActorDeadError:
            await self._reconnect()
            self._handle._tell_once(message)

    async def _ask(self, name: str, *args: Any) -> Any:
        try:
            return await wrap_future(self._handle._send(name, *args))
        except ActorDeadError:
            # Not delivered (the actor had stopped): safe to send again, once.
            await self._reconnect()
            return await wrap_future(self._handle._send(name, *args))

    async def append_output(self, data: bytes) -> None:
        """`Block.append_output`: append `data` and count its lines (a tell)."""
        await self._tell(output_message(data))

    async def record_line(self, n_bytes: int) -> None:
        """`Block.record_line`: count one line of `n_bytes` bytes kept elsewhere (a tell)."""
        await self._tell(line_message(n_bytes))

    async def stats(self) -> SessionStats:
        """`Block.stats`: the live stats, including lines not flushed yet."""
        return await self._ask("stats")

    async def meta(self) -> dict[str, Any]:
        """`Block.meta`: the metadata as stored."""
        return await self._ask("meta")

    async def update_meta(self, update: dict[str, Any]) -> dict[str, Any]:
        """`Block.update_meta`: merge `update` into the metadata; the new metadata."""
        return await self._ask("update_meta", update)

    async def flush(self) -> None:
        """`Block.flush`: returns once the stats and output handed over are stored."""
        await self._ask("flush")

    async def archive(self) -> ArchiveResult:
        """`Block.archive`: compress the output into the archive folder, drop the live copy."""
        return await self._ask("archive")

    async def restore(self) -> RestoreResult:
        """`Block.restore`: bring an archived output back."""
        return await self._ask("restore")

    async def read_output(self) -> OutputRead:
        """`Block.read_output`: the whole output, from the archive when archived."""
        return await self._ask("read_output")

    def __repr__(self) -> str:
        return f"<AsyncBlock {self.block_id!r}>"


# -- replay --------------------------------------------------------------------------------


class _Waker:
    """Registered with a subscription while a follower awaits: the buffer's thread calls
    `release()` (under the subscription's mutex) and the loop wakes."""

    __slots__ = ("future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()

    def release(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop was closed: nobody awaits
            self.loop.call_soon_threadsafe(_set_none, self.future)


class AsyncFollower(AsyncIterator["ObservationEvent | Gap"]):
    """`async for` over a session's events that recovers by itself; see `Runtime.replay.follow`.

    Yields `ObservationEvent`s, and a `Gap` once per gap (then goes on from the gap's
    `latest_cursor`); when its subscription lags it subscribes again from the last
    cursor it yielded, so nothing is skipped or repeated. Iteration ends on `close()` /
    `aclose()` (or leaving `async with`) and when the runtime closes. One task iterates.

    Its subscription ends when it is closed, when the task awaiting `__anext__` is
    cancelled (an `async for` in a cancelled task, or `asyncio.timeout` around `anext`:
    a cancelled iteration has stopped following, as an async generator would be
    finished), and when the follower is dropped (breaking out of `async for
    art.follow(...)` drops it). To wait with a bound and go on following, use
    `await follower.next_item(timeout)`, which raises `Timeout` and leaves it as it was
    (a re-subscribe in flight stays pending for the next call).

    No thread: the session's buffer actor puts events into the subscription's queue and
    wakes the loop with `call_soon_threadsafe`.
    """

    def __init__(self, subscribe: Callable[[str], _PendingSubscribe], cursor: str) -> None:
        self._loop = asyncio.get_running_loop()  # a plain call, but from a coroutine
        self._subscribe = subscribe
        self._cursor = cursor
        self._lock = threading.Lock()
        self._sub: Subscription | None = None
        self._gap: Gap | None = None
        self._closed = False
        self._waker: _Waker | None = None
        # The loop's waiter for the pending subscribe's future: one per future, however
        # often `next_item` times out while the buffer has not answered.
        self._sub_wait: tuple[GreenroomFuture[Any], asyncio.Future[None]] | None = None
        self.lags = 0
        """How many times the subscription lagged and was made again."""
        self.gaps = 0
        """How many gaps were yielded."""
        # Sent now, answered later: what is appended after this returns is never missed.
        self._pending: _PendingSubscribe | None = subscribe(cursor)

    @property
    def cursor(self) -> str:
        """The cursor of the last event yielded (or of the last gap's tail)."""
        return self._cursor

    @property
    def closed(self) -> bool:
        """Whether `close()` was called (or iteration ended)."""
        return self._closed

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ObservationEvent | Gap:
        try:
            return await self._next()
        except Stopped:
            self.close()  # closed, or the runtime closed
            raise StopAsyncIteration from None
        except asyncio.CancelledError:
            # The iterating task was cancelled: it has stopped following (as an async
            # generator would be finished). next_item(timeout) is the wait that goes on.
            self.close()
            raise

    async def next_item(self, timeout: float | None = None) -> ObservationEvent | Gap:
        """The next event or gap, waiting up to `timeout` seconds in all (`None`: no limit).

        As `Follower.next_item`: `Timeout` when nothing came in time (the follower goes
        on: call again; a re-subscribe in flight stays pending), `Stopped` once closed
        or the runtime closed; bad timeouts are `InvalidInput`.
        """
        limit = wait_limit(timeout)
        try:
            async with asyncio.timeout(limit):
                return await self._next()
        except TimeoutError as error:
            if isinstance(error, Timeout):
                raise
            raise Timeout(
                f"no event within {timeout} s (still following from cursor "
                f"{self._cursor!r}; call next_item again)"
            ) from None

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
            waker = self._waker
            if waker is None or waker.future.done():
                waker = self._waker = _Waker(self._loop)
            try:
                event = sub._take_or_wake(waker)
            except SubscriberLagged as lag:
                self.lags += 1
                self._cursor = lag.resume_cursor
                self._sub = None
                continue
            if event is None:
                try:
                    await waker.future
                finally:
                    sub._drop_waker(waker)
                continue
            self._cursor = event.cursor
            return event

    async def _connect(self) -> None:
        pending = self._pending
        if pending is None:
            pending = self._pending = self._subscribe(self._cursor)
        try:
            while (result := pending.poll()) is None:
                # Shielded: a timed-out next_item leaves the waiter (and the one callback
                # on the pending future) for the next call, instead of adding another.
                await asyncio.shield(self._subscribe_waiter(pending.future))
        except asyncio.CancelledError:
            raise  # still pending: the next call picks it up
        except BaseException:
            self._pending = self._sub_wait = None
            raise
        self._pending = self._sub_wait = None
        adopt_subscribed(self, result)

    def _subscribe_waiter(self, future: GreenroomFuture[Any]) -> asyncio.Future[None]:
        """The loop's waiter that completes once `future` resolves (made once per future)."""
        held = self._sub_wait
        if held is not None and held[0] is future:
            return held[1]
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._sub_wait = (future, waiter)
        _on_loop(future, self._loop, functools.partial(_set_none, waiter))
        return waiter

    def close(self) -> None:
        """Stop following; an `__anext__` awaiting ends. Safe from any thread; idempotent."""
        with self._lock:
            self._closed = True
            sub, self._sub = self._sub, None
            pending, self._pending = self._pending, None
        _close_parts(sub, pending)

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
        # Dropped without a close (a `break` out of `async for art.follow(...)`): end the
        # subscription on the loop's thread, as asyncio finalises async generators. Not
        # here: a collection can run while this thread holds a lock close() takes.
        # (getattr: __init__ may have failed half way.)
        sub = getattr(self, "_sub", None)
        pending = getattr(self, "_pending", None)
        if getattr(self, "_closed", True) or (sub is None and pending is None):
            return
        # If the loop is closed, the subscription, dropped too, goes with this follower.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(_close_parts, sub, pending)

    def __repr__(self) -> str:
        return f"<AsyncFollower cursor={self._cursor!r} lags={self.lags} gaps={self.gaps}>"


def _close_parts(sub: Subscription | None, pending: _PendingSubscribe | None) -> None:
    if sub is not None:
        sub.close()
    if pending is not None:
        pending.cancel()
