"""`LineCounts`: one block's live session counts, kept by the block writer.

Output goes from a block's handle straight to the writer, which counts its lines as it
takes it (no turn of the block's own actor per line). A line is counted when its
newline arrives; an unfinished last line counts when the stream pauses for an archive
or the block's actor stops, once: its newline, when it comes, does not count it again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from greenroom.blocks.records import OPEN_LINE, SessionStats, StatsSnapshot, meta_count

__all__ = ["Counted", "LineCounts"]

Counted = tuple[bytes | None, int, int]
"""What a block counted, to count again (`LineCounts.again`): output as (its bytes, 0,
when), or a line `record_line` told as (None, its tokens, when)."""


class LineCounts:
    """A block's counts: times, lines, tokens (bytes // 4 per line) and its open line."""

    __slots__ = ("last_ms", "lines", "partial", "partial_counted", "sent", "start_ms", "tokens")

    def __init__(self, meta: dict[str, Any]) -> None:
        """The counts stored in a block's metadata (zero where absent or malformed)."""
        stored = SessionStats.from_meta(meta)
        self.start_ms, self.last_ms = stored.start_ts_ms, stored.last_activity_ms
        self.lines, self.tokens = stored.line_count, stored.token_estimate
        # Bytes of a line whose newline has not arrived, and whether it was counted
        # already (stored as the open-line mark: its length is not kept).
        counted = meta_count(meta, OPEN_LINE) > 0
        self.partial = 1 if counted else 0
        self.partial_counted = counted
        self.sent = False  # any stats stored since these were loaded (the first: at once)

    def add_output(self, data: bytes, now_ms: Callable[[], int]) -> bool:
        """Count the lines `data` ends (at `now_ms()`, asked only then); whether the
        counts changed."""
        pieces = data.split(b"\n")
        if len(pieces) == 1:
            self.partial += len(data)
            return False
        # Every non-empty line counts; the first piece ends the line carried over.
        first = self.partial + len(pieces[0])
        changed = self.partial_counted  # (the stored open-line mark is wrong now)
        lines = tokens = 0
        if first and not self.partial_counted:
            lines, tokens = 1, first // 4
        for piece in pieces[1:-1]:
            if piece:
                lines += 1
                tokens += len(piece) // 4
        self.partial = len(pieces[-1])
        self.partial_counted = False
        if lines:
            self.count(lines, tokens, now_ms())
            return True
        return changed

    def count(self, lines: int, tokens: int, now_ms: int) -> None:
        """Count `lines` lines of `tokens` tokens, at `now_ms`."""
        if not self.start_ms:
            self.start_ms = now_ms
        self.last_ms = now_ms
        self.lines += lines
        self.tokens += tokens

    def end_partial_line(self, now_ms: int) -> bool:
        """The stream pauses (an archive) or ends (a stop): an unfinished last line
        counts as a line, once. Whether the counts changed."""
        if self.partial and not self.partial_counted:
            self.partial_counted = True
            self.count(1, self.partial // 4, now_ms)
            return True
        return False

    def again(self, counted: list[Counted]) -> bool:
        """Count `counted` again, in order, on these counts; whether they changed."""
        before = self.snapshot()
        for data, tokens, at in counted:
            if data is None:
                self.count(1, tokens, at)
            else:
                self.add_output(data, lambda at=at: at)  # type: ignore[misc]
        return self.snapshot() != before

    def take(self, other: LineCounts) -> None:
        """Hold `other`'s counts (this object is the one the writer's maps hold);
        whether stats were stored since these were loaded stays as it is."""
        self.start_ms, self.last_ms = other.start_ms, other.last_ms
        self.lines, self.tokens = other.lines, other.tokens
        self.partial, self.partial_counted = other.partial, other.partial_counted

    def snapshot(self) -> StatsSnapshot:
        """The counts as the writer stores them."""
        open_line = 1 if self.partial and self.partial_counted else 0
        return (self.start_ms, self.last_ms, self.lines, self.tokens, open_line)

    def stats(self) -> SessionStats:
        """The counts as `Block.stats()` answers them."""
        return SessionStats(self.start_ms, self.last_ms, self.lines, self.tokens)
