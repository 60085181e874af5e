"""Replay buffers through the runtime facade: appends, replays, gaps, bounds, drops."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import attrs
import pytest

import greenroom
from greenroom import FakeClock, Gap, ObservationEvent, Replayed, Runtime, Subscription
from greenroom.actors.base import GreenroomActorRef
from greenroom.cursor import format_cursor, parse_cursor
from greenroom.errors import (
    InvalidInput,
    MalformedCursor,
    Stopped,
    SubscriberLagged,
    WrongSession,
)
from greenroom.replay.messages import Append

MAX_AGE = 120.0
TICK = 10.0


def replayed(result: Replayed | Gap) -> list[Any]:
    """The payloads of a `Replayed` (failing on a Gap)."""
    assert isinstance(result, Replayed), result
    return [event.payload for event in result.events]


def positions(result: Replayed | Gap) -> list[int]:
    assert isinstance(result, Replayed), result
    return [event.position for event in result.events]


# -- appends and replays ---------------------------------------------------------------


def test_replay_after_a_cursor_gives_the_events_in_order(rt: Runtime) -> None:
    start = rt.replay.current_cursor("s1")
    appended = [rt.replay.append("s1", {"n": n}) for n in range(5)]
    assert [event.position for event in appended] == [1, 2, 3, 4, 5]
    assert len({event.cursor for event in appended}) == 5
    assert all(event.session_id == "s1" and event.revision == 0 for event in appended)

    result = rt.replay.after(start)
    assert isinstance(result, Replayed)
    assert result.events == tuple(appended)
    assert result.latest_cursor == appended[-1].cursor
    assert replayed(rt.replay.after(appended[1].cursor)) == [{"n": 2}, {"n": 3}, {"n": 4}]

    at_tail = rt.replay.after(appended[-1].cursor)
    assert at_tail == Replayed("s1", (), appended[-1].cursor)
    assert rt.replay.current_cursor("s1") == appended[-1].cursor  # same revision, same tail


def test_position_zero_on_a_fresh_buffer_replays_everything(rt: Runtime) -> None:
    start = rt.replay.current_cursor("fresh")
    assert parse_cursor(start).position == 0
    rt.replay.append_many("fresh", ["a", "b", "c"])
    assert replayed(rt.replay.after(start)) == ["a", "b", "c"]


def test_append_many_continues_the_positions(rt: Runtime) -> None:
    first = rt.replay.append("s", "one")
    batch = rt.replay.append_many("s", ("two", "three"), revision=2)
    assert [event.position for event in batch] == [2, 3]
    assert [event.revision for event in batch] == [2, 2]
    assert rt.replay.append_many("s", []) == []
    assert rt.replay.append_many("s", (n for n in range(2)))[-1].position == 5
    assert replayed(rt.replay.after(first.cursor)) == ["two", "three", 0, 1]
    assert rt.metrics()["replay_events_appended"] == 5


def test_events_are_immutable_and_payloads_stored_as_given(rt: Runtime) -> None:
    payload = {"big": list(range(100))}
    event = rt.replay.append("s", payload)
    assert event.payload is payload
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        event.position = 7  # type: ignore[misc]
    start = format_cursor(parse_cursor(event.cursor).epoch, 0, 0, "s")
    again = rt.replay.after(start)
    assert isinstance(again, Replayed)
    assert again.events[0] is event  # the same object: no copy per reader
    assert isinstance(again.events, tuple)


def test_partial_replays_of_a_long_buffer(rt: Runtime) -> None:
    events = rt.replay.append_many("long", list(range(100)))
    assert positions(rt.replay.after(events[94].cursor)) == [96, 97, 98, 99, 100]
    assert positions(rt.replay.after(events[9].cursor)) == list(range(11, 101))
    assert positions(rt.replay.after(events[49].cursor)) == list(range(51, 101))


def test_sessions_are_separate_and_ids_may_hold_colons(rt: Runtime) -> None:
    a = rt.replay.current_cursor("team:a:1")
    b = rt.replay.current_cursor("team:b")
    rt.replay.append("team:a:1", "for a")
    rt.replay.append("team:b", "for b")
    assert replayed(rt.replay.after(a)) == ["for a"]
    assert replayed(rt.replay.after(b)) == ["for b"]
    assert parse_cursor(a).session_id == "team:a:1"
    assert rt.metrics()["replay_buffers"] == 2


def test_public_names_are_importable() -> None:
    assert greenroom.ObservationEvent is ObservationEvent
    assert greenroom.Replayed is Replayed
    assert greenroom.Gap is Gap
    assert greenroom.Subscription is Subscription
    assert SubscriberLagged(3, "c").missed == 3


# -- gaps ------------------------------------------------------------------------------


def test_gap_after_a_capacity_trim(open_rt: Callable[..., Runtime]) -> None:
    rt = open_rt(max_events_per_session=3)
    start = rt.replay.current_cursor("s")
    events = rt.replay.append_many("s", ["a", "b"])
    events += [rt.replay.append("s", payload) for payload in ("c", "d", "e")]

    gap = rt.replay.after(start)
    assert isinstance(gap, Gap)
    assert gap.reason == "trimmed"
    assert gap.oldest_position == 3
    assert gap.requested_cursor == start
    assert gap.latest_cursor == events[-1].cursor
    assert gap.latest_revision == 0
    assert gap.session_id == "s"
    assert "1 to 2 were trimmed" in gap.detail
    assert isinstance(rt.replay.after(events[0].cursor), Gap)
    assert replayed(rt.replay.after(events[1].cursor)) == ["c", "d", "e"]
    assert rt.metrics()["replay_events_trimmed"] == 2


def test_a_batch_larger_than_the_buffer_keeps_its_newest(open_rt: Callable[..., Runtime]) -> None:
    rt = open_rt(max_events_per_session=3)
    events = rt.replay.append_many("s", list(range(10)))
    assert len(events) == 10
    assert replayed(rt.replay.after(events[6].cursor)) == [7, 8, 9]
    gap = rt.replay.after(events[5].cursor)
    assert isinstance(gap, Gap)
    assert gap.oldest_position == 8
    assert rt.metrics()["replay_events_trimmed"] == 7


def test_gap_after_an_age_trim_on_the_clock_alone(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock
) -> None:
    rt = open_rt()
    start = rt.replay.current_cursor("s")
    old = rt.replay.append("s", "old")
    fake_clock.advance(60)
    young = rt.replay.append("s", "young")
    assert replayed(rt.replay.after(start)) == ["old", "young"]
    fake_clock.advance(65)  # "old" is 125 s old; the tick at 120 s found it 120 s old: kept
    assert rt.metrics()["replay_events_trimmed"] == 0
    fake_clock.advance(5)  # the tick at 130 s trims it, with no append and no read
    assert rt.metrics()["replay_events_trimmed"] == 1

    gap = rt.replay.after(start)
    assert isinstance(gap, Gap)
    assert gap.reason == "trimmed"
    assert gap.oldest_position == 2
    assert gap.latest_cursor == young.cursor
    assert replayed(rt.replay.after(old.cursor)) == ["young"]

    fake_clock.advance(70)  # "young" ages out too: nothing held
    gap = rt.replay.after(old.cursor)
    assert isinstance(gap, Gap)
    assert (gap.reason, gap.oldest_position) == ("trimmed", None)
    assert replayed(rt.replay.after(young.cursor)) == []


def test_a_replay_never_returns_an_expired_event_between_ticks(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock
) -> None:
    rt = open_rt(replay_trim_interval_s=1000.0)
    start = rt.replay.current_cursor("s")
    rt.replay.append("s", "old")
    fake_clock.advance(121)  # no tick yet: the replay itself trims
    gap = rt.replay.after(start)
    assert isinstance(gap, Gap)
    assert gap.reason == "trimmed"


def test_stale_epoch_after_the_buffer_is_made_again(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock
) -> None:
    rt = open_rt()
    event = rt.replay.append("s", "before")
    fake_clock.advance(130)  # trimmed by age
    fake_clock.advance(130)  # empty and idle for longer than max_event_age_s: dropped
    assert rt.metrics()["replay_buffers_dropped"] == 1
    fresh = rt.replay.append("s", "after")  # a new incarnation, positions from 1 again
    assert fresh.position == 1
    assert parse_cursor(fresh.cursor).epoch != parse_cursor(event.cursor).epoch

    stale = format_cursor(parse_cursor(event.cursor).epoch, 0, 0, "s")
    for cursor in (event.cursor, stale):
        gap = rt.replay.after(cursor)
        assert isinstance(gap, Gap)
        assert gap.reason == "unavailable"  # never "after", the wrong suffix
        assert gap.latest_cursor == fresh.cursor
        assert "another incarnation" in gap.detail
        assert isinstance(rt.replay.subscribe(cursor), Gap)


def test_stale_epoch_after_a_host_restart(open_rt: Callable[..., Runtime]) -> None:
    first = open_rt()
    start = first.replay.current_cursor("s")
    event = first.replay.append("s", "before restart")
    first.close()
    second = open_rt()
    second.replay.append("s", "after restart")
    for cursor in (start, event.cursor):
        gap = second.replay.after(cursor)
        assert isinstance(gap, Gap)
        assert gap.reason == "unavailable"
    # Even with no buffer yet for the session in the new process.
    gap = second.replay.after(format_cursor(parse_cursor(start).epoch, 0, 0, "other"))
    assert isinstance(gap, Gap)
    assert gap.reason == "unavailable"


def test_cursor_ahead_of_the_tail_is_unavailable(rt: Runtime) -> None:
    tail = rt.replay.append_many("s", ["a", "b"])[-1]
    parts = parse_cursor(tail.cursor)
    ahead = attrs.evolve(parts, position=parts.position + 1).format()
    gap = rt.replay.after(ahead)
    assert isinstance(gap, Gap)
    assert gap.reason == "unavailable"
    assert gap.latest_cursor == tail.cursor
    assert "ahead of the buffer's tail 2" in gap.detail
    assert isinstance(rt.replay.subscribe(ahead), Gap)


def test_revisions(rt: Runtime) -> None:
    start = rt.replay.current_cursor("s", revision=1)
    assert parse_cursor(start).revision == 1
    rt.replay.append("s", "at 1", revision=1)
    two = rt.replay.append("s", "at 2", revision=2)
    # A replay across a revision change delivers the change, in order.
    result = rt.replay.after(start)
    assert [(event.payload, event.revision) for event in result.events] == [
        ("at 1", 1),
        ("at 2", 2),
    ]
    # A revision the buffer never reached cannot be a cursor it gave.
    ahead = attrs.evolve(parse_cursor(two.cursor), revision=3).format()
    gap = rt.replay.after(ahead)
    assert isinstance(gap, Gap)
    assert (gap.reason, gap.latest_revision, gap.latest_cursor) == ("unavailable", 2, two.cursor)
    assert "revision 3 is ahead" in gap.detail
    # Asking a cursor at a revision makes it known (the host's state moved on first).
    at_three = rt.replay.current_cursor("s", revision=3)
    assert replayed(rt.replay.after(at_three)) == []
    assert replayed(rt.replay.after(ahead)) == []


def test_resuming_from_a_gaps_latest_cursor(open_rt: Callable[..., Runtime]) -> None:
    rt = open_rt(max_events_per_session=2)
    start = rt.replay.current_cursor("s")
    rt.replay.append_many("s", [1, 2, 3])
    gap = rt.replay.after(start)
    assert isinstance(gap, Gap)
    rt.replay.append("s", 4)
    assert replayed(rt.replay.after(gap.latest_cursor)) == [4]


# -- bad input -------------------------------------------------------------------------


def test_bad_input_is_refused_and_changes_nothing(rt: Runtime) -> None:
    start = rt.replay.current_cursor("s")
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: rt.replay.append("", 1), "session_id must not be empty"),
        (lambda: rt.replay.append(5, 1), "session_id must be a str"),  # type: ignore[arg-type]
        (lambda: rt.replay.append("s\ud800", 1), "session_id is not valid Unicode"),
        (lambda: rt.replay.append("s", 1, revision=-1), "revision must be an int >= 0"),
        (lambda: rt.replay.append("s", 1, revision=True), "revision"),
        (lambda: rt.replay.append("s", 1, revision=1.0), "revision"),  # type: ignore[arg-type]
        (lambda: rt.replay.append("s", 1, revision=2**63), f"<= {2**63 - 1}, got {2**63}"),
        (lambda: rt.replay.append("s", {1, 2}), "payload must be JSON-serialisable"),
        (lambda: rt.replay.append("s", object()), "payload must be JSON-serialisable"),
        (lambda: rt.replay.append("s", float("nan")), "payload must be JSON-serialisable"),
        (lambda: rt.replay.append("s", b"bytes"), "payload must be JSON-serialisable"),
        (lambda: rt.replay.append_many("s", "abc"), "payloads must be a list"),
        (lambda: rt.replay.append_many("s", {"a": 1}), "payloads must be a list"),
        (lambda: rt.replay.append_many("s", 3), "payloads must be a list"),  # type: ignore[arg-type]
        (lambda: rt.replay.append_many("s", [1, 2, {3}]), "payloads\\[2\\] must be JSON"),
        (lambda: rt.replay.current_cursor(""), "session_id"),
        (lambda: rt.replay.current_cursor("s", revision=-2), "revision"),
        (lambda: rt.replay.after(start, session_id=""), "session_id"),
    ]
    for call, message in cases:
        with pytest.raises(InvalidInput, match=message):
            call()
    circular: list[Any] = []
    circular.append(circular)
    with pytest.raises(InvalidInput, match="JSON"):
        rt.replay.append("s", circular)
    assert rt.replay.current_cursor("s") == start  # nothing was appended
    assert rt.metrics()["replay_events_appended"] == 0
    assert rt.metrics()["ask_errors"] == 0  # refused on the caller's side


def test_malformed_cursors_are_refused_by_every_call(rt: Runtime) -> None:
    for call in (rt.replay.after, rt.replay.subscribe, rt.replay.follow):
        with pytest.raises(MalformedCursor, match="its position"):
            call("v1:0123456789abcdef:0:x:s")
        with pytest.raises(MalformedCursor, match="version prefix"):
            call("garbage")
    assert rt.metrics()["replay_buffers"] == 0  # nothing was made for them


def test_wrong_session(rt: Runtime) -> None:
    cursor = rt.replay.current_cursor("a")
    for call in (rt.replay.after, rt.replay.subscribe, rt.replay.follow):
        with pytest.raises(WrongSession, match="belongs to session 'a', not 'b'"):
            call(cursor, session_id="b")
    assert isinstance(rt.replay.after(cursor, session_id="a"), Replayed)


def test_json_values_of_every_kind_are_accepted(rt: Runtime) -> None:
    payloads = [None, True, 0, -1.5, "text", [1, "two"], {"k": {"nested": [None]}}, (1, 2)]
    events = rt.replay.append_many("s", payloads)
    assert [event.payload for event in events] == payloads
    assert rt.replay.append("s", {"a": [1, 2]}).payload == {"a": [1, 2]}


# -- idle buffers, metrics, close ----------------------------------------------------


def test_idle_buffers_are_dropped_and_their_actors_stopped(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock
) -> None:
    rt = open_rt()
    rt.replay.current_cursor("idle")  # made, and never used again
    rt.replay.append("busy", "event")
    assert rt.metrics()["replay_buffers"] == 2
    assert len(rt.actor_ids("replay_buffer")) == 2

    fake_clock.advance(MAX_AGE)  # idle for exactly the bound: kept
    assert rt.metrics()["replay_buffers"] == 2
    fake_clock.advance(TICK)  # longer than the bound: "idle" dropped; "busy" trimmed only
    metrics = rt.metrics()
    assert metrics["replay_buffers_dropped"] == 1
    assert metrics["replay_buffers"] == 1
    assert metrics["replay_events_trimmed"] == 1
    assert [actor.split("#")[0] for actor in rt.actor_ids("replay_buffer")] == ["busy"]

    fake_clock.advance(MAX_AGE + TICK)  # "busy" has been empty for longer than the bound
    metrics = rt.metrics()
    assert metrics["replay_buffers_dropped"] == 2
    assert metrics["replay_buffers"] == 0
    assert rt.actor_ids("replay_buffer") == []
    assert metrics["dead_letters"] == 0


def test_a_buffer_with_a_subscriber_or_events_is_kept(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock
) -> None:
    rt = open_rt(max_event_age_s=1000.0)
    sub = rt.replay.subscribe(rt.replay.current_cursor("watched"))
    assert isinstance(sub, Subscription)
    rt.replay.append("held", "young")
    fake_clock.advance(2000)  # "held" loses its event at 1010 s, then idles 990 s: kept
    assert rt.metrics()["replay_buffers_dropped"] == 0
    assert rt.metrics()["replay_buffers"] == 2
    sub.close()
    fake_clock.advance(1010)
    assert rt.metrics()["replay_buffers_dropped"] == 2


def test_a_call_racing_a_retiring_buffer_gets_a_fresh_one(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock
) -> None:
    rt = open_rt()
    old = rt.replay.current_cursor("s")
    ref = rt.get_actor("replay_buffer", rt.actor_ids("replay_buffer")[0])
    fake_clock.advance(MAX_AGE + TICK)
    assert not ref.is_alive()
    # The facade's lookup no longer has it; a call now makes a new incarnation.
    new = rt.replay.current_cursor("s")
    assert parse_cursor(new).epoch != parse_cursor(old).epoch


def test_metrics_start_at_zero(rt: Runtime) -> None:
    metrics = rt.metrics()
    for name in (
        "replay_events_appended",
        "replay_events_trimmed",
        "replay_subscriber_lags",
        "replay_events_missed",
        "replay_buffers_dropped",
        "replay_buffers",
        "replay_subscribers",
    ):
        assert metrics[name] == 0, name


def test_the_trimmer_starts_with_the_first_buffer(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock
) -> None:
    timers = fake_clock.pending_timers()
    rt = open_rt()
    assert fake_clock.pending_timers() == timers  # a runtime without replay has no tick
    rt.replay.current_cursor("s")
    rt.settle()
    assert fake_clock.pending_timers() == timers + 1
    assert rt.actor_ids("replay_trimmer") == ["replay_trimmer"]


def test_calls_after_close_raise_stopped(open_rt: Callable[..., Runtime]) -> None:
    rt = open_rt()
    cursor = rt.replay.current_cursor("s")
    rt.close()
    calls: list[Callable[[], object]] = [
        lambda: rt.replay.append("s", 1),
        lambda: rt.replay.append_many("s", [1]),
        lambda: rt.replay.current_cursor("s"),
        lambda: rt.replay.after(cursor),
        lambda: rt.replay.subscribe(cursor),
        lambda: rt.replay.follow(cursor),
    ]
    for call in calls:
        with pytest.raises(Stopped):
            call()


def test_drops_and_trims_are_logged(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    rt = open_rt(max_events_per_session=1)
    with caplog.at_level(logging.DEBUG, logger="greenroom.replay"):
        rt.replay.append_many("s", [1, 2, 3])
        fake_clock.advance(2 * (MAX_AGE + TICK))
    messages = [record.getMessage() for record in caplog.records]
    assert any("trimmed 2 events over max_events_per_session=1" in m for m in messages)
    assert any("trimmed 1 events older than max_event_age_s=120" in m for m in messages)
    drops = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert [r.levelno for r in drops] == [logging.INFO]


# -- publishing (fire and forget) ------------------------------------------------------


def test_publish_appends_in_order_and_checks_input_on_the_callers_thread(rt: Runtime) -> None:
    start = rt.replay.current_cursor("s")
    sub = rt.replay.subscribe(start)
    assert isinstance(sub, Subscription)
    assert rt.replay.publish("s", {"n": 0}) is None
    rt.replay.publish_many("s", [{"n": 1}, {"n": 2}], revision=2)
    rt.replay.publish_many("s", [])  # nothing to send
    event = rt.replay.append("s", {"n": 3})  # an ask after publishes: after them, in order
    assert event.position == 4
    assert replayed(rt.replay.after(start)) == [{"n": n} for n in range(4)]
    assert [e.revision for e in rt.replay.after(start).events] == [0, 2, 2, 0]  # type: ignore[union-attr]
    assert [sub.next_event(timeout=10).payload for _ in range(4)] == [{"n": n} for n in range(4)]
    sub.close()

    bad: list[tuple[Callable[[], object], str]] = [
        (lambda: rt.replay.publish("", 1), "session_id"),
        (lambda: rt.replay.publish("s", 1, revision=-1), "revision"),
        (lambda: rt.replay.publish("s", object()), "payload must be JSON-serialisable"),
        (lambda: rt.replay.publish_many("s", [1, {2}]), "payloads\\[1\\] must be JSON"),
        (lambda: rt.replay.publish_many("s", "abc"), "payloads must be a list"),
    ]
    for call, message in bad:
        with pytest.raises(InvalidInput, match=message):
            call()
    rt.settle()
    metrics = rt.metrics()
    assert metrics["replay_events_appended"] == 4
    assert metrics["replay_publishes_pending"] == 0
    assert metrics["ask_errors"] == 0  # refused on the caller's side
    assert metrics["actor_failures"] == 0


@pytest.mark.parametrize(
    "payloads",
    [{1, 2}, frozenset({1}), {"a": 1}.keys(), {"a": 1}.values(), {"a": 1}.items()],
    ids=["set", "frozenset", "keys", "values", "items"],
)
def test_batches_with_no_defined_order_are_refused(rt: Runtime, payloads: Any) -> None:
    for call in (rt.replay.append_many, rt.replay.publish_many):
        with pytest.raises(InvalidInput, match="has no defined order"):
            call("s", payloads)
    assert rt.metrics()["replay_buffers"] == 0  # refused before anything was made


def test_a_publish_on_its_way_keeps_its_buffer_from_retiring(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window between the publisher's lookup and its tell: the tick must not
    retire the buffer then (the told append would reach a retired buffer, and be lost)."""
    rt = open_rt()
    start = rt.replay.current_cursor("s")  # the buffer, idle from now on
    told = GreenroomActorRef.tell
    looked_up, go = threading.Event(), threading.Event()

    def slow_tell(self: GreenroomActorRef, message: Any) -> None:
        if type(message) is Append:
            looked_up.set()
            assert go.wait(10)
        told(self, message)

    monkeypatch.setattr(GreenroomActorRef, "tell", slow_tell)
    publisher = threading.Thread(target=lambda: rt.replay.publish("s", "late"), daemon=True)
    publisher.start()
    assert looked_up.wait(10)
    assert rt.metrics()["replay_publishes_pending"] == 1
    fake_clock.advance(MAX_AGE + TICK)  # idle long enough: the tick would retire it
    assert rt.metrics()["replay_buffers_dropped"] == 0
    go.set()
    publisher.join(10)
    rt.settle()
    assert replayed(rt.replay.after(start)) == ["late"]  # same incarnation, nothing lost
    metrics = rt.metrics()
    assert metrics["replay_publishes_pending"] == 0
    assert metrics["dead_letters"] == 0
    fake_clock.advance(2 * (MAX_AGE + TICK))  # trimmed, then idle: now it goes
    assert rt.metrics()["replay_buffers_dropped"] == 1


