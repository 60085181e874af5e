"""`Mailbox`: an actor's inbox that hands the actor to the dispatcher when mail arrives.

The mailbox is where the one-thread-at-a-time rule is kept. Its `scheduled` flag is
true from the moment the actor is queued on the dispatcher until a worker finds the
mailbox empty, so the actor is in the run queue or on a worker at most once, whatever
the number of senders. Every step that moves that flag (put, take, end of turn) holds
the mailbox's lock.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import TYPE_CHECKING, Any

from pykka import ActorDeadError

from greenroom.actors.messages import describe_message
from greenroom.pykka_internals import ActorStop, Envelope

if TYPE_CHECKING:
    from greenroom.activity import ActivityTracker
    from greenroom.actors.dispatcher import Dispatcher, Runnable
    from greenroom.metrics import Metrics

__all__ = ["Mailbox", "StopFlag", "dead_actor_error"]

log = logging.getLogger("greenroom.actors")

_first_lock = threading.Lock()  # taken only when a closed mailbox is drained
_flag_lock = threading.Lock()  # taken when a stop flag is set or waited on


def dead_actor_error(name: str) -> ActorDeadError:
    """The `ActorDeadError` a message to the stopped actor `name` is answered with."""
    return ActorDeadError(f"actor {name} is stopped; the message was not delivered")


class StopFlag:
    """An actor's stopped flag: `threading.Event`'s interface at a fraction of its size.

    pykka exposes it as `actor_stopped`; an `Event` costs a condition and a lock per
    actor, while almost every caller only asks `is_set()`. The event is made only for
    a caller that waits. A `Mailbox` is one (`GreenroomActor.actor_stopped` is its
    mailbox), so an actor does not pay for one more object.
    """

    __slots__ = ("_event", "_set")

    def __init__(self) -> None:
        self._set = False
        self._event: threading.Event | None = None

    def is_set(self) -> bool:
        """Whether the actor has stopped."""
        return self._set

    def set(self) -> None:
        """Mark the actor stopped and wake any waiter."""
        with _flag_lock:
            self._set = True
            event = self._event
        if event is not None:
            event.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the actor has stopped; whether it had within `timeout` seconds."""
        with _flag_lock:
            if self._set:
                return True
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        return event.wait(timeout)


