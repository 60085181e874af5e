"""`rt.blocks`: get or create blocks, list them, and sweep idle ones into archives.

pane = rt.blocks.get("pane-1")        # a `Block` handle (created with view "agent")
rt.blocks.ids(view="agent")           # every stored block's id, sorted
rt.blocks.sweep(inactive_days=7)      # archive idle panes, prune old archives
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import threading
from collections.abc import Callable
from os import PathLike
from pathlib import Path
from typing import Any

from pykka import ActorDeadError

from greenroom.actors.base import GreenroomActorRef
from greenroom.actors.block import BlockActor
from greenroom.actors.block_writer import BlockWriter
from greenroom.actors.sweeper import SweepSupervisor
from greenroom.archives import Archives, FolderArchives, check_block_id
from greenroom.blocks.backlog import OutputBacklog
from greenroom.blocks.handle import Block
from greenroom.blocks.messages import (
    CommitNow,
    CommitSoon,
    CreateBlock,
    ForgetCounts,
    SweepRequest,
)
from greenroom.blocks.owners import Owners
from greenroom.blocks.records import SweepProgress, SweepStats
from greenroom.checks import check_bool, check_callable, check_int, check_number, check_text
from greenroom.errors import InvalidInput, InvalidTransition, LeaseHeld
from greenroom.kernel import Kernel
from greenroom.leases import LEASE_OWNER, Leases
from greenroom.models import StoredObject

__all__ = ["Blocks"]

_COUNTERS = (
    "block_write_failures",
    "block_write_retries",
    "sweeps",
    "own_block_sweeps",
    "sweep_failures",
    "temporaries_removed",
)

log = logging.getLogger("greenroom.blocks")

_LEASE_KIND = "lease"  # objects that only hold a lease
_SWEEP_LEASE = "block-sweep"  # the lease of the host that runs the timed sweeps


def _archive_dir(db_path: str, configured: str | PathLike[str] | None, dialect: str) -> Path:
    # Absolute, so the paths stored in metadata stay valid whatever the working folder.
    if configured is not None:
        return Path(configured).resolve()
    if dialect != "sqlite":
        raise InvalidInput(
            f"a runtime on {db_path} needs RuntimeConfig(archive_dir=...): the folder block "
            "archives go to, one every host on that database can reach (a shared mount)"
        )
    if db_path == ":memory:":
        return Path(tempfile.mkdtemp(prefix="greenroom-archives-")).resolve()
    db = Path(db_path).resolve()
    return db.with_name(db.name + ".archives")


class _Connector:
    """How the `Block` handles of one runtime reach their actors again (`Connector`)."""

    __slots__ = ("_connect", "_kernel")

    def __init__(self, kernel: Kernel, connect: Callable[[str], GreenroomActorRef]) -> None:
        self._kernel = kernel
        self._connect = connect

    def check_open(self) -> None:
        self._kernel.check_open()

    def connect(self, block_id: str) -> GreenroomActorRef:
        return self._connect(block_id)

    def run_later(self, job: Callable[[], None]) -> None:
        self._kernel.blocking.submit(job)


class Blocks:
    """The blocks of one runtime (`rt.blocks`): one `Block` handle per agent pane."""

    def __init__(self, kernel: Kernel, archives: Archives | None = None) -> None:
        """Build the namespace on `kernel`, its archives kept by `archives` (default: a
        `FolderArchives` on `RuntimeConfig.archive_dir`); `Runtime` makes one."""
        self._kernel = kernel
        config = kernel.config
        self._owner_dir: Path | None
        # The owner locks tell a crashed runtime's leftovers from another's work under
        # way: in the archive folder, or with archives kept elsewhere, in archive_dir
        # (or the default one beside a SQLite file); without a folder, none.
        if archives is None:
            folder = _archive_dir(kernel.store.path, config.archive_dir, kernel.store.dialect)
            archives = FolderArchives(folder, file_mode=config.file_mode, dir_mode=config.dir_mode)
        if isinstance(archives, FolderArchives):
            self._owner_dir = archives.folder
        elif config.archive_dir is not None or (
            kernel.store.dialect == "sqlite" and kernel.store.path != ":memory:"
        ):
            self._owner_dir = _archive_dir(
                kernel.store.path, config.archive_dir, kernel.store.dialect
            )
        else:
            self._owner_dir = None
        self._archives = archives
        self._lock = threading.Lock()
        self._handles: dict[str, Block] = {}
        # One lock for every handle's reconnect state (held for a few assignments):
        # a lock per handle would be one more object per block for the GC.
        self._handle_lock = threading.Lock()
        self._refs: dict[str, GreenroomActorRef] = {}  # the actor last connected, per block
        self._connector = _Connector(kernel, self._connect)
        self._writer: GreenroomActorRef | None = None
        self._sweeper: GreenroomActorRef | None = None
        self._owners: Owners | None = None
        self._backlog = OutputBacklog(config.max_pending_output_bytes, config.output_wait_timeout_s)
        # On a shared store: a lease per block this host serves, and one for the sweep.
        self._leases = Leases(kernel.store, kernel.clock, config, "block")
        # The sweep lease outlasts the time between two sweep ticks (its holder takes it
        # again at each): another host's tick, whatever its phase, finds it held.
        self._sweep_lease = Leases(
            kernel.store,
            kernel.clock,
            config,
            _LEASE_KIND,
            lease_s=max(config.lease_s, 2 * config.sweep_interval_s),
        )
        self._leased: set[str] = set()
        self._renewal: Any = None

    @property
    def archives(self) -> Archives:
        """Where block archives are kept (`Runtime.open(archives=...)`; by default a
        `FolderArchives` on `RuntimeConfig.archive_dir`)."""
        return self._archives

    @property
    def archive_dir(self) -> Path:
        """The folder block archives are written to (`RuntimeConfig.archive_dir`, or
        the default next to the database). `InvalidTransition` when they are kept by
        an `Archives` that is not a `FolderArchives` (see `archives`)."""
        archives = self._archives
        if not isinstance(archives, FolderArchives):
            raise InvalidTransition(
                f"block archives are kept by {archives.describe()}, not in a folder: "
                "use rt.blocks.archives"
            )
        return archives.folder

    def get(self, block_id: str, *, view: str = "agent") -> Block:
        """The block `block_id`, created (with metadata `view`) if it does not exist.

        Block ids are 1-200 characters of letters, digits and `-_.:@` (else
        `InvalidInput`). An existing block keeps the view it was created with. The
        block's actor starts with the first call that needs it (output and stats never
        do). A new block's object is made with the block writer's next batch (no read
        or commit here). On a shared store, takes the block's lease (`LeaseHeld` if
        another host serves it), which waits for the store: from an event loop, use
        `greenroom.aio`.
        """
        self._kernel.check_open()
        check_block_id(block_id)
        check_text(view, "view", nonempty=True)
        handle = self._handles.get(block_id)
        if handle is not None and (not self._leases.enabled or block_id in self._leased):
            return handle  # one handle per block (it starts and restarts the actor)
        writer = self.start_services()
        if self._leases.enabled:
            # A shared store: this host serves the block only with its lease
            # (`LeaseHeld` names the host that serves it now).
            if self._take_lease(block_id, view) is None:
                writer.tell(CreateBlock(block_id, {"view": view}))
        else:
            # The writer makes the block's object with its next batch if it is missing
            # (no read and no commit here: an existing one is left as it is), before
            # any of its output, and reads it before it counts the block's lines.
            writer.tell(CreateBlock(block_id, {"view": view}, checked=False))
        new = Block(None, block_id, writer, self._connector, self._backlog, self._handle_lock)
        with self._lock:
            return self._handles.setdefault(block_id, new)

    def _connect(self, block_id: str, view: str = "agent") -> GreenroomActorRef:
        """The block's running actor; started (the block created with `view`) if none.

        Waits for a stopped actor of the block to leave, and for the writer to store
        the last stats it handed over, so the new actor reads the metadata as stored.
        """
        kernel = self._kernel
        writer = self.start_services()
        ref = kernel.lookup(BlockActor.kind, block_id)
        known = self._refs.get(block_id)
        if known is not None and ref is known and known.is_alive():
            return known
        if known is not None and (ref is None or ref is known):
            kernel.wait_for_leave(BlockActor.kind, block_id, known)
            writer.ask(CommitNow(), timeout=kernel.config.stop_timeout_s)
            ref = kernel.lookup(BlockActor.kind, block_id)
        if ref is None:
            if self._leases.enabled:
                found: StoredObject | None = self._take_lease(block_id, view)
            else:
                found = kernel.store.find_object("block", block_id)
                if found is None:
                    # `get` told the writer to make it: stored once the writer commits.
                    writer.ask(CommitNow(), timeout=kernel.config.stop_timeout_s)
                    found = kernel.store.find_object("block", block_id)
            if found is None:  # (a handle made without `get`)
                meta, unstored = {"view": view}, True
                writer.tell(CreateBlock(block_id, dict(meta)))
            else:
                meta, unstored = found.meta, False
            try:
                ref = kernel.spawn(
                    BlockActor,
                    writer,
                    self._archives,
                    self._owners,
                    meta=meta,
                    unstored=unstored,
                    actor_id=block_id,
                )
            except InvalidTransition:
                ref = kernel.wait_for_actor(BlockActor.kind, block_id)
        self._refs[block_id] = ref
        return ref

    def _take_lease(self, block_id: str, view: str) -> StoredObject:
        """The block's object (made with this host's lease if new), its lease taken."""
        store = self._kernel.store
        found, created = store.ensure_object(
            "block", block_id, {"view": view, **self._leases.initial()}
        )
        if not created:
            self._leases.take(block_id, found.meta)
        with self._lock:
            self._leased.add(block_id)
            if self._renewal is None:
                self._renewal = self._kernel.clock.call_every(
                    self._leases.renew_every_s, self._renew_leases
                )
        return found

    def _renew_leases(self) -> None:
        """Renew this host's block leases; let go of the blocks another host took over
        (their actors stop: a later call here names the host that serves them)."""
        with self._lock:
            held = list(self._leased)
        lost = self._leases.renew(held)
        kernel = self._kernel
        for block_id in lost:
            with self._lock:
                self._leased.discard(block_id)
                writer = self._writer
            ref = kernel.lookup(BlockActor.kind, block_id)
            if ref is not None:
                ref.stop(block=False)
            if writer is not None:
                # (Its counts here go stale as the other host writes: loaded again if
                # this host serves the block again. Also when no actor of it runs.)
                writer.tell(ForgetCounts(block_id))

    def _may_sweep(self) -> bool:
        """Whether this host sweeps now: always on a store of its own; on a shared one,
        only while it holds the sweep lease (taken, or renewed, here)."""
        if not self._sweep_lease.enabled:
            return True
        store = self._kernel.store
        found, _created = store.ensure_object(_LEASE_KIND, _SWEEP_LEASE, {})
        try:
            self._sweep_lease.take(_SWEEP_LEASE, found.meta)
        except LeaseHeld as held:
            log.debug("sweep: host %r sweeps (its lease runs until %d)", held.owner, held.until_ms)
            return False
        return True

    def ids(self, view: str | None = None) -> list[str]:
        """The ids of every stored block (with metadata `view`, if given), sorted."""
        store = self._kernel.store
        self._kernel.check_open()
        self._stored()
        if view is None:
            return store.list_ids("block")
        check_text(view, "view")
        objects = store.list_objects("block", unreadable=[])  # (damaged rows: logged, left out)
        return sorted(obj.id for obj in objects if obj.meta.get("view") == view)

    def sweep(
        self,
        *,
        inactive_days: float | None = None,
        max_archive_bytes: int | None = None,
        dry_run: bool = False,
        progress: Callable[[SweepProgress], object] | None = None,
    ) -> SweepStats:
        """Run a sweep now (archive idle agent blocks, prune the archives); its stats.

        `inactive_days` and `max_archive_bytes` override the config's for this sweep
        only (`None`: the config's; 0 is allowed: every agent block with output, an
        empty archive folder). With `dry_run=True` nothing is archived or deleted: the
        stats (and the progress events) say what a sweep would do; archives it would
        write are not counted towards the budget (their size is unknown until
        written). `progress(SweepProgress)` is called on the sweep's thread (not the
        caller's) as each phase starts and after each item; one that raises is logged
        and not called again. A sweep with options waits for a sweep already running;
        one without joins it. `InvalidInput` for a bad option. Waits for the sweep:
        from an event loop, use `greenroom.aio`.
        """
        self._kernel.check_open()
        self._kernel.refuse_inside_actor("sweep()")
        request = SweepRequest(
            None
            if inactive_days is None
            else check_number(inactive_days, "inactive_days", minimum=0),
            None
            if max_archive_bytes is None
            else check_int(max_archive_bytes, "max_archive_bytes", minimum=0),
            check_bool(dry_run, "dry_run"),
            None if progress is None else check_callable(progress, "progress"),
        )
        self.start_services()
        assert self._sweeper is not None
        stats: SweepStats = self._sweeper.ask(request)
        return stats

    def commit_soon(self) -> bool:
        """Have the writer commit what waits for `output_commit_delay_s` now (told:
        `rt.settle()` then waits for it); whether a commit waited for its delay."""
        with self._lock:
            writer = self._writer
        if writer is None or not self._backlog.delayed:
            return False
        with contextlib.suppress(ActorDeadError):  # (closing: its stop commits)
            writer.tell(CommitSoon())
        return True

    def _stored(self) -> None:
        """Wait until the writer has stored what it was handed (new blocks included)."""
        self.start_services().ask(CommitNow(), timeout=self._kernel.config.stop_timeout_s)

    def start_services(self) -> GreenroomActorRef:
        """Start the block writer and the sweep supervisor once; the writer's ref.

        The first time, also draw this runtime's owner token and remove the archive
        temporaries that runtimes gone before left (crashes mid-archive).
        """
        with self._lock:
            if self._writer is None:
                self._owners = self._take_owner_token()
                self.remove_leftovers()
                owned_by = (LEASE_OWNER, self._leases.host_id) if self._leases.enabled else None
                self._writer = self._kernel.spawn(
                    BlockWriter, self._backlog, owned_by=owned_by, actor_id="writer"
                )
                self._sweeper = self._kernel.spawn(
                    SweepSupervisor,
                    self.get,
                    self._archives,
                    self._owners,
                    may_sweep=self._may_sweep,
                    host_id=self._leases.host_id if self._leases.enabled else None,
                    actor_id="sweeper",
                )
            return self._writer

    def _take_owner_token(self) -> Owners | None:
        if self._owner_dir is None:
            return None
        config = self._kernel.config
        return Owners(self._owner_dir, file_mode=config.file_mode, dir_mode=config.dir_mode)

    def remove_leftovers(self) -> int:
        """Remove the archive temporaries of runtimes that are gone; how many (logged).

        Runs when the blocks start and at every sweep; another live process's work in
        progress is left alone.
        """
        owners = self._owners
        if owners is None:
            return 0
        try:
            removed = self._archives.remove_leftovers(owners.is_alive)
        except Exception as error:
            # (Leftovers are never read: the blocks start anyway; each sweep tries again.)
            log.warning("could not remove the archives' leftovers: %s", error)
            return 0
        owners.forget_dead()
        if removed:
            self._kernel.metrics.incr("temporaries_removed", len(removed))
            log.warning(
                "removed %d archive temporaries left by a crash: %s",
                len(removed),
                ", ".join(removed[:10]),
            )
        return len(removed)

    def counters(self) -> dict[str, int]:
        """This part's counters, at zero until bumped (`Runtime.metrics` adds them), and
        the `pending_output_bytes` gauge (output accepted, not stored yet)."""
        counters = dict.fromkeys(_COUNTERS, 0)
        counters["pending_output_bytes"] = self._backlog.pending
        counters["output_waits"] = self._backlog.waits
        return counters

    def close(self) -> None:
        """Release this runtime's owner token and its leases (after the blocks and their
        jobs stopped), so another host may serve its blocks at once."""
        with self._lock:
            if self._owners is not None:
                self._owners.close()
            renewal, self._renewal = self._renewal, None
            leased, self._leased = list(self._leased), set()
        if renewal is not None:
            renewal.cancel()
        self._leases.give_up(leased)
        if self._writer is not None:  # (the sweep lease: given up if this host holds it)
            self._sweep_lease.give_up([_SWEEP_LEASE])

    def __repr__(self) -> str:
        return f"<Blocks of {self._kernel.store.path!r}>"
