"""`Runtime`: the facade a host uses; it owns the store, the clock's timers and the actors.

Each part is a namespace on it, built from one shared `Kernel`: `rt.blocks`,
`rt.executions`, `rt.transcripts` and `rt.replay`.
"""

from __future__ import annotations

import atexit
import importlib
import logging
import threading
import weakref
from collections.abc import Callable
from os import PathLike
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import attrs

from greenroom.actors.base import GreenroomActor, GreenroomActorRef
from greenroom.archives import Archives
from greenroom.blocks.namespace import Blocks
from greenroom.checks import check_timeout
from greenroom.clock import Clock, SystemClock, stopwatch
from greenroom.config import RuntimeConfig
from greenroom.errors import InvalidInput, SettleTimeout
from greenroom.executions.namespace import Executions
from greenroom.kernel import Kernel
from greenroom.leases import default_host_id
from greenroom.replay.namespace import Replay
from greenroom.store import Store
from greenroom.transcripts.namespace import Transcripts
from greenroom.urls import is_postgres_url

if TYPE_CHECKING:
    from greenroom.replay.streams import StreamReplay
    from greenroom.store_postgres import PostgresStore

__all__ = ["Runtime"]

log = logging.getLogger("greenroom.runtime")

A = TypeVar("A", bound=GreenroomActor)


def _optional(module: str, name: str) -> Any:
    """`name` from the module of an optional backend, imported when first used: so
    `import greenroom` loads neither psycopg nor redis (about 130 ms, and some 45,000
    objects that Python's cyclic GC would walk at every full collection)."""
    return getattr(importlib.import_module(module), name)


def _stream_replay() -> type[StreamReplay]:
    """`StreamReplay` (the `redis` extra)."""
    found: type[StreamReplay] = _optional("greenroom.replay.streams", "StreamReplay")
    return found


def _postgres_store() -> type[PostgresStore]:
    """`PostgresStore` (the `postgres` extra)."""
    found: type[PostgresStore] = _optional("greenroom.store_postgres", "PostgresStore")
    return found


_open_runtimes: weakref.WeakSet[Runtime] = weakref.WeakSet()


@atexit.register
def _close_forgotten_runtimes() -> None:
    # Actor threads are daemons, so a runtime nobody closed must be closed here, or
    # the interpreter would cut its actors off mid-flush.
    for rt in list(_open_runtimes):
        log.warning("runtime %r was not closed; closing it at interpreter exit", rt.path)
        rt.close()


def _ignore(_result: object) -> None:
    # A close step's result (the threads left running are logged where they are seen).
    return None


