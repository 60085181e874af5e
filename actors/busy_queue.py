"""`BusyQueue`: one long operation at a time in an actor; later ones wait in order.

A block archives, a transcript compacts, the sweeper sweeps: each such operation runs
off the actor (on the blocking pool) and answers its caller later, and the next one
must wait until it ends. The queue keeps that order:

    self._ops = BusyQueue(self._start)     # _start(item, reply) begins an operation
    self._ops.submit(item, reply)          # runs now, or when the ones before it end
    self._ops.done()                       # the operation under way ended: next one
    self._ops.fail_all(Stopped("..."))     # on_stop: every waiting caller is answered
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from greenroom.actors.base import Reply

__all__ = ["BusyQueue"]

T = TypeVar("T")


class BusyQueue(Generic[T]):
    """Runs `start(item, reply)` for one item at a time, in the order submitted.

    `start` begins the operation and returns; the actor calls `done()` when it ends
    (whether it answered `reply` or not). If `start` raises, the reply is failed with
    the error and the next item starts. Call every method from the actor's own turn.
    """

    __slots__ = ("_current", "_queued", "_start")

    def __init__(self, start: Callable[[T, Reply], None]) -> None:
        self._start = start
        self._current: Reply | None = None
        # Made on first use: an empty deque costs 600 bytes, and most never queue.
        self._queued: deque[tuple[T, Reply]] | None = None

    @property
    def busy(self) -> bool:
        """Whether an operation is under way."""
        return self._current is not None

    @property
    def current(self) -> Reply | None:
        """The reply of the operation under way, if any."""
        return self._current

    def __len__(self) -> int:
        """How many items wait (the one under way not counted)."""
        return 0 if self._queued is None else len(self._queued)

    def waiting(self) -> Iterator[tuple[T, Reply]]:
        """The waiting items with their replies, oldest first."""
        return iter(() if self._queued is None else self._queued)

    def submit(self, item: T, reply: Reply) -> None:
        """Start `item` now if nothing is under way, else queue it behind the rest."""
        if self._current is not None:
            if self._queued is None:
                self._queued = deque()
            self._queued.append((item, reply))
        else:
            self._run(item, reply)

    def done(self) -> None:
        """The operation under way ended: start the next waiting one, if any."""
        self._current = None
        if self._queued:
            self._run(*self._queued.popleft())

    def fail_all(self, error: BaseException) -> None:
        """Fail the operation under way and every waiting one with `error`; empty."""
        current, self._current = self._current, None
        if current is not None:
            current.fail(error)
        queued, self._queued = self._queued or (), None
        for _item, reply in queued:
            reply.fail(error)

    def _run(self, item: T, reply: Reply) -> None:
        while True:
            self._current = reply
            try:
                self._start(item, reply)
                return
            except Exception as error:
                reply.fail(error)
                self._current = None
                if not self._queued:
                    return
                item, reply = self._queued.popleft()
