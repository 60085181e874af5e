"""The messages a block's actor handles, and the checks that make them from a caller's input."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from greenroom.blocks.records import SweepProgress
from greenroom.errors import InvalidInput

__all__ = ["AppendOutput", "RecordLine", "SweepRequest", "line_message", "output_message"]


@attrs.frozen
class AppendOutput:
    """Tell a block: append these output bytes."""

    data: bytes


@attrs.frozen
class RecordLine:
    """Tell a block: count one line of `n_bytes` kept elsewhere."""

    n_bytes: int


def output_message(data: Any) -> AppendOutput:
    """The message `append_output(data)` tells the block's actor; `InvalidInput` if bad."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidInput(f"append_output takes bytes, got {type(data).__name__}")
    return AppendOutput(bytes(data))


def line_message(n_bytes: Any) -> RecordLine:
    """The message `record_line(n_bytes)` tells the block's actor; `InvalidInput` if bad."""
    if isinstance(n_bytes, bool) or not isinstance(n_bytes, int) or n_bytes < 0:
        raise InvalidInput(f"record_line takes a byte count >= 0, got {n_bytes!r}")
    return RecordLine(n_bytes)


@attrs.frozen
class SweepRequest:
    """The options of one sweep; `None` means the runtime config's setting."""

    inactive_days: float | None = None
    max_archive_bytes: int | None = None
    dry_run: bool = False
    progress: Callable[[SweepProgress], object] | None = attrs.field(default=None, eq=False)

    @property
    def plain(self) -> bool:
        """Whether this is the timer's sweep: the config's settings, no callback."""
        return self == PLAIN_SWEEP and self.progress is None


PLAIN_SWEEP = SweepRequest()
