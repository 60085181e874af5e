"""`GreenroomFuture`: pykka's `Future` on a one-shot lock, refusing to block a dispatcher.

Every `ask` and proxy call of a greenroom actor returns one. It behaves as pykka's
`ThreadingFuture` (`get`, `get_all`, `map`, `filter`, `join`, `reduce`, `await`), with
two differences:

* Waiting costs one lock acquire, not a condition variable and a clock read per wait.
* `get()` on a result that has not arrived yet, called from inside an actor's handler,
  raises `InvalidTransition` instead of blocking: the handler would hold one of the few
  shared dispatcher threads while it waits, and two actors waiting on each other would
  deadlock the pool. A handler sends a message and returns; the answer comes back as a
  message (see `GreenroomActor.run_blocking` for work that must block).

A timed-out `get` raises `FutureTimeout`, which is both a greenroom `Timeout` and a
`pykka.Timeout`.

Two additions serve code that must not wait on a thread at all (`greenroom.aio`, the
asyncio facade): `add_done_callback(fn)` runs `fn(future)` once the future resolves,
on the thread that resolves it (at once, on the caller's thread, if it already has);
and `drive(steps)` runs a call written as a generator of the futures it needs (see
`drive`), so one piece of code serves both the blocking and the asyncio face.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
from collections.abc import Callable, Generator
from typing import Any, Generic, TypeAlias, TypeVar

import pykka

from greenroom.checks import check_timeout
from greenroom.errors import FutureTimeout, InvalidTransition
from greenroom.pykka_internals import UNSET, OptExcInfo, Unset

__all__ = ["GreenroomFuture", "Steps", "drive"]

log = logging.getLogger("greenroom.actors")

T = TypeVar("T")
R = TypeVar("R")

# Guards the one-time transition to "done" (set, set_exception, set_get_hook). Held for
# a few instructions that call nothing, so one lock for all futures costs nothing
# measurable and never convoys (see runtime.activity).
_settle_lock = threading.Lock()

# `actor` is set by the dispatcher while a handler runs on this thread; `pool` on the
# threads of a blocking pool (where waiting is allowed, but closing the runtime is not).
in_handler = threading.local()


def refuse_waiting_in_handler(what: str, hint: str = "") -> None:
    """The one guard against blocking inside a handler: `InvalidTransition` if one runs here.

    A handler holds a shared dispatcher thread, so it must not wait. Every call that
    would (a future's `get`, a subscription's `next_event`, the runtime's waiting calls
    through `Kernel.refuse_inside_actor`) asks this first. `hint` says what to do instead.
    """
    actor = getattr(in_handler, "actor", None)
    if actor is not None:
        name = getattr(actor, "name", actor)  # kind:id
        raise InvalidTransition(
            f"{what} was called from a handler of actor {name} and would wait inside it; "
            "handlers must not block a shared dispatcher thread. "
            + (
                hint
                or "Send a message and return, let the answer come back as a message, or "
                "move blocking work to run_blocking()"
            )
        )


def _checked(timeout: Any) -> float:
    """A future's timeout: zero or less is a poll (as in pykka); else seconds that the
    OS can wait (`InvalidInput` for NaN, infinity, over ten years or not a number)."""
    if type(timeout) in (int, float) and timeout <= 0:
        return float(timeout)
    checked = check_timeout(timeout)
    assert checked is not None
    return checked


class GreenroomFuture(pykka.Future[T], Generic[T]):
    """A pykka future whose waiters sleep on one lock until the value is set."""

    # Class-level defaults: most futures never get a callback or a source, and an
    # instance attribute set only when needed keeps the common future as small as before.
    _callbacks: list[Callable[[GreenroomFuture[Any]], object]] | None = None
    _sources: tuple[GreenroomFuture[Any], ...] | None = None
    """The futures a derived future (`map`, `filter`, `join`, `reduce`) is computed from."""
    _done: threading.Lock | None = None
    """What waiting threads sleep on: made, acquired, by the first thread that waits
    (`_waiting_lock`) and released by whoever sets the result. Most futures never see a
    waiting thread (resolved before anyone waits, or awaited through a callback), and a
    lock is one more object for the cyclic GC while a call is in flight."""

    def __init__(self) -> None:
        # What `pykka.Future.__init__` does, with one shared "no hook result" marker
        # where pykka makes a new one: one object fewer for the GC per call in flight
        # (`greenroom.pykka_internals.check` pins the attributes it sets).
        self._get_hook = None
        self._get_hook_result = UNSET
        self._value: Any = None
        self._exc_info: OptExcInfo | None = None
        self._has_result = False

    def get(self, *, timeout: float | None = None) -> T:
        """The value (or raise the exception) the actor answered with; see pykka.

        Raises `FutureTimeout` after `timeout` seconds, and `InvalidTransition` when a
        handler would have to wait (see the module docstring).
        """
        if timeout is not None:
            timeout = _checked(timeout)
        if self._get_hook is not None:
            return super().get(timeout=timeout)
        if not self._has_result:
            if timeout is not None and timeout <= 0:
                raise FutureTimeout(f"no reply within {timeout} seconds")  # a poll never waits
            refuse_waiting_in_handler("get() on a future that is not resolved yet")
            done = self._waiting_lock()
            if done is not None:
                # (-1: no limit, as Lock.acquire spells it.)
                if done.acquire(timeout=-1 if timeout is None else timeout):
                    # Pass the wake-up on to the next waiter, if several threads wait.
                    done.release()
                elif not self._has_result:
                    # (The value may have arrived while another waiter held the hand-off.)
                    raise FutureTimeout(f"no reply within {timeout} seconds")
        exc_info = self._exc_info
        if exc_info is not None:
            exc_type, exc_value, exc_tb = exc_info
            assert exc_type is not None
            if exc_value is None:
                exc_value = exc_type()
            raise exc_value.with_traceback(exc_tb)
        value: T = self._value
        return value

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the value (or exception) has arrived; whether it has, in `timeout` s.

        Reads nothing and raises nothing but what `get` raises before it waits
        (`InvalidTransition` inside a handler). Not for derived futures (`map`, ...),
        whose value exists only once `get()` computes it: call `get` on those.
        """
        if self._get_hook is not None:
            raise InvalidTransition(
                "wait() on a derived future (map, filter, join, reduce): it has no value "
                "of its own until get() computes it; call get() instead"
            )
        if timeout is not None:
            timeout = _checked(timeout)
        if self._has_result:
            return True
        if timeout is not None and timeout <= 0:
            return False
        refuse_waiting_in_handler("wait() on a future that is not resolved yet")
        done = self._waiting_lock()
        # (-1: no limit, as Lock.acquire spells it.)
        if done is not None and done.acquire(timeout=-1 if timeout is None else timeout):
            done.release()  # pass the wake-up on, as in get()
        return self._has_result

    def _waiting_lock(self) -> threading.Lock | None:
        """The lock a waiting thread sleeps on (made, acquired, by the first one);
        None if the result has arrived meanwhile. Under `_settle_lock`, as `set` reads
        it there: either `set` sees the lock and releases it, or this sees the result."""
        with _settle_lock:
            if self._has_result:
                return None
            done = self._done
            if done is None:
                done = self._done = threading.Lock()
                done.acquire()  # released once, by whoever sets the result
            return done

    def set(self, value: Any | None = None) -> None:
        """Resolve with `value`; a second `set` raises `queue.Full` (as in pykka)."""
        with _settle_lock:
            if self._has_result or self._get_hook is not None:
                raise queue.Full
            self._value = value
            self._has_result = True
            callbacks = self._callbacks
            if callbacks is not None:
                self._callbacks = None
            done = self._done
        if done is not None:
            done.release()
        if callbacks is not None:
            self._run_callbacks(callbacks)

    def set_exception(self, exc_info: OptExcInfo | None = None) -> None:
        """Resolve with an exception (default: the one being handled); see pykka."""
        if exc_info is None:
            exc_info = sys.exc_info()
        with _settle_lock:
            if self._has_result or self._get_hook is not None:
                raise queue.Full
            self._exc_info = exc_info
            self._has_result = True
            callbacks = self._callbacks
            if callbacks is not None:
                self._callbacks = None
            done = self._done
        if done is not None:
            done.release()
        if callbacks is not None:
            self._run_callbacks(callbacks)

    def set_get_hook(self, func: Any) -> None:
        """Compute the value on `get()` with `func(timeout)` instead; see pykka.

        Refused (`InvalidTransition`) once a done-callback is registered: the callback
        waits for a value this future would then never be given.
        """
        with _settle_lock:
            if self._has_result:
                raise queue.Full
            if self._callbacks is not None:
                raise InvalidTransition(
                    "set_get_hook() on a future with done-callbacks registered: they would "
                    "never run"
                )
            self._get_hook = func

    # -- done-callbacks -------------------------------------------------------------------

    def add_done_callback(self, fn: Callable[[GreenroomFuture[T]], object]) -> None:
        """Run `fn(self)` once this future resolves; at once if it already has.

        `fn` runs on the thread that resolves the future (often a dispatcher worker, so
        it must be quick and must not block: hand the news on, e.g. with an event
        loop's `call_soon_threadsafe`), or on the caller's thread when the future is
        already resolved. An exception from `fn` is logged, never raised to the
        resolver. Callbacks run in the order registered.

        A derived future (`map`, `filter`, `join`, `reduce` of greenroom futures) runs
        `fn` once every future it is computed from has resolved, so its `get()` then
        computes without waiting. A future derived any other way (`set_get_hook`
        called directly, or a `join` with a non-greenroom future) is refused with
        `InvalidTransition`: there is no telling when its value is ready.
        """
        with _settle_lock:
            # Read under the lock: a set_get_hook racing this call either sees the
            # callback registered (and refuses) or is seen here.
            derived = self._get_hook is not None
            if not derived and not self._has_result:
                if self._callbacks is None:
                    self._callbacks = [fn]
                else:
                    self._callbacks.append(fn)
                return
        if derived:
            self._add_derived_callback(fn)  # takes the lock itself, per source
            return
        self._run_callbacks([fn])

    def remove_done_callback(self, fn: Callable[[GreenroomFuture[T]], object]) -> bool:
        """Forget `fn` (added with `add_done_callback`) if it has not run; whether it was.

        For a waiter that gave up (a timeout, a cancelled task): its callback no longer
        piles up on a future that stays pending. A derived future's callback, once
        registered, is not removed (False).
        """
        with _settle_lock:
            callbacks = self._callbacks
            if callbacks is None or self._get_hook is not None:
                return False
            for index, registered in enumerate(callbacks):
                if registered is fn:
                    del callbacks[index]
                    return True
        return False

    def _add_derived_callback(self, fn: Callable[[GreenroomFuture[T]], object]) -> None:
        roots = self._roots()
        remaining = [len(roots)]

        def one_resolved(_source: GreenroomFuture[Any]) -> None:
            with _settle_lock:
                remaining[0] -= 1
                last = remaining[0] == 0
            if last:
                self._run_callbacks([fn])

        for root in roots:
            root.add_done_callback(one_resolved)

    def _roots(self) -> list[GreenroomFuture[Any]]:
        """The plain futures this derived one is computed from (checked before any is
        registered, so a refusal registers nothing)."""
        roots: list[GreenroomFuture[Any]] = []
        todo: list[Any] = [self]
        while todo:
            future = todo.pop()
            if not isinstance(future, GreenroomFuture):
                raise InvalidTransition(
                    f"a done-callback on a future derived from {future!r}, which is not a "
                    "greenroom future: there is no telling when it resolves; derive only "
                    "from greenroom futures (ask, proxy calls)"
                )
            if future._get_hook is None:
                roots.append(future)
            elif future._sources is None:
                raise InvalidTransition(
                    "a done-callback on a future given a get hook by set_get_hook(): there "
                    "is no telling when its value is ready; register on the futures it is "
                    "computed from instead"
                )
            else:
                todo.extend(future._sources)
        return roots

    def _run_callbacks(self, callbacks: list[Callable[[GreenroomFuture[Any]], object]]) -> None:
        for fn in callbacks:
            try:
                fn(self)
            except Exception:
                # The resolver is an actor replying to an ask: a host's callback must not
                # break that reply, nor the callbacks after it.
                log.exception("a done-callback of %r raised; ignored", self)

    # -- derived futures: remember what they are computed from ----------------------------

    def map(self, func: Callable[[T], R]) -> GreenroomFuture[R]:
        """A future of `func(value)`; see pykka."""
        derived: GreenroomFuture[R] = self._derived(super().map(func), (self,))
        return derived

    def filter(self, func: Callable[[Any], bool]) -> GreenroomFuture[Any]:
        """A future of the items of the value passing `func`; see pykka."""
        derived: GreenroomFuture[Any] = self._derived(
            super().filter(func),  # type: ignore[misc]
            (self,),
        )
        return derived

    def join(self, *futures: pykka.Future[Any]) -> GreenroomFuture[Any]:
        """A future of the list of this value and the values of `futures`; see pykka."""
        derived: GreenroomFuture[Any] = self._derived(super().join(*futures), (self, *futures))
        return derived

    def reduce(self, func: Callable[[Any, Any], Any], *args: Any) -> GreenroomFuture[Any]:
        """A future of the value reduced with `func`; see pykka."""
        derived: GreenroomFuture[Any] = self._derived(
            super().reduce(func, *args),  # type: ignore[misc]
            (self,),
        )
        return derived

    @staticmethod
    def _derived(future: Any, sources: tuple[Any, ...]) -> Any:
        future._sources = sources
        return future

    @property
    def done(self) -> bool:
        """Whether the value (or exception) has arrived; for a derived future (`map`,
        `join`, ...) whether `get()` has computed it."""
        if self._get_hook is not None:
            return not isinstance(self._get_hook_result, Unset)
        return self._has_result

    def __repr__(self) -> str:
        return f"<GreenroomFuture {'done' if self._has_result else 'pending'}>"


Steps: TypeAlias = Generator[GreenroomFuture[Any], None, R]
"""A call written once for the blocking and the asyncio face: a generator that yields
each future it needs resolved and goes on once it is (reading it then never waits)."""


def drive(steps: Steps[R], timeout: float | None = None) -> R:
    """Run `steps` on this thread, waiting for each future it yields; its return value.

    `timeout` bounds each wait (`FutureTimeout` when one runs out; the steps are then
    abandoned). `greenroom.aio` drives the same generators on an event loop instead.
    """
    try:
        future = next(steps)
        while True:
            if not future.wait(timeout):
                steps.close()
                raise FutureTimeout(f"no reply within {timeout} seconds")
            future = steps.send(None)
    except StopIteration as stop:
        result: R = stop.value
        return result
