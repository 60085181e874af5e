"""The messages of the blocks part: what a block's actor, the block writer and the
sweeper handle, and the checks that make them from a caller's input.

All are frozen attrs records. Output and line counts go from a block's handle straight
to the writer, which counts them: no turn of the block's actor per line. Tells (no
answer): the writer's `AppendOutput`, `RecordLine`, `CreateBlock`, `HoldOutput`,
`ReleaseOutput`, `ForgetCounts`, `WhenWritten`, `CommitSoon`, and the timers'
`StatsDue`, `CommitDue`, `SweepDue`.
Asks (answered): `GetMeta`, `MergeMeta`, `Flush`, `Archive`, `Restore`, `ReadOutput`,
`PruneArchive` (a block's actor), `GetStats` and `CommitNow` (the writer) and
`SweepRequest` (the sweeper).
"""

from __future__ import annotations

from collections.abc import Callable
from os import PathLike
from pathlib import Path
from typing import Any, Protocol

import attrs

from greenroom.blocks.records import SweepProgress
from greenroom.checks import check_bytes, check_int, check_path

__all__ = [
    "PLAIN_SWEEP",
    "AppendOutput",
    "Archive",
    "CommitDue",
    "CommitNow",
    "CommitSoon",
    "CreateBlock",
    "Flush",
    "ForgetCounts",
    "GetMeta",
    "GetStats",
    "HoldOutput",
    "MergeMeta",
    "PruneArchive",
    "ReadOutput",
    "Recipient",
    "RecordLine",
    "ReleaseOutput",
    "Restore",
    "StatsDue",
    "SweepDue",
    "SweepRequest",
    "WhenWritten",
    "line_message",
    "output_message",
    "prune_message",
]


class Recipient(Protocol):
    """Anything a message can be told to (an actor's ref)."""

    def tell(self, message: Any) -> None:
        """Send `message` without waiting."""


# -- the block writer: output from the handles -------------------------------------------------


@attrs.frozen
class AppendOutput:
    """Tell the writer: append these output bytes to the block's, and count their lines."""

    block_id: str
    data: bytes


@attrs.frozen
class RecordLine:
    """Tell the writer: count one line of `n_bytes` kept elsewhere for the block."""

    block_id: str
    n_bytes: int


def output_message(block_id: str, data: Any) -> AppendOutput:
    """The message `append_output(data)` tells the writer; `InvalidInput` if bad."""
    return AppendOutput(block_id, check_bytes(data, "append_output's data"))


def line_message(block_id: str, n_bytes: Any) -> RecordLine:
    """The message `record_line(n_bytes)` tells the writer; `InvalidInput` if bad."""
    # Bounded so a block's stats (sums of these) stay SQLite integers.
    count = check_int(n_bytes, "record_line's byte count (n_bytes)", minimum=0, maximum=MAX_LINE)
    return RecordLine(block_id, count)


MAX_LINE = 1 << 40
"""The longest line `record_line` counts: 1 TiB."""


# -- a block's actor: asks -----------------------------------------------------------------


@attrs.frozen
class GetMeta:
    """Ask a block: its metadata as stored."""


@attrs.frozen
class MergeMeta:
    """Ask a block: merge `update` into its metadata (the store's rules); the new one."""

    update: dict[str, Any]


@attrs.frozen
class Flush:
    """Ask a block: store its stats and the output handed over so far; `None` once done."""


@attrs.frozen
class Archive:
    """Ask a block: compress its output into the archive folder; an `ArchiveResult`."""


@attrs.frozen
class Restore:
    """Ask a block: bring its archived output back; a `RestoreResult`."""


@attrs.frozen
class ReadOutput:
    """Ask a block: its whole output, from the archive when archived; an `OutputRead`."""


@attrs.frozen
class PruneArchive:
    """Ask a block: delete its archive file `path` and unlink it; the bytes freed."""

    path: Path


def prune_message(path: str | PathLike[str]) -> PruneArchive:
    """The message `prune_archive(path)` asks the block's actor; `InvalidInput` if bad."""
    return PruneArchive(check_path(path, "prune_archive's path"))


# -- the block writer -----------------------------------------------------------------------


@attrs.frozen
class CreateBlock:
    """Tell the writer: make the block's stored object, with `meta`, if it is missing
    (with its next batch: a new block costs no commit of its own). `checked`: the
    sender knows the block is not stored (else the writer reads the store before it
    counts the block's lines from `meta`)."""

    block_id: str
    meta: dict[str, Any]
    checked: bool = True


@attrs.frozen
class GetStats:
    """Ask the writer: the block's live `SessionStats`, lines not stored yet included."""

    block_id: str


@attrs.frozen
class HoldOutput:
    """Tell the writer: an archive, restore, read or prune of the block starts; its
    output from now on is counted but held back (not stored) until `ReleaseOutput`.
    With `end_line` (an archive), its unfinished last line counts as a line now, and
    its stats are stored with the next commit."""

    block_id: str
    end_line: bool = False


@attrs.frozen
class ReleaseOutput:
    """Tell the writer: the block's operation ended (or, with `stopped`, its actor
    stopped): its held output goes with the next commit. With `stopped`, its unfinished
    last line counts as a line, its stats are stored with the next commit, and the
    writer drops its counts once stored (the next output loads them again)."""

    block_id: str
    stopped: bool = False


@attrs.frozen
class StatsDue:
    """The writer's own timer: a stats interval ended; store what waited for it."""


@attrs.frozen
class WhenWritten:
    """Tell the writer: once everything sent before this is stored, tell `notify` the
    `message`."""

    notify: Recipient
    message: Any


@attrs.frozen
class CommitNow:
    """Ask the writer: store everything handed over so far, now; `None` once stored."""


@attrs.frozen
class ForgetCounts:
    """Tell the writer: another host serves the block now; drop the counts kept here
    (loaded again from the store if this host serves it again)."""

    block_id: str


@attrs.frozen
class CommitSoon:
    """Tell the writer: a commit waiting for `output_commit_delay_s` is wanted now."""


@attrs.frozen
class CommitDue:
    """The writer's own message: commit the batch gathered so far."""


# -- the sweeper ----------------------------------------------------------------------------


@attrs.frozen
class SweepRequest:
    """Ask the sweeper: run a sweep with these options; its `SweepStats`.

    `None` means the runtime config's setting.
    """

    inactive_days: float | None = None
    max_archive_bytes: int | None = None
    dry_run: bool = False
    progress: Callable[[SweepProgress], object] | None = attrs.field(default=None, eq=False)
    own_blocks: bool = False
    """Only the blocks whose lease this host holds, archived, nothing pruned: the timed
    sweep of a host that does not hold the sweep lease (several hosts on one store)."""

    @property
    def plain(self) -> bool:
        """Whether this is the timer's sweep: the config's settings, no callback."""
        return self == PLAIN_SWEEP and self.progress is None


PLAIN_SWEEP = SweepRequest()


@attrs.frozen
class SweepDue:
    """The sweeper's own timer: run a plain sweep unless one runs already (on a shared
    store without the sweep lease: a sweep of this host's own blocks)."""
