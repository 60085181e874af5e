"""Subscriptions and follow: replay then live, no gap or duplicate, lags, recovery, close."""

from __future__ import annotations

import gc
import logging
import random
import threading
from collections.abc import Callable
from typing import Any

import pytest

from greenroom import FakeClock, Gap, ObservationEvent, Runtime, Subscription
from greenroom.actors.base import ActorContext, GreenroomActor
from greenroom.checks import MAX_TIMEOUT_S
from greenroom.cursor import parse_cursor
from greenroom.errors import InvalidInput, InvalidTransition, Stopped, SubscriberLagged, Timeout
from greenroom.replay.follower import Follower

WAIT = 10.0  # real seconds a test waits for another thread before failing


def subscribe(rt: Runtime, cursor: str) -> Subscription:
    sub = rt.replay.subscribe(cursor)
    assert isinstance(sub, Subscription), sub
    return sub


def take(sub: Subscription, n: int) -> list[object]:
    return [sub.next_event(timeout=WAIT).payload for _ in range(n)]


def until_waiting(sub: Subscription) -> None:
    """Spin (no sleep) until a thread waits in `sub.next_event`."""
    for _ in range(50_000_000):
        if sub.waiting:
            return
    pytest.fail("no thread started waiting on the subscription")


def in_thread(fn: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    """Run `fn` on a thread; its result (or exception) lands in the list."""
    out: list[object] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as error:
            out.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


# -- replay then live --------------------------------------------------------------------


def test_subscribe_gives_the_replay_then_live_events(rt: Runtime) -> None:
    start = rt.replay.current_cursor("s")
    rt.replay.append_many("s", ["a", "b"])
    with subscribe(rt, start) as sub:
        assert sub.session_id == "s"
        assert sub.pending == 2
        assert take(sub, 2) == ["a", "b"]
        with pytest.raises(Timeout, match="no event for session 's'"):
            sub.next_event(timeout=0)
        rt.replay.append("s", "c")
        event = sub.next_event(timeout=WAIT)
        assert (event.payload, event.position) == ("c", 3)
        assert sub.cursor == event.cursor
    assert sub.closed
    with pytest.raises(Stopped, match="closed"):
        sub.next_event()
    assert rt.metrics()["replay_subscribers"] == 0


def test_a_waiting_subscriber_wakes_on_a_live_event(rt: Runtime) -> None:
    sub = subscribe(rt, rt.replay.current_cursor("s"))
    thread, out = in_thread(lambda: sub.next_event(timeout=WAIT))
    until_waiting(sub)
    rt.replay.append("s", "wake up")
    thread.join(WAIT)
    assert isinstance(out[0], ObservationEvent)
    assert out[0].payload == "wake up"


def test_iterating_a_subscription_ends_when_it_is_closed(rt: Runtime) -> None:
    start = rt.replay.current_cursor("s")
    rt.replay.append_many("s", [1, 2, 3])
    sub = subscribe(rt, start)
    seen = []
    for event in sub:
        seen.append(event.payload)
        if event.payload == 3:
            sub.close()
    assert seen == [1, 2, 3]


def test_subscribe_after_a_trimmed_cursor_is_a_gap(open_rt: Callable[..., Runtime]) -> None:
    rt = open_rt(max_events_per_session=1)
    start = rt.replay.current_cursor("s")
    rt.replay.append_many("s", [1, 2])
    gap = rt.replay.subscribe(start)
    assert isinstance(gap, Gap)
    assert gap.reason == "trimmed"
    assert rt.metrics()["replay_subscribers"] == 0


def test_subscribe_with_no_gap_or_duplicate_while_another_thread_appends(
    open_rt: Callable[..., Runtime],
) -> None:
    total, batch = 100_000, 100
    rt = open_rt(max_events_per_session=total, subscriber_queue_size=total)
    start = rt.replay.current_cursor("s")
    cursors: list[str] = [start]
    appended = threading.Condition()

    def append() -> None:
        for offset in range(0, total, batch):
            if offset % 1000 == 0:
                cursors.append(rt.replay.append("s", offset).cursor)  # singles too
                events = rt.replay.append_many("s", range(offset + 1, offset + batch))
            else:
                events = rt.replay.append_many("s", range(offset, offset + batch))
            with appended:
                cursors.append(events[-1].cursor)
                appended.notify_all()

    appender = threading.Thread(target=append, daemon=True)
    appender.start()
    subs: list[tuple[int, Subscription]] = []
    live_out: list[int] = []

    def consume(sub: Subscription) -> None:
        for event in sub:
            live_out.append(event.position)
            if event.position == total:
                return

    # Subscribe again and again while the appends go on (every 80 batches), each from
    # a recent cursor: its replay and its live part meet somewhere in a batch.
    rng = random.Random(7)
    consumer = None
    for k in range(1, 12):
        with appended:
            assert appended.wait_for(lambda k=k: len(cursors) >= 80 * k, WAIT)
            cursor = rng.choice(cursors[-5:])
        sub = subscribe(rt, cursor)
        subs.append((parse_cursor(cursor).position, sub))
        if consumer is None:  # one drained as it goes, the rest afterwards
            consumer = threading.Thread(target=consume, args=(sub,), daemon=True)
            consumer.start()
    appender.join(WAIT * 3)
    assert not appender.is_alive()
    assert consumer is not None
    consumer.join(WAIT)
    assert live_out == list(range(subs[0][0] + 1, total + 1))
    for after, sub in subs[1:]:
        got = [sub.next_event(timeout=WAIT).position for _ in range(total - after)]
        assert got == list(range(after + 1, total + 1))
        assert sub.pending == 0
        sub.close()
    assert rt.metrics()["replay_events_appended"] == total
    assert rt.metrics()["replay_subscriber_lags"] == 0


# -- lags ------------------------------------------------------------------------------------


def test_a_slow_subscriber_lags_without_slowing_the_others(
    open_rt: Callable[..., Runtime], caplog: pytest.LogCaptureFixture
) -> None:
    rt = open_rt(subscriber_queue_size=4)
    start = rt.replay.current_cursor("s")
    slow = subscribe(rt, start)
    fast = subscribe(rt, start)
    got = []
    with caplog.at_level(logging.WARNING, logger="greenroom.replay"):
        for n in range(1, 9):
            rt.replay.append("s", n)  # never waits for the slow one
            got.append(fast.next_event(timeout=WAIT).payload)
    assert got == list(range(1, 9))
    assert slow.closed  # detached at the overflow
    with pytest.raises(SubscriberLagged) as caught:
        slow.next_event(timeout=0)
    lag = caught.value
    assert lag.missed == 5  # 4 waiting + the one that did not fit
    assert lag.resume_cursor == start
    with pytest.raises(SubscriberLagged):
        slow.next_event()  # it stays lagged

    metrics = rt.metrics()
    assert metrics["replay_subscriber_lags"] == 1
    assert metrics["replay_events_missed"] == 5
    assert metrics["replay_subscribers"] == 1  # the fast one
    assert [r.levelno for r in caplog.records if "lagged" in r.getMessage()] == [logging.WARNING]

    # Resuming from the lag's cursor gets every event it missed.
    again = subscribe(rt, lag.resume_cursor)
    assert take(again, 8) == list(range(1, 9))


def test_a_lag_resumes_from_the_last_event_given(open_rt: Callable[..., Runtime]) -> None:
    rt = open_rt(subscriber_queue_size=2)
    sub = subscribe(rt, rt.replay.current_cursor("s"))
    rt.replay.append_many("s", [1, 2])
    first = sub.next_event(timeout=WAIT)
    rt.replay.append_many("s", [3, 4])  # 1 waiting + 2 > 2: lagged
    with pytest.raises(SubscriberLagged) as caught:
        sub.next_event(timeout=WAIT)
    assert caught.value.resume_cursor == first.cursor
    assert caught.value.missed == 3


def test_the_replayed_part_does_not_count_against_the_queue(
    open_rt: Callable[..., Runtime],
) -> None:
    rt = open_rt(subscriber_queue_size=2)
    start = rt.replay.current_cursor("s")
    rt.replay.append_many("s", list(range(10)))
    sub = subscribe(rt, start)
    rt.replay.append_many("s", [10, 11])
    assert take(sub, 12) == list(range(12))


def test_follow_recovers_from_a_lag(open_rt: Callable[..., Runtime]) -> None:
    rt = open_rt(subscriber_queue_size=4)
    start = rt.replay.current_cursor("s")
    follower = rt.replay.follow(start)
    assert isinstance(follower, Follower)
    for n in range(1, 11):
        rt.replay.append("s", n)  # overflows the first subscription at the 5th
    got = [next(follower) for _ in range(10)]
    assert all(isinstance(item, ObservationEvent) for item in got)
    assert [item.payload for item in got] == list(range(1, 11))  # type: ignore[union-attr]
    assert follower.lags == 1
    assert rt.metrics()["replay_subscriber_lags"] == 1
    rt.replay.append("s", 11)
    assert follower.next_item(timeout=WAIT).payload == 11  # type: ignore[union-attr]
    assert follower.cursor == rt.replay.current_cursor("s")
    follower.close()
    assert list(follower) == []


def test_follow_yields_a_gap_once_and_goes_on(open_rt: Callable[..., Runtime]) -> None:
    rt = open_rt(max_events_per_session=2)
    start = rt.replay.current_cursor("s")
    rt.replay.append_many("s", [1, 2, 3])
    with rt.replay.follow(start) as follower:
        gap = next(follower)
        assert isinstance(gap, Gap)
        assert gap.reason == "trimmed"
        rt.replay.append("s", 4)
        event = next(follower)
        assert isinstance(event, ObservationEvent)
        assert (event.payload, event.position) == (4, 4)
        assert follower.gaps == 1


def test_follow_after_the_buffer_was_made_again(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock
) -> None:
    rt = open_rt()
    old = rt.replay.append("s", "gone").cursor
    fake_clock.advance(260)  # trimmed, then dropped
    rt.replay.append("s", "new")
    follower = rt.replay.follow(old)
    gap = next(follower)
    assert isinstance(gap, Gap)
    assert gap.reason == "unavailable"
    rt.replay.append("s", "newer")
    assert follower.next_item(timeout=WAIT).payload == "newer"  # type: ignore[union-attr]
    follower.close()


def test_follow_survives_many_lags_under_load(open_rt: Callable[..., Runtime]) -> None:
    total = 3_000
    rt = open_rt(subscriber_queue_size=8, max_events_per_session=total)
    follower = rt.replay.follow(rt.replay.current_cursor("s"))

    def append() -> None:
        for n in range(0, total, 10):
            rt.replay.append_many("s", range(n, n + 10))

    appender, _ = in_thread(append)
    got = [follower.next_item(timeout=WAIT).payload for _ in range(total)]  # type: ignore[union-attr]
    appender.join(WAIT)
    assert got == list(range(total))  # lagged or not: every event once, in order
    assert follower.lags >= 1
    assert follower.lags == rt.metrics()["replay_subscriber_lags"]
    follower.close()


def test_closing_a_follower_from_another_thread_ends_its_iteration(rt: Runtime) -> None:
    follower = rt.replay.follow(rt.replay.current_cursor("s"))
    thread, out = in_thread(lambda: list(follower))
    assert follower._sub is not None
    until_waiting(follower._sub)
    follower.close()
    thread.join(WAIT)
    assert out == [[]]


# -- closing -----------------------------------------------------------------------------


def test_closing_a_subscription_from_another_thread_wakes_its_waiter(rt: Runtime) -> None:
    sub = subscribe(rt, rt.replay.current_cursor("s"))
    thread, out = in_thread(lambda: sub.next_event())
    until_waiting(sub)
    sub.close()
    thread.join(WAIT)
    assert isinstance(out[0], Stopped)
    sub.close()  # idempotent
    rt.replay.append("s", "after close")  # pushes to nobody
    assert rt.metrics()["replay_subscribers"] == 0


def test_closing_the_runtime_wakes_waiting_subscribers(open_rt: Callable[..., Runtime]) -> None:
    rt = open_rt()
    start = rt.replay.current_cursor("s")
    waiting = subscribe(rt, start)
    queued = subscribe(rt, start)
    thread, out = in_thread(lambda: waiting.next_event())
    rt.replay.append("s", "last")
    thread.join(WAIT)
    assert out[0].payload == "last"  # type: ignore[attr-defined]
    follower = rt.replay.follow(rt.replay.current_cursor("s"))
    follow_thread, follow_out = in_thread(lambda: list(follower))
    blocked, blocked_out = in_thread(lambda: waiting.next_event())
    until_waiting(waiting)
    assert follower._sub is not None
    until_waiting(follower._sub)
    rt.close()
    blocked.join(WAIT)
    follow_thread.join(WAIT)
    assert isinstance(blocked_out[0], Stopped)
    assert "runtime closed" in str(blocked_out[0])
    assert follow_out == [[]]
    # Events queued before the close are still given, then Stopped.
    assert queued.next_event(timeout=0).payload == "last"
    with pytest.raises(Stopped):
        queued.next_event(timeout=0)
    assert list(queued) == []


def test_a_closed_subscription_lets_its_buffer_be_dropped(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock
) -> None:
    rt = open_rt()
    sub = subscribe(rt, rt.replay.current_cursor("s"))
    fake_clock.advance(300)
    assert rt.metrics()["replay_buffers"] == 1
    sub.close()
    fake_clock.advance(130)
    assert rt.metrics()["replay_buffers"] == 0
    assert rt.actor_ids("replay_buffer") == []  # the actor is really gone


@pytest.mark.parametrize("timeout", [-1, "1", True, float("nan")])
def test_bad_timeouts_are_refused(rt: Runtime, timeout: object) -> None:
    sub = subscribe(rt, rt.replay.current_cursor("s"))
    with pytest.raises(InvalidInput, match="timeout"):
        sub.next_event(timeout=timeout)  # type: ignore[arg-type]


def test_a_subscription_gets_its_own_session_only(rt: Runtime) -> None:
    sub = subscribe(rt, rt.replay.current_cursor("mine"))
    rt.replay.append("other", "not for me")
    rt.replay.append("mine", "for me")
    assert sub.next_event(timeout=WAIT).payload == "for me"
    assert sub.pending == 0


def test_concurrent_appenders_get_unique_positions_in_their_own_order(
    open_rt: Callable[..., Runtime],
) -> None:
    per_thread, threads = 300, 4
    rt = open_rt(subscriber_queue_size=per_thread * threads)
    start = rt.replay.current_cursor("s")
    sub = subscribe(rt, start)
    results: dict[int, list[ObservationEvent]] = {}

    def append(k: int) -> None:
        results[k] = [rt.replay.append("s", (k, n)) for n in range(per_thread)]

    workers = [threading.Thread(target=append, args=(k,), daemon=True) for k in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(WAIT * 3)
    total = per_thread * threads
    positions = sorted(e.position for events in results.values() for e in events)
    assert positions == list(range(1, total + 1))
    live = [sub.next_event(timeout=WAIT) for _ in range(total)]
    assert [e.position for e in live] == list(range(1, total + 1))
    held = rt.replay.after(start).events  # type: ignore[union-attr]
    assert [e.payload for e in live] == [e.payload for e in held]
    for k, events in results.items():
        # The event each call returned is the one held at its position...
        assert all(held[e.position - 1] == e for e in events)
        # ...and each sender's events reach subscribers in the order it sent them.
        assert [e.payload for e in live if e.payload[0] == k] == [(k, n) for n in range(per_thread)]


class _Inside(GreenroomActor):
    """Calls replay methods from inside its handlers (which must not wait)."""

    kind = "replay_caller"

    def __init__(self, ctx: ActorContext, rt: Runtime, sub: Subscription) -> None:
        super().__init__(ctx)
        self.rt = rt
        self.sub = sub

    def on_receive(self, message: Any) -> Any:
        if message == "append":
            return self.rt.replay.append("s", "from a handler")
        if message == "publish":
            return self.rt.replay.publish("s", "published from a handler")
        if message == "wait":
            return self.sub.next_event()
        if message == "append in a job":
            return self.run_blocking(self.rt.replay.append, "s", "from a job")
        if message == "publish in a job":
            return self.run_blocking(self.rt.replay.publish, "s", "published from a job")
        try:
            return self.sub.next_event(timeout=0).payload  # a poll never waits
        except Timeout:
            return "nothing yet"


def test_handlers_may_not_wait_on_replay_calls(rt: Runtime) -> None:
    sub = subscribe(rt, rt.replay.current_cursor("s"))
    ref = rt.spawn(_Inside, rt, sub)
    with pytest.raises(InvalidTransition, match=r"replay\.append\(\) was called from a handler"):
        ref.ask("append")
    refused = r"next_event\(\) was called from a handler of actor replay_caller:"
    with pytest.raises(InvalidTransition, match=refused):
        ref.ask("wait")
    assert ref.ask("poll") == "nothing yet"
    rt.replay.append("s", "from the host")
    rt.settle()  # the buffer answers the append before it fans the event out
    assert ref.ask("poll") == "from the host"
    assert ref.ask("publish") is None  # a publish never waits: allowed in a handler
    assert sub.next_event(timeout=WAIT).payload == "published from a handler"


def test_run_blocking_jobs_may_append_and_publish(rt: Runtime) -> None:
    # A job waits for one buffer's answer, not for itself: unlike settle() or close(),
    # the guard lets it call (only handlers, which hold a dispatcher thread, are refused).
    sub = subscribe(rt, rt.replay.current_cursor("s"))
    ref = rt.spawn(_Inside, rt, sub)
    appended = ref.ask("append in a job").get(timeout=WAIT)
    assert appended.payload == "from a job"
    assert sub.next_event(timeout=WAIT).payload == "from a job"
    assert ref.ask("publish in a job").get(timeout=WAIT) is None
    assert sub.next_event(timeout=WAIT).payload == "published from a job"


def test_a_subscription_dropped_without_a_close_is_let_go(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock
) -> None:
    rt = open_rt()
    quiet = subscribe(rt, rt.replay.current_cursor("quiet"))  # no event will ever come
    busy = subscribe(rt, rt.replay.current_cursor("busy"))
    assert rt.metrics()["replay_subscribers"] == 2
    del quiet, busy
    gc.collect()
    assert rt.metrics()["replay_subscribers"] == 0
    rt.replay.append("busy", "to nobody")  # the fan-out finds it gone
    fake_clock.advance(130)  # "quiet": the tick lets it go; "busy": its event trimmed
    fake_clock.advance(130)
    metrics = rt.metrics()
    assert metrics["replay_buffers"] == 0
    assert metrics["replay_buffers_dropped"] == 2
    assert rt.actor_ids("replay_buffer") == []


# -- timeouts, gaps during recovery, lag counts -----------------------------------------


def test_a_timeout_of_ten_years_waits_without_overflowing(rt: Runtime) -> None:
    sub = subscribe(rt, rt.replay.current_cursor("s"))
    thread, out = in_thread(lambda: sub.next_event(timeout=MAX_TIMEOUT_S))
    until_waiting(sub)
    rt.replay.append("s", "came")
    thread.join(WAIT)
    assert isinstance(out[0], ObservationEvent), out  # not an OverflowError
    assert out[0].payload == "came"
    assert sub.waiting == 0  # no stale waiter left behind
    with rt.replay.follow(rt.replay.current_cursor("s")) as follower:
        rt.replay.append("s", "followed")
        assert follower.next_item(timeout=MAX_TIMEOUT_S).payload == "followed"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "timeout", [float("inf"), 1e300, threading.TIMEOUT_MAX, MAX_TIMEOUT_S * 1.01]
)
def test_a_timeout_beyond_ten_years_is_refused(rt: Runtime, timeout: float) -> None:
    start = rt.replay.current_cursor("s")
    sub = subscribe(rt, start)
    pending = rt.replay.subscribe_pending(start)
    with rt.replay.follow(start) as follower:
        for wait in (sub.next_event, follower.next_item, pending.wait):
            with pytest.raises(InvalidInput, match="timeout must be a finite number"):
                wait(timeout)
    rt.replay.append("s", "still open")
    assert sub.next_event(timeout=WAIT).payload == "still open"
    again = pending.wait(WAIT)
    assert isinstance(again, Subscription)
    assert again.next_event(timeout=WAIT).payload == "still open"


def test_follow_meets_a_trimmed_gap_while_recovering_from_a_lag(
    open_rt: Callable[..., Runtime],
) -> None:
    rt = open_rt(subscriber_queue_size=2, max_events_per_session=3)
    start = rt.replay.current_cursor("s")
    with rt.replay.follow(start) as follower:
        rt.replay.append_many("s", [1, 2, 3])  # 3 > 2 waiting: the subscription lags
        rt.replay.append_many("s", [4, 5, 6])  # and 1-3 are trimmed from the buffer
        gap = follower.next_item(timeout=WAIT)  # re-subscribing from `start` meets it
        assert isinstance(gap, Gap)
        assert (gap.reason, gap.oldest_position) == ("trimmed", 4)
        assert gap.requested_cursor == start
        assert (follower.lags, follower.gaps) == (1, 1)
        rt.replay.append("s", 7)  # goes on from the gap's latest cursor (6)
        event = follower.next_item(timeout=WAIT)
        assert isinstance(event, ObservationEvent)
        assert (event.payload, event.position) == (7, 7)
    assert rt.metrics()["replay_subscriber_lags"] == 1


def test_lagged_missed_counts_what_was_dropped_at_the_overflow(
    open_rt: Callable[..., Runtime],
) -> None:
    rt = open_rt(subscriber_queue_size=2)
    sub = subscribe(rt, rt.replay.current_cursor("s"))
    rt.replay.append_many("s", [1, 2, 3])  # overflow: 3 dropped
    rt.replay.append_many("s", [4, 5])  # appended after: not counted (documented)
    with pytest.raises(SubscriberLagged) as caught:
        sub.next_event(timeout=WAIT)
    assert caught.value.missed == 3
    assert rt.metrics()["replay_events_missed"] == 3
    again = subscribe(rt, caught.value.resume_cursor)  # the resume gets every one
    assert take(again, 5) == [1, 2, 3, 4, 5]
