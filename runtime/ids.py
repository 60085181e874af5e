"""Ids without a system call each: unique ones (a prefix and a counter), secret ones.

    next_hex_id()   # "9f2c41d0" + "0000002a": 16 lowercase hex digits
    secret_hex(12)  # 24 hex digits no one can guess

A system call for randomness per object shows in profiles of hosts that make objects by
the hundred thousand (a replay buffer's epoch, an unnamed actor's id), and those ids
only have to differ from each other: from any other made in this process (the counter)
and, with high probability, from those of another process (the prefix, 32 random bits,
drawn again if the counter ever wraps, and in a forked child). Ids a caller must not be
able to guess (an execution's session id) come from `secret_hex`: the operating
system's random bytes, as `secrets` draws them, but read 4 KB at a time (a system call
lets go of the interpreter's lock, which a busy process pays up to 5 ms to take back).
A forked child throws its parent's unread bytes away.
"""

from __future__ import annotations

import itertools
import os
import secrets
import threading

from greenroom.checks import check_int

__all__ = ["next_hex_id", "secret_hex"]

_COUNTER_DIGITS = 8
_WRAP = 16**_COUNTER_DIGITS


class _HexIds:
    """The process's id source (the counter's `next` is atomic under the GIL)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._prefix = secrets.token_hex(4)
        self._count = itertools.count()

    def reseed(self) -> None:
        """A new prefix and count (in a forked child: its parent goes on with its own)."""
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
os.register_at_fork(after_in_child=_IDS.reseed)


def next_hex_id() -> str:
    """A new id of 16 lowercase hex digits, unique in this process (see the module)."""
    return _IDS.next()


_POOL_BYTES = 4096


class _SecretBytes:
    """The operating system's random bytes, read a pool at a time; each handed out once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool = b""
        self._at = 0

    def take(self, count: int) -> bytes:
        with self._lock:
            at = self._at
            if at + count > len(self._pool):
                self._pool = os.urandom(_POOL_BYTES)
                at = 0
            self._at = at + count
            return self._pool[at : at + count]

    def forget(self) -> None:
        """Drop the unread bytes (in a forked child: its parent hands them out too)."""
        self._pool = b""
        self._at = 0
        self._lock = threading.Lock()


_SECRETS = _SecretBytes()
os.register_at_fork(after_in_child=_SECRETS.forget)


def secret_hex(count: int) -> str:
    """`count` random bytes no one can guess, as `2 * count` lowercase hex digits (as
    `secrets.token_hex(count)`, without a system call each). `InvalidInput` unless
    `count` is an int from 1 to 4,096."""
    return _SECRETS.take(
        check_int(count, "secret_hex's count", minimum=1, maximum=_POOL_BYTES)
    ).hex()
