"""`SweepSupervisor`: archives idle agent blocks and prunes the archive folder.

On a clock timer (first after `sweep_first_after_s`, then every `sweep_interval_s`)
and on `Runtime.sweep()`, it runs one sweep on the blocking pool, where waiting is
allowed: every archive and prune is asked of the block's own actor, so a sweep can
never race with that block's appends, restores or reads. One sweep runs at a time;
a sweep asked for while one runs gets that one's result.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from actors.base import DEFERRED, ActorContext, GreenroomActor, Reply
from runtime.archive import ARCHIVE_SUFFIXES
from runtime.blocks import (
    LAST_ACTIVITY,
    LINE_COUNT,
    Block,
    SweepStats,
)
from runtime.errors import NotFound, Stopped

__all__ = ["SweepSupervisor"]

log = logging.getLogger("greenroom.sweep")

_DAY_MS = 86_400_000


class _Tick:
    pass


_TICK = _Tick()


class SweepSupervisor(GreenroomActor):
    """Runs sweeps; see the module docstring."""

    kind = "sweeper"
    stop_order = -10  # first: no new archive starts while the blocks stop

    def __init__(self, ctx: ActorContext, block: Callable[[str], Block], archive_dir: Path) -> None:
        super().__init__(ctx)
        self._block = block
        self._archive_dir = archive_dir
        self._running = False
        self._stopping = False  # read by the sweep job: stop between blocks
        self._waiting: list[Reply] = []

    def on_start(self) -> None:
        config = self.ctx.config
        self.schedule_every(
            config.sweep_interval_s, _TICK, first_after_s=config.sweep_first_after_s
        )

    def on_stop(self) -> None:
        self._stopping = True
        waiting, self._waiting = self._waiting, []
        for reply in waiting:
            reply.fail(Stopped("the runtime closed while the sweep ran; it was cut short"))

    def on_receive(self, message: Any) -> Any:
        if message is _TICK:
            self._start()
            return None
        return super().on_receive(message)

    def sweep_now(self) -> Any:
        self._waiting.append(self.reply_later())
        self._start()
        return DEFERRED

    def _start(self) -> None:
        if self._running:
            return
        self._running = True
        now = self.ctx.clock.now_ms()
        self.run_blocking(self._sweep, now, then=self._swept)

    def _swept(self, future: Any) -> None:
        self._running = False
        waiting, self._waiting = self._waiting, []
        try:
            stats = future.get()
        except Exception as error:
            log.exception("sweep failed")
            for reply in waiting:
                reply.fail(error)
            return
        for reply in waiting:
            reply.set(stats)

    # -- on the blocking pool ------------------------------------------------------------

    def _sweep(self, now_ms: int) -> SweepStats:
        config = self.ctx.config
        cutoff = config.inactive_days * _DAY_MS
        archived = pruned = freed = 0
        for obj in self.ctx.store.list_objects("block"):
            if self._stopping:
                break
            meta = obj.meta
            last = _number(meta.get(LAST_ACTIVITY))
            if (
                meta.get("view") != "agent"
                or _number(meta.get(LINE_COUNT)) <= 0
                or last <= 0
                or now_ms - last < cutoff
                or not self._has_live_output(obj.id)
            ):
                # (An archived block with new output since is archived again: the
                # next archive joins the two.)
                continue
            try:
                result = self._block(obj.id).archive()
            except Exception as error:
                self.ctx.metrics.incr("sweep_failures")
                log.warning("sweep: could not archive block %r: %s", obj.id, error)
                continue
            if result.archived_bytes > 0:
                archived += 1
                freed += result.archived_bytes
        for path, size in self._over_budget(config.max_archive_bytes):
            if self._stopping:
                break
            block_id = path.name.rsplit(".", 2)[0]
            try:
                if self.ctx.store.find_object("block", block_id) is None:
                    freed_now = _delete_orphan(path)  # no block (any more): just the file
                else:
                    freed_now = self._block(block_id).prune_archive(str(path))
            except Exception as error:
                self.ctx.metrics.incr("sweep_failures")
                log.warning("sweep: could not prune %s: %s", path, error)
                continue
            pruned += 1
            freed += freed_now or size
        stats = SweepStats(archived, pruned, freed)
        self.ctx.metrics.incr("sweeps")
        log.info("sweep: %s", stats)
        return stats

    def _has_live_output(self, block_id: str) -> bool:
        try:
            return self.ctx.store.stat_file("block", block_id, "output").size > 0
        except NotFound:
            return False  # nothing to archive (lines kept elsewhere, or archived)

    def _over_budget(self, budget: int) -> list[tuple[Path, int]]:
        """Archive files to delete, oldest first, to bring the folder within `budget`."""
        if not self._archive_dir.is_dir():
            return []
        files = []
        for path in self._archive_dir.iterdir():
            # (Temporary files end in .tmp; a block id may start with a dot.)
            if not path.name.endswith(tuple(ARCHIVE_SUFFIXES.values())):
                continue
            try:
                at = int(path.name.rsplit(".", 2)[1])
                size = path.stat().st_size
            except (ValueError, IndexError, OSError):
                continue
            files.append((at, path, size))
        files.sort()
        total = sum(size for _at, _path, size in files)
        victims = []
        for _at, path, size in files:
            if total <= budget:
                break
            victims.append((path, size))
            total -= size
        return victims


def _delete_orphan(path: Path) -> int:
    size = path.stat().st_size
    path.unlink(missing_ok=True)
    log.info("sweep: pruned archive %s of no block (%d bytes)", path, size)
    return size


def _number(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
