"""Units of the replay parts: a `Subscription`'s queue and a `Follower`'s recovery."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from greenroom import FakeClock, Runtime
from greenroom.cursor import format_cursor, parse_cursor
from greenroom.errors import InvalidInput, MalformedCursor, Stopped, SubscriberLagged, Timeout
from greenroom.futures import GreenroomFuture, drive
from greenroom.replay.follower import Follower
from greenroom.replay.messages import TRIM
from greenroom.replay.records import Gap, ObservationEvent, Replayed
from greenroom.replay.subscription import Subscription

from .actors_for_tests import Block, Counter

WAIT = 10.0


def event(position: int, session_id: str = "s") -> ObservationEvent:
    return ObservationEvent(session_id, 0, position, f"c{position}", position)


def test_offer_then_take_in_order() -> None:
    sub = Subscription("s", "c0", capacity=10)
    sub._start([event(1), event(2)])
    assert sub._offer([event(3)])
    assert sub._offer([event(4), event(5)])
    assert [sub.next_event(timeout=0).position for _ in range(5)] == [1, 2, 3, 4, 5]
    assert sub.cursor == "c5"
    assert sub.pending == 0


def test_overflow_lags_and_drops_the_queue() -> None:
    sub = Subscription("s", "c0", capacity=3)
    sub._start([event(1)])  # replayed: not counted against the capacity
    assert sub._offer([event(2), event(3)])
    assert sub.next_event(timeout=0).position == 1
    assert not sub._offer([event(4), event(5)])  # 2 waiting + 2 > 3
    assert sub._lagged
    assert sub.closed
    assert sub.pending == 0
    with pytest.raises(SubscriberLagged) as caught:
        sub.next_event(timeout=0)
    assert (caught.value.missed, caught.value.resume_cursor) == (4, "c1")
    assert not sub._offer([event(6)])  # detached: takes nothing more


def test_a_stop_gives_what_was_queued_then_stopped() -> None:
    sub = Subscription("s", "c0", capacity=10)
    sub._offer([event(1)])
    sub._stop("runtime closed")
    sub._stop("twice")  # the first reason stays
    assert not sub._offer([event(2)])
    assert sub.next_event().position == 1
    with pytest.raises(Stopped, match="runtime closed"):
        sub.next_event()


def test_close_drops_the_queue_and_reports_once() -> None:
    closed: list[Subscription] = []
    sub = Subscription("s", "c0", capacity=10, on_close=closed.append)
    sub._offer([event(1)])
    sub.close()
    sub.close()
    assert closed == [sub]
    with pytest.raises(Stopped, match="was closed"):
        sub.next_event(timeout=0)
    assert list(sub) == []


def test_a_lagged_subscription_closed_by_its_holder_is_not_reported() -> None:
    closed: list[Subscription] = []
    sub = Subscription("s", "c0", capacity=1, on_close=closed.append)
    sub._offer([event(1), event(2)])
    sub.close()
    assert closed == []  # the buffer let it go already


def test_a_timed_out_wait_leaves_the_subscription_usable() -> None:
    sub = Subscription("s", "c0", capacity=10)
    with pytest.raises(Timeout):
        sub.next_event(timeout=0)
    assert sub.waiting == 0
    sub._offer([event(1)])
    assert sub.next_event(timeout=0).position == 1


def test_two_waiting_consumers_each_get_an_event() -> None:
    sub = Subscription("s", "c0", capacity=10)
    got: list[int] = []
    lock = threading.Lock()

    def consume() -> None:
        position = sub.next_event(timeout=WAIT).position
        with lock:
            got.append(position)

    threads = [threading.Thread(target=consume, daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    for _ in range(50_000_000):  # spin (no sleep) until both wait
        if sub.waiting == 2:
            break
    sub._offer([event(1)])
    sub._offer([event(2)])
    for thread in threads:
        thread.join(WAIT)
    assert sorted(got) == [1, 2]


class Waker:
    """A `Waker` that counts its releases."""

    def __init__(self) -> None:
        self.released = 0

    def release(self) -> None:
        self.released += 1


def test_take_lists_a_waker_that_the_next_put_releases_once() -> None:
    sub = Subscription("s", "c0", capacity=10)
    waker = Waker()
    assert sub.take(waker) is None
    assert sub.take(waker) is None  # listed once, however often it asks
    assert sub.waiting == 1
    sub._offer([event(1)])
    assert (waker.released, sub.waiting) == (1, 0)
    assert sub.take(waker) == event(1)
    assert sub.cursor == "c1"
    assert sub.waiting == 0  # given an event: not listed
    assert sub.take(waker) is None
    sub.drop_waker(waker)
    sub.drop_waker(waker)  # idempotent
    sub._offer([event(2)])
    assert waker.released == 1  # dropped: not released again
    assert sub.take(waker) == event(2)
    assert sub.take(waker) is None
    sub.close()  # a close releases it too
    assert waker.released == 2
    with pytest.raises(Stopped):
        sub.take(waker)


def test_take_raises_subscriber_lagged_once_drained() -> None:
    sub = Subscription("s", "c0", capacity=1)
    sub._offer([event(1)])
    assert sub.take(Waker()) == event(1)
    sub._offer([event(2), event(3)])
    with pytest.raises(SubscriberLagged):
        sub.take(Waker())


# -- the seam the async face shares: steps and pending subscribes ----------------------


def test_steps_check_when_made_and_send_when_run(rt: Runtime) -> None:
    start = rt.replay.current_cursor("s")
    with pytest.raises(InvalidInput, match="payload must be JSON"):
        rt.replay.append_steps("s", {1})
    with pytest.raises(MalformedCursor):
        rt.replay.after_steps("nonsense")
    steps = rt.replay.append_steps("s", "one", revision=2)
    assert rt.replay.after(start) == Replayed("s", (), start)  # made, not run: not sent
    future = next(steps)
    assert isinstance(future, GreenroomFuture)
    assert future.wait(WAIT)
    with pytest.raises(StopIteration) as done:
        steps.send(None)
    appended = done.value.value
    assert isinstance(appended, ObservationEvent)
    assert (appended.payload, appended.revision, appended.position) == ("one", 2, 1)
    assert drive(rt.replay.append_many_steps("s", ["two"]))[0].position == 2
    with pytest.raises(StopIteration) as empty:
        next(rt.replay.append_many_steps("s", []))  # nothing to send, nothing to wait for
    assert empty.value.value == []
    assert drive(rt.replay.current_cursor_steps("s")) == rt.replay.current_cursor("s")
    replayed = drive(rt.replay.after_steps(start, session_id="s"))
    assert isinstance(replayed, Replayed)
    assert [e.payload for e in replayed.events] == ["one", "two"]


def test_a_pending_subscribe_is_polled_without_waiting(rt: Runtime) -> None:
    start = rt.replay.current_cursor("s")
    rt.replay.append("s", "held")
    pending = rt.replay.subscribe_pending(start, session_id="s")
    assert pending.session_id == "s"
    assert pending.future.wait(WAIT)
    sub = pending.poll()
    assert isinstance(sub, Subscription)
    assert pending.poll() is sub
    assert sub.next_event(timeout=0).payload == "held"

    unknown = rt.replay.subscribe_pending(format_cursor("0" * 16, 0, 3, "nobody"))
    assert unknown.future.done  # answered here: no buffer to ask
    gap = unknown.poll()
    assert isinstance(gap, Gap)
    assert gap.reason == "unavailable"

    given_up = rt.replay.subscribe_pending(start)
    assert rt.metrics()["replay_subscribers"] == 2
    given_up.cancel()
    assert rt.metrics()["replay_subscribers"] == 1
    late = given_up.wait(WAIT)
    assert isinstance(late, Subscription)
    assert late.closed  # what a cancelled subscribe gives is closed
    sub.close()
    assert rt.metrics()["replay_subscribers"] == 0


# -- Follower, on a scripted subscribe ------------------------------------------------


def test_follower_resubscribes_from_the_last_cursor_it_gave() -> None:
    asked: list[str] = []
    first = Subscription("s", "c0", capacity=1)
    second = Subscription("s", "c1", capacity=10)
    subs = iter([first, second])

    def subscribe(cursor: str) -> Subscription | Gap:
        asked.append(cursor)
        return next(subs)

    follower = Follower(subscribe, "c0")
    first._offer([event(1)])
    assert follower.next_item(timeout=0) == event(1)
    first._offer([event(2), event(3)])  # lags
    second._start([event(2), event(3)])
    assert [follower.next_item(timeout=0) for _ in range(2)] == [event(2), event(3)]
    assert asked == ["c0", "c1"]
    assert follower.lags == 1
    follower.close()
    assert second.closed
    with pytest.raises(Stopped):
        follower.next_item()


def test_follower_yields_each_gap_once_then_goes_on_from_its_tail() -> None:
    asked: list[str] = []
    gap = Gap("s", "trimmed", "c0", "c9", 0, 5, "gone")
    sub = Subscription("s", "c9", capacity=10)
    results = iter([gap, sub])

    def subscribe(cursor: str) -> Subscription | Gap:
        asked.append(cursor)
        return next(results)

    with Follower(subscribe, "c0") as follower:
        assert next(follower) is gap
        assert follower.cursor == "c9"
        sub._offer([event(10)])
        assert next(follower) == event(10)
        assert asked == ["c0", "c9"]
        assert follower.gaps == 1
    assert sub.closed


# -- a buffer retiring under a call (white-box: the order of its mail is arranged) ----


def spin_until(condition: Callable[[], bool]) -> None:
    """Spin (no sleep) until `condition()` holds."""
    for _ in range(50_000_000):
        if condition():
            return
    pytest.fail("condition never held")


def test_an_ask_queued_behind_a_retirement_goes_to_a_fresh_buffer(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock
) -> None:
    rt = open_rt(dispatcher_threads=1, slow_handler_warning_s=None, replay_trim_interval_s=1e6)
    old = rt.replay.current_cursor("s")
    ref = rt.get_actor("replay_buffer", rt.actor_ids("replay_buffer")[0])
    fake_clock.advance(121)  # idle for longer than max_event_age_s; no tick yet
    blocker = rt.spawn(Counter)
    release = threading.Event()
    blocker.tell(Block(release))  # holds the only dispatcher thread
    spin_until(lambda: len(blocker.actor_inbox) == 0)
    ref.tell(TRIM)  # the buffer will retire on this...
    out: list[object] = []
    thread = threading.Thread(target=lambda: out.append(rt.replay.current_cursor("s")), daemon=True)
    thread.start()
    spin_until(lambda: len(ref.actor_inbox) == 2)  # ...with this ask queued behind it
    release.set()
    thread.join(WAIT)
    assert len(out) == 1
    new = out[0]
    assert isinstance(new, str)
    assert parse_cursor(new).epoch != parse_cursor(old).epoch
    metrics = rt.metrics()
    assert metrics["replay_buffers_dropped"] == 1
    assert metrics["replay_buffers"] == 1
    assert metrics["ask_errors"] == 0


def test_an_ask_to_a_buffer_already_stopped_goes_to_a_fresh_buffer(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock
) -> None:
    rt = open_rt(replay_trim_interval_s=1e6)
    old = rt.replay.current_cursor("s")
    slot = rt.replay._buffers["s"]
    ref = slot.ref
    assert ref is not None
    fake_clock.advance(121)
    ref.tell(TRIM)
    rt.settle()
    assert not ref.is_alive()
    rt.replay._buffers["s"] = slot  # as a caller that looked it up just before
    new = rt.replay.current_cursor("s")
    assert parse_cursor(new).epoch != parse_cursor(old).epoch
    assert rt.replay._buffers["s"] is not slot


def _hold_the_dispatcher(rt: Runtime) -> threading.Event:
    """Block the only dispatcher thread until the returned event is set."""
    blocker = rt.spawn(Counter)
    release = threading.Event()
    blocker.tell(Block(release))
    spin_until(lambda: len(blocker.actor_inbox) == 0)
    return release


def test_a_publish_queued_behind_a_retiring_tick_is_appended_not_lost(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock
) -> None:
    rt = open_rt(dispatcher_threads=1, slow_handler_warning_s=None, replay_trim_interval_s=1e6)
    start = rt.replay.current_cursor("s")
    ref = rt.get_actor("replay_buffer", rt.actor_ids("replay_buffer")[0])
    fake_clock.advance(121)  # idle for longer than max_event_age_s; no tick yet
    release = _hold_the_dispatcher(rt)
    ref.tell(TRIM)  # the buffer would retire on this...
    rt.replay.publish("s", "told")  # ...with this told append queued behind it
    assert len(ref.actor_inbox) == 2
    release.set()
    rt.settle()
    assert ref.is_alive()  # it did not retire: a publish was on its way
    assert rt.replay.after(start).events[0].payload == "told"  # type: ignore[union-attr]
    metrics = rt.metrics()
    assert metrics["replay_buffers_dropped"] == 0
    assert metrics["replay_publishes_pending"] == 0
    assert metrics["dead_letters"] == 0


@pytest.mark.parametrize("call", ["append", "subscribe"])
def test_an_append_or_subscribe_queued_behind_a_retirement_is_answered_afresh(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock, call: str
) -> None:
    rt = open_rt(dispatcher_threads=1, slow_handler_warning_s=None, replay_trim_interval_s=1e6)
    old = rt.replay.current_cursor("s")
    ref = rt.get_actor("replay_buffer", rt.actor_ids("replay_buffer")[0])
    fake_clock.advance(121)
    release = _hold_the_dispatcher(rt)
    ref.tell(TRIM)  # the buffer will retire on this...
    out: list[object] = []

    def run() -> None:
        if call == "append":
            out.append(rt.replay.append("s", "after"))
        else:
            out.append(rt.replay.subscribe(old))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    spin_until(lambda: len(ref.actor_inbox) == 2)  # ...with this ask queued behind it
    release.set()
    thread.join(WAIT)
    assert len(out) == 1
    result = out[0]
    if call == "append":
        assert isinstance(result, ObservationEvent)
        assert result.position == 1  # the new incarnation's first
        assert parse_cursor(result.cursor).epoch != parse_cursor(old).epoch
        assert rt.metrics()["replay_buffers"] == 1
    else:
        assert isinstance(result, Gap)  # its cursor's incarnation is gone
        assert result.reason == "unavailable"
        assert rt.metrics()["replay_buffers"] == 0  # a gap made no new buffer
        assert rt.metrics()["replay_subscribers"] == 0
    assert not ref.is_alive()
    metrics = rt.metrics()
    assert metrics["replay_buffers_dropped"] == 1
    assert metrics["ask_errors"] == 0


# -- deadlines ----------------------------------------------------------------------------


class FakeStopwatch:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def watch(monkeypatch: pytest.MonkeyPatch) -> FakeStopwatch:
    fake = FakeStopwatch()
    monkeypatch.setattr("greenroom.replay.subscription.stopwatch", fake)
    monkeypatch.setattr("greenroom.replay.follower.stopwatch", fake)
    return fake


def test_next_event_keeps_its_deadline_when_another_consumer_takes_the_event(
    watch: FakeStopwatch,
) -> None:
    sub = Subscription("s", "c0", capacity=10)
    thread_out: list[object] = []

    def wait() -> None:
        try:
            thread_out.append(sub.next_event(timeout=60))
        except BaseException as error:
            thread_out.append(error)

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    spin_until(lambda: sub.waiting > 0)
    watch.now = 61.0  # the deadline passed while it waited...
    sub._offer([event(1)])  # ...and an event came, which another consumer takes first
    assert sub.next_event(timeout=0).position == 1
    thread.join(WAIT)  # a restarted 60 s wait would still be waiting here
    assert len(thread_out) == 1
    assert isinstance(thread_out[0], Timeout)
    assert sub.waiting == 0


class ScriptedPending:
    """A re-subscribe the buffer has not answered (a `PendingSubscription`)."""

    def __init__(self, answer: Subscription) -> None:
        self.answer = answer
        self.ready = False
        self.waits: list[float | None] = []
        self.cancelled = False

    def wait(self, timeout: float | None) -> Subscription | Gap:
        self.waits.append(timeout)
        if not self.ready:
            raise Timeout("not answered yet")
        return self.answer

    def cancel(self) -> None:
        self.cancelled = True


def test_follower_bounds_its_resubscribe_by_the_calls_deadline(watch: FakeStopwatch) -> None:
    first = Subscription("s", "c0", capacity=1)
    second = Subscription("s", "c0", capacity=10)
    pending = ScriptedPending(second)
    asked: list[str] = []

    def subscribe(cursor: str) -> Subscription | ScriptedPending:
        asked.append(cursor)
        if len(asked) == 1:
            return first
        watch.now += 3.0  # sending the re-subscribe took 3 s of the call's 5
        return pending

    follower = Follower(subscribe, "c0")
    first._offer([event(1), event(2)])  # lags at once
    with pytest.raises(Timeout, match="stays pending"):
        follower.next_item(timeout=5)
    assert pending.waits == [2.0]  # the rest of the deadline, not 5 again
    with pytest.raises(Timeout):
        follower.next_item(timeout=0)  # a poll: never waits, never re-sends
    assert pending.waits == [2.0, 0.0]
    assert asked == ["c0", "c0"]
    pending.ready = True
    second._start([event(1)])
    assert follower.next_item(timeout=0) == event(1)
    assert follower.lags == 1
    follower.close()
    assert second.closed


def test_closing_a_follower_cancels_its_pending_resubscribe(watch: FakeStopwatch) -> None:
    first = Subscription("s", "c0", capacity=1)
    pending = ScriptedPending(Subscription("s", "c0", capacity=10))
    results = iter([first, pending])
    follower = Follower(lambda cursor: next(results), "c0")
    first._offer([event(1), event(2)])
    with pytest.raises(Timeout):
        follower.next_item(timeout=0)
    follower.close()
    assert pending.cancelled


def test_a_pending_resubscribe_through_the_runtime_is_picked_up_later(
    open_rt: Callable[..., Runtime],
) -> None:
    rt = open_rt(dispatcher_threads=1, slow_handler_warning_s=None, subscriber_queue_size=1)
    follower = rt.replay.follow(rt.replay.current_cursor("s"))
    rt.replay.append_many("s", [1, 2])  # lags at once
    rt.settle()
    release = _hold_the_dispatcher(rt)  # the buffer cannot answer the re-subscribe
    with pytest.raises(Timeout, match="stays pending"):
        follower.next_item(timeout=0)
    with pytest.raises(Timeout):
        follower.next_item(timeout=0)
    release.set()
    assert [follower.next_item(timeout=WAIT).payload for _ in range(2)] == [1, 2]  # type: ignore[union-attr]
    assert rt.metrics()["replay_subscribers"] == 1  # one re-subscribe, not one per poll
    follower.close()
