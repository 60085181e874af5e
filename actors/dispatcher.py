"""`Dispatcher`: a fixed pool of worker threads that runs every actor of a runtime.

An actor owns no thread. When mail arrives for an idle actor, its mailbox puts the
actor in the dispatcher's run queue, once. A worker takes the actor, lets it handle up
to `throughput` messages, and puts it back at the end of the queue if mail remains, so
one flooded actor cannot starve the others: any runnable actor gets a turn after at
most one turn of every actor queued ahead of it.

One thread at a time, and memory visibility. An actor is in the run queue or on a
worker at most once (the mailbox's `scheduled` flag, see `greenroom.actors.mailbox`), so its
handlers never overlap. Consecutive turns of one actor may run on different workers;
what one turn wrote is visible to the next because the actor can only pass from one
worker to the next through synchronising operations: the run queue (`deque` append
and pop, which the GIL orders, and which take the deque's own lock on free-threaded
builds), the dispatcher's lock, and the `scheduled` lock that a put acquires after
the previous worker released it. Each is a release by the worker that ran the last
handler followed by an acquire by the worker that runs the next one: a happens-before
edge, so the next handler sees every write of the previous one.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any, Protocol

from greenroom.clock import stopwatch

__all__ = ["Dispatcher", "Runnable", "join_threads"]

log = logging.getLogger("greenroom.dispatcher")


class Runnable(Protocol):
    """What the dispatcher runs: an actor's turn of at most `throughput` messages."""

    def run_turn(self, throughput: int) -> None:
        """Handle queued mail; reschedule itself if mail remains. Must not raise."""
        ...

    def abandon(self) -> None:
        """Answer queued mail as undeliverable: no worker will run it again."""
        ...


_SHUTDOWN = None


def join_threads(threads: list[threading.Thread], timeout: float) -> list[str]:
    """Join `threads` within `timeout` seconds in all; the names of those still alive."""
    deadline = stopwatch() + timeout
    for thread in threads:
        if thread is not threading.current_thread():
            thread.join(max(0.0, deadline - stopwatch()))
    return [thread.name for thread in threads if thread.is_alive()]


class _Worker:
    """A worker thread and the lock it parks on while the run queue is empty."""

    __slots__ = ("park", "thread")

    def __init__(self) -> None:
        self.park = threading.Lock()
        self.park.acquire()  # held: acquiring it again parks the worker
        self.thread: threading.Thread | None = None


class Dispatcher:
    """A run queue of actors with mail and `threads` workers draining it.

    Idle workers park on a stack, and `schedule` wakes the one that parked last: a
    worker that just finished is still warm in the CPU's caches and the OS scheduler,
    which roughly halves an ask's round trip compared with waking the longest-idle
    worker (what a shared `queue.SimpleQueue` does).

    Workers start on the first `schedule` and are joined by `shutdown`; they are
    daemon threads so that a runtime nobody closed cannot hang interpreter exit.
    """

    def __init__(self, threads: int, throughput: int, *, name: str = "greenroom") -> None:
        self._size = threads
        self._throughput = throughput
        self._name = name
        self._lock = threading.Lock()
        self._runq: deque[Any] = deque()
        # A stack of parked workers: a fixed array and a count, so pushing and popping
        # under the lock call nothing (see ActivityTracker on lock convoys).
        self._idle: list[_Worker | None] = [None] * threads
        self._nidle = 0
        self._workers: list[_Worker] = []
        self._started = False
        self._shut = False

    @property
    def threads(self) -> int:
        """The number of worker threads (running or to be started)."""
        return self._size

    @property
    def throughput(self) -> int:
        """Messages an actor handles per turn before yielding its worker."""
        return self._throughput

    @property
    def running(self) -> bool:
        """Whether turns may still run: not shut down yet."""
        return not self._shut

    @property
    def waiting(self) -> int:
        """How many actors wait in the run queue for a worker (0: the workers keep up)."""
        return len(self._runq)

    def schedule(self, runnable: Runnable) -> None:
        """Queue `runnable` for a turn on a worker."""
        if (not self._started or self._shut) and not self._start(runnable):
            return
        self._runq.append(runnable)
        with self._lock:
            n = self._nidle
            if not n:
                return  # every worker is busy; one will come back for it
            n -= 1
            worker = self._idle[n]
            self._idle[n] = None
            self._nidle = n
        worker.park.release()  # type: ignore[union-attr]

    def _start(self, runnable: Runnable) -> bool:
        """Start the workers on first use; `False` once shut down."""
        with self._lock:
            shut = self._shut
            if not shut and not self._started:
                for n in range(self._size):
                    worker = _Worker()
                    worker.thread = threading.Thread(
                        target=self._work,
                        args=(worker,),
                        name=f"{self._name}-dispatch-{n}",
                        daemon=True,
                    )
                    worker.thread.start()
                    self._workers.append(worker)
                self._started = True
        if shut:
            # Only an actor abandoned by close() can still get mail here: answer it
            # (ActorDeadError) rather than leave an asker waiting forever.
            log.error("dispatcher %s is shut down; %s will not run again", self._name, runnable)
            runnable.abandon()
            return False
        return True

    def _work(self, me: _Worker) -> None:
        lock, runq, idle = self._lock, self._runq, self._idle
        throughput = self._throughput
        while True:
            try:
                runnable = runq.popleft()
            except IndexError:
                with lock:
                    # Checked again under the lock that schedule() takes after its
                    # append: either this sees the new runnable or schedule sees us.
                    if runq:
                        continue
                    idle[self._nidle] = me
                    self._nidle += 1
                me.park.acquire()  # released by schedule() or shutdown()
                continue
            if runnable is _SHUTDOWN:
                return
            try:
                runnable.run_turn(throughput)
            except BaseException:
                # run_turn handles every handler error itself; reaching here is a bug in
                # greenroom. Keep the worker alive for every other actor.
                log.critical("dispatcher worker: a turn of %r raised", runnable, exc_info=True)
            del runnable  # a stopped actor's state must not wait for the next turn

    def shutdown(self, timeout: float) -> list[str]:
        """Stop the workers once the queue drains; join them. Returns threads left over.

        Call after every actor has stopped. A worker still stuck in a blocking handler
        after `timeout` seconds is left behind (it is a daemon) and named in the result.
        """
        with self._lock:
            if self._shut:
                return []
            self._shut = True
            workers = list(self._workers)
            self._runq.extend([_SHUTDOWN] * len(workers))
            parked = self._idle[: self._nidle]
            self._idle[:] = [None] * len(self._idle)
            self._nidle = 0
        for worker in parked:
            worker.park.release()  # type: ignore[union-attr]
        stuck = join_threads([w.thread for w in workers if w.thread is not None], timeout)
        if stuck:
            log.error(
                "dispatcher threads still busy after %g s were left running: %s",
                timeout,
                ", ".join(stuck),
            )
        return stuck

    def __repr__(self) -> str:
        state = "shut down" if self._shut else f"{self._size} threads"
        return f"<Dispatcher {self._name} {state}>"