class Runtime:
    """A running greenroom: one store, one clock, and the actors on them.

        with Runtime.open("app.db") as rt:
            pane = rt.blocks.get("pane-1")
            first = rt.executions.start(strategy, "topic")
            log = rt.transcripts.create(model="anthropic:claude-sonnet-4-5")
            rt.replay.append("session-1", {"type": "commit"})
            rt.settle()
            print(rt.metrics())

    `close()` (or leaving the `with` block) stops every actor gracefully — each
    handles what was queued before the stop and flushes in `on_stop` — then closes the
    store. Any call after `close()` raises `Stopped`.
    """

    blocks: Blocks
    """Blocks, one per agent pane (`greenroom.blocks.namespace.Blocks`)."""
    executions: Executions
    """Strategies that pause for the host's LLM (`greenroom.executions.namespace`)."""
    transcripts: Transcripts
    """Append-only conversation logs (`greenroom.transcripts.namespace`)."""
    replay: Replay
    """Per-session event buffers with cursors (`greenroom.replay.namespace`)."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        config: RuntimeConfig,
        *,
        owns_clock: bool,
        archives: Archives | None = None,
    ) -> None:
        """Wire a runtime from its parts; use `Runtime.open` instead."""
        if config.host_id is None and store.dialect != "sqlite":
            # One name for this runtime's leases, blocks and executions alike.
            config = attrs.evolve(config, host_id=default_host_id())
        self._kernel = kernel = Kernel(store, clock, config)
        self._owns_clock = owns_clock
        self._close_done = threading.Event()
        self._close_hooks: list[Callable[[], None]] = []
        self.blocks = Blocks(kernel, archives)
        self.executions = Executions(kernel)
        self.transcripts = Transcripts(kernel)
        self.replay = (
            Replay(kernel)
            if config.replay_url is None
            else _stream_replay()(kernel, config.replay_url)
        )
        attach = getattr(clock, "attach", None)
        if attach is not None:
            attach(kernel.tracker)
        _open_runtimes.add(self)

    @classmethod
    def open(
        cls,
        path: str | PathLike[str],
        *,
        clock: Clock | None = None,
        config: RuntimeConfig | None = None,
        archives: Archives | None = None,
    ) -> Runtime:
        """Open the store at `path` (created when new; `":memory:"` for a throwaway), or
        the PostgreSQL database at a `postgresql://` URL (the `postgres` extra; it then
        needs `RuntimeConfig.archive_dir`, a folder every host can reach, or `archives`).

        `clock` defaults to a `SystemClock` the runtime owns and closes; pass a
        `FakeClock` in tests. `config` defaults to `RuntimeConfig()`. `archives` keeps
        the block archives (`greenroom.archives.Archives`); by default a
        `FolderArchives` on `config.archive_dir`.
        """
        if config is None:
            config = RuntimeConfig()
        elif not isinstance(config, RuntimeConfig):
            raise InvalidInput(f"config must be a RuntimeConfig, got {type(config).__name__}")
        if archives is not None and not isinstance(archives, Archives):
            raise InvalidInput(
                f"archives must be a greenroom.archives.Archives (FolderArchives, or one "
                f"of yours with all its methods), got {type(archives).__name__}"
            )
        owns_clock = clock is None
        if clock is None:
            clock = SystemClock()
        else:
            if isinstance(clock, type):
                raise InvalidInput(
                    f"clock must be a Clock instance, got the class {clock.__name__}; "
                    f"pass {clock.__name__}()"
                )
            missing = [
                name
                for name in ("now_ms", "monotonic", "call_later", "call_every")
                if not callable(getattr(clock, name, None))
            ]
            if missing:
                raise InvalidInput(f"clock {clock!r} is not a Clock: it lacks {', '.join(missing)}")
        store: Store
        try:
            if is_postgres_url(path):
                # PostgreSQL (the `postgres` extra): several hosts on one database.
                store = _postgres_store().connect(
                    str(path), now_ms=clock.now_ms, chunk_bytes=config.file_chunk_bytes
                )
            else:
                store = _open_file_store(path, clock, config)
        except BaseException:
            if owns_clock:
                clock.close()  # type: ignore[attr-defined]
            raise
        log.info("runtime opened on %r", store.path)
        try:
            rt = cls(store, clock, config, owns_clock=owns_clock, archives=archives)
        except BaseException:
            # (Redis did not answer, say): nothing was started; let go of what was opened.
            store.close()
            if owns_clock:
                clock.close()  # type: ignore[attr-defined]
            raise
        try:
            if store.list_ids("block"):
                rt.blocks.start_services()  # blocks to sweep: the sweep timer starts now
        except BaseException:
            rt.close()
            raise
        return rt

    # -- properties ----------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The database path the runtime was opened on."""
        return self._kernel.store.path

    @property
    def clock(self) -> Clock:
        """The clock every actor of this runtime reads time from."""
        return self._kernel.clock

    @property
    def config(self) -> RuntimeConfig:
        """The runtime's configuration."""
        return self._kernel.config

    @property
    def store(self) -> Store:
        """The embedded store (objects with metadata, and their files)."""
        self._kernel.check_open()
        return self._kernel.store

    @property
    def closed(self) -> bool:
        """Whether `close()` has been called."""
        return self._kernel.closed

    # -- actors --------------------------------------------------------------------------

    def spawn(
        self, actor_class: type[A], *args: Any, actor_id: str | None = None, **kwargs: Any
    ) -> GreenroomActorRef:
        """Start an actor of `actor_class` (a `GreenroomActor`) and return its ref.

        The actor is constructed as `actor_class(ctx, *args, **kwargs)`. `actor_id`
        defaults to a random one; (kind, id) must not be running already
        (`InvalidTransition`).
        """
        return self._kernel.spawn(actor_class, *args, actor_id=actor_id, **kwargs)

    def get_actor(self, kind: str, actor_id: str) -> GreenroomActorRef:
        """The running actor (kind, id); `NotFound` when there is none."""
        return self._kernel.get_actor(kind, actor_id)

    def actor_ids(self, kind: str) -> list[str]:
        """The ids of the running actors of `kind`, sorted."""
        return self._kernel.actor_ids(kind)

    # -- waiting and watching ------------------------------------------------------------

    def settle(self, timeout: float | None = None) -> None:
        """Wait until every actor has an empty inbox and no running handler (block
        output waiting for `output_commit_delay_s` is committed first).

        Works with any clock (it waits in real time). Raises `SettleTimeout`, naming
        the busy actors, after `timeout` seconds (default `config.settle_timeout_s`).
        Refused (`InvalidTransition`) inside a handler, which would wait for itself.
        """
        kernel = self._kernel
        kernel.check_open()
        kernel.refuse_inside_actor("settle()")
        checked = check_timeout(timeout)
        limit = kernel.config.settle_timeout_s if checked is None else checked
        deadline = stopwatch() + limit
        while True:
            self.blocks.commit_soon()  # (output waiting for its commit delay: now)
            if not kernel.tracker.wait_idle(max(0.0, deadline - stopwatch())):
                raise SettleTimeout(limit, kernel.tracker.busy())
            if not self.blocks.commit_soon():  # (output that came meanwhile: again)
                return

    def metrics(self) -> dict[str, int]:
        """A plain dict of counters and gauges.

        Counters: `actors_started`, `actors_stopped`, `actors_abandoned` (still running
        when `close()` gave up on them), `actor_failures` (a tell whose
        handler raised, or a failing `on_start` / `on_stop` / `on_failure`),
        `actor_start_failures`, `ask_errors` (an ask whose handler raised; the asker got
        the exception), `dead_letters` (messages to stopped actors), `messages_handled`,
        `slow_handlers` (handlers over `slow_handler_warning_s`), `store_commits`,
        `store_plan_faults` (a batch that failed together, yet no write of it alone).
        Gauges: `actors_alive`, `messages_pending`, `dispatcher_threads`,
        `blocking_threads` (started so far), `blocking_queued` (jobs waiting for one).
        """
        kernel = self._kernel
        kernel.check_open()
        counters = {
            "actors_started": 0,
            "actors_stopped": 0,
            "actors_abandoned": 0,
            "actor_failures": 0,
            "actor_start_failures": 0,
            "ask_errors": 0,
            "dead_letters": 0,
            "slow_handlers": 0,
        }
        counters.update(self.blocks.counters())
        counters.update(self.executions.counters())
        counters.update(self.transcripts.counters())
        counters.update(self.replay.counters())
        counters.update(kernel.metrics.snapshot())
        counters.update(kernel.store.stats())
        counters["messages_handled"] = kernel.tracker.handled
        counters["messages_pending"] = sum(kernel.tracker.busy().values())
        counters["actors_alive"] = kernel.alive
        counters["dispatcher_threads"] = kernel.dispatcher.threads
        counters["blocking_threads"] = kernel.blocking.threads
        counters["blocking_queued"] = kernel.blocking.queued
        return counters

    # -- closing -------------------------------------------------------------------------

    def on_close(self, hook: Callable[[], None]) -> None:
        """Have `close()` call `hook` first, before any actor stops (hooks run in the
        order added; one that raises is logged and the close goes on). For what feeds
        the actors from outside, such as the programs `greenroom.processes` runs."""
        self._kernel.check_open()
        self._close_hooks.append(hook)

    def close(self) -> None:
        """Stop every actor gracefully, then close the store. Idempotent.

        Actors stop in groups by their class's `stop_order` (lowest first); each
        handles what was queued before its stop and runs `on_stop`. Actors still
        running after `config.stop_timeout_s` are logged and abandoned.
        """
        kernel = self._kernel
        kernel.refuse_inside_actor("close()")
        if not kernel.mark_closed():
            # A second caller returns only once the first has finished closing.
            self._close_done.wait()
            return
        _open_runtimes.discard(self)
        # The close hooks first: what they stop (programs writing into blocks) still
        # has live actors to write to.
        for hook in self._close_hooks:
            try:
                hook()
            except Exception:
                log.exception("closing runtime on %r: a close hook failed", kernel.store.path)
        # Actors first (their on_stop may still hand work to the pools), then each
        # part's resources, then the blocking jobs, then the dispatcher threads that
        # ran everything, then the clock and the store. Each step runs even if an
        # earlier one failed.
        steps: list[Callable[[], None]] = [
            lambda: kernel.stop_actors(log),
            self.executions.close,
            self.transcripts.close,
            self.replay.close,
            lambda: _ignore(kernel.blocking.shutdown(kernel.config.stop_timeout_s)),
            self.blocks.close,  # (after the archive jobs: their temporaries are gone)
            lambda: _ignore(kernel.dispatcher.shutdown(kernel.config.stop_timeout_s)),
            self._release_clock,
            kernel.store.close,
        ]
        errors: list[BaseException] = []
        try:
            for step in steps:
                try:
                    step()
                except BaseException as error:
                    log.exception("closing runtime on %r: a step failed", kernel.store.path)
                    errors.append(error)
        finally:
            self._close_done.set()
            log.info("runtime on %r closed", kernel.store.path)
        if errors:
            raise errors[0]

    def _release_clock(self) -> None:
        clock = self._kernel.clock
        detach = getattr(clock, "detach", None)
        if detach is not None:
            detach(self._kernel.tracker)
        if self._owns_clock:
            clock.close()  # type: ignore[attr-defined]

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
        state = "closed" if self._kernel.closed else f"{self._kernel.alive} actors"
        return f"<Runtime {self._kernel.store.path!r} {state}>"


def _open_file_store(path: str | PathLike[str], clock: Clock, config: RuntimeConfig) -> Store:
    """The SQLite store at `path` (or in memory), with the config's settings."""
    return Store.open(
        path,
        now_ms=clock.now_ms,
        chunk_bytes=config.file_chunk_bytes,
        synchronous=config.sqlite_synchronous,
        busy_timeout_s=config.sqlite_busy_timeout_s,
        secure_delete=config.sqlite_secure_delete,
        file_mode=config.file_mode,
        dir_mode=config.dir_mode,
    )
