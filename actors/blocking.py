"""`BlockingPool`: a bounded pool of threads for work that must block.

Handlers never block a dispatcher thread. Work that has to wait (a synchronous
strategy waiting for an LLM answer, a slow file copy) runs here instead, on at most
`max_threads` threads, started on demand. Jobs beyond that wait in a queue, so a
burst cannot create a thread per job.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from greenroom.actors.dispatcher import join_threads
from greenroom.errors import GreenroomError, InvalidInput, Stopped
from greenroom.futures import GreenroomFuture, in_handler

if TYPE_CHECKING:
    from greenroom.activity import ActivityTracker

__all__ = ["BlockingPool"]

log = logging.getLogger("greenroom.blocking")


class _Job:
    __slots__ = ("args", "fn", "future", "kwargs", "on_done", "track")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        future: GreenroomFuture[Any],
        track: str | None,
        on_done: Callable[[GreenroomFuture[Any]], None] | None,
    ) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.future = future
        self.track = track
        self.on_done = on_done


class BlockingPool:
    """Runs callables on a bounded set of threads and hands back pykka futures.

    A job counts as work in progress for `Runtime.settle()` (under the name
    `blocking:<function>`) unless submitted with `track=False`, which is for jobs that
    wait on something only the host can provide.
    """

    def __init__(
        self, max_threads: int, tracker: ActivityTracker, *, name: str = "greenroom"
    ) -> None:
        self._max = max_threads
        self._tracker = tracker
        self._name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._queued = 0
        self._active: dict[str, int] = {}  # tracked jobs not finished, by name
        self._closed = False

    @staticmethod
    def current() -> BlockingPool | None:
        """The pool whose thread this is, or `None` on any other thread."""
        return getattr(in_handler, "pool", None)

    @property
    def max_threads(self) -> int:
        """The most threads the pool runs."""
        return self._max

    @property
    def threads(self) -> int:
        """Threads started so far."""
        return len(self._threads)

    @property
    def queued(self) -> int:
        """Jobs waiting for a free thread."""
        return self._queued

    def busy(self) -> dict[str, int]:
        """Tracked jobs not finished yet, by `blocking:<function>` name."""
        with self._lock:
            return dict(self._active)

    def submit(
        self,
        fn: Callable[..., Any],
        /,
        *args: Any,
        track: bool = True,
        on_done: Callable[[GreenroomFuture[Any]], None] | None = None,
        **kwargs: Any,
    ) -> GreenroomFuture[Any]:
        """Run `fn(*args, **kwargs)` on a pool thread; its result or error lands in the future.

        `on_done(future)` is called on the pool thread once the future is resolved,
        before the job stops counting for settle (so a message it sends is waited for).
        """
        if not callable(fn):
            raise InvalidInput(f"run_blocking needs a callable, got {fn!r}")
        future: GreenroomFuture[Any] = GreenroomFuture()
        name = f"blocking:{getattr(fn, '__qualname__', type(fn).__name__)}" if track else None
        with self._lock:
            if self._closed:
                raise Stopped(f"blocking pool of {self._name} is shut down")
            if name is not None:
                self._tracker.enter()
                self._active[name] = self._active.get(name, 0) + 1
            self._queued += 1
            if self._queued > self._idle and len(self._threads) < self._max:
                thread = threading.Thread(
                    target=self._work,
                    name=f"{self._name}-blocking-{len(self._threads)}",
                    daemon=True,
                )
                self._threads.append(thread)
                thread.start()
            # Inside the lock, so a shutdown cannot slip its stop markers in before it.
            self._jobs.put(_Job(fn, args, kwargs, future, name, on_done))
        return future

    def _work(self) -> None:
        in_handler.pool = self
        while True:
            with self._lock:
                self._idle += 1
            job = self._jobs.get()
            with self._lock:
                self._idle -= 1
                if job is not None:
                    self._queued -= 1
            if job is None:
                return
            try:
                try:
                    value = job.fn(*job.args, **job.kwargs)
                except BaseException as error:
                    # The future carries the error; log it too, since a job whose
                    # future nobody reads would otherwise fail in silence.
                    log.warning(
                        "blocking job %s raised %s: %s",
                        job.track or getattr(job.fn, "__qualname__", job.fn),
                        type(error).__name__,
                        error,
                        exc_info=not isinstance(error, GreenroomError),
                    )
                    job.future.set_exception()
                else:
                    job.future.set(value)
                if job.on_done is not None:
                    job.on_done(job.future)
            except BaseException:
                log.exception("blocking job %r: its completion callback raised", job.fn)
            finally:
                if job.track is not None:
                    with self._lock:
                        left = self._active[job.track] - 1
                        if left:
                            self._active[job.track] = left
                        else:
                            del self._active[job.track]
                    self._tracker.leave()
            del job  # drop the job's arguments before waiting for the next

    def shutdown(self, timeout: float) -> list[str]:
        """Refuse new jobs, let queued ones finish, join the threads. Returns threads left.

        A thread still busy after `timeout` seconds (a job that never returns) is left
        running (it is a daemon) and named in the result.
        """
        with self._lock:
            if self._closed:
                return []
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._jobs.put(None)
        stuck = join_threads(threads, timeout)
        if stuck:
            log.error(
                "blocking jobs still running after %g s were left behind: %s",
                timeout,
                ", ".join(stuck),
            )
        return stuck
