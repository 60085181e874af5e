"""Thread-safe named counters behind `Runtime.metrics()`."""

from __future__ import annotations

import threading
from collections import defaultdict

__all__ = ["Metrics"]


class Metrics:
    """Named integer counters that any thread may bump."""

    __slots__ = ("_counts", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # defaultdict fills a missing key from C: no Python-level call runs while the
        # lock is held, so the GIL is never handed over inside it (see ActivityTracker).
        self._counts: defaultdict[str, int] = defaultdict(int)

    def incr(self, name: str, amount: int = 1) -> None:
        """Add `amount` to the counter `name` (created at zero)."""
        with self._lock:
            self._counts[name] += amount

    def incr_each(self, *counts: tuple[str, int]) -> None:
        """`incr` of several `(name, amount)` counters under one lock (a transcript's
        turn bumps three)."""
        with self._lock:
            named = self._counts
            for name, amount in counts:
                named[name] += amount

    def get(self, name: str) -> int:
        """The counter's current value (zero when never bumped)."""
        with self._lock:
            return self._counts.get(name, 0)

    def snapshot(self) -> dict[str, int]:
        """A plain dict copy of every counter."""
        with self._lock:
            return dict(self._counts)
