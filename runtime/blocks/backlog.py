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

from greenroom.errors import Timeout

__all__ = ["OutputBacklog"]

log = logging.getLogger("greenroom.blocks")


class OutputBacklog:
    """Bytes accepted and not stored yet, and a gate that holds producers past a limit."""

    __slots__ = ("_changed", "_limit", "_pending", "_wait_s", "waits")

    def __init__(self, limit: int, wait_s: float) -> None:
        """Hold producers while more than `limit` bytes wait, for at most `wait_s` s."""
        self._limit = limit
        self._wait_s = wait_s
        self._pending = 0
        self._changed = threading.Condition(threading.Lock())
        self.waits = 0  # appends that had to wait (a counter)

    @property
    def pending(self) -> int:
        """Bytes accepted and not yet stored (the `pending_output_bytes` gauge)."""
        return self._pending

    def admit(self, n_bytes: int, *, may_wait: bool) -> None:
        """Count `n_bytes` more, once the backlog leaves room for them.

        Room means the backlog plus `n_bytes` is within the limit, or the backlog is
        empty (so one append larger than the limit still goes through). Without room:
        waits up to `output_wait_timeout_s` if `may_wait`, else raises `Timeout` at once;
        after a wait that timed out also `Timeout`. Nothing is counted then.
        """
        with self._changed:
            if not self._room(n_bytes):
                if not may_wait:
                    raise Timeout(self._behind("here it cannot wait"))
                self.waits += 1
                if not self._changed.wait_for(lambda: self._room(n_bytes), self._wait_s):
                    raise Timeout(self._behind(f"waited {self._wait_s:g} s"))
            self._pending += n_bytes

    def release(self, n_bytes: int) -> None:
        """`n_bytes` were stored (or dropped, counted elsewhere): room for others."""
        with self._changed:
            self._pending = max(0, self._pending - n_bytes)
            self._changed.notify_all()

    def _room(self, n_bytes: int) -> bool:
        return self._pending == 0 or self._pending + n_bytes <= self._limit

    def _behind(self, why: str) -> str:
        return (
            f"block output not accepted: the block writer is {self._pending} bytes behind "
            f"(RuntimeConfig.max_pending_output_bytes={self._limit}) and {why}; nothing of "
            "it was appended: append it again later, or raise the limit"
        )
