"""Blocks: one per agent pane. The records a block returns, and the `Block` handle.

    block = rt.block("pane-1")              # gets or creates it (view "agent")
    block.append_output(b'{"type":"text"}\\n')  # fire and forget
    block.stats()                           # SessionStats(start_ts_ms=..., line_count=1, ...)
    block.archive()                         # ArchiveResult(archived_bytes=16, path=...)
    block.read_output().data                # read back from the archive, transparently

Every block is served by its own actor (`greenroom.actors.block.BlockActor`), so appends,
flushes, archiving and restoring of one block never race.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
import pykka
from greenroom.errors import InvalidInput

if TYPE_CHECKING:
    from greenroom.actors.base import GreenroomActorRef

__all__ = [
    "ArchiveResult",
    "Block",
    "OutputRead",
    "RestoreResult",
    "SessionStats",
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

        def number(key: str) -> int:
            value = meta.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) else 0

        return cls(
            number(START_TS), number(LAST_ACTIVITY), number(LINE_COUNT), number(TOKEN_ESTIMATE)
        )


@attrs.frozen
class ArchiveResult:
    """What `Block.archive()` did: `archived_bytes` is the uncompressed size (0: nothing)."""

    block_id: str
    archived_bytes: int
    archived_at_ms: int
    path: str | None


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


def output_message(data: Any) -> Any:
    """The message `append_output(data)` tells the block's actor; `InvalidInput` if bad."""
    from greenroom.actors.block import AppendOutput

    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidInput(f"append_output takes bytes, got {type(data).__name__}")
    return AppendOutput(bytes(data))


def line_message(n_bytes: Any) -> Any:
    """The message `record_line(n_bytes)` tells the block's actor; `InvalidInput` if bad."""
    from greenroom.actors.block import RecordLine

    if isinstance(n_bytes, bool) or not isinstance(n_bytes, int) or n_bytes < 0:
        raise InvalidInput(f"record_line takes a byte count >= 0, got {n_bytes!r}")
    return RecordLine(n_bytes)


class Block:
    """A handle on one block; every call goes to the block's actor.

    `append_output` and `record_line` are fire and forget; the others wait for the
    actor's answer. Get one with `Runtime.block(block_id)`. A handle outlives its
    actor: if the actor was stopped, the next call starts a new one (which carries
    on from the stored counters); after `Runtime.close()` calls raise `Stopped`.
    """

    __slots__ = ("_proxy_cache", "_ref", "_resolve", "block_id")

    def __init__(
        self,
        ref: GreenroomActorRef,
        block_id: str,
        resolve: Callable[[str], Block] | None = None,
    ) -> None:
        self._ref = ref
        self._proxy_cache: Any = None
        self._resolve = resolve
        self.block_id = block_id

    @property
    def _proxy(self) -> Any:
        # Made on first use: a pykka proxy inspects the actor's attributes, which a
        # handle used only for appends never needs.
        if self._proxy_cache is None:
            self._proxy_cache = self._ref.proxy()
        return self._proxy_cache

    def _reconnect(self) -> None:
        """Point this handle at the block's current actor (starting one if needed)."""
        if self._resolve is None:
            raise
        fresh = self._resolve(self.block_id)  # `Stopped` once the runtime is closed
        self._ref, self._proxy_cache = fresh._ref, None

    def _ask(self, name: str, *args: Any) -> Any:
        try:
            return self._send(name, *args).get()
        except pykka.ActorDeadError:
            # Not delivered (the actor had stopped): safe to send again, once.
            self._reconnect()
            return self._send(name, *args).get()

    def _send(self, name: str, *args: Any) -> Any:
        """Call the actor's method `name` without waiting; the answer's future.

        `ActorDeadError` (raised, or in the future) means the call was not delivered:
        reconnect and send it again (what `_ask` does; `greenroom.aio` awaits the future).
        """
        return getattr(self._proxy, name)(*args)

    def _tell(self, message: Any) -> None:
        try:
            self._ref.tell(message)
        except pykka.ActorDeadError:
            self._reconnect()
            self._ref.tell(message)

    def _tell_once(self, message: Any) -> None:
        """Tell the actor `message`; `ActorDeadError` if it has stopped (no reconnect)."""
        self._ref.tell(message)

    def append_output(self, data: bytes) -> None:
        """Append `data` to the output and count its non-empty lines; returns at once."""
        self._tell(output_message(data))

    def record_line(self, n_bytes: int) -> None:
        """Count one line of `n_bytes` bytes kept elsewhere; returns at once."""
        self._tell(line_message(n_bytes))

    def stats(self) -> SessionStats:
        """The live stats, including lines not flushed yet."""
        return self._ask("stats")

    def meta(self) -> dict[str, Any]:
        """The metadata as stored (stats as of the last flush)."""
        return self._ask("meta")

    def update_meta(self, update: dict[str, Any]) -> dict[str, Any]:
        """Merge `update` into the metadata (the store's rules); returns the new metadata."""
        return self._ask("update_meta", update)

    def flush(self) -> None:
        """Store the stats and the output handed over so far; returns once they are stored.

        Output that arrives while an archive or restore runs is held back until it ends.
        """
        self._ask("flush")

    def archive(self) -> ArchiveResult:
        """Compress the output into the archive folder and drop the live copy."""
        return self._ask("archive")

    def restore(self) -> RestoreResult:
        """Bring an archived output back; `InvalidTransition` if it is not archived."""
        return self._ask("restore")

    def read_output(self) -> OutputRead:
        """The whole output, read from the archive when the block is archived."""
        return self._ask("read_output")

    def prune_archive(self, path: str) -> int:
        """Delete the archive file `path` (pruning) and unlink it from the metadata.

        Used by the sweep; returns the bytes freed.
        """
        return self._ask("prune_archive", path)

    def __repr__(self) -> str:
        return f"<Block {self.block_id!r}>"
