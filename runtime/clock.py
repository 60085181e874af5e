"""Time for greenroom: the `Clock` protocol, the real `SystemClock` and the test `FakeClock`.

This is the only module in greenroom that reads the system's time or waits on it.
Everything else asks the clock it was given, so a test can swap in a `FakeClock` and
move time by hand:

    clock = FakeClock(start_ms=1_700_000_000_000)
    with Runtime.open(tmp_path / "app.db", clock=clock) as rt:
        ...
        clock.advance(60)  # fires every timer due in the next minute, then settles

Timer callbacks run on the clock's thread (the timer thread for `SystemClock`, the
caller of `advance` for `FakeClock`); they must be quick and must not block, which in
greenroom means they only `tell` an actor.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from greenroom.errors import InvalidInput, InvalidTransition, SettleTimeout

__all__ = [
    "Clock",
    "FakeClock",
    "Quiescent",
    "SystemClock",
    "TimerHandle",
    "backoff_wait",
    "stopwatch",
]

log = logging.getLogger("greenroom.clock")

_NS = 1_000_000_000
_MAX_WAIT_S = 3600.0


def stopwatch() -> float:
    """Real elapsed seconds from an arbitrary origin, for measuring how long work took.

    Not the runtime's time: a `FakeClock` does not move while a handler runs, so
    durations that matter in real time (a slow-handler warning, a benchmark) are
    measured here instead of on the injected clock.
    """
    return time.perf_counter()


def backoff_wait(stop: threading.Event, seconds: float) -> bool:
    """Wait up to `seconds` of real time before trying an outside service again (a
    server that did not answer), or until `stop` is set; whether it was set.

    Not the runtime's time either: a reconnect backs off in real time whatever clock
    the runtime runs on, and this is the one place such a wait is made.
    """
    return stop.wait(max(0.0, seconds))


@runtime_checkable
class Quiescent(Protocol):
    """Something a `FakeClock` waits for after moving time (a runtime's actors)."""

    def is_idle(self) -> bool: ...

    def wait_idle(self, timeout: float | None) -> bool: ...

    def busy(self) -> dict[str, int]: ...

    @property
    def entered(self) -> int:
        """How many messages were ever queued: changes whenever there is new work."""
        ...


class TimerHandle:
    """A scheduled callback; `cancel()` stops it from firing (again)."""

    __slots__ = ("_cancelled", "_fired", "_fn", "_interval_ns", "_queue", "_seq", "due_ns")

    def __init__(
        self,
        due_ns: int,
        interval_ns: int | None,
        fn: Callable[[], object],
        seq: int,
        queue: _TimerQueue,
    ) -> None:
        self.due_ns = due_ns
        self._interval_ns = interval_ns
        self._fn = fn
        self._seq = seq
        self._queue = queue
        self._fired = False
        self._cancelled = False

    def cancel(self) -> None:
        """Stop the timer; harmless to call more than once or after it fired."""
        if not self._cancelled:
            self._cancelled = True
            self._queue.note_cancelled()

    @property
    def cancelled(self) -> bool:
        """Whether `cancel()` was called."""
        return self._cancelled

    @property
    def active(self) -> bool:
        """Whether the timer may still fire: not cancelled, and not a one-shot that fired."""
        return not self.cancelled and not (self._fired and self._interval_ns is None)

    @property
    def periodic(self) -> bool:
        """Whether the timer fires repeatedly (`call_every`)."""
        return self._interval_ns is not None

    def __lt__(self, other: TimerHandle) -> bool:
        return (self.due_ns, self._seq) < (other.due_ns, other._seq)

    def __repr__(self) -> str:
        state = "cancelled" if self.cancelled else f"due at {self.due_ns / _NS:.3f} s"
        kind = "periodic" if self.periodic else "once"
        return f"<TimerHandle {kind} {state} {getattr(self._fn, '__qualname__', self._fn)!r}>"


class Clock(Protocol):
    """Where greenroom gets wall time, monotonic time and timers from."""

    def now_ms(self) -> int:
        """Wall-clock time as Unix milliseconds."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary fixed origin; never goes backwards."""
        ...

    def call_later(self, delay_s: float, fn: Callable[[], object]) -> TimerHandle:
        """Run `fn()` once, `delay_s` seconds from now."""
        ...

    def call_every(
        self, interval_s: float, fn: Callable[[], object], *, first_after_s: float | None = None
    ) -> TimerHandle:
        """Run `fn()` every `interval_s` seconds, first after `first_after_s` (one interval)."""
        ...


def _to_ns(seconds: float, what: str, *, allow_zero: bool = True) -> int:
    """Validate a duration in seconds and convert it to integer nanoseconds."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise InvalidInput(f"{what} must be a number of seconds, got {seconds!r}")
    try:
        finite = math.isfinite(seconds) and seconds <= _MAX_SECONDS
    except OverflowError:  # an int too large for a float
        finite = False
    if not finite or seconds < 0 or (not allow_zero and seconds == 0):
        bound = "non-negative" if allow_zero else "positive"
        shown = f"{seconds:.6g}" if abs(seconds) < 1e40 else "a huge number"
        raise InvalidInput(
            f"{what} must be a finite, {bound} number of seconds of at most 1e12 (some "
            f"31,700 years), got {shown}"
        )
    return round(seconds * _NS)


_MAX_SECONDS = 1e12  # "never" in practice (hosts write 1e9), and its nanoseconds fit


class _TimerQueue:
    """A heap of timers ordered by due time (then by scheduling order).

    Not thread-safe: each clock guards its queue with its own lock.
    """

    _PURGE_MIN = 64

    def __init__(self) -> None:
        self._heap: list[TimerHandle] = []
        self._seq = itertools.count()
        self._cancelled = 0

    def add(
        self, now_ns: int, delay_ns: int, interval_ns: int | None, fn: Callable[[], object]
    ) -> TimerHandle:
        if not callable(fn):
            raise InvalidInput(f"timer callback must be callable, got {fn!r}")
        self.purge()
        timer = TimerHandle(now_ns + delay_ns, interval_ns, fn, next(self._seq), self)
        heapq.heappush(self._heap, timer)
        return timer

    def note_cancelled(self) -> None:
        # Called without the clock's lock: the count is only a hint for purging.
        self._cancelled += 1

    def purge(self) -> None:
        """Drop cancelled timers once they are most of the heap (they hold closures)."""
        if self._cancelled > self._PURGE_MIN and self._cancelled * 2 > len(self._heap):
            self._heap = [timer for timer in self._heap if not timer.cancelled]
            heapq.heapify(self._heap)
            self._cancelled = 0

    def pop_due(self, until_ns: int) -> TimerHandle | None:
        """Remove and return the earliest live timer due at or before `until_ns`."""
        self.purge()
        while self._heap:
            head = self._heap[0]
            if head.cancelled:
                heapq.heappop(self._heap)
                continue
            if head.due_ns > until_ns:
                return None
            timer = heapq.heappop(self._heap)
            timer._fired = True
            return timer
        return None

    def next_due(self) -> int | None:
        while self._heap and self._heap[0].cancelled:
            heapq.heappop(self._heap)
        return self._heap[0].due_ns if self._heap else None

    def reschedule(self, timer: TimerHandle, *, not_before_ns: int | None = None) -> None:
        """Put a periodic timer back for its next firing, unless it was cancelled.

        With `not_before_ns`, firings that are already in the past are skipped (the
        real clock does this after a slow callback, rather than firing in a burst).
        """
        interval = timer._interval_ns
        if interval is None or timer.cancelled:
            return
        due = timer.due_ns + interval
        if not_before_ns is not None and due < not_before_ns:
            due += -(-(not_before_ns - due) // interval) * interval
        timer.due_ns = due
        timer._seq = next(self._seq)
        heapq.heappush(self._heap, timer)

    def live_count(self) -> int:
        return sum(1 for timer in self._heap if not timer.cancelled)


def _schedule_args(interval_s: float, first_after_s: float | None) -> tuple[int, int]:
    interval_ns = _to_ns(interval_s, "interval_s", allow_zero=False)
    first_ns = interval_ns if first_after_s is None else _to_ns(first_after_s, "first_after_s")
    return first_ns, interval_ns


class SystemClock:
    """Real time. All timers share one daemon timer thread, started on first use."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._timers = _TimerQueue()
        self._thread: threading.Thread | None = None
        self._closed = False

    def now_ms(self) -> int:
        """Wall-clock time as Unix milliseconds."""
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        """Seconds from an arbitrary fixed origin; never goes backwards."""
        return time.monotonic()

    def call_later(self, delay_s: float, fn: Callable[[], object]) -> TimerHandle:
        """Run `fn()` once on the timer thread, `delay_s` seconds from now."""
        return self._add(_to_ns(delay_s, "delay_s"), None, fn)

    def call_every(
        self, interval_s: float, fn: Callable[[], object], *, first_after_s: float | None = None
    ) -> TimerHandle:
        """Run `fn()` on the timer thread every `interval_s` s, first after `first_after_s`."""
        first_ns, interval_ns = _schedule_args(interval_s, first_after_s)
        return self._add(first_ns, interval_ns, fn)

    def _add(self, delay_ns: int, interval_ns: int | None, fn: Callable[[], object]) -> TimerHandle:
        with self._cond:
            if self._closed:
                raise InvalidTransition("this SystemClock is closed; it schedules no more timers")
            timer = self._timers.add(time.monotonic_ns(), delay_ns, interval_ns, fn)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="greenroom-timer", daemon=True
                )
                self._thread.start()
            self._cond.notify()
        return timer

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._closed:
                        return
                    now = time.monotonic_ns()
                    timer = self._timers.pop_due(now)
                    if timer is not None:
                        break
                    due = self._timers.next_due()
                    # Capped so a far-off timer cannot overflow the wait.
                    wait = _MAX_WAIT_S if due is None else min((due - now) / _NS, _MAX_WAIT_S)
                    self._cond.wait(wait)
            try:
                timer._fn()
            except BaseException:
                # The one timer thread serves every timer: it must not die.
                log.exception("timer callback %r raised; the timer thread goes on", timer._fn)
            with self._cond:
                self._timers.reschedule(timer, not_before_ns=time.monotonic_ns())

    def close(self) -> None:
        """Cancel every timer and stop the timer thread (joins it)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def __repr__(self) -> str:
        return f"<SystemClock timers={self._timers.live_count()} closed={self._closed}>"


class FakeClock:
    """A clock that moves only when told to, for tests and demos.

    `advance(seconds)` fires every due timer in due-time order. While a callback
    runs, `now_ms()` and `monotonic()` read that timer's own due time. After each
    callback, and once more at the end, the clock *settles*: it waits until every actor
    of every runtime attached to it (each `Runtime` using this clock attaches itself)
    has an empty inbox and no running handler, including messages those handlers sent
    on. So when `advance` returns, everything the elapsed time caused has happened.

    A settle that does not finish within `settle_timeout_s` real seconds raises
    `SettleTimeout` naming the busy actors, rather than hanging the test.
    """

    def __init__(self, start_ms: int = 1_767_225_600_000, *, settle_timeout_s: float = 30.0):
        if isinstance(start_ms, bool) or not isinstance(start_ms, int) or start_ms < 0:
            raise InvalidInput(f"start_ms must be a non-negative int (Unix ms), got {start_ms!r}")
        _to_ns(settle_timeout_s, "settle_timeout_s", allow_zero=False)
        self._start_ms = start_ms
        self._now_ns = 0
        self._lock = threading.Lock()
        self._advancing = threading.Lock()
        self._timers = _TimerQueue()
        self._attached: list[Quiescent] = []
        self.settle_timeout_s = settle_timeout_s

    def now_ms(self) -> int:
        """Fake wall-clock time as Unix milliseconds."""
        return self._start_ms + self._now_ns // 1_000_000

    def monotonic(self) -> float:
        """Fake seconds since the clock was made."""
        return self._now_ns / _NS

    def call_later(self, delay_s: float, fn: Callable[[], object]) -> TimerHandle:
        """Run `fn()` once, when an `advance` reaches `delay_s` seconds from now."""
        delay_ns = _to_ns(delay_s, "delay_s")
        with self._lock:
            return self._timers.add(self._now_ns, delay_ns, None, fn)

    def call_every(
        self, interval_s: float, fn: Callable[[], object], *, first_after_s: float | None = None
    ) -> TimerHandle:
        """Run `fn()` every `interval_s` fake seconds, first after `first_after_s`."""
        first_ns, interval_ns = _schedule_args(interval_s, first_after_s)
        with self._lock:
            return self._timers.add(self._now_ns, first_ns, interval_ns, fn)

    def attach(self, participant: Quiescent) -> None:
        """Make `advance` and `settle` wait for `participant` too (runtimes do this)."""
        with self._lock:
            if participant not in self._attached:
                self._attached.append(participant)

    def detach(self, participant: Quiescent) -> None:
        """Stop waiting for `participant` (a runtime detaches itself on close)."""
        with self._lock:
            if participant in self._attached:
                self._attached.remove(participant)

    def pending_timers(self) -> int:
        """How many timers are scheduled and not cancelled."""
        with self._lock:
            return self._timers.live_count()

    def advance(self, seconds: float) -> None:
        """Move time forward by `seconds`, firing every timer that falls due, then settle.

        Raises `InvalidInput` for a negative duration, `InvalidTransition` when called
        from inside a timer callback, `SettleTimeout` when actors stay busy, and
        re-raises an exception from a timer callback (after logging it).
        """
        step_ns = _to_ns(seconds, "seconds")
        if not self._advancing.acquire(blocking=False):
            raise InvalidTransition(
                "FakeClock.advance() is already running (called from a timer callback or "
                "another thread); advance time from the test thread only"
            )
        try:
            self.settle()
            with self._lock:
                target_ns = self._now_ns + step_ns
            while True:
                with self._lock:
                    timer = self._timers.pop_due(target_ns)
                    if timer is None:
                        self._now_ns = target_ns
                        break
                    self._now_ns = timer.due_ns
                try:
                    timer._fn()
                except Exception:
                    log.exception("fake-clock timer callback %r raised", timer._fn)
                    raise
                finally:
                    with self._lock:
                        self._timers.reschedule(timer)
                self.settle()
            self.settle()
        finally:
            self._advancing.release()

    def settle(self, timeout: float | None = None) -> None:
        """Wait until every attached runtime is idle; `SettleTimeout` after `timeout` s.

        Returns only after a pass that found every runtime idle with no new message
        queued anywhere since the pass began, so work one runtime hands to another
        cannot slip between the checks.
        """
        limit = self.settle_timeout_s if timeout is None else timeout
        deadline = time.monotonic() + limit
        while True:
            with self._lock:
                participants = list(self._attached)
            marks = [participant.entered for participant in participants]
            waited = False
            for participant in participants:
                if participant.is_idle():
                    continue
                waited = True
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not participant.wait_idle(remaining):
                    busy: dict[str, int] = {}
                    for other in participants:
                        busy.update(other.busy())
                    raise SettleTimeout(limit, busy)
            if not waited and marks == [participant.entered for participant in participants]:
                return

    def __repr__(self) -> str:
        return f"<FakeClock now_ms={self.now_ms()} timers={self.pending_timers()}>"
