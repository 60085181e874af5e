"""Whole lines from a crash harness worker's stdout, read without blocking forever."""

from __future__ import annotations

import os
import select
from typing import IO

from greenroom import SystemClock

__all__ = ["LineReader"]


class LineReader:
    """Whole lines from a worker's stdout; a last line cut short by the kill is dropped."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._fd = stream.fileno()
        self._buffer = bytearray()
        self.lines: list[str] = []
        self.eof = False

    def read(self, timeout: float) -> int:
        """Wait up to `timeout` for output; the number of new whole lines (-1: silent)."""
        if self.eof:
            return 0
        ready, _, _ = select.select([self._fd], [], [], timeout)
        if not ready:
            return -1
        data = os.read(self._fd, 1 << 16)
        if not data:
            self.eof = True
            return 0
        self._buffer += data
        *whole, rest = self._buffer.split(b"\n")
        self._buffer = bytearray(rest)
        self.lines += [line.decode() for line in whole]
        return len(whole)

    def read_for(self, seconds: float) -> None:
        """Keep reading for `seconds` (real time), or until the worker's stdout closes."""
        clock = SystemClock()  # (no timer scheduled on it: no thread)
        end = clock.monotonic() + seconds
        while not self.eof and (left := end - clock.monotonic()) > 0:
            self.read(left)

    def read_rest(self, stall_s: float) -> None:
        """Read until the worker's stdout closes, or it is silent for `stall_s`."""
        while not self.eof and self.read(stall_s) >= 0:
            pass

    def take(self) -> list[str]:
        """The lines read since the last `take`."""
        lines, self.lines = self.lines, []
        return lines
