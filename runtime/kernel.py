"""The shared kernel every part's namespace is built on: store, clock, pools, actor lookup.

`Runtime` makes one `Kernel` and hands it to each part's namespace (`Blocks`,
`Executions`, `Transcripts`, `Replay`). The kernel spawns actors and keeps the lookup of
running ones, refuses blocking calls inside handlers (`refuse_inside_actor`, the one
guard), and stops every actor on close.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any, TypeVar

from greenroom.activity import ActivityTracker
from greenroom.actors.base import ActorContext, GreenroomActor, GreenroomActorRef
from greenroom.actors.blocking import BlockingPool
from greenroom.actors.dispatcher import Dispatcher
from greenroom.checks import check_text, shown
from greenroom.clock import Clock
from greenroom.config import RuntimeConfig
from greenroom.errors import InvalidInput, InvalidTransition, NotFound, Stopped, Timeout
from greenroom.futures import refuse_waiting_in_handler
from greenroom.ids import next_hex_id
from greenroom.metrics import Metrics
from greenroom.store import Store

__all__ = ["Kernel", "check_actor_id"]

A = TypeVar("A", bound=GreenroomActor)


def check_actor_id(actor_id: object) -> str:
    """`actor_id` if it is a non-empty str with no NUL and no lone surrogate.

    Ids name actors in logs and errors and some are store ids, where a NUL or a lone
    surrogate would be a bare `ValueError` / `UnicodeEncodeError` later on.
    """
    if not isinstance(actor_id, str):
        raise InvalidInput(f"actor_id must be a non-empty str, got {shown(actor_id)}")
    check_text(actor_id, "actor_id", nonempty=True)
    if "\x00" in actor_id:
        raise InvalidInput(f"actor_id must not hold a NUL character, got {shown(actor_id)}")
    return actor_id


class _Reservation:
    """Holds an actor's place in the lookup while it starts; false, like no actor."""

    __slots__ = ()

    def __bool__(self) -> bool:
        return False


