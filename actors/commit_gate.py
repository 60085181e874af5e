"""`CommitGate`: an actor's answers held until the writes made before them are committed.

An actor that journals what it does can submit each write (`Store.submit_atomic`) and
go on with its next message at once, so that the writes of many actors share a commit
however few worker threads run them. What it answers meanwhile depends on those
writes: each answer waits at the gate until every write submitted before it is
committed, and fails with that write's error if one failed (from then on the actor's
memory is not what is stored: every later answer fails too, and the actor lets go of
its copy). The store commits writes in the order they were submitted, and each of an
actor's writes expects what the one before it left (a journal appends at the size it
last saw), so a write is committed only if those before it were: the gate only counts.

    token = gate.submitted()
    store.submit_atomic(writes, lambda _results, error: gate.done(token, error))
    if not gate.hold(reply, value):
        reply.set(value)  # nothing was pending: answered at once

What waits is an `Answer`: anything with `set(value)` and `fail(error)`, such as an
actor's `Reply`. The gate keeps the answer and its value, not a callable made for
them: with thousands of answers waiting, each object one keeps is one more for the
cyclic GC to walk.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from typing import Any, Protocol

__all__ = ["Answer", "CommitGate"]


class Answer(Protocol):
    """What a gate holds until the writes before it are committed (a `Reply`, say)."""

    def set(self, value: Any) -> None:
        """The writes are committed: answer with `value`."""

    def fail(self, error: BaseException) -> None:
        """A write failed: answer with its `error`."""


# The gates' locks, shared: a lock per session is one more object for the cyclic GC to
# walk, and a gate holds its lock only for a few assignments (it never calls out or
# takes another lock while holding it), so gates sharing one barely wait.
_LOCKS = tuple(threading.Lock() for _ in range(64))
_next_lock = itertools.count()

_NO_HELD: deque[Any] = deque(maxlen=0)  # (shared and always empty: nothing is ever added to it)


class CommitGate:
    """Counts an actor's submitted and committed writes; holds answers in between.

    `submitted` and `hold` are called on the actor's thread, `done` on the thread that
    committed the write; the gate's lock keeps the count straight between them.
    """

    __slots__ = ("_committed", "_failed", "_held", "_lock", "_submitted")

    def __init__(self) -> None:
        self._lock = _LOCKS[next(_next_lock) % len(_LOCKS)]
        self._submitted = 0  # a write's token is its number, counted from 1
        self._committed = 0  # every write up to this token is committed
        self._failed: tuple[int, BaseException] | None = None
        # Made on first use: an empty deque costs 600 bytes a session. Flat: token,
        # answer, value, token, ... (no tuple an answer for the cyclic GC to walk).
        self._held: deque[Any] = _NO_HELD

    @property
    def pending(self) -> bool:
        """Whether a write is submitted and not yet committed (or one failed)."""
        with self._lock:
            return self._failed is not None or self._committed < self._submitted

    @property
    def failed(self) -> BaseException | None:
        """The error of the first write that failed, if one did."""
        with self._lock:
            return None if self._failed is None else self._failed[1]

    def submitted(self) -> int:
        """Count a write about to be submitted; its token, for `done`."""
        with self._lock:
            self._submitted += 1
            return self._submitted

    def mark(self) -> int:
        """The token of the last write submitted so far (0: none), for `hold(upto=)`."""
        with self._lock:
            return self._submitted

    def hold(self, answer: Answer, value: Any, *, upto: int | None = None) -> bool:
        """Call `answer.set(value)` once every write submitted so far (or up to token
        `upto`, a `mark()`) is committed, or `answer.fail(error)` if one failed; False
        (and nothing held) when none is pending."""
        with self._lock:
            failed = self._failed
            if failed is None:
                token = self._submitted if upto is None else min(upto, self._submitted)
                if self._committed >= token:
                    return False
                if self._held is _NO_HELD:
                    self._held = deque()
                self._held.extend((token, answer, value))
                return True
        answer.fail(failed[1])
        return True

    def done(self, token: int, error: BaseException | None) -> None:
        """Write `token` was committed (`error` None) or failed: release what waited."""
        with self._lock:
            if error is None:
                self._committed = max(self._committed, token)
            elif self._failed is None:
                self._failed = (token, error)
            failed = self._failed
            committed = self._committed
            ready: list[Any] = []
            held = self._held
            # Released only what every write up to it is known committed for; once one
            # failed, the rest fail (outcomes may be told out of order: a write not yet
            # heard of is never taken for committed).
            while held and (held[0] <= committed or failed is not None):
                ready += (held.popleft(), held.popleft(), held.popleft())
            if ready and not held:
                self._held = _NO_HELD  # (a paused session keeps no empty deque)
        entries = iter(ready)
        for waited_for, answer, value in zip(entries, entries, entries, strict=True):
            if waited_for <= committed:
                answer.set(value)
            else:
                assert failed is not None
                answer.fail(failed[1])
