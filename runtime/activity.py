"""In-flight message accounting: knows when every actor of a runtime is idle."""

from __future__ import annotations

import threading

__all__ = ["ActivityTracker"]


class ActivityTracker:
    """Counts messages queued or in hand, per actor, so a settle can wait for zero.

    An actor's inbox calls `enter` when a message is queued and the actor calls
    `leave` once the message is fully handled (reply set) or dropped. A message a
    handler sends on is entered before that handler leaves, so the count cannot touch
    zero while a chain of messages is still moving.
    """

    __slots__ = ("_by_actor", "_cond", "_entered", "_handled", "_pending")

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._pending = 0
        self._entered = 0
        self._handled = 0
        self._by_actor: dict[str, int] = {}

    def enter(self, name: str) -> None:
        """Record one message queued for the actor `name`."""
        with self._cond:
            self._pending += 1
            self._entered += 1
            self._by_actor[name] = self._by_actor.get(name, 0) + 1

    def leave(self, name: str, *, handled: bool = True) -> None:
        """Record that one message of the actor `name` is finished (or dropped)."""
        with self._cond:
            self._pending -= 1
            if handled:
                self._handled += 1
            left = self._by_actor[name] - 1
            if left:
                self._by_actor[name] = left
            else:
                del self._by_actor[name]
            if not self._pending:
                self._cond.notify_all()

    def wait_idle(self, timeout: float | None) -> bool:
        """Wait up to `timeout` real seconds for zero pending messages; say if reached."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending, timeout)

    def is_idle(self) -> bool:
        """Whether no message is queued or in hand right now."""
        return not self._pending

    def busy(self) -> dict[str, int]:
        """Each busy actor's name and its pending message count, at this instant."""
        with self._cond:
            return dict(self._by_actor)

    @property
    def pending(self) -> int:
        """Messages queued or in hand across all actors."""
        return self._pending

    @property
    def entered(self) -> int:
        """Messages ever queued: a settle compares it before and after to spot new work."""
        return self._entered

    @property
    def handled(self) -> int:
        """Messages handled since the tracker was created."""
        return self._handled
