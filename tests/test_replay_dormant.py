"""Dormant replay buffers: published events held without an actor until a reader comes."""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from greenroom import FakeClock, Gap, Replayed, Runtime, RuntimeConfig, Subscription
from greenroom.cursor import format_cursor, parse_cursor

MAX_AGE = 30.0
TICK = 10.0
MAX_EVENTS = 5
WAIT = 10.0


@pytest.fixture
def greenroom_config() -> RuntimeConfig:
    """Small bounds, so a few publishes and clock steps reach them."""
    return RuntimeConfig(
        settle_timeout_s=10.0,
        max_event_age_s=MAX_AGE,
        replay_trim_interval_s=TICK,
        max_events_per_session=MAX_EVENTS,
    )


def held_state(rt: Runtime, session_id: str) -> tuple[Any, ...]:
    """What a session's buffer holds, as a reader sees it (epochs left out): the tail,
    the revision, the oldest held position and every held event."""
    tail_cursor = parse_cursor(rt.replay.current_cursor(session_id))
    epoch = tail_cursor.epoch
    ahead = rt.replay.after(format_cursor(epoch, 2**62, 0, session_id))  # names the revision
    assert isinstance(ahead, Gap), ahead
    result = rt.replay.after(format_cursor(epoch, 0, 0, session_id))
    if isinstance(result, Gap):
        assert result.reason == "trimmed", result
        oldest = result.oldest_position
        if oldest is None:
            oldest = tail_cursor.position + 1
        result = rt.replay.after(format_cursor(epoch, 0, oldest - 1, session_id))
    assert isinstance(result, Replayed), result
    events = [(e.position, e.revision, e.payload) for e in result.events]
    for event in result.events:
        assert parse_cursor(event.cursor).epoch == epoch
        assert rt.replay.after(event.cursor) == Replayed(
            session_id, result.events[result.events.index(event) + 1 :], result.latest_cursor
        )
    oldest = events[0][0] if events else None
    return tail_cursor.position, ahead.latest_revision, oldest, events


def test_publishes_make_no_actor_until_a_reader_needs_one(rt: Runtime) -> None:
    for session in ("s1", "s2", "s3"):
        rt.replay.publish(session, {"n": 1})
        rt.replay.publish_many(session, [{"n": 2}, {"n": 3}], revision=2)
    metrics = rt.metrics()
    assert rt.actor_ids("replay_buffer") == []
    assert metrics["replay_buffers"] == 3
    assert metrics["replay_events_appended"] == 9
    assert metrics["replay_publishes_pending"] == 0

    # A read wakes that one buffer, which holds what was published, in order.
    assert held_state(rt, "s2") == (
        3,
        2,
        1,
        [(1, 0, {"n": 1}), (2, 2, {"n": 2}), (3, 2, {"n": 3})],
    )
    assert [a.split("#")[0] for a in rt.actor_ids("replay_buffer")] == ["s2"]
    # Publishes to an awake buffer are told to its actor, after the held ones.
    rt.replay.publish("s2", "told")
    event = rt.replay.append("s2", "asked")
    assert (event.position, event.payload) == (5, "asked")
    assert rt.metrics()["replay_events_appended"] == 11


def test_a_subscriber_from_a_dormant_buffers_start_gets_the_held_events_then_live_ones(
    rt: Runtime,
) -> None:
    rt.replay.publish("s", "held")
    epoch = rt.replay.current_cursor("s").split(":")[1]
    sub = rt.replay.subscribe(format_cursor(epoch, 0, 0, "s"))
    assert isinstance(sub, Subscription)
    rt.replay.publish("s", "live")
    assert [sub.next_event(timeout=WAIT).payload for _ in range(2)] == ["held", "live"]
    sub.close()


def test_a_dormant_buffer_is_trimmed_and_dropped_as_an_awake_one_is(
    rt: Runtime, fake_clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="greenroom.replay")
    rt.replay.publish_many("s", [1, 2, 3, 4, 5, 6])  # one over the bound: trimmed at once
    assert rt.metrics()["replay_events_trimmed"] == 1
    fake_clock.advance(MAX_AGE + TICK)  # the rest is older than the bound: trimmed
    metrics = rt.metrics()
    assert metrics["replay_events_trimmed"] == 6
    assert metrics["replay_buffers"] == 1  # empty since the tick that trimmed it
    fake_clock.advance(MAX_AGE + TICK)
    metrics = rt.metrics()
    assert metrics["replay_buffers"] == 0
    assert metrics["replay_buffers_dropped"] == 1
    assert "trimmed 1 events over max_events_per_session=5" in caplog.text
    assert "trimmed 5 events older than max_event_age_s=30" in caplog.text
    assert "dropped: no events and no subscribers" in caplog.text
    assert rt.actor_ids("replay_buffer") == []


_OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("publish"),
            st.lists(st.integers(0, 99), min_size=1, max_size=MAX_EVENTS + 2),
            st.integers(0, 3),
        ),
        st.tuples(st.just("advance"), st.sampled_from([1.0, 5.0, TICK, MAX_AGE, 45.0]), st.none()),
        st.tuples(st.just("read"), st.none(), st.none()),  # wakes a dormant buffer
    ),
    max_size=12,
)
_examples = itertools.count()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=_OPS)
@example(  # a batch across the count bound, all of it aged out at once, then more
    ops=[
        ("publish", [1, 2, 3, 4, 5, 6], 0),
        ("advance", 45.0, None),
        ("publish", [7, 8, 9, 10, 11, 12, 13], 1),
        ("read", None, None),
        ("publish", [14], 2),
    ]
)
def test_a_dormant_buffer_ends_as_an_awake_one_would(
    rt: Runtime, fake_clock: FakeClock, ops: list[tuple[str, Any, Any]]
) -> None:
    """The same publishes and clock steps into a dormant buffer and into one woken
    first: a reader then finds the same events, positions, revisions and bounds."""
    n = next(_examples)  # (one runtime for every example: new sessions each)
    dormant, awake = f"d{n}", f"a{n}"
    rt.replay.current_cursor(awake)  # woken first: every publish is told to its actor
    for op, arg, revision in ops:
        if op == "advance":
            fake_clock.advance(arg)
            continue
        if op == "read":  # a read: it wakes a dormant buffer and does not touch its idleness
            for session in (dormant, awake):
                assert isinstance(rt.replay.after(format_cursor("0" * 16, 0, 0, session)), Gap)
            continue
        for session in (dormant, awake):
            if len(arg) == 1:
                rt.replay.publish(session, arg[0], revision=revision)
            else:
                rt.replay.publish_many(session, arg, revision=revision)
    fake_clock.advance(0)
    assert held_state(rt, dormant) == held_state(rt, awake)


