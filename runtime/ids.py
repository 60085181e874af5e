"""Ids that need to be unique, not secret: a random prefix per process, then a counter.

    next_hex_id()   # "9f2c41d0" + "0000002a": 16 lowercase hex digits

A system call for randomness per object shows in profiles of hosts that make objects by
the hundred thousand (a replay buffer's epoch, an unnamed actor's id), and those ids
only have to differ from each other: from any other made in this process (the counter)
and, with high probability, from those of another process (the prefix, 32 random bits,
drawn again if the counter ever wraps). Ids a caller must not be able to guess (an
execution's session id) keep using `secrets`.
"""

from __future__ import annotations

import itertools
import secrets
import threading

__all__ = ["next_hex_id"]

_COUNTER_DIGITS = 8
_WRAP = 16**_COUNTER_DIGITS


class _HexIds:
    """The process's id source (the counter's `next` is atomic under the GIL)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._prefix = secrets.token_hex(4)
        self._count = itertools.count()

    def next(self) -> str:
        n = next(self._count)
        prefix = self._prefix
        if n >= _WRAP:
            with self._lock:  # (rare: after 4 billion ids) a new prefix, a new count
                if self._prefix == prefix:
                    self._prefix = secrets.token_hex(4)
                    self._count = itertools.count(1)
                    n = 0
                else:
                    n = next(self._count)
                prefix = self._prefix
        return f"{prefix}{n:08x}"


_IDS = _HexIds()


def next_hex_id() -> str:
    """A new id of 16 lowercase hex digits, unique in this process (see the module)."""
    return _IDS.next()
