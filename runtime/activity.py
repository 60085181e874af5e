"""Work-in-progress accounting: knows when every actor of a runtime is idle."""

from __future__ import annotations

import threading
from collections.abc import Sized

__all__ = ["ActivityTracker"]


class ActivityTracker:
    """Counts units of work in progress, by name, so a settle can wait for zero.

    A unit is an actor with mail (from the moment its mailbox hands it to the
    dispatcher until a worker finds the mailbox empty) or a job on the blocking pool.
    Counting actors rather than messages keeps the tracker off the per-message path: a
    flooded actor enters once. A message a handler sends on makes its target busy
    before the sender's turn ends, so the count cannot touch zero while a chain of
    messages is still moving.
    """

    __slots__ = ("_by_name", "_cond", "_entered", "_handled", "_pending", "_probes")

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._pending = 0
        self._entered = 0
        self._handled = 0
        self._by_name: dict[str, int] = {}
        self._probes: dict[str, Sized] = {}

    def enter(self, name: str, probe: Sized | None = None) -> None:
        """Record one unit of work started for `name`.

        `probe` (an actor's mailbox) tells `busy()` how many messages are queued.
        """
        with self._cond:
            self._pending += 1
            self._entered += 1
            self._by_name[name] = self._by_name.get(name, 0) + 1
            if probe is not None:
                self._probes[name] = probe

    def leave(self, name: str, *, handled: int = 0) -> None:
        """Record that one unit of work of `name` is finished, after `handled` messages."""
        with self._cond:
            self._pending -= 1
            self._handled += handled
            left = self._by_name[name] - 1
            if left:
                self._by_name[name] = left
            else:
                del self._by_name[name]
                self._probes.pop(name, None)
            if not self._pending:
                self._cond.notify_all()

    def count_handled(self, handled: int) -> None:
        """Record `handled` messages handled by a unit of work that goes on."""
        with self._cond:
            self._handled += handled

    def wait_idle(self, timeout: float | None) -> bool:
        """Wait up to `timeout` real seconds for zero work in progress; say if reached."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending, timeout)

    def is_idle(self) -> bool:
        """Whether nothing is queued or in hand right now."""
        return not self._pending

    def busy(self) -> dict[str, int]:
        """Each busy name with its queued messages (at least 1), at this instant."""
        with self._cond:
            counts = dict(self._by_name)
            probes = dict(self._probes)
        for name, probe in probes.items():
            if name in counts:
                counts[name] = max(counts[name], len(probe))
        return counts

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
