"""Work-in-progress accounting: knows when every actor of a runtime is idle."""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["ActivityTracker"]


class ActivityTracker:
    """Counts units of work in progress so a settle can wait for zero.

    A unit is an actor with mail (from the moment its mailbox hands it to the
    dispatcher until a worker finds the mailbox empty) or a job on the blocking pool.
    Counting actors rather than messages keeps the tracker off the per-message path: a
    flooded actor enters once. A message a handler sends on makes its target busy
    before the sender's turn ends, so the count cannot touch zero while a chain of
    messages is still moving.

    `enter` and `leave` run on every thread of the runtime. Their critical sections do
    plain arithmetic and call nothing, so under the GIL a thread is never switched
    out while it holds the lock: no other thread can block on it and wait a whole
    switch interval for the GIL to come back (a lock convoy). Who is busy is asked
    of the runtime (`describe`) only when someone wants to know.
    """

    __slots__ = ("_cond", "_describe", "_entered", "_handled", "_lock", "_pending", "_waiting")

    def __init__(self, describe: Callable[[], dict[str, int]] | None = None) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(threading.Lock())
        self._pending = 0
        self._entered = 0
        self._handled = 0
        self._waiting = 0
        self._describe = describe

    def enter(self) -> None:
        """Record one unit of work started."""
        with self._lock:
            self._pending += 1
            self._entered += 1

    def leave(self, handled: int = 0) -> None:
        """Record one unit of work finished, after `handled` messages."""
        with self._lock:
            self._pending -= 1
            self._handled += handled
            wake = not self._pending and self._waiting
        if wake:
            with self._cond:
                self._cond.notify_all()

    def count_handled(self, handled: int) -> None:
        """Record `handled` messages handled by a unit of work that goes on."""
        with self._lock:
            self._handled += handled

    def wait_idle(self, timeout: float | None) -> bool:
        """Wait up to `timeout` real seconds for zero work in progress; say if reached."""
        with self._cond:
            with self._lock:
                if not self._pending:
                    return True
                self._waiting += 1
            try:
                # A leave that reaches zero takes _cond to notify, which it can only do
                # once this thread waits: no wake-up is lost between check and wait.
                return self._cond.wait_for(lambda: not self._pending, timeout)
            finally:
                with self._lock:
                    self._waiting -= 1

    def is_idle(self) -> bool:
        """Whether nothing is queued or in hand right now."""
        return not self._pending

    def busy(self) -> dict[str, int]:
        """Each busy actor (or blocking job) with its queued messages, at this instant."""
        if self._describe is not None:
            return self._describe()
        return {"work": self._pending} if self._pending else {}

    @property
    def pending(self) -> int:
        """Units of work in progress (busy actors and blocking jobs)."""
        return self._pending

    @property
    def entered(self) -> int:
        """Units ever started: a settle compares it before and after to spot new work."""
        return self._entered

    @property
    def handled(self) -> int:
        """Messages handled since the tracker was created."""
        return self._handled
