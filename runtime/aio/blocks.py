"""`AsyncBlocks` and `AsyncBlock`: `rt.blocks` for asyncio and trio hosts, never blocking.

    blocks = AsyncBlocks(rt.blocks)            # `AsyncRuntime` makes one: `art.blocks`
    pane = await blocks.get("pane-1")          # an `AsyncBlock`
    pane.append_output(b'{"type":"text"}\\n')   # a tell: returns at once, not awaited
    print(await pane.stats())
    await blocks.sweep(inactive_days=7)

Built on the sync side's public seam: each awaitable call of `AsyncBlock` awaits the
future its `Block` handle's `*_future` twin returns (through `greenroom.aio.bridge`), so
the checks, the messages and the reconnect rule (a stopped actor is reconnected off
the caller's thread and the call resent once) are the sync handle's own. Calls that
wait for the store or for a whole sweep (`get`, `ids`, `sweep`) run on a worker thread
(`bridge.off_loop`). Cancelling an awaiting task stops the wait, not the work: an
archive asked for goes on, its result is dropped.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from os import PathLike
from pathlib import Path
from typing import Any

from greenroom.aio.bridge import off_loop, wait
from greenroom.archives import Archives
from greenroom.blocks.handle import Block
from greenroom.blocks.namespace import Blocks
from greenroom.blocks.records import (
    ArchiveResult,
    OutputRead,
    RestoreResult,
    SessionStats,
    SweepProgress,
    SweepStats,
)
from greenroom.errors import InvalidInput

__all__ = ["AsyncBlock", "AsyncBlocks"]


class AsyncBlocks:
    """`rt.blocks` for async hosts: the same calls, arguments, results and errors."""

    __slots__ = ("_blocks",)

    def __init__(self, blocks: Blocks) -> None:
        """Wrap `blocks` (a runtime's `rt.blocks`); `InvalidInput` for anything else."""
        if not isinstance(blocks, Blocks):
            raise InvalidInput(
                f"AsyncBlocks wraps a Blocks (rt.blocks), got {type(blocks).__name__}"
            )
        self._blocks = blocks

    @property
    def blocks(self) -> Blocks:
        """The sync namespace (its `get`, `ids` and `sweep` wait: not on the loop)."""
        return self._blocks

    @property
    def archive_dir(self) -> Path:
        """The folder block archives are written to (`Blocks.archive_dir`;
        `InvalidTransition` when they are kept by an `Archives` that is no folder)."""
        return self._blocks.archive_dir

    @property
    def archives(self) -> Archives:
        """Where block archives are kept (`Blocks.archives`)."""
        return self._blocks.archives

    async def get(self, block_id: str, *, view: str = "agent") -> AsyncBlock:
        """`Blocks.get` on a worker thread (it may wait for the store): an `AsyncBlock`."""
        get = functools.partial(self._blocks.get, block_id, view=view)
        return AsyncBlock(await off_loop(get))

    async def ids(self, view: str | None = None) -> list[str]:
        """`Blocks.ids` on a worker thread: every stored block's id (of `view`), sorted."""
        return await off_loop(self._blocks.ids, view, abandon_on_cancel=True)

    async def sweep(
        self,
        *,
        inactive_days: float | None = None,
        max_archive_bytes: int | None = None,
        dry_run: bool = False,
        progress: Callable[[SweepProgress], object] | None = None,
    ) -> SweepStats:
        """`Blocks.sweep` on a worker thread (it waits for the sweep); its stats.

        `progress` is called on the sweep's thread, never on the loop's: hand its
        events to the loop yourself if a task must see them.
        """
        sweep = functools.partial(
            self._blocks.sweep,
            inactive_days=inactive_days,
            max_archive_bytes=max_archive_bytes,
            dry_run=dry_run,
            progress=progress,
        )
        return await off_loop(sweep)

    def __repr__(self) -> str:
        return f"<AsyncBlocks of {self._blocks!r}>"


class AsyncBlock:
    """An async handle on one block: `Block`'s calls, the waiting ones awaitable.

    Get one with `await art.blocks.get(block_id)`. `append_output` and `record_line`
    are tells (plain calls, never waiting); the others are awaited. A stopped actor is
    reconnected as `Block` does; after `Runtime.close()` calls raise `Stopped`.
    """

    __slots__ = ("_block",)

    def __init__(self, block: Block) -> None:
        """Wrap the sync handle `block`; `AsyncBlocks.get` makes them."""
        if not isinstance(block, Block):
            raise InvalidInput(f"AsyncBlock wraps a Block, got {type(block).__name__}")
        self._block = block

    @property
    def block(self) -> Block:
        """The sync `Block` handle (its waiting calls block: not on the loop)."""
        return self._block

    @property
    def block_id(self) -> str:
        """The block's id."""
        return self._block.block_id

    def append_output(self, data: bytes) -> None:
        """`Block.append_output`: append `data` and count its lines; returns at once.

        Never waits on the loop: while the block writer is behind by more than
        `RuntimeConfig.max_pending_output_bytes` it raises `Timeout` (nothing
        appended); `await pane.flush()` lets it catch up.
        """
        self._block.append_output_nowait(data)

    def record_line(self, n_bytes: int) -> None:
        """`Block.record_line`: count one line of `n_bytes` kept elsewhere; at once."""
        self._block.record_line(n_bytes)

    async def stats(self) -> SessionStats:
        """`Block.stats`: the live stats, including lines not flushed yet."""
        return await wait(self._block.stats_future())

    async def meta(self) -> dict[str, Any]:
        """`Block.meta`: the metadata as stored."""
        return await wait(self._block.meta_future())

    async def update_meta(self, update: dict[str, Any]) -> dict[str, Any]:
        """`Block.update_meta`: merge `update` into the metadata; the new metadata."""
        return await wait(self._block.update_meta_future(update))

    async def flush(self) -> None:
        """`Block.flush`: returns once the stats and output handed over are stored."""
        await wait(self._block.flush_future())

    async def archive(self) -> ArchiveResult:
        """`Block.archive`: compress the output into the archive folder, drop the live copy."""
        return await wait(self._block.archive_future())

    async def restore(self) -> RestoreResult:
        """`Block.restore`: bring an archived output back."""
        return await wait(self._block.restore_future())

    async def read_output(self) -> OutputRead:
        """`Block.read_output`: the whole output, from the archive when archived."""
        return await wait(self._block.read_output_future())

    async def prune_archive(self, path: str | PathLike[str]) -> int:
        """`Block.prune_archive`: delete the archive file `path`; the bytes freed."""
        return await wait(self._block.prune_archive_future(path))

    def __repr__(self) -> str:
        return f"<AsyncBlock {self.block_id!r}>"
