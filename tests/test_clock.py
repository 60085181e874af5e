"""The clocks: fake-clock ordering, periodic timers, cancellation, the system clock."""

from __future__ import annotations

import threading

import pytest

from greenroom import FakeClock, SystemClock
from greenroom.errors import InvalidInput, InvalidTransition

from .conftest import START_MS


def test_fake_clock_moves_only_when_advanced(fake_clock: FakeClock) -> None:
    assert fake_clock.now_ms() == START_MS
    assert fake_clock.monotonic() == 0.0
    fake_clock.advance(1.5)
    assert fake_clock.now_ms() == START_MS + 1500
    assert fake_clock.monotonic() == 1.5


def test_timers_fire_in_due_order_and_see_their_own_due_time(fake_clock: FakeClock) -> None:
    seen: list[tuple[str, int]] = []

    def record(name: str):
        return lambda: seen.append((name, fake_clock.now_ms() - START_MS))

    fake_clock.call_later(3, record("c"))
    fake_clock.call_later(1, record("a"))
    fake_clock.call_later(2, record("b"))
    fake_clock.call_later(2, record("b2"))  # same due time: scheduling order
    fake_clock.call_later(10, record("late"))
    fake_clock.advance(5)
    assert seen == [("a", 1000), ("b", 2000), ("b2", 2000), ("c", 3000)]
    assert fake_clock.now_ms() == START_MS + 5000
    fake_clock.advance(5)
    assert seen[-1] == ("late", 10_000)


def test_periodic_timer_fires_every_time_within_one_large_advance(fake_clock: FakeClock) -> None:
    fired: list[float] = []
    fake_clock.call_every(0.25, lambda: fired.append(fake_clock.monotonic()))
    fake_clock.advance(3600)
    assert len(fired) == 14_400
    assert fired[:3] == [0.25, 0.5, 0.75]
    assert fired[-1] == 3600.0


def test_periodic_timer_first_after(fake_clock: FakeClock) -> None:
    fired: list[float] = []
    fake_clock.call_every(10, lambda: fired.append(fake_clock.monotonic()), first_after_s=1)
    fake_clock.advance(25)
    assert fired == [1.0, 11.0, 21.0]


def test_cancel_stops_a_timer_even_from_inside_its_callback(fake_clock: FakeClock) -> None:
    fired: list[float] = []
    once = fake_clock.call_later(1, lambda: fired.append(-1))
    once.cancel()
    holder = []

    def tick() -> None:
        fired.append(fake_clock.monotonic())
        if len(fired) == 3:
            holder[0].cancel()

    holder.append(fake_clock.call_every(1, tick))
    fake_clock.advance(10)
    assert fired == [1.0, 2.0, 3.0]
    assert fake_clock.pending_timers() == 0


def test_timer_scheduled_by_a_callback_fires_in_the_same_advance(fake_clock: FakeClock) -> None:
    fired: list[float] = []
    fake_clock.call_later(
        1, lambda: fake_clock.call_later(2, lambda: fired.append(fake_clock.monotonic()))
    )
    fake_clock.advance(5)
    assert fired == [3.0]


def test_callback_error_is_raised_to_the_advancer(fake_clock: FakeClock) -> None:
    def boom() -> None:
        raise RuntimeError("boom")

    fake_clock.call_later(1, boom)
    with pytest.raises(RuntimeError, match="boom"):
        fake_clock.advance(2)
    assert fake_clock.now_ms() == START_MS + 1000


def test_advance_from_a_callback_is_refused(fake_clock: FakeClock) -> None:
    errors: list[Exception] = []

    def nested() -> None:
        try:
            fake_clock.advance(1)
        except InvalidTransition as exc:
            errors.append(exc)

    fake_clock.call_later(1, nested)
    fake_clock.advance(1)
    assert len(errors) == 1


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "1", None, True])
def test_bad_durations_are_invalid_input(fake_clock: FakeClock, bad: object) -> None:
    with pytest.raises(InvalidInput):
        fake_clock.advance(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        fake_clock.call_later(bad, lambda: None)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        fake_clock.call_every(bad, lambda: None)  # type: ignore[arg-type]
    assert fake_clock.now_ms() == START_MS


def test_zero_interval_is_invalid(fake_clock: FakeClock) -> None:
    with pytest.raises(InvalidInput, match="interval_s"):
        fake_clock.call_every(0, lambda: None)


def test_system_clock_runs_timers_on_one_thread() -> None:
    clock = SystemClock()
    done = threading.Event()
    threads: set[str] = set()
    count = [0]

    def tick() -> None:
        threads.add(threading.current_thread().name)
        count[0] += 1
        if count[0] == 3:
            done.set()

    try:
        handle = clock.call_every(0.001, tick)
        clock.call_later(0, lambda: threads.add(threading.current_thread().name))
        assert done.wait(10)
        handle.cancel()
        assert threads == {"greenroom-timer"}
        assert abs(clock.now_ms() - clock.now_ms()) < 1000
        assert clock.monotonic() <= clock.monotonic()
    finally:
        clock.close()
    assert not any(t.name == "greenroom-timer" for t in threading.enumerate())
    with pytest.raises(InvalidTransition):
        clock.call_later(1, lambda: None)
