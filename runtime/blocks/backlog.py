"""`OutputBacklog`: backpressure on block output the writer has not stored yet.

`Block.append_output` returns at once, so a producer faster than the disk would pile
its output up in memory, where a crash loses it. Every runtime counts the output bytes
its blocks accepted and its block writer has not committed yet; past
`RuntimeConfig.max_pending_output_bytes`, `append_output` waits for the writer to catch
up (or raises `Timeout` where it must not wait: in a handler, on an event loop).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from greenroom.errors import Timeout

__all__ = ["OutputBacklog"]

log = logging.getLogger("greenroom.blocks")


class OutputBacklog:
    """Bytes accepted and not stored yet, and a gate that holds producers past a limit."""

    __slots__ = (
        "_changed",
        "_limit",
        "_lock",
        "_pending",
        "_wait_s",
        "_waiters",
        "delayed",
        "waits",
    )

    def __init__(self, limit: int, wait_s: float) -> None:
        """Hold producers while more than `limit` bytes wait, for at most `wait_s` s."""
        self._limit = limit
        self._wait_s = wait_s
        self._pending = 0
        # The count has a plain lock (every append takes it: it must stay cheap); only
        # producers that must wait use the condition.
        self._lock = threading.Lock()
        self._changed = threading.Condition(threading.Lock())
        self._waiters = 0
        self.waits = 0  # appends that had to wait (a counter)
        # Whether the writer holds a commit back for `output_commit_delay_s` (set by
        # the writer; `rt.settle()` has it commit at once).
        self.delayed = False

    @property
    def pending(self) -> int:
        """Bytes accepted and not yet stored (the `pending_output_bytes` gauge)."""
        return self._pending

    def admit(
        self, n_bytes: int, *, may_wait: bool, on_wait: Callable[[], object] | None = None
    ) -> None:
        """Count `n_bytes` more, once the backlog leaves room for them.

        Room means the backlog plus `n_bytes` is within the limit, or the backlog is
        empty (so one append larger than the limit still goes through). Without room:
        waits up to `output_wait_timeout_s` if `may_wait`, else raises `Timeout` at once;
        after a wait that timed out also `Timeout`. Nothing is counted then. `on_wait`:
        see `wait_to_take`.
        """
        if not self.take(n_bytes):
            self.wait_to_take(n_bytes, may_wait=may_wait, on_wait=on_wait)

    @property
    def pressed(self) -> bool:
        """Whether a producer waits for room, or half the room is taken (the writer
        then commits without its delay)."""
        return self._waiters > 0 or self._pending * 2 >= self._limit

    def wait_to_take(
        self, n_bytes: int, *, may_wait: bool, on_wait: Callable[[], object] | None = None
    ) -> None:
        """`admit` once `take` found no room: wait for it (or `Timeout`); `on_wait()`
        is called once this producer counts as waiting (`pressed`), before it waits
        (or before `Timeout`, where it may not wait)."""
        if not may_wait:
            if on_wait is not None:
                on_wait()  # (so the writer makes room for the next try)
            raise Timeout(self._behind("here it cannot wait"))
        with self._changed:
            self._waiters += 1
            self.waits += 1
            try:
                if on_wait is not None:
                    on_wait()
                # (`take` is checked after `_waiters` went up: a release either sees
                # this waiter and notifies, or came first and left room to take.)
                if not self._changed.wait_for(lambda: self.take(n_bytes), self._wait_s):
                    raise Timeout(self._behind(f"waited {self._wait_s:g} s"))
            finally:
                self._waiters -= 1

    def take(self, n_bytes: int) -> bool:
        """Count `n_bytes` if there is room now; whether it did (never waits)."""
        with self._lock:
            if self._pending == 0 or self._pending + n_bytes <= self._limit:
                self._pending += n_bytes
                return True
            return False

    def release(self, n_bytes: int) -> None:
        """`n_bytes` were stored (or dropped, counted elsewhere): room for others."""
        with self._lock:
            self._pending = max(0, self._pending - n_bytes)
        if self._waiters:
            with self._changed:
                self._changed.notify_all()

    def _behind(self, why: str) -> str:
        return (
            f"block output not accepted: the block writer is {self._pending} bytes behind "
            f"(RuntimeConfig.max_pending_output_bytes={self._limit}) and {why}; nothing of "
            "it was appended: append it again later, or raise the limit"
        )