class Mailbox(StopFlag):
    """A FIFO of messages for one actor that hands the actor to the dispatcher.

    Items are bare messages (a `tell`) or pykka `Envelope`s (an `ask`, which carries
    the future to answer). Once closed (the actor has stopped), `put` refuses the
    message: it is answered with `ActorDeadError` and counted as a dead letter, instead
    of waiting forever in a queue nobody reads. Closing also drops the mailbox's
    reference to its actor, so a ref kept by a host does not keep a stopped actor's
    state alive.

    No lock on the message path: a `queue.SimpleQueue`'s puts and gets are thread-safe
    (and an empty one costs about 170 bytes, where a `deque` costs 770), and the
    `scheduled` flag is a `Lock` used as an atomic test-and-set (held while the actor
    is in the run queue or on a worker). A put that finds it free takes it and queues
    the actor; the worker that finds the queue empty releases it, then looks once more
    so that mail arriving in between is never stranded.
    """

    __slots__ = (
        "_closed",
        "_dispatcher",
        "_first",
        "_metrics",
        "_name",
        "_queue",
        "_runnable",
        "_scheduled",
        "_tracker",
    )

    def __init__(
        self,
        name: str,
        tracker: ActivityTracker,
        metrics: Metrics,
        dispatcher: Dispatcher,
        runnable: Runnable | None = None,
    ) -> None:
        super().__init__()
        self._name = name
        self._tracker = tracker
        self._metrics = metrics
        self._dispatcher = dispatcher
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._first: Any = None  # what `start` puts ahead of any mail
        self._closed = False
        # Held until start(): mail sent to an actor that is not started yet waits.
        self._scheduled = threading.Lock()
        self._scheduled.acquire()
        # Its actor, from the start (its ref finds it here: a proxy made in the actor's
        # constructor works); nothing schedules it before `start` or `open`.
        self._runnable: Runnable | None = runnable

    @property
    def runnable(self) -> Runnable | None:
        """The actor this mailbox hands to the dispatcher (`None` once it is closed)."""
        return self._runnable

    def start(self, runnable: Runnable, first: Any) -> None:
        """Put `first` ahead of any mail and queue `runnable` on the dispatcher."""
        self._runnable = runnable
        self._first = first  # taken by the next `take` (the actor's first turn)
        self._tracker.enter()
        self._dispatcher.schedule(runnable)

    def open(self, runnable: Runnable) -> None:
        """Start taking mail for `runnable` (an actor with no `on_start` to run first)."""
        self._runnable = runnable
        self._scheduled.release()
        if not self._queue.empty() and self._scheduled.acquire(False):
            self._tracker.enter()
            self._dispatcher.schedule(runnable)

    def put(self, item: Any, /, *, run_here: bool = False) -> bool:
        """Queue a message or envelope; `False` (after answering it as dead) once closed.

        With `run_here`, an idle actor's turn runs on the calling thread instead of a
        worker's (see `greenroom.actors.caller_runs` for when that is safe).
        """
        if self._closed:
            self.dead_letter(item)
            return False
        self._queue.put(item)
        if self._closed:  # read again: another thread may have closed it meanwhile
            # Closed while we appended: whoever pops an item answers it, exactly once.
            self._drain_closed()  # type: ignore[unreachable]  # (mypy cannot see threads)
            return False
        if self._scheduled.acquire(False):
            self._tracker.enter()
            runnable = self._runnable
            if run_here and self._dispatcher.running:
                # Holding the flag, this thread is the actor's worker for one turn; a
                # turn that leaves mail behind queues the actor on the dispatcher.
                runnable.run_turn(self._dispatcher.throughput)  # type: ignore[union-attr]
            else:
                self._dispatcher.schedule(runnable)  # type: ignore[arg-type]
        return True

    def take(self, limit: int) -> list[Any]:
        """Up to `limit` items from the front, in order. Only the scheduled worker takes."""
        mail = self._queue
        get = mail.get_nowait
        first = self._first
        if first is None:
            return [get() for _ in range(min(limit, mail.qsize()))]
        self._first = None
        return [first, *[get() for _ in range(min(limit - 1, mail.qsize()))]]

    def end_turn(self, handled: int) -> bool:
        """Whether mail remains (the actor stays scheduled); if not, it goes idle."""
        mail = self._queue
        if mail.empty():
            self._scheduled.release()
            # Mail that arrived before the release found the flag taken: look again.
            if mail.empty() or not self._scheduled.acquire(False):
                self._tracker.leave(handled)
                return False
        self._tracker.count_handled(handled)
        return True

    def get(self) -> Envelope[Any]:
        """pykka's inbox protocol (the dispatcher uses `take` instead); `IndexError`
        when empty."""
        items = self.take(1)
        if not items:
            raise IndexError("get from an empty mailbox")
        item = items[0]
        return item if type(item) is Envelope else Envelope(item)

    def empty(self) -> bool:
        """Whether no message is queued."""
        return self._first is None and self._queue.empty()

    def __len__(self) -> int:
        return self._queue.qsize() + (self._first is not None)

    @property
    def busy(self) -> bool:
        """Whether the actor is queued on the dispatcher or running a turn."""
        return self._scheduled.locked() and not self._closed

    def close(self) -> list[Any]:
        """Refuse further messages; return what was still queued.

        The actor stays marked as scheduled, so nothing queues it again; its last turn
        ends with `ActivityTracker.leave` in the teardown.
        """
        self._closed = True
        self._runnable = None
        return self._pop_all()

    def _pop_all(self) -> list[Any]:
        # Two threads may drain a closed mailbox at once (its owner's teardown and a
        # sender that saw it closed): the first item goes to one of them only.
        with _first_lock:
            first, self._first = self._first, None
        popped = [] if first is None else [first]
        get = self._queue.get_nowait
        while True:
            try:
                popped.append(get())
            except queue.Empty:
                return popped

    def _drain_closed(self) -> None:
        for item in self._pop_all():
            self.dead_letter(item)

    def dead_letter(self, item: Any) -> None:
        """Answer a message the actor will never handle, and count it (stops excepted)."""
        if type(item) is Envelope:
            message, reply_to = item.message, item.reply_to
        else:
            message, reply_to = item, None
        # Asking a stopped actor to stop loses nothing: it is not counted or logged, but
        # still answered ActorDeadError, so pykka's stop() reports False as usual.
        if not isinstance(message, ActorStop):
            self._metrics.incr("dead_letters")
            log.warning(
                "actor %s is stopped; %s was not delivered (ActorDeadError)",
                self._name,
                describe_message(message),
            )
        if reply_to is not None:
            error = dead_actor_error(self._name)
            reply_to.set_exception(exc_info=(ActorDeadError, error, None))