# -- sessions with no buffer, idleness -----------------------------------------------


def test_reads_of_a_session_with_no_buffer_make_none(open_rt: Callable[..., Runtime]) -> None:
    rt = open_rt()
    forged = format_cursor("0123456789abcdef", 7, 5, "nobody")
    for cursor in (forged, attrs.evolve(parse_cursor(forged), position=0).format()):
        gap = rt.replay.after(cursor)
        assert isinstance(gap, Gap)
        assert gap.reason == "unavailable"
        assert "no replay buffer now" in gap.detail
        assert isinstance(rt.replay.subscribe(cursor), Gap)
    assert rt.metrics()["replay_buffers"] == 0
    assert rt.actor_ids("replay_buffer") == []

    # The gap names the epoch reserved for the session's next buffer: resuming from
    # it replays nothing now (still without a buffer), and everything appended later.
    latest = gap.latest_cursor
    assert parse_cursor(latest).position == 0
    assert rt.replay.after(latest) == Replayed("nobody", (), latest)
    assert rt.replay.after(forged).latest_cursor == latest  # type: ignore[union-attr]
    assert rt.actor_ids("replay_buffer") == []
    event = rt.replay.append("nobody", "first")
    assert parse_cursor(event.cursor).epoch == parse_cursor(latest).epoch
    assert replayed(rt.replay.after(latest)) == ["first"]


