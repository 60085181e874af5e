"""`GreenroomFuture`: done-callbacks (what the async facade is built on), wait and drive."""

from __future__ import annotations

import logging
import queue
import random
import sys
import threading
from typing import Any

import pykka
import pytest

from greenroom.errors import FutureTimeout, InvalidTransition
from greenroom.futures import GreenroomFuture, drive

WAIT = 10.0  # real seconds a test waits for anything before failing


def test_a_done_callback_runs_once_on_the_resolving_thread() -> None:
    future: GreenroomFuture[int] = GreenroomFuture()
    calls: list[tuple[int, int]] = []
    future.add_done_callback(lambda f: calls.append((f.get(), threading.get_ident())))
    assert calls == []
    resolver = threading.Thread(target=future.set, args=(7,))
    resolver.start()
    resolver.join(WAIT)
    assert calls == [(7, resolver.ident)]
    with pytest.raises(queue.Full):
        future.set(8)
    assert len(calls) == 1  # not again


def test_a_done_callback_on_a_resolved_future_runs_at_once_on_the_caller() -> None:
    future: GreenroomFuture[int] = GreenroomFuture()
    future.set(3)
    calls: list[int] = []
    future.add_done_callback(lambda f: calls.append(threading.get_ident()))
    assert calls == [threading.get_ident()]


def test_done_callbacks_run_in_order_for_an_exception_and_one_failing_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    future: GreenroomFuture[int] = GreenroomFuture()
    order: list[str] = []

    def broken(_f: GreenroomFuture[int]) -> None:
        order.append("broken")
        raise RuntimeError("callback bug")

    future.add_done_callback(broken)
    future.add_done_callback(lambda f: order.append("second"))
    with caplog.at_level(logging.ERROR, logger="greenroom.actors"):
        try:
            raise ValueError("the answer")
        except ValueError:
            future.set_exception()  # the resolver is not hurt by the broken callback
    assert order == ["broken", "second"]
    assert any("done-callback" in record.getMessage() for record in caplog.records)
    with pytest.raises(ValueError, match="the answer"):
        future.get(timeout=0)


def test_registering_and_resolving_race_without_losing_or_doubling_a_callback() -> None:
    futures: list[GreenroomFuture[int]] = [GreenroomFuture() for _ in range(5_000)]
    counts = [0] * len(futures)
    start = threading.Barrier(2)

    def resolve_all() -> None:
        start.wait(WAIT)
        for index, future in enumerate(futures):
            future.set(index)

    resolver = threading.Thread(target=resolve_all)
    resolver.start()
    start.wait(WAIT)
    for index, future in enumerate(futures):

        def bump(f: GreenroomFuture[int], index: int = index) -> None:
            counts[index] += 1  # each index is bumped by one thread only

        future.add_done_callback(bump)
    resolver.join(WAIT)
    assert counts == [1] * len(futures)


def test_a_derived_future_calls_back_once_every_source_has_resolved() -> None:
    first: GreenroomFuture[int] = GreenroomFuture()
    second: GreenroomFuture[int] = GreenroomFuture()
    joined = first.join(second).map(sum)
    filtered = first.join(second).filter(lambda x: x > 1)
    reduced = first.join(second).reduce(lambda a, b: a * b)
    seen: list[Any] = []
    for derived in (joined, filtered, reduced):
        derived.add_done_callback(lambda f: seen.append(f.get(timeout=0)))
    first.set(2)
    assert seen == []  # one source still pending
    second.set(5)
    assert seen == [7, [2, 5], 10]


def test_futures_derived_in_unknown_ways_are_refused_clearly() -> None:
    hooked: GreenroomFuture[int] = GreenroomFuture()
    hooked.set_get_hook(lambda timeout: 1)
    with pytest.raises(InvalidTransition, match="set_get_hook"):
        hooked.add_done_callback(lambda f: None)
    foreign = GreenroomFuture().join(pykka.ThreadingFuture())
    with pytest.raises(InvalidTransition, match="not a greenroom future"):
        foreign.add_done_callback(lambda f: None)
    watched: GreenroomFuture[int] = GreenroomFuture()
    watched.add_done_callback(lambda f: None)
    with pytest.raises(InvalidTransition, match="never run"):
        watched.set_get_hook(lambda timeout: 1)


def test_wait_reports_without_raising_and_drive_runs_steps() -> None:
    future: GreenroomFuture[int] = GreenroomFuture()
    assert future.wait(0) is False
    assert future.wait(0.01) is False
    future.set_exception((ValueError, ValueError("kept"), None))
    assert future.wait() is True  # the exception is not raised by wait
    with pytest.raises(InvalidTransition, match="derived"):
        future.map(str).wait()

    def steps(f: GreenroomFuture[int]) -> Any:
        yield f
        return f.get(timeout=0) * 2

    ready: GreenroomFuture[int] = GreenroomFuture()
    ready.set(21)
    assert drive(steps(ready)) == 42
    with pytest.raises(FutureTimeout):
        drive(steps(GreenroomFuture()), timeout=0.01)


@pytest.mark.parametrize("how", ["value", "exception"])
def test_every_waiting_thread_wakes_when_the_result_is_set(how: str) -> None:
    future: GreenroomFuture[int] = GreenroomFuture()
    with pytest.raises(FutureTimeout):
        future.get(timeout=0.01)  # a waiter that gave up leaves nothing stuck behind
    results: queue.SimpleQueue[tuple[str, object]] = queue.SimpleQueue()
    waiting = threading.Barrier(7)

    def getter() -> None:
        waiting.wait(WAIT)
        try:
            results.put(("get", future.get(timeout=WAIT)))
        except ValueError as error:
            results.put(("get", str(error)))

    def waiter() -> None:
        waiting.wait(WAIT)
        results.put(("wait", future.wait(WAIT)))

    threads = [threading.Thread(target=f) for f in [getter, waiter] * 3]
    for thread in threads:
        thread.start()
    waiting.wait(WAIT)
    if how == "value":
        future.set(7)
    else:
        future.set_exception((ValueError, ValueError("failed"), None))
    for thread in threads:
        thread.join(WAIT)
    got = sorted(results.get(timeout=WAIT) for _ in threads)
    shown = 7 if how == "value" else "failed"
    assert got == [("get", shown)] * 3 + [("wait", True)] * 3
    assert future.wait(0) is True


def test_a_result_set_while_a_thread_starts_waiting_always_wakes_it() -> None:
    # The setter and the waiter start together, many times: whichever comes first, the
    # waiter returns the value (a wake-up lost in between would hang it until WAIT).
    # The interpreter switches threads every microsecond meanwhile, so they interleave.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        _race_setting_and_waiting()
    finally:
        sys.setswitchinterval(interval)


def _race_setting_and_waiting() -> None:
    rng = random.Random(5)
    for round_no in range(1000):
        future: GreenroomFuture[int] = GreenroomFuture()
        start = threading.Barrier(2)
        # (A varying head start for either side, so the set lands anywhere in the wait.)
        setter_spins, waiter_spins = rng.randrange(400), rng.randrange(400)
        setter = threading.Thread(target=_set_after, args=(future, round_no, start, setter_spins))
        setter.start()
        start.wait(WAIT)
        for _ in range(waiter_spins):
            pass
        assert future.get(timeout=WAIT) == round_no
        setter.join(WAIT)


def _set_after(
    future: GreenroomFuture[int], value: int, start: threading.Barrier, spins: int
) -> None:
    start.wait(WAIT)
    for _ in range(spins):
        pass
    future.set(value)
