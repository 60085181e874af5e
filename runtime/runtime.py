"""`Runtime`: the facade a host uses; it owns the store, the clock's timers and the actors."""

from __future__ import annotations

import atexit
import logging
import math
import secrets
import tempfile
import threading
import weakref
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from greenroom.activity import ActivityTracker
from greenroom.actors.base import ActorContext, GreenroomActor, GreenroomActorRef, current_actor
from greenroom.actors.block import BlockActor
from greenroom.actors.block_writer import BlockWriter
from greenroom.actors.blocking import BlockingPool
from greenroom.actors.dispatcher import Dispatcher
from greenroom.actors.sweeper import SweepProgress, SweepRequest, SweepSupervisor
from greenroom.blocks.archive import check_block_id
from greenroom.blocks.handle import Block
from greenroom.blocks.records import SweepStats
from greenroom.clock import Clock, SystemClock
from greenroom.config import RuntimeConfig
from greenroom.errors import (
    InvalidInput,
    InvalidTransition,
    NotFound,
    SettleTimeout,
    Stopped,
    Timeout,
)
from greenroom.executions.namespace import ExecutionsAPI
from greenroom.metrics import Metrics
from greenroom.replay.namespace import ReplayAPI
from greenroom.store import Store
from greenroom.transcripts.namespace import TranscriptsAPI

__all__ = ["Runtime"]

log = logging.getLogger("greenroom.runtime")

A = TypeVar("A", bound=GreenroomActor)

_open_runtimes: weakref.WeakSet[Runtime] = weakref.WeakSet()


@atexit.register
def _close_forgotten_runtimes() -> None:
    # Actor threads are daemons, so a runtime nobody closed must be closed here, or
    # the interpreter would cut its actors off mid-flush.
    for rt in list(_open_runtimes):
        log.warning("runtime %r was not closed; closing it at interpreter exit", rt.path)
        rt.close()


def _archive_dir(db_path: str, configured: str | None) -> Path:
    # Absolute, so the paths stored in metadata stay valid whatever the working folder.
    if configured is not None:
        return Path(configured).resolve()
    if db_path == ":memory:":
        return Path(tempfile.mkdtemp(prefix="greenroom-archives-")).resolve()
    db = Path(db_path).resolve()
    return db.with_name(db.name + ".archives")


class _Reservation:
    """Holds an actor's place in the lookup while it starts; false, like no actor."""

    __slots__ = ()

    def __bool__(self) -> bool:
        return False


