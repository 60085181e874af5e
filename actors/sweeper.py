"""`SweepSupervisor`: archives idle agent blocks and prunes the archive folder.

On a clock timer (first after `sweep_first_after_s`, then every `sweep_interval_s`)
and on `Runtime.blocks.sweep()`, it runs one sweep on the blocking pool, where waiting is
allowed: every archive and prune is asked of the block's own actor, so a sweep can
never race with that block's appends, restores or reads. One sweep runs at a time.
A plain sweep (the config's settings, no progress callback) asked for while another
plain one runs gets that one's result; a sweep with options (`SweepRequest`) waits
for its own turn, in the order asked.

On a store several hosts share, a sweep leaves out the blocks another live host holds
the lease of: that host archives them, in the sweep its own timer runs when it does
not hold the sweep lease (`SweepRequest.own_blocks`: its blocks only, nothing pruned).

A dry run (`SweepRequest(dry_run=True)`) works out the same plan and reports it
(through the stats and the progress callback) without archiving or deleting anything.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from os import PathLike
from typing import Any, Protocol

import attrs

from greenroom.actors.base import DEFERRED, ActorContext, GreenroomActor, Reply
from greenroom.actors.block import RESTORING, restoring_owner
from greenroom.actors.busy_queue import BusyQueue
from greenroom.archives import Archives, archive_block_id
from greenroom.blocks.messages import PLAIN_SWEEP, SweepDue, SweepRequest
from greenroom.blocks.owners import Owners
from greenroom.blocks.records import (
    ARCHIVE_BACKUP,
    ARCHIVE_PATH,
    ARCHIVED_BYTES,
    LAST_ACTIVITY,
    LINE_COUNT,
    ArchiveResult,
    SweepProgress,
    SweepStats,
    meta_count,
)
from greenroom.errors import GreenroomError, InvalidTransition, NotFound, Stopped, StorageError
from greenroom.futures import GreenroomFuture
from greenroom.leases import lease_of
from greenroom.models import UnreadableObject

__all__ = ["BlockHandle", "SweepSupervisor"]


class BlockHandle(Protocol):
    """What the sweep asks of a block (`greenroom.blocks.handle.Block` is one)."""

    def archive(self) -> ArchiveResult: ...

    def prune_archive(self, path: str | PathLike[str]) -> int: ...


log = logging.getLogger("greenroom.sweep")

_DAY_MS = 86_400_000
_OWN_SWEEP = SweepRequest(own_blocks=True)


@attrs.frozen
class _Sweep:
    """One sweep, run or waiting: its options, and the future its callers wait on.

    Every caller of a plain sweep that joins it forwards from the same `outcome`.
    """

    request: SweepRequest
    outcome: GreenroomFuture[SweepStats] = attrs.field(factory=GreenroomFuture, eq=False)


def _forward(reply: Reply) -> Callable[[GreenroomFuture[SweepStats]], None]:
    """A done-callback answering `reply` with what the sweep's outcome resolved to."""

    def forward(outcome: GreenroomFuture[SweepStats]) -> None:
        try:
            stats = outcome.get(timeout=0)  # resolved: never waits
        except Exception as error:
            reply.fail(error)
        else:
            reply.set(stats)

    return forward


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
        self,
        ctx: ActorContext,
        block: Callable[[str], BlockHandle],
        archives: Archives,
        owners: Owners | None = None,
        *,
        may_sweep: Callable[[], bool] | None = None,
        host_id: str | None = None,
    ) -> None:
        super().__init__(ctx)
        self._may_sweep = may_sweep  # the timed sweeps run only while this says so
        self._host_id = host_id  # on a shared store: this host (blocks are leased)
        self._block = block
        self._archives = archives
        self._owners = owners
        self._sweeps: BusyQueue[_Sweep] = BusyQueue(self._start)
        self._running: _Sweep | None = None  # the sweep under way, if any
        self._stopping = False  # read by the sweep job: stop between items

    def on_start(self) -> None:
        config = self.ctx.config
        self.schedule_every(
            config.sweep_interval_s, SweepDue(), first_after_s=config.sweep_first_after_s
        )

    def on_stop(self) -> None:
        self._stopping = True
        self._sweeps.fail_all(Stopped("the runtime closed while the sweep ran; it was cut short"))

    def on_receive(self, message: Any) -> Any:
        cls = type(message)
        if cls is SweepRequest:
            return self._ask_sweep(message)
        if cls is SweepDue:
            # (A sweep under way does the timer's work; on a shared store, only the
            # host holding the sweep lease sweeps everything on its timer, the others
            # their own blocks.)
            if self._sweeps.busy:
                return None
            if self._may_sweep is None or self._may_sweep():
                self._submit(_Sweep(PLAIN_SWEEP))
            elif self._host_id is not None:
                self._submit(_Sweep(_OWN_SWEEP))
            return None
        return super().on_receive(message)

    def _ask_sweep(self, request: SweepRequest) -> Any:
        """`SweepRequest`: answered with the stats of a sweep with these options.

        A plain request joins the plain sweep under way, or else a plain one waiting.
        """
        reply = self.reply_later()
        if request.plain:
            joined = [self._running] if self._running is not None else []
            joined += [sweep for sweep, _reply in self._sweeps.waiting()]
            for sweep in joined:
                if sweep.request.plain:
                    sweep.outcome.add_done_callback(_forward(reply))
                    return DEFERRED
        sweep = _Sweep(request)
        sweep.outcome.add_done_callback(_forward(reply))
        self._submit(sweep)
        return DEFERRED

    def _submit(self, sweep: _Sweep) -> None:
        self._sweeps.submit(sweep, Reply(sweep.outcome))

    def _start(self, sweep: _Sweep, _reply: Reply) -> None:
        self._running = sweep
        now = self.ctx.clock.now_ms()
        self.run_blocking(self._sweep, now, sweep.request, then=self._swept)

    def _swept(self, future: GreenroomFuture[SweepStats]) -> None:
        reply = self._sweeps.current
        self._running = None
        try:
            stats = future.get()
        except Exception as error:
            log.exception("sweep failed")
            if reply is not None:
                reply.fail(error)
        else:
            if reply is not None:
                reply.set(stats)
        self._sweeps.done()

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
        archived = pruned = freed = skipped = elsewhere = 0
        own = request.own_blocks
        if not dry_run and not own:
            self._remove_leftovers()

        candidates: list[tuple[str, dict[str, Any], int]] = []
        unreadable: list[UnreadableObject] = []
        objects = self.ctx.store.list_objects("block", unreadable=unreadable)
        for obj in objects:
            if self._stopping:
                break
            meta = obj.meta
            last = meta_count(meta, LAST_ACTIVITY)
            if (
                meta.get("view") != "agent"
                or meta_count(meta, LINE_COUNT) <= 0
                or last <= 0
                or now_ms - last < cutoff
            ):
                continue
            if self._host_id is not None and not self._ours(meta, now_ms, own=own):
                elsewhere += 1
                continue
            live = self._live_size(obj.id)
            if live > 0:
                # (An archived block with new output since is archived again: the
                # next archive joins the two.)
                candidates.append((obj.id, meta, live))

        replaced: set[str] = set()  # a dry run's archives a new archive replaces
        total = len(candidates)
        report("archive", 0, total, "started")
        for bad in unreadable:
            # A hand-edited row (logged by the store): left as it is, and the sweep goes on.
            skipped += 1
            report("archive", 0, total, "skipped", block_id=bad.id, error=bad.error)
        for done, (block_id, meta, live) in enumerate(candidates, start=1):
            if self._stopping:
                break
            if dry_run:
                # What the archive would hold: the earlier archive (if any) and the live part.
                size = live + (meta_count(meta, ARCHIVED_BYTES) if meta.get(ARCHIVE_PATH) else 0)
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

        if elsewhere:
            log.debug("sweep: %d idle block(s) left to the hosts that serve them", elsewhere)
        victims = [] if self._stopping else self._over_budget(budget, replaced, now_ms, own=own)
        total = len(victims)
        report("prune", 0, total, "started")
        for done, (name, size, owner) in enumerate(victims, start=1):
            path = self._archives.location(name)
            if self._stopping:
                break
            if dry_run:
                pruned += 1
                freed += size
                report(
                    "prune",
                    done,
                    total,
                    "would_prune",
                    block_id=owner,
                    path=path,
                    bytes=size,
                )
                continue
            try:
                freed_now = self._block(owner).prune_archive(name)
            except InvalidTransition as error:
                # The block changed meanwhile (another process): left, looked at again
                # by the next sweep.
                skipped += 1
                log.info("sweep: %s not pruned: %s", path, error)
                report("prune", done, total, "skipped", block_id=owner, path=path, error=str(error))
                continue
            except Exception as error:
                self.ctx.metrics.incr("sweep_failures")
                log.warning("sweep: could not prune %s: %s", path, error)
                report(
                    "prune",
                    done,
                    total,
                    "failed",
                    block_id=owner,
                    path=path,
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
                block_id=owner,
                path=path,
                bytes=freed_now or size,
            )
        stats = SweepStats(archived, pruned, freed, skipped)
        if dry_run:
            log.info("sweep (dry run, nothing changed): %s", stats)
        elif own:
            self.ctx.metrics.incr("own_block_sweeps")
            log.info("sweep of this host's own blocks: %s", stats)
        else:
            self.ctx.metrics.incr("sweeps")
            log.info("sweep: %s", stats)
        return stats

    def _ours(self, meta: dict[str, Any], now_ms: int, *, own: bool) -> bool:
        """Whether this host's sweep archives the block whose metadata is `meta`: not
        while another host's lease on it runs (that host archives it); in a sweep of
        its own blocks, only those it holds the lease of."""
        lease = lease_of(meta)
        if own:
            return lease is not None and lease.owner == self._host_id and lease.until_ms > now_ms
        return lease is None or lease.owner == self._host_id or lease.until_ms <= now_ms

    def _remove_leftovers(self) -> None:
        """Remove the temporaries of runtimes gone before (crashes mid-archive or
        mid-restore); another live process's are left alone."""
        if self._owners is None:
            return
        try:
            removed = self._archives.remove_leftovers(self._owners.is_alive)
        except Exception as error:
            # (Leftovers are never read: the sweep goes on, the next one tries again.)
            self.ctx.metrics.incr("sweep_failures")
            log.warning("sweep: could not remove the archives' leftovers: %s", error)
            removed = []
        store = self.ctx.store
        for block_id, name in store.find_files("block", RESTORING):
            owner = restoring_owner(name)
            if owner is None or self._owners.is_alive(owner):
                continue
            with contextlib.suppress(GreenroomError):  # (gone meanwhile: fine)
                store.delete_file("block", block_id, name, missing_ok=True)
                removed.append(f"{block_id}/{name}")
        if removed:
            self.ctx.metrics.incr("temporaries_removed", len(removed))
            log.warning(
                "sweep: removed %d archive temporaries left by a crash: %s",
                len(removed),
                ", ".join(removed[:10]),
            )

    def _live_size(self, block_id: str) -> int:
        try:
            return self.ctx.store.stat_file("block", block_id, "output").size
        except NotFound:
            return 0  # nothing to archive (lines kept elsewhere, or archived)

    def _archive_files(self, block_id: str, meta: dict[str, Any]) -> set[str]:
        """The archives of `block_id` that archiving it again would delete."""
        names = set()
        for key in (ARCHIVE_PATH, ARCHIVE_BACKUP):
            if meta.get(key):
                # (A path the archive would refuse, and not delete, either.)
                with contextlib.suppress(StorageError):
                    names.add(self._archives.resolve(meta[key], block_id))
        return names

    def _over_budget(
        self, budget: int, replaced: set[str], now_ms: int, *, own: bool = False
    ) -> list[tuple[str, int, str]]:
        """Archives to delete, oldest first, to bring them within `budget`: (name,
        size, the block it belongs to).

        Archives in `replaced` (a dry run's: those a new archive would replace) are
        left out; archives a dry run would write are not counted (their size is
        unknown until they are written). An archive that belongs to no block in the
        database (its name names none) counts towards the total but is left alone,
        and logged: no metadata could say it is gone, and it may be another database's.

        On a shared store every host works out the same list, and each deletes those
        of its share (`_ours`: in a sweep of its own blocks, those it holds the lease
        of; the sweep lease's holder, the rest), so between them the budget is kept.
        """
        files = []
        for entry in self._archives.entries():
            try:
                at = entry.archived_at_ms
            except (ValueError, IndexError):
                continue  # not an archive's name: never greenroom's to delete
            if entry.name not in replaced:
                files.append((at, entry.name, entry.size))
        files.sort()
        total = sum(size for _at, _name, size in files)
        victims = []
        unowned = []
        for _at, name, size in files:
            if total <= budget:
                break
            block_id = archive_block_id(name)
            found = None if block_id is None else self.ctx.store.find_object("block", block_id)
            if found is None or block_id is None:
                unowned.append(name)
                continue
            total -= size
            if self._host_id is None or self._ours(found.meta, now_ms, own=own):
                victims.append((name, size, block_id))
        if unowned and not own:  # (the sweep lease's holder says it: once a sweep)
            self.ctx.metrics.incr("sweep_unowned_archives", len(unowned))
            log.warning(
                "sweep: left %d archive file(s) of no block in this database alone "
                "(delete them by hand if they are not another database's): %s",
                len(unowned),
                ", ".join(unowned[:10]),
            )
        return victims
