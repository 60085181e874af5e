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

Actors own no thread. They run on the runtime's `Dispatcher`, a few worker threads
shared by every actor (`RuntimeConfig.dispatcher_threads`), a turn of at most
`dispatcher_throughput` messages at a time; see `greenroom.actors.dispatcher` for how one actor
never runs on two threads at once and why its state needs no lock anyway. pykka's
contract holds as with `ThreadingActor`: `tell`, `ask`, `proxy()`, futures,
`on_start` / `on_stop` / `on_failure`, messages in order per sender, one at a time.

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
future, sleep, or wait on a lock held elsewhere: it sends messages and returns. Reply
to an `ask` by returning a value. A handler holds one of the few shared threads that
every other actor needs, and two actors asking each other would deadlock the pool. So:

* `future.get()` on an unresolved future inside a handler raises `InvalidTransition`
  (use `ref.tell`, or `ref.stop(block=False)`, and let answers come back as messages);
* a handler running longer than `RuntimeConfig.slow_handler_warning_s` (100 ms) logs a
  warning naming the actor and the message type, counted as `slow_handlers`;
* work that must block goes to `run_blocking(fn, ..., then=callback)`: it runs on a
  separate bounded pool and `callback(future)` runs back in the actor when it is done.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import attrs
import pykka
from pykka import ActorDeadError, ActorRef
from pykka.messages import ProxyCall, ProxyGetAttr, ProxySetAttr

from greenroom.actors.caller_runs import put_running_here
from greenroom.actors.mailbox import Mailbox, StopFlag, dead_actor_error
from greenroom.actors.messages import START, BlockingDone, Start, describe_message
from greenroom.clock import stopwatch
from greenroom.errors import GreenroomError, InvalidTransition
from greenroom.futures import GreenroomFuture, in_handler
from greenroom.pykka_internals import ActorStop, Envelope

if TYPE_CHECKING:
    from greenroom.activity import ActivityTracker
    from greenroom.actors.blocking import BlockingPool
    from greenroom.actors.dispatcher import Dispatcher
    from greenroom.clock import Clock, TimerHandle
    from greenroom.config import RuntimeConfig
    from greenroom.metrics import Metrics
    from greenroom.store import Store

__all__ = [
    "DEFERRED",
    "ActorContext",
    "GreenroomActor",
    "GreenroomActorRef",
    "Reply",
    "current_actor",
    "describe_message",
]

log = logging.getLogger("greenroom.actors")


def current_actor() -> GreenroomActor | None:
    """The actor whose handler is running on this thread, or `None` outside actors."""
    return getattr(in_handler, "actor", None)


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
    dispatcher: Dispatcher
    blocking: BlockingPool
    on_stopped: Callable[[GreenroomActor], None]