class Runtime(ExecutionsAPI, TranscriptsAPI, ReplayAPI):
    """A running greenroom: one store, one clock, and the actors on them.

        with Runtime.open("app.db") as rt:
            ref = rt.spawn(MyActor, actor_id="a1")
            ...
            rt.settle()
            print(rt.metrics())

    `close()` (or leaving the `with` block) stops every actor gracefully — each
    handles what was queued before the stop and flushes in `on_stop` — then closes the
    store. Any call after `close()` raises `Stopped`.
    """

    def __init__(
        self, store: Store, clock: Clock, config: RuntimeConfig, *, owns_clock: bool
    ) -> None:
        """Wire a runtime from its parts; use `Runtime.open` instead."""
        self._store = store
        self._clock = clock
        self._config = config
        self._owns_clock = owns_clock
        self._metrics = Metrics()
        self._tracker = ActivityTracker(describe=self._busy)
        self._dispatcher = Dispatcher(config.dispatcher_threads, config.dispatcher_throughput)
        self._blocking = BlockingPool(config.blocking_threads, self._tracker)
        # A plain lock on the hot paths (spawn, an actor's teardown), whose critical
        # sections call nothing where they can (see runtime.activity on lock convoys);
        # the condition on the same lock is for waiting (close).
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._actors: dict[str, dict[str, GreenroomActorRef | _Reservation]] = defaultdict(dict)
        self._alive = 0
        self._starting = 0
        self._stopping: dict[tuple[str, str], None] = {}
        self._leave_waiters = 0
        self._closed = False
        self._close_done = threading.Event()
        self._archive_dir = _archive_dir(store.path, config.archive_dir)
        self._block_lock = threading.Lock()
        self._block_handles: dict[str, Block] = {}
        self._writer: GreenroomActorRef | None = None
        self._sweeper: GreenroomActorRef | None = None
        self._init_executions()
        self._init_transcripts()
        self._init_replay()
        attach = getattr(clock, "attach", None)
        if attach is not None:
            attach(self._tracker)
        _open_runtimes.add(self)

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        clock: Clock | None = None,
        config: RuntimeConfig | None = None,
    ) -> Runtime:
        """Open the store at `path` (created when new; `":memory:"` for a throwaway).

        `clock` defaults to a `SystemClock` the runtime owns and closes; pass a
        `FakeClock` in tests. `config` defaults to `RuntimeConfig()`.
        """
        if config is None:
            config = RuntimeConfig()
        elif not isinstance(config, RuntimeConfig):
            raise InvalidInput(f"config must be a RuntimeConfig, got {type(config).__name__}")
        owns_clock = clock is None
        if clock is None:
            clock = SystemClock()
        else:
            missing = [
                name
                for name in ("now_ms", "monotonic", "call_later", "call_every")
                if not callable(getattr(clock, name, None))
            ]
            if missing:
                raise InvalidInput(f"clock {clock!r} is not a Clock: it lacks {', '.join(missing)}")
        store = Store.open(
            path,
            now_ms=clock.now_ms,
            chunk_bytes=config.file_chunk_bytes,
            synchronous=config.sqlite_synchronous,
            busy_timeout_s=config.sqlite_busy_timeout_s,
            secure_delete=config.sqlite_secure_delete,
        )
        log.info("runtime opened on %r", store.path)
        rt = cls(store, clock, config, owns_clock=owns_clock)
        try:
            if store.list_ids("block"):
                rt._start_block_services()  # blocks to sweep: the sweep timer starts now
        except BaseException:
            rt.close()
            raise
        return rt

    # -- properties ----------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The database path the runtime was opened on."""
        return self._store.path

    @property
    def clock(self) -> Clock:
        """The clock every actor of this runtime reads time from."""
        return self._clock

    @property
    def config(self) -> RuntimeConfig:
        """The runtime's configuration."""
        return self._config

    @property
    def store(self) -> Store:
        """The embedded store (objects with metadata, and their files)."""
        self._check_open()
        return self._store

    @property
    def closed(self) -> bool:
        """Whether `close()` has been called."""
        return self._closed

    # -- actors --------------------------------------------------------------------------

    def spawn(
        self, actor_class: type[A], *args: Any, actor_id: str | None = None, **kwargs: Any
    ) -> GreenroomActorRef:
        """Start an actor of `actor_class` (a `GreenroomActor`) and return its ref.

        The actor is constructed as `actor_class(ctx, *args, **kwargs)`. `actor_id`
        defaults to a random one; (kind, id) must not be running already
        (`InvalidTransition`).
        """
        self._check_open()
        if not (isinstance(actor_class, type) and issubclass(actor_class, GreenroomActor)):
            raise InvalidInput(f"spawn takes a GreenroomActor subclass, got {actor_class!r}")
        kind = actor_class.kind
        if actor_id is None:
            actor_id = f"{kind}-{secrets.token_hex(8)}"
        elif not isinstance(actor_id, str) or not actor_id:
            raise InvalidInput(f"actor_id must be a non-empty str, got {actor_id!r}")
        with self._lock:
            self._check_open()
            if actor_id in self._actors[kind]:
                raise InvalidTransition(f"a {kind} actor with id {actor_id!r} is already running")
            reservation = _Reservation()
            self._actors[kind][actor_id] = reservation  # reserved while it starts
            self._alive += 1
            self._starting += 1  # close() waits for this, so it never misses an actor
        ctx = ActorContext(
            kind=kind,
            actor_id=actor_id,
            clock=self._clock,
            store=self._store,
            config=self._config,
            metrics=self._metrics,
            tracker=self._tracker,
            dispatcher=self._dispatcher,
            blocking=self._blocking,
            on_stopped=self._forget,
        )
        try:
            ref = actor_class.start(ctx, *args, **kwargs)
        except BaseException:
            self._remove(kind, actor_id)
            with self._lock:
                self._started_one()
            raise
        with self._lock:
            # Only our own reservation: if the actor already stopped (its on_start
            # failed) and another spawn took the id, that newer actor stays.
            if self._actors.get(kind, {}).get(actor_id) is reservation:
                self._actors[kind][actor_id] = ref
            self._started_one()
        self._metrics.incr("actors_started")
        return ref

    def _started_one(self) -> None:
        self._starting -= 1
        if not self._starting:
            self._changed.notify_all()

    def get_actor(self, kind: str, actor_id: str) -> GreenroomActorRef:
        """The running actor (kind, id); `NotFound` when there is none."""
        self._check_open()
        with self._lock:
            ref = self._actors.get(kind, {}).get(actor_id)
        if not ref:
            raise NotFound(f"no running {kind} actor with id {actor_id!r}")
        return ref

    def actor_ids(self, kind: str) -> list[str]:
        """The ids of the running actors of `kind`, sorted."""
        self._check_open()
        with self._lock:
            return sorted(key for key, ref in self._actors.get(kind, {}).items() if ref)

    def _forget(self, actor: GreenroomActor) -> None:
        """Called by an actor's teardown, on a dispatcher thread: drop it from the lookup."""
        self._remove(actor.ctx.kind, actor.ctx.actor_id)
        self._metrics.incr("actors_stopped")

    def _remove(self, kind: str, actor_id: str) -> None:
        key = (kind, actor_id)
        actors = self._actors
        # Subscripts and `in` only: nothing in here is a call (see the lock's comment).
        with self._lock:
            stopping = self._stopping
            if kind in actors:
                by_id = actors[kind]
                if actor_id in by_id:
                    del by_id[actor_id]
                    if not by_id:
                        del actors[kind]
                    self._alive -= 1
            if key in stopping:
                del stopping[key]
                if not stopping:
                    self._changed.notify_all()
            if self._leave_waiters:
                self._changed.notify_all()  # someone waits for an actor to leave

    # -- blocks --------------------------------------------------------------------------

    @property
    def archive_dir(self) -> Path:
        """The folder block archives are written to (`RuntimeConfig.archive_dir`)."""
        return self._archive_dir

    def block(self, block_id: str, *, view: str = "agent") -> Block:
        """The block `block_id`, created (with metadata `view`) if it does not exist.

        Block ids are 1-200 characters of letters, digits and `-_.:@` (else
        `InvalidInput`). An existing block keeps the view it was created with.
        """
        self._check_open()
        check_block_id(block_id)
        if not isinstance(view, str) or not view:
            raise InvalidInput(f"view must be a non-empty str, got {view!r}")
        handle = self._block_handles.get(block_id)
        if handle is not None and handle._ref.is_alive():
            return handle  # a handle keeps its proxy: no new one per call
        writer = self._start_block_services()
        with self._lock:
            ref = self._actors.get(BlockActor.kind, {}).get(block_id)
        if handle is not None and (not ref or ref is handle._ref):
            # The block's actor stopped (or is stopping) in this runtime. Its on_stop
            # handed its last stats to the writer: wait until it has left, then until
            # the writer has stored them, so the new actor loads the real totals.
            self._wait_for_leave(BlockActor.kind, block_id, handle._ref)
            writer.proxy().commit_now().get(timeout=self._config.stop_timeout_s)
            with self._lock:
                ref = self._actors.get(BlockActor.kind, {}).get(block_id)
        if not ref:
            self._store.ensure_object("block", block_id, {"view": view})
            try:
                ref = self.spawn(BlockActor, writer, self._archive_dir, actor_id=block_id)
            except InvalidTransition:
                ref = self._wait_for_actor(BlockActor.kind, block_id)
        handle = self._block_handles[block_id] = Block(ref, block_id, self.block)
        return handle

    def blocks(self, view: str | None = None) -> list[str]:
        """The ids of every stored block (with metadata `view`, if given), sorted."""
        self._check_open()
        if view is None:
            return self._store.list_ids("block")
        return sorted(
            obj.id for obj in self._store.list_objects("block") if obj.meta.get("view") == view
        )

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
        self._check_open()
        self._refuse_inside_actor("sweep()")
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
        self._start_block_services()
        assert self._sweeper is not None
        return self._sweeper.proxy().sweep_now(None if request.plain else request).get()

    def _start_block_services(self) -> GreenroomActorRef:
        """Start the block writer and the sweep supervisor once; the writer's ref."""
        with self._block_lock:
            if self._writer is None:
                self._writer = self.spawn(BlockWriter, actor_id="writer")
                self._sweeper = self.spawn(
                    SweepSupervisor, self.block, self._archive_dir, actor_id="sweeper"
                )
            return self._writer

    def _wait_for_leave(self, kind: str, actor_id: str, ref: GreenroomActorRef) -> None:
        # Until the actor's teardown (after its on_stop) has removed `ref` from the lookup.
        with self._changed:
            self._leave_waiters += 1
            try:
                left = self._changed.wait_for(
                    lambda: self._actors.get(kind, {}).get(actor_id) is not ref,
                    timeout=self._config.stop_timeout_s,
                )
            finally:
                self._leave_waiters -= 1
        if not left:
            raise Timeout(
                f"the previous {kind} actor {actor_id!r} did not stop within "
                f"{self._config.stop_timeout_s:g} s; try again later"
            )

    def _wait_for_actor(self, kind: str, actor_id: str) -> GreenroomActorRef:
        # Another thread is spawning this very actor: wait for its ref to land.
        with self._changed:
            self._changed.wait_for(
                lambda: bool(self._actors.get(kind, {}).get(actor_id)) or not self._starting,
                timeout=self._config.stop_timeout_s,
            )
        return self.get_actor(kind, actor_id)

    # -- waiting and watching ------------------------------------------------------------

    def settle(self, timeout: float | None = None) -> None:
        """Wait until every actor has an empty inbox and no running handler.

        Works with any clock (it waits in real time). Raises `SettleTimeout`, naming
        the busy actors, after `timeout` seconds (default `config.settle_timeout_s`).
        Refused (`InvalidTransition`) inside a handler, which would wait for itself.
        """
        self._check_open()
        self._refuse_inside_actor("settle()")
        limit = self._config.settle_timeout_s if timeout is None else timeout
        if not self._tracker.wait_idle(limit):
            raise SettleTimeout(limit, self._tracker.busy())

    def _busy(self) -> dict[str, int]:
        """Each busy actor's name with its queued messages (at least 1), and busy jobs."""
        with self._lock:
            refs = [ref for by_id in self._actors.values() for ref in by_id.values() if ref]
        busy = {
            f"{ref.kind}:{ref.actor_id}": len(ref.actor_inbox) or 1
            for ref in refs
            if ref.actor_inbox.busy
        }
        busy.update(self._blocking.busy())
        return busy

    def metrics(self) -> dict[str, int]:
        """A plain dict of counters and gauges.

        Counters: `actors_started`, `actors_stopped`, `actors_abandoned` (still running
        when `close()` gave up on them), `actor_failures` (a tell whose
        handler raised, or a failing `on_start` / `on_stop` / `on_failure`),
        `actor_start_failures`, `ask_errors` (an ask whose handler raised; the asker got
        the exception), `dead_letters` (messages to stopped actors), `messages_handled`,
        `slow_handlers` (handlers over `slow_handler_warning_s`), `store_commits`.
        Gauges: `actors_alive`, `messages_pending`, `dispatcher_threads`,
        `blocking_threads` (started so far), `blocking_queued` (jobs waiting for one).
        """
        self._check_open()
        counters = {
            "actors_started": 0,
            "actors_stopped": 0,
            "actors_abandoned": 0,
            "actor_failures": 0,
            "actor_start_failures": 0,
            "ask_errors": 0,
            "dead_letters": 0,
            "slow_handlers": 0,
            "block_write_failures": 0,
            "block_write_retries": 0,
            "sweeps": 0,
            "sweep_failures": 0,
        }
        counters.update(self._executions_metrics())
        counters.update(self._transcripts_metrics())
        counters.update(self._replay_metrics())
        counters.update(self._metrics.snapshot())
        counters.update(self._store.stats())
        counters["messages_handled"] = self._tracker.handled
        counters["messages_pending"] = sum(self._tracker.busy().values())
        counters["actors_alive"] = self._alive
        counters["dispatcher_threads"] = self._dispatcher.threads
        counters["blocking_threads"] = self._blocking.threads
        counters["blocking_queued"] = self._blocking.queued
        return counters

    # -- closing -------------------------------------------------------------------------

    def close(self) -> None:
        """Stop every actor gracefully, then close the store. Idempotent.

        Actors stop in groups by their class's `stop_order` (lowest first); each
        handles what was queued before its stop and runs `on_stop`. Actors still
        running after `config.stop_timeout_s` are logged and abandoned.
        """
        self._refuse_inside_actor("close()")
        with self._lock:
            first = not self._closed
            self._closed = True
        if not first:
            # A second caller returns only once the first has finished closing.
            self._close_done.wait()
            return
        _open_runtimes.discard(self)
        # Actors first (their on_stop may still hand work to the pools), then the
        # blocking jobs, then the dispatcher threads that ran everything, then the clock
        # and the store. Each step runs even if an earlier one failed.
        steps = [
            self._stop_actors,
            self._close_executions,
            self._close_transcripts,
            self._close_replay,
            lambda: self._blocking.shutdown(self._config.stop_timeout_s),
            lambda: self._dispatcher.shutdown(self._config.stop_timeout_s),
            self._release_clock,
            self._store.close,
        ]
        errors: list[BaseException] = []
        try:
            for step in steps:
                try:
                    step()
                except BaseException as error:
                    log.exception("closing runtime on %r: a step failed", self._store.path)
                    errors.append(error)
        finally:
            self._close_done.set()
            log.info("runtime on %r closed", self._store.path)
        if errors:
            raise errors[0]

    def _release_clock(self) -> None:
        detach = getattr(self._clock, "detach", None)
        if detach is not None:
            detach(self._tracker)
        if self._owns_clock:
            self._clock.close()  # type: ignore[attr-defined]

    def _refuse_inside_actor(self, what: str) -> None:
        actor = current_actor()
        if actor is not None and actor.ctx.tracker is self._tracker:
            raise InvalidTransition(
                f"{what} was called from a handler of actor {actor.name}; it would wait for "
                "that handler to finish. Call it from the host's own thread."
            )
        pool = BlockingPool.current()
        if pool is not None and pool is self._blocking:
            raise InvalidTransition(
                f"{what} was called from a run_blocking job; it would wait for that job "
                "to finish. Call it from the host's own thread."
            )
        if pool is not None and pool is getattr(self, "_strategy_pool", None):
            raise InvalidTransition(
                f"{what} was called from a strategy running on the strategy pool; it "
                "would wait for that strategy. Call it from the host's own thread."
            )

    def _stop_actors(self) -> None:
        with self._changed:
            # Spawns under way finish first, so no actor is missed.
            self._changed.wait_for(lambda: not self._starting, timeout=self._config.stop_timeout_s)
            refs = [ref for by_id in self._actors.values() for ref in by_id.values() if ref]
        groups: dict[int, list[GreenroomActorRef]] = defaultdict(list)
        for ref in refs:
            groups[getattr(ref.actor_class, "stop_order", 0)].append(ref)
        for order in sorted(groups):
            with self._lock:
                self._stopping = {
                    (ref.kind, ref.actor_id): None
                    for ref in groups[order]
                    if ref.actor_id in self._actors.get(ref.kind, ())
                }
            for ref in groups[order]:
                ref.stop(block=False)
            with self._changed:
                done = self._changed.wait_for(
                    lambda: not self._stopping, timeout=self._config.stop_timeout_s
                )
                stuck = sorted(f"{kind}:{actor_id}" for kind, actor_id in self._stopping)
                self._stopping = {}
                if not done:
                    self._metrics.incr("actors_abandoned", len(stuck))
                    log.error(
                        "actors did not stop within %g s and were abandoned: %s",
                        self._config.stop_timeout_s,
                        ", ".join(stuck),
                    )

    def _check_open(self) -> None:
        if self._closed:
            raise Stopped(f"runtime on {self._store.path!r} is closed")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self._alive} actors"
        return f"<Runtime {self._store.path!r} {state}>"
