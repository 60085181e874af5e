"""`GreenroomActor`: the base of every greenroom actor, on top of pykka.

An actor owns its state and handles one message at a time, so the state needs no lock.
The runtime starts actors with `Runtime.spawn(ActorClass, ...)`, which hands each one
an `ActorContext` (its kind and id, the clock, the store, the config, the metrics).

    class Counter(GreenroomActor):
        kind = "counter"

        def __init__(self, ctx: ActorContext) -> None:
            super().__init__(ctx)
            self.count = 0

        def add(self, n: int) -> int:
            self.count += n
            return self.count

    ref = rt.spawn(Counter, actor_id="c1")
    ref.proxy().add(2).get()  # 2

What the base adds to pykka's contract:

* **Settle.** Every message queued is counted until handled, so `Runtime.settle()`
  and `FakeClock.advance()` can wait until every actor is idle.
* **A failing tell does not stop the actor.** pykka would stop it and lose its state.
  Here the failure is logged through `logging` (logger `greenroom.actors`, naming the
  actor's kind and id and the message), counted in `Runtime.metrics()` as
  `actor_failures`, passed to `on_failure`, and the actor goes on with its next
  message. An `ask` (or proxy call) whose handler raises hands the exception to the
  asker instead; it is still logged (INFO for greenroom's own errors, which are
  answers such as `NotFound`; WARNING with the traceback for anything else, so a proxy
  call whose future nobody reads does not fail in silence) and counted as
  `ask_errors`. Only a failure in `on_start` stops the actor.
* **Dead letters are counted.** A message to a stopped actor raises `ActorDeadError`
  to the sender (a tell) or through the future (an ask); one that was still queued
  when the actor stopped is answered with `ActorDeadError` and logged. Both count as
  `dead_letters`.
* **Timers that die with the actor.** `schedule_once` and `schedule_every` send the
  actor a message on the runtime clock, and are cancelled when it stops (scheduling
  from `on_stop` is refused).
* **`current_actor()`** tells whether code runs inside a handler; the runtime uses it
  to refuse `close()` and `settle()` there, since both would wait for that handler.

**The rule for handlers: never block.** A handler must not wait on another actor's
future (`.get()`), sleep, or wait on a lock held elsewhere: it sends messages and
returns. Reply to an `ask` by returning a value. This keeps the execution model free to
run many actors on a few shared threads instead of one thread each; a handler that
blocks there would hold a thread that every other actor needs, and two actors asking
each other would deadlock.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import attrs
import pykka
from pykka import ActorDeadError, ActorRef
from pykka._envelope import Envelope
from pykka.messages import ProxyCall, ProxyGetAttr, ProxySetAttr, _ActorStop

from runtime.errors import GreenroomError, InvalidTransition

if TYPE_CHECKING:
    from runtime.activity import ActivityTracker
    from runtime.clock import Clock, TimerHandle
    from runtime.config import RuntimeConfig
    from runtime.metrics import Metrics
    from runtime.store import Store

__all__ = ["ActorContext", "GreenroomActor", "GreenroomActorRef", "current_actor"]

log = logging.getLogger("greenroom.actors")

_local = threading.local()


def current_actor() -> GreenroomActor | None:
    """The actor whose handler is running on this thread, or `None` outside actors."""
    return getattr(_local, "actor", None)


@attrs.frozen
class ActorContext:
    """What the runtime hands an actor it starts: identity and shared services."""

    kind: str
    actor_id: str
    clock: Clock
    store: Store
    config: RuntimeConfig
    metrics: Metrics
    tracker: ActivityTracker
    on_stopped: Callable[[GreenroomActor], None]


def describe_message(message: Any) -> str:
    """A short, log-safe description of a message (its type or the proxied call)."""
    if isinstance(message, ProxyCall):
        return f"call {'.'.join(message.attr_path)}()"
    if isinstance(message, ProxyGetAttr | ProxySetAttr):
        return f"{type(message).__name__} {'.'.join(message.attr_path)}"
    return type(message).__name__


def _dead(name: str) -> ActorDeadError:
    return ActorDeadError(f"actor {name} is stopped; the message was not delivered")


class _TrackedInbox:
    """An inbox that counts every queued message for settle and closes on stop.

    Once closed (the actor has stopped), `put` refuses the message: it is answered
    with `ActorDeadError` and counted as a dead letter, instead of waiting forever in a
    queue nobody reads. The inbox holds no reference to its actor, so a ref kept by a
    host does not keep a stopped actor's state alive.
    """

    __slots__ = ("_closed", "_lock", "_metrics", "_name", "_queue", "_tracker")

    def __init__(self, name: str, tracker: ActivityTracker, metrics: Metrics) -> None:
        self._name = name
        self._tracker = tracker
        self._metrics = metrics
        self._queue: queue.SimpleQueue[Envelope[Any]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False

    def put(self, envelope: Envelope[Any], /) -> bool:
        """Queue the envelope; `False` (after answering it as dead) once closed."""
        with self._lock:
            if not self._closed:
                self._tracker.enter(self._name)
                self._queue.put(envelope)
                return True
        self.dead_letter(envelope)
        return False

    def get(self) -> Envelope[Any]:
        return self._queue.get()

    def empty(self) -> bool:
        return self._queue.empty()

    def close(self) -> list[Envelope[Any]]:
        """Refuse further messages; return what was still queued."""
        with self._lock:
            self._closed = True
            drained = []
            while True:
                try:
                    drained.append(self._queue.get_nowait())
                except queue.Empty:
                    return drained

    def dead_letter(self, envelope: Envelope[Any]) -> None:
        """Answer a message the actor will never handle, and count it (stops excepted)."""
        # Asking a stopped actor to stop loses nothing: it is not counted or logged, but
        # still answered ActorDeadError, so pykka's stop() reports False as usual.
        if not isinstance(envelope.message, _ActorStop):
            self._metrics.incr("dead_letters")
            log.warning(
                "actor %s is stopped; %s was not delivered (ActorDeadError)",
                self._name,
                describe_message(envelope.message),
            )
        if envelope.reply_to is not None:
            error = _dead(self._name)
            envelope.reply_to.set_exception(exc_info=(ActorDeadError, error, None))


class GreenroomActorRef(ActorRef[Any]):
    """pykka's `ActorRef`, plus the actor's kind and id; counts dead letters once."""

    actor_inbox: _TrackedInbox

    def __init__(self, actor: GreenroomActor) -> None:
        super().__init__(actor)
        self.kind = actor.ctx.kind
        self.actor_id = actor.ctx.actor_id
        self._name = actor.name
        self._metrics = actor.ctx.metrics

    def tell(self, message: Any) -> None:
        """Send without waiting; `ActorDeadError` (counted) if the actor has stopped."""
        if not self.is_alive():
            self._metrics.incr("dead_letters")
            raise _dead(self._name)
        if not self.actor_inbox.put(Envelope(message)):
            raise _dead(self._name)

    def ask(self, message: Any, *, block: bool = True, timeout: float | None = None) -> Any:
        """Send and get the reply (or a future with `block=False`); see pykka.

        To a stopped actor the reply is `ActorDeadError` (counted as a dead letter).
        """
        future = self.actor_class._create_future()
        envelope = Envelope(message, reply_to=future)
        if self.is_alive():
            self.actor_inbox.put(envelope)
        else:
            self.actor_inbox.dead_letter(envelope)
        if block:
            return future.get(timeout=timeout)
        return future

    def __repr__(self) -> str:
        return f"<GreenroomActorRef {self.kind}:{self.actor_id}>"


class GreenroomActor(pykka.Actor):
    """Base class of every greenroom actor; see the module docstring for the rules.

    Subclasses set `kind`, take an `ActorContext` as their first constructor argument
    and pass it to `super().__init__(ctx)`. Handlers never block (see above).
    """

    kind: ClassVar[str] = "actor"
    """The actor's kind: with its id, the key the runtime finds it by."""

    stop_order: ClassVar[int] = 0
    """`Runtime.close()` stops lower orders first, each group fully before the next."""

    use_daemon_thread: ClassVar[bool] = True
    """Threads are daemons so a forgotten runtime cannot hang interpreter exit."""

    actor_ref: GreenroomActorRef  # type: ignore[assignment]

    def __init__(self, ctx: ActorContext) -> None:
        self.ctx = ctx
        self.name = f"{ctx.kind}:{ctx.actor_id}"
        self._timers: set[TimerHandle] = set()
        self._stop_replies: list[pykka.Future[Any]] = []
        super().__init__()
        self._actor_ref = GreenroomActorRef(self)

    # pykka's hooks for new execution models ------------------------------------------

    def _create_actor_inbox(self) -> _TrackedInbox:  # type: ignore[override]
        return _TrackedInbox(self.name, self.ctx.tracker, self.ctx.metrics)

    @staticmethod
    def _create_future() -> pykka.Future[Any]:
        return pykka.ThreadingFuture()

    @classmethod
    def start(cls, *args: Any, **kwargs: Any) -> GreenroomActorRef:
        """Create and start the actor; use `Runtime.spawn` rather than calling this.

        Unlike pykka, the actor is not put in pykka's global `ActorRegistry` (a list
        with O(N) removal): the runtime keeps its own lookup by kind and id. Start-up
        (`on_start`) counts as work in progress, so a settle waits for it.
        """
        actor = cls(*args, **kwargs)
        tracker = actor.ctx.tracker
        tracker.enter(actor.name)
        try:
            actor._start_actor_loop()
        except BaseException:
            tracker.leave(actor.name, handled=False)
            raise
        return actor.actor_ref

    def _start_actor_loop(self) -> None:
        thread = threading.Thread(
            target=self._actor_loop, name=f"greenroom-{self.name}", daemon=self.use_daemon_thread
        )
        thread.start()

    # the loop --------------------------------------------------------------------------

    def _actor_loop(self) -> None:
        _local.actor = self
        tracker = self.ctx.tracker
        try:
            started = self._run_on_start()
            tracker.leave(self.name)  # start-up is done
            while started and not self.actor_stopped.is_set():
                envelope = self.actor_inbox.get()
                try:
                    self._handle_envelope(envelope)
                finally:
                    tracker.leave(self.name)
        finally:
            self._teardown()
            _local.actor = None

    def _run_on_start(self) -> bool:
        try:
            self.on_start()
        except Exception:
            exc_info = sys.exc_info()
            self.ctx.metrics.incr("actor_failures")
            self.ctx.metrics.incr("actor_start_failures")
            log.error(
                "actor %s (%s) failed to start and is stopped",
                self.name,
                type(self).__name__,
                exc_info=exc_info,
                extra=self._log_extra(),
            )
            self._call_on_failure(exc_info)
            self.actor_stopped.set()
            self._cancel_timers()
            return False
        return True

    def _handle_envelope(self, envelope: Envelope[Any]) -> None:
        message = envelope.message
        reply_to = envelope.reply_to
        if isinstance(message, _ActorStop):
            self._stop()
            if reply_to is not None:
                # Answered after teardown, so a blocking stop() returns only once the
                # actor has answered its leftovers and left the runtime's lookup.
                self._stop_replies.append(reply_to)
            return
        try:
            result = self._handle_receive(message)
        except Exception:
            if reply_to is not None:
                self._report_ask_error(message, sys.exc_info())
                reply_to.set_exception()
            else:
                self._report_failure(message, sys.exc_info())
        except BaseException:
            # KeyboardInterrupt, SystemExit and the like: stop this actor (not every
            # actor of the process, as pykka would), keeping the asker informed.
            exc_info = sys.exc_info()
            self.ctx.metrics.incr("actor_failures")
            log.critical(
                "actor %s (%s) stops: %s while handling %s",
                self.name,
                type(self).__name__,
                type(exc_info[1]).__name__,
                describe_message(message),
                exc_info=exc_info,
                extra=self._log_extra(),
            )
            if reply_to is not None:
                reply_to.set_exception(exc_info)
            self._call_on_failure(exc_info)
            self._stop()
        else:
            if reply_to is not None:
                reply_to.set(result)

    def _report_failure(self, message: Any, exc_info: Any) -> None:
        self.ctx.metrics.incr("actor_failures")
        log.error(
            "actor %s (%s) failed handling %s; it goes on with its next message",
            self.name,
            type(self).__name__,
            describe_message(message),
            exc_info=exc_info,
            extra=self._log_extra(),
        )
        self._call_on_failure(exc_info)

    def _report_ask_error(self, message: Any, exc_info: Any) -> None:
        # The asker gets the exception; still log it, since a proxy call whose future
        # nobody reads would otherwise fail in silence. Greenroom's own errors are
        # answers (NotFound, InvalidInput, ...), so they get a quieter line.
        self.ctx.metrics.incr("ask_errors")
        error = exc_info[1]
        expected = isinstance(error, GreenroomError)
        log.log(
            logging.INFO if expected else logging.WARNING,
            "actor %s (%s) answered %s with %s: %s",
            self.name,
            type(self).__name__,
            describe_message(message),
            type(error).__name__,
            error,
            exc_info=None if expected else exc_info,
            extra=self._log_extra(),
        )

    def _call_on_failure(self, exc_info: Any) -> None:
        try:
            self.on_failure(*exc_info)
        except Exception:
            self.ctx.metrics.incr("actor_failures")
            log.exception("on_failure of actor %s raised", self.name, extra=self._log_extra())

    def _stop(self) -> None:
        """Stop handling messages: cancel timers, then run `on_stop`."""
        if self.actor_stopped.is_set():
            return
        self.actor_stopped.set()
        self._cancel_timers()
        try:
            self.on_stop()
        except BaseException:
            self.ctx.metrics.incr("actor_failures")
            log.exception("on_stop of actor %s raised", self.name, extra=self._log_extra())

    def _teardown(self) -> None:
        self.actor_stopped.set()
        self._cancel_timers()
        tracker = self.ctx.tracker
        for envelope in self.actor_inbox.close():
            try:
                if isinstance(envelope.message, _ActorStop) and envelope.reply_to is not None:
                    self._stop_replies.append(envelope.reply_to)
                else:
                    self.actor_inbox.dead_letter(envelope)
            finally:
                tracker.leave(self.name, handled=False)
        try:
            self.ctx.on_stopped(self)
        finally:
            for reply in self._stop_replies:
                reply.set(None)
            self._stop_replies.clear()

    def _log_extra(self) -> dict[str, str]:
        return {"actor_kind": self.ctx.kind, "actor_id": self.ctx.actor_id}

    # timers ------------------------------------------------------------------------------

    def schedule_once(self, delay_s: float, message: Any) -> TimerHandle:
        """Tell this actor `message` after `delay_s` seconds of the runtime clock."""
        return self._keep(self.ctx.clock.call_later(delay_s, lambda: self._tell_self(message)))

    def schedule_every(
        self, interval_s: float, message: Any, *, first_after_s: float | None = None
    ) -> TimerHandle:
        """Tell this actor `message` every `interval_s` seconds until it stops."""
        handle = self.ctx.clock.call_every(
            interval_s, lambda: self._tell_self(message), first_after_s=first_after_s
        )
        return self._keep(handle)

    def _keep(self, handle: TimerHandle) -> TimerHandle:
        if self.actor_stopped.is_set():
            handle.cancel()
            raise InvalidTransition(f"actor {self.name} is stopped; it schedules no timers")
        if len(self._timers) >= 64:
            # Fired one-shots and cancelled timers need no cancelling at stop.
            self._timers = {timer for timer in self._timers if timer.active}
        self._timers.add(handle)
        return handle

    def _tell_self(self, message: Any) -> None:
        try:
            self.actor_ref.tell(message)
        except ActorDeadError:
            log.debug("timer message for stopped actor %s dropped (counted)", self.name)

    def _cancel_timers(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()

    def __str__(self) -> str:
        return f"{type(self).__name__}({self.name})"