class _Deferred:
    """Returned by a handler that answers its ask later (see `reply_later`)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DEFERRED"


DEFERRED: Any = _Deferred()


class Reply:
    """The answer to an ask, given later: `set(value)` or `fail(error)`, once."""

    __slots__ = ("_future",)

    def __init__(self, future: pykka.Future[Any]) -> None:
        self._future = future

    def set(self, value: Any = None) -> None:
        """Answer with `value`; ignored if already answered."""
        with contextlib.suppress(queue.Full):
            self._future.set(value)

    def fail(self, error: BaseException) -> None:
        """Answer with `error` (raised to the asker); ignored if already answered."""
        with contextlib.suppress(queue.Full):
            self._future.set_exception((type(error), error, error.__traceback__))


_INTERNAL_MESSAGES = frozenset({ProxyCall, ProxyGetAttr, ProxySetAttr, BlockingDone})
_urn_counter = itertools.count(1)


class GreenroomActorRef(ActorRef[Any]):
    """pykka's `ActorRef`, plus the actor's kind and id; counts dead letters once."""

    actor_inbox: Mailbox  # type: ignore[assignment]  # greenroom's mailbox stands in for pykka's
    actor_stopped: StopFlag  # type: ignore[assignment]

    def __init__(self, actor: GreenroomActor) -> None:
        # pykka's `ActorRef.__init__` is not called: it would keep a weakref per actor
        # (see `_actor_weakref`). It sets these four, and nothing else (checked on
        # import by `greenroom.pykka_internals.check`).
        self.actor_class = type(actor)
        self.actor_urn = actor.actor_urn
        self.actor_inbox = actor.actor_inbox
        self.actor_stopped = actor.actor_stopped
        self.kind = actor.ctx.kind
        self.actor_id = actor.ctx.actor_id
        self._name = actor.name
        self._metrics = actor.ctx.metrics
        self._caller_runs = actor.ctx.config.caller_runs

    def _actor_weakref(self) -> GreenroomActor | None:  # type: ignore[override]
        """The actor until it stops, then `None`: what pykka's weakref to it gives (its
        proxies call this), without the weakref. The mailbox holds the actor from its
        making until it stops, so a ref kept by a host keeps no stopped actor alive."""
        actor = self.actor_inbox.runnable
        return actor if isinstance(actor, GreenroomActor) else None

    def tell(self, message: Any) -> None:
        """Send without waiting; `ActorDeadError` (counted) if the actor has stopped."""
        if self.actor_stopped.is_set():
            self._metrics.incr("dead_letters")
            raise dead_actor_error(self._name)
        if type(message) is Envelope:
            message = Envelope(message)  # a bare message in the mailbox is never an Envelope
        if not self.actor_inbox.put(message):
            raise dead_actor_error(self._name)

    def ask(self, message: Any, *, block: bool = True, timeout: float | None = None) -> Any:
        """Send and get the reply (or a future with `block=False`); see pykka.

        To a stopped actor the reply is `ActorDeadError` (counted as a dead letter). An
        ask that waits with no timeout for an idle actor runs the actor's turn on the
        calling thread (`RuntimeConfig.caller_runs`, see `greenroom.actors.caller_runs`).
        """
        if block and timeout is None:
            return self.ask_here(message).get()
        future: GreenroomFuture[Any] = GreenroomFuture()
        envelope = Envelope(message, reply_to=future)
        if self.actor_stopped.is_set():
            self.actor_inbox.dead_letter(envelope)
        else:
            self.actor_inbox.put(envelope)
        if block:
            return future.get(timeout=timeout)
        return future

    def ask_here(self, message: Any) -> GreenroomFuture[Any]:
        """Send an ask whose answer the caller is about to wait for; return its future.

        If the actor is idle, its turn runs on this thread first (when
        `RuntimeConfig.caller_runs` allows, see `greenroom.actors.caller_runs`), so the future is
        usually resolved on return; otherwise this is `ask(message, block=False)`.
        """
        future: GreenroomFuture[Any] = GreenroomFuture()
        envelope = Envelope(message, reply_to=future)
        if self.actor_stopped.is_set():
            self.actor_inbox.dead_letter(envelope)
        elif self._caller_runs:
            put_running_here(self.actor_inbox, envelope)
        else:
            self.actor_inbox.put(envelope)
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

    turn_throughput: ClassVar[int | None] = None
    """Messages per turn for this class instead of `dispatcher_throughput` (for actors
    that serve many others, such as a writer every block sends to)."""

    actor_ref: GreenroomActorRef
    actor_inbox: Mailbox  # type: ignore[assignment]  # greenroom's mailbox stands in for pykka's
    actor_stopped: StopFlag  # type: ignore[assignment]

    def __init__(self, ctx: ActorContext) -> None:
        # pykka.Actor.__init__ is not called: it would give every actor a uuid4 and a
        # threading.Event, both costly at 100,000 actors. The same fields are set here.
        self.ctx = ctx
        self.name = f"{ctx.kind}:{ctx.actor_id}"
        self.actor_urn = f"urn:greenroom:{next(_urn_counter)}"
        self.actor_inbox = self._create_actor_inbox()
        # The mailbox is a `StopFlag` too: one object fewer per actor.
        self.actor_stopped = self.actor_inbox
        self._timers: set[TimerHandle] | None = None
        self._reply_to: pykka.Future[Any] | None = None
        self._stop_replies: list[pykka.Future[Any]] | None = None  # made by a stop ask
        self._actor_ref = GreenroomActorRef(self)

    # pykka's hooks for new execution models ------------------------------------------

    def _create_actor_inbox(self) -> Mailbox:  # type: ignore[override]
        ctx = self.ctx
        return Mailbox(self.name, ctx.tracker, ctx.metrics, ctx.dispatcher, self)

    @staticmethod
    def _create_future() -> GreenroomFuture[Any]:
        return GreenroomFuture()

    @classmethod
    def start(cls, *args: Any, **kwargs: Any) -> GreenroomActorRef:
        """Create and start the actor; use `Runtime.spawn` rather than calling this.

        Unlike pykka, the actor is not put in pykka's global `ActorRegistry` (a list
        with O(N) removal): the runtime keeps its own lookup by kind and id. Start-up
        (`on_start`, run on a dispatcher thread before any message) counts as work in
        progress, so a settle waits for it.
        """
        actor = cls(*args, **kwargs)
        actor._start_actor_loop()
        return actor.actor_ref

    def _start_actor_loop(self) -> None:
        if type(self).on_start is pykka.Actor.on_start:
            self.actor_inbox.open(self)  # nothing to run first: no turn, no wake-up
        else:
            self.actor_inbox.start(self, START)

    # a turn on the dispatcher ------------------------------------------------------------

    def run_turn(self, throughput: int) -> None:
        """Handle up to `throughput` queued messages; called by a dispatcher worker, or
        by a thread waiting for this actor's answer (see `greenroom.actors.caller_runs`)."""
        mailbox = self.actor_inbox
        slow_s = self.ctx.config.slow_handler_warning_s
        batch: list[Any] = []
        index = 0
        stopped = False
        try:
            # Inside the try: on a caller's thread (see actors.caller_runs) nothing may
            # leave the marker set, or that thread could never wait on a future again.
            in_handler.actor = self
            batch = mailbox.take(self.turn_throughput or throughput)
            began = stopwatch() if slow_s is not None else 0.0
            for index, item in enumerate(batch):  # noqa: B007 (index is used below)
                if type(item) is Envelope:
                    stopped = self._handle_message(item.message, item.reply_to)
                else:
                    stopped = self._handle_message(item, None)
                if slow_s is not None:
                    # One clock read per message: each one's end is the next one's start.
                    ended = stopwatch()
                    if ended - began > slow_s:
                        self._report_slow(item, ended - began, slow_s)
                        ended = stopwatch()  # the report's own time is nobody's handler
                    began = ended
                if stopped:
                    break
        except BaseException as error:
            # Handlers' errors are caught in _handle_message; this is a BaseException
            # escaping a hook (on_start, on_failure). Stop rather than leave the actor
            # scheduled forever.
            log.critical(
                "actor %s (%s) stops: %s escaped its hooks",
                self.name,
                type(self).__name__,
                type(error).__name__,
                exc_info=True,
                extra=self._log_extra(),
            )
            self.ctx.metrics.incr("actor_failures")
            self._stop()
            stopped = True
        finally:
            in_handler.actor = None
        if stopped:
            self._teardown(batch[index + 1 :], handled=index + 1)
            return
        if mailbox.end_turn(len(batch)):
            self.ctx.dispatcher.schedule(self)  # to the back of the run queue

    def _report_slow(self, item: Any, took: float, limit: float) -> None:
        message = item.message if type(item) is Envelope else item
        self.ctx.metrics.incr("slow_handlers")
        log.warning(
            "actor %s (%s) took %.3f s handling %s (slow_handler_warning_s is %g): a "
            "handler holds a shared dispatcher thread, so it must not block; move "
            "blocking work to run_blocking()",
            self.name,
            type(self).__name__,
            took,
            "on_start" if message is START else describe_message(message),
            limit,
            extra=self._log_extra(),
        )

    def _run_on_start(self) -> bool:
        """Run `on_start`; whether it failed (and the actor is stopped)."""
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
            return True
        return False

    def _handle_receive(self, message: Any) -> Any:
        if type(message) is BlockingDone:
            return message.then(message.future)
        return super()._handle_receive(message)

    def _handle_message(self, message: Any, reply_to: pykka.Future[Any] | None) -> bool:
        """Handle one message and answer its asker; whether the actor has now stopped."""
        cls = type(message)
        if cls is Start:
            return self._run_on_start()
        if cls is ActorStop:
            self._stop()
            if reply_to is not None:
                # Answered after teardown, so a blocking stop() returns only once the
                # actor has answered its leftovers and left the runtime's lookup.
                self._add_stop_reply(reply_to)
            return True
        self._reply_to = reply_to
        try:
            # Plain messages go straight to on_receive; proxy calls through pykka.
            if cls in _INTERNAL_MESSAGES:
                result = self._handle_receive(message)
            else:
                result = self.on_receive(message)
        except Exception:
            if reply_to is not None:
                self._reply_to = None
                self._report_ask_error(message, sys.exc_info())
                reply_to.set_exception()
            else:
                self._report_failure(message, sys.exc_info())
            return False
        except BaseException:
            # KeyboardInterrupt, SystemExit and the like: stop this actor (not every
            # actor of the process, as pykka would), keeping the asker informed.
            exc_info = sys.exc_info()
            self._reply_to = None
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
            return True
        if reply_to is not None:
            # Let go of it: an idle actor would otherwise keep its last asker's future
            # (and the answer in it) until its next ask.
            self._reply_to = None
            if result is not DEFERRED:
                reply_to.set(result)
        return False

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

    def abandon(self) -> None:
        """Answer all mail with `ActorDeadError`: the dispatcher is shut down (the actor
        was abandoned by `Runtime.close()` and its handler returned only afterwards)."""
        self.actor_stopped.set()
        self._teardown([], handled=0)

    def _teardown(self, unhandled: list[Any], *, handled: int) -> None:
        """After the stop: answer what is left, leave the runtime, end the last turn."""
        self.actor_stopped.set()
        self._cancel_timers()
        try:
            rescued = 0
            for item in unhandled + self.actor_inbox.close():
                if type(item) is Envelope and isinstance(item.message, ActorStop):
                    if item.reply_to is not None:
                        self._add_stop_reply(item.reply_to)
                elif isinstance(item, ActorStop):
                    pass  # a told stop to an actor already stopping: nothing to answer
                elif self._rescued(item):
                    rescued += 1
                else:
                    self.actor_inbox.dead_letter(item)
            if rescued:
                self._unhandled_end()
            self.ctx.on_stopped(self)
        finally:
            replies, self._stop_replies = self._stop_replies, None
            for reply in replies or ():
                reply.set(None)
            # Last, so a settle never sees a stopping actor as idle.
            self.ctx.tracker.leave(handled)

    def _add_stop_reply(self, reply: pykka.Future[Any]) -> None:
        """Answer `reply` (a stop's asker) once the teardown is over."""
        if self._stop_replies is None:
            self._stop_replies = []
        self._stop_replies.append(reply)

    def on_unhandled(self, message: Any) -> bool:
        """A tell still queued when the actor stopped: `True` if handled here, else it
        is a dead letter (counted and logged). Override to keep what must not be lost;
        runs after `on_stop`, so it must not schedule timers or expect more mail."""
        return False

    def on_unhandled_end(self) -> None:
        """Called once after `on_unhandled` kept one or more tells (to finish them
        together, such as one store write for them all); the same rules apply."""

    def _unhandled_end(self) -> None:
        try:
            self.on_unhandled_end()
        except Exception:
            self.ctx.metrics.incr("actor_failures")
            log.exception("on_unhandled_end of actor %s raised", self.name, extra=self._log_extra())

    def _rescued(self, item: Any) -> bool:
        if type(item) is Envelope:
            return False  # an ask: its caller gets ActorDeadError and may send it again
        try:
            return self.on_unhandled(item)
        except Exception:
            self.ctx.metrics.incr("actor_failures")
            log.exception("on_unhandled of actor %s raised", self.name, extra=self._log_extra())
            return False

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
        if self._timers is None:
            self._timers = set()
        elif len(self._timers) >= 64:
            # Fired one-shots and cancelled timers need no cancelling at stop.
            self._timers = {timer for timer in self._timers if timer.active}
        self._timers.add(handle)
        return handle

    # answering later ------------------------------------------------------------------

    def reply_later(self) -> Reply:
        """Answer the ask being handled later, from another handler; return `DEFERRED`.

        For an answer that needs work done elsewhere first (a blocking job, another
        actor): keep the `Reply`, return `DEFERRED` from the handler, and call
        `reply.set(value)` or `reply.fail(error)` when the answer is known.

            def archive(self):
                reply = self.reply_later()
                self.run_blocking(compress, then=lambda f: self._done(f, reply))
                return DEFERRED
        """
        if self._reply_to is None:
            raise InvalidTransition(f"actor {self.name} is not handling an ask; nothing to answer")
        return Reply(self._reply_to)

    # blocking work ---------------------------------------------------------------------

    def run_blocking(
        self,
        fn: Callable[..., Any],
        /,
        *args: Any,
        then: Callable[[GreenroomFuture[Any]], object] | None = None,
        **kwargs: Any,
    ) -> GreenroomFuture[Any]:
        """Run `fn(*args, **kwargs)` on the blocking pool, off the dispatcher threads.

        Returns the job's future at once. With `then`, `then(future)` runs later in
        this actor, as a message, once the job is done: the future is resolved by then,
        so `future.get()` there returns (or raises the job's error) without waiting.

            def on_export(self, path):
                self.run_blocking(copy_big_file, path, then=self._exported)

            def _exported(self, future):
                self.exported_bytes = future.get()
        """
        on_done = None
        if then is not None:

            def on_done(future: GreenroomFuture[Any]) -> None:
                self._tell_self(BlockingDone(then, future))

        return self.ctx.blocking.submit(fn, *args, on_done=on_done, **kwargs)

    def _tell_self(self, message: Any) -> None:
        try:
            self.actor_ref.tell(message)
        except ActorDeadError:
            log.debug("timer message for stopped actor %s dropped (counted)", self.name)

    def _cancel_timers(self) -> None:
        timers, self._timers = self._timers, None
        for handle in timers or ():
            handle.cancel()

    def __str__(self) -> str:
        return f"{type(self).__name__}({self.name})"