class Kernel:
    """What every part shares: store, clock, config, metrics, pools and running actors."""

    def __init__(self, store: Store, clock: Clock, config: RuntimeConfig) -> None:
        """Wire the kernel; `Runtime.open` makes one."""
        self.store = store
        self.clock = clock
        self.config = config
        self.metrics = Metrics()
        self.tracker = ActivityTracker(describe=self.busy)
        self.dispatcher = Dispatcher(config.dispatcher_threads, config.dispatcher_throughput)
        self.blocking = BlockingPool(config.blocking_threads, self.tracker)
        # A plain lock on the hot paths (spawn, an actor's teardown), whose critical
        # sections call nothing where they can (see greenroom.activity on lock convoys);
        # the condition on the same lock is for waiting (close).
        self.lock = threading.Lock()
        self._changed = threading.Condition(self.lock)
        self._actors: dict[str, dict[str, GreenroomActorRef | _Reservation]] = defaultdict(dict)
        self.alive = 0
        self._starting = 0
        self._stopping: dict[tuple[str, str], None] = {}
        self._leave_waiters = 0
        self.closed = False
        # Pools whose threads must not wait for the runtime (see refuse_inside_actor).
        self._guarded: list[tuple[BlockingPool, str]] = [(self.blocking, "a run_blocking job")]
        # Bound once: every actor's context holds this one method object, not its own.
        self._on_stopped = self._forget

    # -- actors --------------------------------------------------------------------------

    def spawn(
        self, actor_class: type[A], *args: Any, actor_id: str | None = None, **kwargs: Any
    ) -> GreenroomActorRef:
        """Start an actor of `actor_class` and return its ref (see `Runtime.spawn`)."""
        self.check_open()
        if not (isinstance(actor_class, type) and issubclass(actor_class, GreenroomActor)):
            raise InvalidInput(f"spawn takes a GreenroomActor subclass, got {actor_class!r}")
        kind = actor_class.kind
        if actor_id is None:
            actor_id = f"{kind}-{next_hex_id()}"
        else:
            check_actor_id(actor_id)
        with self.lock:
            self.check_open()
            if actor_id in self._actors[kind]:
                raise InvalidTransition(f"a {kind} actor with id {actor_id!r} is already running")
            reservation = _Reservation()
            self._actors[kind][actor_id] = reservation  # reserved while it starts
            self.alive += 1
            self._starting += 1  # close() waits for this, so it never misses an actor
        ctx = ActorContext(
            kind=kind,
            actor_id=actor_id,
            clock=self.clock,
            store=self.store,
            config=self.config,
            metrics=self.metrics,
            tracker=self.tracker,
            dispatcher=self.dispatcher,
            blocking=self.blocking,
            on_stopped=self._on_stopped,
        )
        try:
            ref = actor_class.start(ctx, *args, **kwargs)
        except BaseException:
            self._remove(kind, actor_id)
            with self.lock:
                self._started_one()
            raise
        with self.lock:
            # Only our own reservation: if the actor already stopped (its on_start
            # failed) and another spawn took the id, that newer actor stays.
            if self._actors.get(kind, {}).get(actor_id) is reservation:
                self._actors[kind][actor_id] = ref
            self._started_one()
        self.metrics.incr("actors_started")
        return ref

    def _started_one(self) -> None:
        self._starting -= 1
        if not self._starting:
            self._changed.notify_all()

    def get_actor(self, kind: str, actor_id: str) -> GreenroomActorRef:
        """The running actor (kind, id); `NotFound` when there is none."""
        self.check_open()
        if not isinstance(kind, str) or not isinstance(actor_id, str):
            raise InvalidInput(
                f"get_actor takes a kind and an id (str), got {shown(kind)} and {shown(actor_id)}"
            )
        ref = self.lookup(kind, actor_id)
        if ref is None:
            raise NotFound(f"no running {kind[:100]} actor with id {shown(actor_id)}")
        return ref

    def lookup(self, kind: str, actor_id: str) -> GreenroomActorRef | None:
        """The running actor (kind, id), or None (also while it is still starting)."""
        with self.lock:
            ref = self._actors.get(kind, {}).get(actor_id)
        return ref if ref else None  # type: ignore[return-value]

    def actor_ids(self, kind: str) -> list[str]:
        """The ids of the running actors of `kind`, sorted."""
        self.check_open()
        if not isinstance(kind, str):
            raise InvalidInput(f"actor_ids takes a kind (str), got {shown(kind)}")
        with self.lock:
            return sorted(key for key, ref in self._actors.get(kind, {}).items() if ref)

    def running(self, kind: str) -> int:
        """How many actors of `kind` are running."""
        with self.lock:
            return sum(1 for ref in self._actors.get(kind, {}).values() if ref)

    def _forget(self, actor: GreenroomActor) -> None:
        """Called by an actor's teardown, on a dispatcher thread: drop it from the lookup."""
        self._remove(actor.ctx.kind, actor.ctx.actor_id)
        self.metrics.incr("actors_stopped")

    def _remove(self, kind: str, actor_id: str) -> None:
        key = (kind, actor_id)
        actors = self._actors
        # Subscripts and `in` only: nothing in here is a call (see the lock's comment).
        with self.lock:
            stopping = self._stopping
            if kind in actors:
                by_id = actors[kind]
                if actor_id in by_id:
                    del by_id[actor_id]
                    if not by_id:
                        del actors[kind]
                    self.alive -= 1
            if key in stopping:
                del stopping[key]
                if not stopping:
                    self._changed.notify_all()
            if self._leave_waiters:
                self._changed.notify_all()  # someone waits for an actor to leave

    def wait_for_leave(self, kind: str, actor_id: str, ref: GreenroomActorRef) -> None:
        """Wait until the actor's teardown (after its on_stop) removed `ref` from the lookup."""
        with self._changed:
            self._leave_waiters += 1
            try:
                left = self._changed.wait_for(
                    lambda: self._actors.get(kind, {}).get(actor_id) is not ref,
                    timeout=self.config.stop_timeout_s,
                )
            finally:
                self._leave_waiters -= 1
        if not left:
            raise Timeout(
                f"the previous {kind} actor {actor_id!r} did not stop within "
                f"{self.config.stop_timeout_s:g} s; try again later"
            )

    def wait_for_actor(self, kind: str, actor_id: str) -> GreenroomActorRef:
        """Another thread is spawning this very actor: wait for its ref to land."""
        with self._changed:
            self._changed.wait_for(
                lambda: bool(self._actors.get(kind, {}).get(actor_id)) or not self._starting,
                timeout=self.config.stop_timeout_s,
            )
        return self.get_actor(kind, actor_id)

    def busy(self) -> dict[str, int]:
        """Each busy actor's name with its queued messages (at least 1), and busy jobs."""
        with self.lock:
            refs = [ref for by_id in self._actors.values() for ref in by_id.values() if ref]
        busy = {
            f"{ref.kind}:{ref.actor_id}": len(ref.actor_inbox) or 1  # type: ignore[union-attr]
            for ref in refs
            if ref.actor_inbox.busy  # type: ignore[union-attr]
        }
        busy.update(self.blocking.busy())
        return busy

    # -- the guard -----------------------------------------------------------------------

    def guard_pool(self, pool: BlockingPool, what: str) -> None:
        """Refuse waiting calls on `pool`'s threads too (`what` names them in the error)."""
        self._guarded.append((pool, what))

    def refuse_inside_actor(self, what: str, *, pools: bool = True) -> None:
        """`InvalidTransition` if the caller is a thread the call would wait for.

        Inside one of this runtime's handlers, a call that waits would hold a shared
        dispatcher thread (or wait for itself). With `pools=True` (calls that wait for
        every actor or pool: settle, close, sweep, starting and feeding executions) a
        `run_blocking` job or a plain strategy's thread is refused too; with
        `pools=False` (a call that waits for one actor's answer) those may call.
        """
        refuse_waiting_in_handler(what, "Call it from the host's own thread.")
        pool = BlockingPool.current()
        if pool is None or not pools:
            return
        for guarded, where in self._guarded:
            if pool is guarded:
                raise InvalidTransition(
                    f"{what} was called from {where}; it would wait for itself to finish. "
                    "Call it from the host's own thread."
                )

    # -- closing -------------------------------------------------------------------------

    def check_open(self) -> None:
        """`Stopped` once the runtime is closed."""
        if self.closed:
            raise Stopped(f"runtime on {self.store.path!r} is closed")

    def mark_closed(self) -> bool:
        """Mark the kernel closed; whether this call was the first to do so."""
        with self.lock:
            first = not self.closed
            self.closed = True
        return first

    def stop_actors(self, log: Any) -> None:
        """Stop every actor, in groups by `stop_order`; abandon (and log) the stuck."""
        with self._changed:
            # Spawns under way finish first, so no actor is missed.
            self._changed.wait_for(lambda: not self._starting, timeout=self.config.stop_timeout_s)
            refs = [
                ref
                for by_id in self._actors.values()
                for ref in by_id.values()
                if isinstance(ref, GreenroomActorRef)
            ]
        groups: dict[int, list[GreenroomActorRef]] = defaultdict(list)
        for ref in refs:
            groups[getattr(ref.actor_class, "stop_order", 0)].append(ref)
        for order in sorted(groups):
            with self.lock:
                self._stopping = {
                    (ref.kind, ref.actor_id): None
                    for ref in groups[order]
                    if ref.actor_id in self._actors.get(ref.kind, ())
                }
            for ref in groups[order]:
                ref.stop(block=False)
            with self._changed:
                done = self._changed.wait_for(
                    lambda: not self._stopping, timeout=self.config.stop_timeout_s
                )
                stuck = sorted(f"{kind}:{actor_id}" for kind, actor_id in self._stopping)
                self._stopping = {}
                if not done:
                    self.metrics.incr("actors_abandoned", len(stuck))
                    log.error(
                        "actors did not stop within %g s and were abandoned: %s",
                        self.config.stop_timeout_s,
                        ", ".join(stuck),
                    )