def test_publishes_racing_the_wake_are_kept_once_and_in_order(
    open_rt: Callable[..., Runtime],
) -> None:
    rt = open_rt()  # (the default bounds: nothing trimmed)
    rt.replay.publish("s", ("first", 0))
    per_thread = 300
    go = threading.Barrier(5)

    def publisher(name: str) -> None:
        go.wait()
        for k in range(per_thread):
            rt.replay.publish("s", (name, k))

    threads = [threading.Thread(target=publisher, args=(f"t{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    go.wait()
    cursor = rt.replay.current_cursor("s")  # wakes it while they publish
    for thread in threads:
        thread.join(WAIT)
    rt.settle()
    result = rt.replay.after(format_cursor(parse_cursor(cursor).epoch, 0, 0, "s"))
    assert isinstance(result, Replayed)
    assert [e.position for e in result.events] == list(range(1, 4 * per_thread + 2))
    payloads = [tuple(e.payload) for e in result.events]
    assert payloads[0] == ("first", 0)
    for name in ("t0", "t1", "t2", "t3"):
        assert [k for who, k in payloads if who == name] == list(range(per_thread))
    assert rt.metrics()["replay_events_appended"] == 4 * per_thread + 1


def test_a_read_first_wakes_a_dormant_buffer_and_finds_what_it_held(rt: Runtime) -> None:
    rt.replay.publish_many("s", ["a", "b"])
    gap = rt.replay.after(format_cursor("0" * 16, 0, 0, "s"))  # the first call: a read
    assert isinstance(gap, Gap)
    assert gap.reason == "unavailable"
    assert parse_cursor(gap.latest_cursor).position == 2
    epoch = parse_cursor(gap.latest_cursor).epoch
    result = rt.replay.after(format_cursor(epoch, 0, 0, "s"))
    assert isinstance(result, Replayed)
    assert [e.payload for e in result.events] == ["a", "b"]


def test_a_woken_buffer_keeps_the_idle_time_it_had_while_dormant(
    rt: Runtime, fake_clock: FakeClock
) -> None:
    rt.replay.publish("s", "old")
    fake_clock.advance(MAX_AGE + TICK)  # trimmed on the tick at 40 s: empty, idle since 40
    assert rt.metrics()["replay_events_trimmed"] == 1
    fake_clock.advance(25)  # 65 s
    assert isinstance(rt.replay.after(format_cursor("0" * 16, 0, 0, "s")), Gap)  # wakes it
    assert len(rt.actor_ids("replay_buffer")) == 1
    fake_clock.advance(15)  # 80 s: idle for 40 s since it emptied (not 15 since it woke)
    assert rt.metrics()["replay_buffers_dropped"] == 1
    assert rt.actor_ids("replay_buffer") == []


def test_publishers_racing_trims_drops_and_wakes_lose_nothing(
    rt: Runtime, fake_clock: FakeClock
) -> None:
    """Publishers on threads while the clock trims and drops buffers and readers wake
    them: every event is appended once, and each is held or counted trimmed."""
    sessions = [f"r{i}" for i in range(3)]
    per_thread = 400
    go = threading.Barrier(4)

    def publisher(name: str) -> None:
        go.wait()
        for k in range(per_thread):
            rt.replay.publish(sessions[k % 3], (name, k))

    threads = [threading.Thread(target=publisher, args=(f"t{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    go.wait()
    for step in range(12):
        fake_clock.advance(TICK if step % 2 else MAX_AGE)
        rt.replay.after(format_cursor("0" * 16, 0, 0, sessions[step % 3]))  # wakes one
    for thread in threads:
        thread.join(WAIT)
    rt.settle()
    held = 0
    for session in sessions:
        cursor = parse_cursor(rt.replay.current_cursor(session))
        result = rt.replay.after(format_cursor(cursor.epoch, 0, cursor.position, session))
        assert isinstance(result, Replayed)
        gap = rt.replay.after(format_cursor(cursor.epoch, 0, 0, session))
        events = gap.events if isinstance(gap, Replayed) else ()
        if isinstance(gap, Gap):
            assert gap.reason == "trimmed"
            if gap.oldest_position is not None:
                resumed = rt.replay.after(
                    format_cursor(cursor.epoch, 0, gap.oldest_position - 1, session)
                )
                assert isinstance(resumed, Replayed)
                events = resumed.events
        positions = [e.position for e in events]
        assert positions == list(range(cursor.position - len(events) + 1, cursor.position + 1))
        for name in ("t0", "t1", "t2"):
            mine = [k for who, k in (e.payload for e in events) if who == name]
            assert mine == sorted(mine)
        held += len(events)
    metrics = rt.metrics()
    assert metrics["replay_events_appended"] == 3 * per_thread
    assert held + metrics["replay_events_trimmed"] == 3 * per_thread
