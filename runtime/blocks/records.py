"""Blocks' records: what a block and a sweep hand back, and the metadata keys they keep.

    block = rt.blocks.get("pane-1")             # gets or creates it (view "agent")
    block.append_output(b'{"type":"text"}\\n')  # fire and forget
    block.stats()                               # SessionStats(start_ts_ms=..., line_count=1)
    block.archive()                             # ArchiveResult(archived_bytes=16, path=...)
    block.read_output().data                    # read back from the archive, transparently

Every block is served by its own actor (`greenroom.actors.block.BlockActor`), so appends,
flushes, archiving and restoring of one block never race.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

__all__ = [
    "SWEEP_OUTCOMES",
    "ArchiveResult",
    "OutputRead",
    "RestoreResult",
    "SessionStats",
    "StatsSnapshot",
    "SweepProgress",
    "SweepStats",
]

START_TS = "session:start_ts_ms"
LAST_ACTIVITY = "session:last_activity_ms"
LINE_COUNT = "session:line_count"
TOKEN_ESTIMATE = "session:token_estimate"
ARCHIVED_AT = "session:archived_at"
ARCHIVED_BYTES = "session:archived_bytes"
ARCHIVE_PATH = "session:archive_path"
ARCHIVE_BACKUP = "session:archive_backup_path"
PRUNED_AT = "session:archive_pruned_at"
OPEN_LINE = "session:open_line_counted"  # 1: the unfinished last line is counted already


@attrs.frozen
class SessionStats:
    """A block's session statistics (`token_estimate` is bytes // 4, summed per line)."""

    start_ts_ms: int = 0
    last_activity_ms: int = 0
    line_count: int = 0
    token_estimate: int = 0

    def as_meta(self) -> dict[str, int]:
        """The stats as the `session:*` metadata keys they are stored under."""
        return {
            START_TS: self.start_ts_ms,
            LAST_ACTIVITY: self.last_activity_ms,
            LINE_COUNT: self.line_count,
            TOKEN_ESTIMATE: self.token_estimate,
        }

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> SessionStats:
        """The stats stored in a block's metadata (zero where absent or malformed)."""
        return cls(
            meta_count(meta, START_TS),
            meta_count(meta, LAST_ACTIVITY),
            meta_count(meta, LINE_COUNT),
            meta_count(meta, TOKEN_ESTIMATE),
        )


StatsSnapshot = tuple[int, int, int, int, int]
"""A block's stats as it hands them to the writer: start, last activity, lines, tokens
and whether its unfinished last line is counted (0 or 1). A plain tuple: one is made
per batch of lines, and the metadata dict only when it is stored (`snapshot_meta`)."""


def snapshot_meta(snapshot: StatsSnapshot) -> dict[str, int]:
    """The `session:*` metadata keys a stats snapshot is stored under."""
    start, last, lines, tokens, open_line = snapshot
    return {
        START_TS: start,
        LAST_ACTIVITY: last,
        LINE_COUNT: lines,
        TOKEN_ESTIMATE: tokens,
        OPEN_LINE: open_line,
    }


def meta_count(meta: dict[str, Any], key: str) -> int:
    """The int stored under `key` in a block's metadata; 0 where absent or malformed.

    Metadata is anyone's to edit: a count read from it is never trusted to be an int.
    """
    value = meta.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


@attrs.frozen
class ArchiveResult:
    """What `Block.archive()` did: `archived_bytes` is the uncompressed size (0: nothing).

    `path` is the archive file (absolute, inside the archive folder; with another
    `greenroom.archives.Archives`, its `location`); `None` when the block was never
    archived and had nothing to archive.
    """

    block_id: str
    archived_bytes: int
    archived_at_ms: int
    path: Path | None


@attrs.frozen
class RestoreResult:
    """What `Block.restore()` did: `restored_bytes` is the size of the output restored."""

    block_id: str
    restored_bytes: int


@attrs.frozen
class OutputRead:
    """A block's output; `line_count` counts non-blank lines; `archived` says from where."""

    data: bytes
    line_count: int
    archived: bool


@attrs.frozen
class SweepStats:
    """What one sweep did: blocks archived, archives pruned, bytes freed by both.

    `skipped_count`: idle blocks it left as they were, because nothing was live any
    more or their output changed while it ran (another process appended to it; the
    next sweep tries again).
    """

    archived_count: int = 0
    pruned_count: int = 0
    bytes_freed: int = 0
    skipped_count: int = 0


def count_lines(data: bytes) -> int:
    """Lines of `data` (split at `\\n`, as the stats count) not blank or whitespace."""
    return sum(1 for line in data.split(b"\n") if line.strip())


SWEEP_OUTCOMES = (
    "started",
    "archived",
    "would_archive",
    "skipped",
    "pruned",
    "would_prune",
    "failed",
)
"""`SweepProgress.outcome` values."""


@attrs.frozen
class SweepProgress:
    """One step of a sweep, handed to the `progress` callback of `Runtime.blocks.sweep`.

    `phase` is `"archive"` (idle agent blocks) then `"prune"` (archive files over the
    budget, oldest first). Each phase starts with an event whose `outcome` is
    `"started"` and `done == 0`, `total` being the items it will go through; then one
    event per item, `done` counting it: `"archived"` / `"would_archive"` (a dry run),
    `"skipped"` (nothing live to archive any more, or, with `error`, its output changed
    while it was archived: another process appended to it), `"pruned"` /
    `"would_prune"`, or `"failed"` with `error`. `block_id` names the block (for a
    prune, the block the archive file belongs to), `path` the archive file written or
    pruned, `bytes` what was archived (uncompressed) or freed.
    """

    phase: str
    done: int
    total: int
    outcome: str
    block_id: str | None = None
    path: Path | None = None
    bytes: int = 0
    error: str | None = None
    dry_run: bool = False
