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
"""

from __future__ import annotations

import queue
import sys
import threading
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import pykka
from pykka._future import _Unset

from runtime.errors import FutureTimeout, InvalidTransition

if TYPE_CHECKING:
    from pykka._types import OptExcInfo

__all__ = ["GreenroomFuture"]

T = TypeVar("T")

# Guards the one-time transition to "done" (set, set_exception, set_get_hook). Held for
# a few instructions that call nothing, so one lock for all futures costs nothing
# measurable and never convoys (see runtime.activity).
_settle_lock = threading.Lock()

# `actor` is set by the dispatcher while a handler runs on this thread; `pool` on the
# threads of a blocking pool (where waiting is allowed, but closing the runtime is not).
in_handler = threading.local()


class GreenroomFuture(pykka.Future[T], Generic[T]):
    """A pykka future whose waiters sleep on one lock until the value is set."""

    def __init__(self) -> None:
        super().__init__()
        self._done = threading.Lock()
        self._done.acquire()  # released once, by whoever sets the result
        self._value: Any = None
        self._exc_info: OptExcInfo | None = None
        self._has_result = False

    def get(self, *, timeout: float | None = None) -> T:
        """The value (or raise the exception) the actor answered with; see pykka.

        Raises `FutureTimeout` after `timeout` seconds, and `InvalidTransition` when a
        handler would have to wait (see the module docstring).
        """
        if self._get_hook is not None:
            return super().get(timeout=timeout)
        if not self._has_result:
            if timeout is not None and timeout <= 0:
                raise FutureTimeout(f"no reply within {timeout} seconds")  # a poll never waits
            if getattr(in_handler, "actor", None) is not None:
                raise InvalidTransition(
                    f"a handler of actor {in_handler.actor} waited on a future that is not "
                    "resolved yet; handlers must not block a shared dispatcher thread. Send a "
                    "message and return, let the answer come back as a message, or move "
                    "blocking work to run_blocking()"
                )
            if timeout is None:
                acquired = self._done.acquire()
            else:
                acquired = self._done.acquire(timeout=timeout)
            if acquired:
                # Pass the wake-up on to the next waiter, if several threads wait.
                self._done.release()
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
        return self._value

    def set(self, value: Any | None = None) -> None:
        """Resolve with `value`; a second `set` raises `queue.Full` (as in pykka)."""
        with _settle_lock:
            if self._has_result or self._get_hook is not None:
                raise queue.Full
            self._value = value
            self._has_result = True
        self._done.release()

    def set_exception(self, exc_info: OptExcInfo | None = None) -> None:
        """Resolve with an exception (default: the one being handled); see pykka."""
        if exc_info is None:
            exc_info = sys.exc_info()
        with _settle_lock:
            if self._has_result or self._get_hook is not None:
                raise queue.Full
            self._exc_info = exc_info
            self._has_result = True
        self._done.release()

    def set_get_hook(self, func: Any) -> None:
        """Compute the value on `get()` with `func(timeout)` instead; see pykka."""
        with _settle_lock:
            if self._has_result:
                raise queue.Full
            self._get_hook = func

    @property
    def done(self) -> bool:
        """Whether the value (or exception) has arrived; for a derived future (`map`,
        `join`, ...) whether `get()` has computed it."""
        if self._get_hook is not None:
            return not isinstance(self._get_hook_result, _Unset)
        return self._has_result

    def __repr__(self) -> str:
        return f"<GreenroomFuture {'done' if self._has_result else 'pending'}>"
