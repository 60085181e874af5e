"""`SweepSupervisor`: archives idle agent blocks and prunes the archive folder.

On a clock timer (first after `sweep_first_after_s`, then every `sweep_interval_s`)
and on `Runtime.blocks.sweep()`, it runs one sweep on the blocking pool, where waiting is
allowed: every archive and prune is asked of the block's own actor, so a sweep can
never race with that block's appends, restores or reads. One sweep runs at a time.
A plain sweep (the config's settings, no progress callback) asked for while another
plain one runs gets that one's result; a sweep with options (`SweepRequest`) waits
for its own turn, in the order asked.

A dry run (`SweepRequest(dry_run=True)`) works out the same plan and reports it
(through the stats and the progress callback) without archiving or deleting anything.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from greenroom.actors.base import DEFERRED, ActorContext, GreenroomActor, Reply
from greenroom.blocks.archive import ARCHIVE_SUFFIXES, archive_block_id, checked_archive_path
from greenroom.blocks.messages import PLAIN_SWEEP, SweepRequest
from greenroom.blocks.records import (
    ARCHIVE_BACKUP,
    ARCHIVE_PATH,
    ARCHIVED_BYTES,
    LAST_ACTIVITY,
    LINE_COUNT,
    ArchiveResult,
    SweepProgress,
    SweepStats,
)
from greenroom.errors import InvalidTransition, NotFound, Stopped, StorageError

__all__ = ["BlockHandle", "SweepSupervisor"]


class BlockHandle(Protocol):
    """What the sweep asks of a block (`greenroom.blocks.handle.Block` is one)."""

    def archive(self) -> ArchiveResult: ...

    def prune_archive(self, path: str) -> int: ...


log = logging.getLogger("greenroom.sweep")

_DAY_MS = 86_400_000


class _Tick:
    pass


_TICK = _Tick()


class _Reporter:
    """Calls the progress callback; one that raises is logged and not called again."""

    __slots__ = ("_callback", "_dry_run")

    def __init__(self, callback: Callable[[SweepProgress], object] | None, dry_run: bool) -> None:
        self._callback = callback
        self._dry_run = dry_run

    def __call__(self, phase: str, done: int, total: int, outcome: str, **fields: Any) -> None:
        if self._callback is None:
            return
        event = SweepProgress(phase, done, total, outcome, dry_run=self._dry_run, **fields)
        try:
            self._callback(event)
        except Exception:
            # Progress is for display: its failure must not cut the sweep short.
            log.warning("sweep: the progress callback raised; it is not called again")
            log.debug("progress callback failure", exc_info=True)
            self._callback = None


class SweepSupervisor(GreenroomActor):
    """Runs sweeps; see the module docstring."""

    kind = "sweeper"
    stop_order = -10  # first: no new archive starts while the blocks stop

    def __init__(
        self, ctx: ActorContext, block: Callable[[str], BlockHandle], archive_dir: Path
    ) -> None:
        super().__init__(ctx)
        self._block = block
        self._archive_dir = archive_dir
        self._current: SweepRequest | None = None  # the sweep running, if any
        self._stopping = False  # read by the sweep job: stop between items
        self._waiting: list[Reply] = []  # callers of the sweep running
        self._queued: deque[tuple[SweepRequest, list[Reply]]] = deque()

    def on_start(self) -> None:
        config = self.ctx.config
        self.schedule_every(
            config.sweep_interval_s, _TICK, first_after_s=config.sweep_first_after_s
        )

    def on_stop(self) -> None:
        self._stopping = True
        waiting, self._waiting = self._waiting, []
        for _request, replies in self._queued:
            waiting += replies
        self._queued.clear()
        for reply in waiting:
            reply.fail(Stopped("the runtime closed while the sweep ran; it was cut short"))

    def on_receive(self, message: Any) -> Any:
        if message is _TICK:
            if self._current is None:
                self._start(PLAIN_SWEEP, [])
            return None
        return super().on_receive(message)

    def sweep_now(self, request: SweepRequest | None = None) -> Any:
        request = PLAIN_SWEEP if request is None else request
        reply = self.reply_later()
        if self._current is None:
            self._start(request, [reply])
        elif request.plain and self._current.plain:
            self._waiting.append(reply)
        else:
            for queued, replies in self._queued:
                if request.plain and queued.plain:
                    replies.append(reply)
                    break
            else:
                self._queued.append((request, [reply]))
        return DEFERRED

    def _start(self, request: SweepRequest, replies: list[Reply]) -> None:
        self._current = request
        self._waiting = replies
        now = self.ctx.clock.now_ms()
        self.run_blocking(self._sweep, now, request, then=self._swept)

    def _swept(self, future: Any) -> None:
        self._current = None
        waiting, self._waiting = self._waiting, []
        try:
            stats = future.get()
        except Exception as error:
            log.exception("sweep failed")
            for reply in waiting:
                reply.fail(error)
        else:
            for reply in waiting:
                reply.set(stats)
        if self._queued:
            self._start(*self._queued.popleft())

    # -- on the blocking pool ------------------------------------------------------------

    def _sweep(self, now_ms: int, request: SweepRequest) -> SweepStats:
        config = self.ctx.config
        days = config.inactive_days if request.inactive_days is None else request.inactive_days
        budget = (
            config.max_archive_bytes
            if request.max_archive_bytes is None
            else request.max_archive_bytes
        )
        dry_run = request.dry_run
        report = _Reporter(request.progress, dry_run)
        cutoff = days * _DAY_MS
        archived = pruned = freed = skipped = 0

        candidates: list[tuple[str, dict[str, Any], int]] = []
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
            ):
                continue
            live = self._live_size(obj.id)
            if live > 0:
                # (An archived block with new output since is archived again: the
                # next archive joins the two.)
                candidates.append((obj.id, meta, live))

        replaced: set[Path] = set()  # a dry run's archive files a new archive replaces
        total = len(candidates)
        report("archive", 0, total, "started")
        for done, (block_id, meta, live) in enumerate(candidates, start=1):
            if self._stopping:
                break
            if dry_run:
                # What the archive would hold: the earlier archive (if any) and the live part.
                size = live + (_number(meta.get(ARCHIVED_BYTES)) if meta.get(ARCHIVE_PATH) else 0)
                replaced |= self._archive_files(block_id, meta)
                archived += 1
                freed += size
                report("archive", done, total, "would_archive", block_id=block_id, bytes=size)
                continue
            try:
                result = self._block(block_id).archive()
            except InvalidTransition as error:
                # Its output changed meanwhile (another process): left live, tried again
                # by the next sweep.
                skipped += 1
                log.info("sweep: block %r not archived: %s", block_id, error)
                report("archive", done, total, "skipped", block_id=block_id, error=str(error))
                continue
            except Exception as error:
                self.ctx.metrics.incr("sweep_failures")
                log.warning("sweep: could not archive block %r: %s", block_id, error)
                report("archive", done, total, "failed", block_id=block_id, error=str(error))
                continue
            if result.archived_bytes > 0:
                archived += 1
                freed += result.archived_bytes
                report(
                    "archive",
                    done,
                    total,
                    "archived",
                    block_id=block_id,
                    path=result.path,
                    bytes=result.archived_bytes,
                )
            else:
                skipped += 1
                report("archive", done, total, "skipped", block_id=block_id)

        victims = [] if self._stopping else self._over_budget(budget, replaced)
        total = len(victims)
        report("prune", 0, total, "started")
        for done, (path, size) in enumerate(victims, start=1):
            if self._stopping:
                break
            block_id = archive_block_id(path.name)
            if dry_run:
                pruned += 1
                freed += size
                report(
                    "prune",
                    done,
                    total,
                    "would_prune",
                    block_id=block_id,
                    path=str(path),
                    bytes=size,
                )
                continue
            try:
                # (Files of no block are never victims: see _over_budget.)
                assert block_id is not None
                freed_now = self._block(block_id).prune_archive(str(path))
            except Exception as error:
                self.ctx.metrics.incr("sweep_failures")
                log.warning("sweep: could not prune %s: %s", path, error)
                report(
                    "prune",
                    done,
                    total,
                    "failed",
                    block_id=block_id,
                    path=str(path),
                    error=str(error),
                )
                continue
            pruned += 1
            freed += freed_now or size
            report(
                "prune",
                done,
                total,
                "pruned",
                block_id=block_id,
                path=str(path),
                bytes=freed_now or size,
            )
        stats = SweepStats(archived, pruned, freed, skipped)
        if dry_run:
            log.info("sweep (dry run, nothing changed): %s", stats)
        else:
            self.ctx.metrics.incr("sweeps")
            log.info("sweep: %s", stats)
        return stats

    def _live_size(self, block_id: str) -> int:
        try:
            return self.ctx.store.stat_file("block", block_id, "output").size
        except NotFound:
            return 0  # nothing to archive (lines kept elsewhere, or archived)

    def _archive_files(self, block_id: str, meta: dict[str, Any]) -> set[Path]:
        """The archive files of `block_id` that archiving it again would delete."""
        files = set()
        for key in (ARCHIVE_PATH, ARCHIVE_BACKUP):
            if meta.get(key):
                # (A path the archive would refuse, and not delete, either.)
                with contextlib.suppress(StorageError):
                    files.add(checked_archive_path(self._archive_dir, meta[key], block_id))
        return files

    def _over_budget(self, budget: int, replaced: set[Path]) -> list[tuple[Path, int]]:
        """Archive files to delete, oldest first, to bring the folder within `budget`.

        Files in `replaced` (a dry run's: those a new archive would replace) are left
        out; archives a dry run would write are not counted (their size is unknown
        until they are written). A file that belongs to no block in the database (its
        name names none) counts towards the total but is left alone, and logged: no
        metadata could say it is gone, and it may be another database's.
        """
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
            if replaced and path.resolve() in replaced:
                continue
            files.append((at, path, size))
        files.sort()
        total = sum(size for _at, _path, size in files)
        victims = []
        unowned = []
        for _at, path, size in files:
            if total <= budget:
                break
            block_id = archive_block_id(path.name)
            if block_id is None or self.ctx.store.find_object("block", block_id) is None:
                unowned.append(path.name)
                continue
            victims.append((path, size))
            total -= size
        if unowned:
            self.ctx.metrics.incr("sweep_unowned_archives", len(unowned))
            log.warning(
                "sweep: left %d archive file(s) of no block in this database alone "
                "(delete them by hand if they are not another database's): %s",
                len(unowned),
                ", ".join(unowned[:10]),
            )
        return victims


def _number(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
