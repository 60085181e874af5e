"""`rt.blocks`: get or create blocks, list them, and sweep idle ones into archives.

pane = rt.blocks.get("pane-1")        # a `Block` handle (created with view "agent")
rt.blocks.ids(view="agent")           # every stored block's id, sorted
rt.blocks.sweep(inactive_days=7)      # archive idle panes, prune old archives
"""

from __future__ import annotations

import math
import tempfile
import threading
from collections.abc import Callable
from os import PathLike
from pathlib import Path

from greenroom.actors.base import GreenroomActorRef
from greenroom.actors.block import BlockActor
from greenroom.actors.block_writer import BlockWriter
from greenroom.actors.sweeper import SweepSupervisor
from greenroom.blocks.archive import check_block_id
from greenroom.blocks.handle import Block
from greenroom.blocks.messages import SweepRequest
from greenroom.blocks.records import SweepProgress, SweepStats
from greenroom.errors import InvalidInput, InvalidTransition
from greenroom.kernel import Kernel

__all__ = ["Blocks"]

_COUNTERS = ("block_write_failures", "block_write_retries", "sweeps", "sweep_failures")


def _archive_dir(db_path: str, configured: str | PathLike[str] | None) -> Path:
    # Absolute, so the paths stored in metadata stay valid whatever the working folder.
    if configured is not None:
        return Path(configured).resolve()
    if db_path == ":memory:":
        return Path(tempfile.mkdtemp(prefix="greenroom-archives-")).resolve()
    db = Path(db_path).resolve()
    return db.with_name(db.name + ".archives")


class Blocks:
    """The blocks of one runtime (`rt.blocks`): one `Block` handle per agent pane."""

    def __init__(self, kernel: Kernel) -> None:
        """Build the namespace on `kernel`; `Runtime` makes one."""
        self._kernel = kernel
        self._archive_dir = _archive_dir(kernel.store.path, kernel.config.archive_dir)
        self._lock = threading.Lock()
        self._handles: dict[str, Block] = {}
        self._writer: GreenroomActorRef | None = None
        self._sweeper: GreenroomActorRef | None = None

    @property
    def archive_dir(self) -> Path:
        """The folder block archives are written to (`RuntimeConfig.archive_dir`)."""
        return self._archive_dir

    def get(self, block_id: str, *, view: str = "agent") -> Block:
        """The block `block_id`, created (with metadata `view`) if it does not exist.

        Block ids are 1-200 characters of letters, digits and `-_.:@` (else
        `InvalidInput`). An existing block keeps the view it was created with.
        """
        kernel = self._kernel
        kernel.check_open()
        check_block_id(block_id)
        if not isinstance(view, str) or not view:
            raise InvalidInput(f"view must be a non-empty str, got {view!r}")
        handle = self._handles.get(block_id)
        if handle is not None and handle._ref.is_alive():
            return handle  # a handle keeps its proxy: no new one per call
        writer = self.start_services()
        ref = kernel.lookup(BlockActor.kind, block_id)
        if handle is not None and (ref is None or ref is handle._ref):
            # The block's actor stopped (or is stopping) in this runtime. Its on_stop
            # handed its last stats to the writer: wait until it has left, then until
            # the writer has stored them, so the new actor loads the real totals.
            kernel.wait_for_leave(BlockActor.kind, block_id, handle._ref)
            writer.proxy().commit_now().get(timeout=kernel.config.stop_timeout_s)
            ref = kernel.lookup(BlockActor.kind, block_id)
        if ref is None:
            kernel.store.ensure_object("block", block_id, {"view": view})
            try:
                ref = kernel.spawn(BlockActor, writer, self._archive_dir, actor_id=block_id)
            except InvalidTransition:
                ref = kernel.wait_for_actor(BlockActor.kind, block_id)
        handle = self._handles[block_id] = Block(ref, block_id, self.get)
        return handle

    def ids(self, view: str | None = None) -> list[str]:
        """The ids of every stored block (with metadata `view`, if given), sorted."""
        store = self._kernel.store
        self._kernel.check_open()
        if view is None:
            return store.list_ids("block")
        if not isinstance(view, str):
            raise InvalidInput(f"view must be a str or None, got {view!r}")
        return sorted(obj.id for obj in store.list_objects("block") if obj.meta.get("view") == view)

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
        one without joins it. `InvalidInput` for a bad option.
        """
        self._kernel.check_open()
        self._kernel.refuse_inside_actor("sweep()")
        if inactive_days is not None and (
            isinstance(inactive_days, bool)
            or not isinstance(inactive_days, int | float)
            or not math.isfinite(inactive_days)
            or inactive_days < 0
        ):
            raise InvalidInput(
                f"inactive_days must be a finite number >= 0 or None, got {inactive_days!r}"
            )
        if max_archive_bytes is not None and (
            isinstance(max_archive_bytes, bool)
            or not isinstance(max_archive_bytes, int)
            or max_archive_bytes < 0
        ):
            raise InvalidInput(
                f"max_archive_bytes must be an int >= 0 or None, got {max_archive_bytes!r}"
            )
        if not isinstance(dry_run, bool):
            raise InvalidInput(f"dry_run must be True or False, got {dry_run!r}")
        if progress is not None and not callable(progress):
            raise InvalidInput(f"progress must be a callable or None, got {progress!r}")
        request = SweepRequest(inactive_days, max_archive_bytes, dry_run, progress)
        self.start_services()
        assert self._sweeper is not None
        result: SweepStats = (
            self._sweeper.proxy().sweep_now(None if request.plain else request).get()
        )
        return result

    def start_services(self) -> GreenroomActorRef:
        """Start the block writer and the sweep supervisor once; the writer's ref."""
        with self._lock:
            if self._writer is None:
                self._writer = self._kernel.spawn(BlockWriter, actor_id="writer")
                self._sweeper = self._kernel.spawn(
                    SweepSupervisor, self.get, self._archive_dir, actor_id="sweeper"
                )
            return self._writer

    def counters(self) -> dict[str, int]:
        """This part's counters, at zero until bumped (`Runtime.metrics` adds them)."""
        return dict.fromkeys(_COUNTERS, 0)

    def __repr__(self) -> str:
        return f"<Blocks of {self._kernel.store.path!r}>"