def test_following_a_session_with_no_buffer_yields_a_gap_then_live_events(
    open_rt: Callable[..., Runtime],
) -> None:
    rt = open_rt()
    forged = format_cursor("0123456789abcdef", 0, 3, "s")
    with rt.replay.follow(forged) as follower:
        gap = next(follower)
        assert isinstance(gap, Gap)
        assert gap.reason == "unavailable"
        assert rt.metrics()["replay_buffers"] == 0  # a gap made none
        rt.replay.append("s", "live")  # made with the epoch the gap named
        event = follower.next_item(timeout=10)
        assert isinstance(event, ObservationEvent)
        assert (event.payload, event.position) == ("live", 1)
        rt.replay.append("s", "later")
        assert follower.next_item(timeout=10).payload == "later"  # type: ignore[union-attr]
        assert follower.gaps == 1


def test_reads_do_not_extend_idleness_but_current_cursor_does(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock
) -> None:
    rt = open_rt()
    read = rt.replay.current_cursor("read")
    held = rt.replay.current_cursor("held")
    fake_clock.advance(100)
    assert rt.replay.after(read) == Replayed("read", (), read)  # a read at 100 s
    assert isinstance(rt.replay.subscribe(format_cursor("0" * 16, 0, 0, "read")), Gap)
    assert rt.replay.current_cursor("held") == held  # a cursor handed out at 100 s
    fake_clock.advance(30)  # "read" idle for 130 s: dropped; "held" for 30 s
    assert [a.split("#")[0] for a in rt.actor_ids("replay_buffer")] == ["held"]
    assert rt.metrics()["replay_buffers_dropped"] == 1
    fake_clock.advance(100)
    assert rt.actor_ids("replay_buffer") == []


def test_gap_latest_revision_is_the_new_incarnations(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock
) -> None:
    rt = open_rt()
    stale = rt.replay.append("s", "old", revision=7).cursor
    fake_clock.advance(2 * (MAX_AGE + TICK))  # trimmed, then dropped
    assert rt.actor_ids("replay_buffer") == []
    rt.replay.append("s", "new", revision=1)
    gap = rt.replay.after(stale)
    assert isinstance(gap, Gap)
    assert gap.reason == "unavailable"
    # Documented: the answering incarnation's revision, not the stale cursor's 7.
    assert gap.latest_revision == 1
    assert parse_cursor(gap.latest_cursor).revision == gap.latest_revision
