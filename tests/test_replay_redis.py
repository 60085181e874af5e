"""Replay buffers on Redis Streams (`RuntimeConfig(replay_url=...)`, `greenroom.replay.streams`).

Against a real Redis server (`GREENROOM_REDIS_URL`; `.ci/run` and `make services` start
one on 127.0.0.1): several runtimes ("hosts") on one Redis, and real processes for the
two-process case. Each test uses session ids of its own, so tests may share the server.
Time is the fake clock's (entry ids and age trimming follow it); waits are bounded
waits on events, never sleeps.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greenroom import FakeClock, Gap, Replayed, Runtime, RuntimeConfig
from greenroom.aio import AsyncReplay
from greenroom.cursor import parse_cursor
from greenroom.errors import InvalidInput, StorageError, SubscriberLagged
from greenroom.replay.redis_scripts import resp_command
from greenroom.replay.streams import KEY_PREFIX, UNBORN_EPOCH, StreamReplay

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parent.parent
WAIT = 10.0


@pytest.fixture
def sid() -> str:
    """A session id no other test uses."""
    return f"t-{uuid.uuid4().hex}"


@pytest.fixture
def hosts(
    redis_url: str, tmp_path: Path, fake_clock: FakeClock
) -> Iterator[Callable[..., Runtime]]:
    """Open runtimes on the test's Redis, each on a database of its own (a host)."""
    opened: list[Runtime] = []

    def open_host(**config: Any) -> Runtime:
        settings = RuntimeConfig(replay_url=redis_url, settle_timeout_s=10.0, **config)
        rt = Runtime.open(tmp_path / f"host{len(opened)}.db", clock=fake_clock, config=settings)
        opened.append(rt)
        return rt

    yield open_host
    for rt in opened:
        rt.close()


def test_append_after_and_cursors_as_the_in_memory_buffers(
    hosts: Callable[..., Runtime], sid: str
) -> None:
    rt = hosts()
    assert isinstance(rt.replay, StreamReplay)
    start = rt.replay.current_cursor(sid)
    assert start.startswith("v2:")
    first = rt.replay.append(sid, {"type": "turn", "n": 1}, revision=2)
    more = rt.replay.append_many(sid, ["a", "b"])
    assert [first.position, *(event.position for event in more)] == [1, 2, 3]
    assert (first.revision, more[0].revision) == (2, 0)
    replayed = rt.replay.after(start)
    assert isinstance(replayed, Replayed)
    assert [event.payload for event in replayed.events] == [{"type": "turn", "n": 1}, "a", "b"]
    assert replayed.events == (first, *more)
    assert replayed.latest_cursor == more[-1].cursor
    assert rt.replay.after(first.cursor).events == tuple(more)
    tail = rt.replay.after(more[-1].cursor)
    assert tail == Replayed(sid, (), more[-1].cursor)
    # A cursor carries its stream entry id; positions and revisions as in v1.
    parsed = parse_cursor(more[-1].cursor, session_id=sid)
    assert (parsed.position, parsed.revision) == (3, 0)
    assert parsed.stream_id is not None
    metrics = rt.metrics()
    assert metrics["replay_events_appended"] == 3


def test_a_cursor_from_one_host_resumes_exactly_on_another(
    hosts: Callable[..., Runtime], sid: str
) -> None:
    one, two = hosts(), hosts()
    events = [one.replay.append(sid, n) for n in range(3)]
    later = two.replay.append_many(sid, [3, 4])
    assert [event.position for event in later] == [4, 5]  # one count for both hosts
    replayed = two.replay.after(events[1].cursor)
    assert isinstance(replayed, Replayed)
    assert [event.payload for event in replayed.events] == [2, 3, 4]
    assert replayed.events[0] == events[2]
    # And the other way round, from a cursor the second host gave.
    assert one.replay.after(later[0].cursor).events == (later[1],)


def test_two_processes_append_while_a_third_follows(redis_url: str, sid: str) -> None:
    env_path = str(ROOT)
    probe = Runtime.open(":memory:", config=RuntimeConfig(replay_url=redis_url))
    try:
        start = probe.replay.current_cursor(sid)
    finally:
        probe.close()
    args = [sys.executable, "-m", "tests.redis_replay_worker"]
    follower = subprocess.Popen(
        [*args, "follow", redis_url, sid, start, "40"],
        cwd=env_path,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        assert follower.stdout.readline().strip() == "ready"
        appenders = [
            subprocess.Popen(
                [*args, "append", redis_url, sid, "20", tag],
                cwd=env_path,
                stdout=subprocess.PIPE,
                text=True,
            )
            for tag in ("left", "right")
        ]
        cursors = []
        for appender in appenders:
            out, _ = appender.communicate(timeout=60)
            assert appender.returncode == 0
            cursors += out.split()
        out, _ = follower.communicate(timeout=60)
        assert follower.returncode == 0
    finally:
        follower.kill()
    lines = [json.loads(line) for line in out.splitlines()]
    events, end = lines[:-1], lines[-1]
    assert [event["position"] for event in events] == list(range(1, 41))  # no gap, no repeat
    for tag in ("left", "right"):
        assert [e["payload"]["n"] for e in events if e["payload"]["tag"] == tag] == list(range(20))
    # The follower stopped at the last event: the last cursor an appender was given.
    assert parse_cursor(end["cursor"]).position == 40
    assert end["cursor"] in cursors


def test_trimming_by_count_gives_a_trimmed_gap_then_goes_on(
    hosts: Callable[..., Runtime], sid: str
) -> None:
    rt = hosts(max_events_per_session=5)
    start = rt.replay.current_cursor(sid)
    events = rt.replay.append_many(sid, list(range(8)))
    gap = rt.replay.after(start)
    assert isinstance(gap, Gap)
    assert (gap.reason, gap.oldest_position) == ("trimmed", 4)
    assert gap.latest_cursor == events[-1].cursor
    assert rt.metrics()["replay_events_trimmed"] == 3
    held = rt.replay.after(events[2].cursor)  # right before the oldest held
    assert isinstance(held, Replayed)
    assert [event.position for event in held.events] == [4, 5, 6, 7, 8]
    with rt.replay.follow(start) as follower:
        first = follower.next_item(timeout=WAIT)
        assert isinstance(first, Gap)
        assert first.reason == "trimmed"
        rt.replay.append(sid, "after the gap")
        nxt = follower.next_item(timeout=WAIT)
        assert not isinstance(nxt, Gap)
        assert (nxt.position, nxt.payload) == (9, "after the gap")


def test_appends_trim_by_count_in_batches_and_reads_see_exactly_the_maximum(
    hosts: Callable[..., Runtime], sid: str
) -> None:
    rt = hosts(max_events_per_session=32)  # appends let 2 more in before they trim
    start = rt.replay.current_cursor(sid)
    for n in range(34):
        rt.replay.append(sid, n)
    assert rt.metrics()["replay_events_trimmed"] == 0  # none trimmed yet...
    gap = rt.replay.after(start)  # ...but a read trims first: it sees the 32 newest
    assert isinstance(gap, Gap)
    assert (gap.reason, gap.oldest_position) == ("trimmed", 3)
    assert rt.metrics()["replay_events_trimmed"] == 2
    events = [rt.replay.append(sid, n) for n in range(34, 37)]  # 35 held: trimmed to 32
    assert rt.metrics()["replay_events_trimmed"] == 5
    held = rt.replay.after(rt.replay.after(start).latest_cursor)  # type: ignore[union-attr]
    assert held == Replayed(sid, (), events[-1].cursor)
    gap = rt.replay.after(start)
    assert isinstance(gap, Gap)
    assert gap.oldest_position == 37 - 31


def test_trimming_by_age_follows_the_runtime_clock(
    hosts: Callable[..., Runtime], sid: str, fake_clock: FakeClock
) -> None:
    rt = hosts(max_event_age_s=60.0)
    start = rt.replay.current_cursor(sid)
    rt.replay.append_many(sid, ["old", "older"])
    fake_clock.advance(30.0)
    assert isinstance(rt.replay.after(start), Replayed)  # 30 s old: held
    fake_clock.advance(31.0)
    # A read trims by age first: both are gone, nothing is held.
    gap = rt.replay.after(start)
    assert isinstance(gap, Gap)
    assert (gap.reason, gap.oldest_position) == ("trimmed", None)
    fresh = rt.replay.append(sid, "fresh")
    gap = rt.replay.after(start)
    assert isinstance(gap, Gap)
    assert gap.oldest_position == 3
    assert rt.replay.after(gap.latest_cursor) == Replayed(sid, (), fresh.cursor)


def test_subscribe_replays_then_gets_live_events_without_gap_or_duplicate(
    hosts: Callable[..., Runtime], sid: str
) -> None:
    writer_host, reader_host = hosts(), hosts()
    start = writer_host.replay.current_cursor(sid)
    writer_host.replay.append_many(sid, [0, 1])
    sub = reader_host.replay.subscribe(start)
    assert not isinstance(sub, Gap)

    def write() -> None:
        for n in range(2, 102):
            writer_host.replay.append(sid, n)

    thread = threading.Thread(target=write)
    thread.start()
    try:
        got = [sub.next_event(timeout=WAIT) for _ in range(102)]
    finally:
        thread.join()
        sub.close()
    assert [event.payload for event in got] == list(range(102))
    assert [event.position for event in got] == list(range(1, 103))
    assert reader_host.metrics()["replay_subscribers"] == 0  # closed: let go


def test_a_subscriber_that_lags_resumes_through_follow(
    hosts: Callable[..., Runtime], sid: str
) -> None:
    rt = hosts(subscriber_queue_size=3)
    start = rt.replay.current_cursor(sid)
    sub = rt.replay.subscribe(start)
    assert not isinstance(sub, Gap)
    rt.replay.append_many(sid, list(range(10)))  # more than its queue holds at once
    with pytest.raises(SubscriberLagged) as lag:
        sub.next_event(timeout=WAIT)
    assert lag.value.resume_cursor == start
    assert rt.metrics()["replay_subscriber_lags"] == 1
    resumed = rt.replay.after(lag.value.resume_cursor)
    assert isinstance(resumed, Replayed)
    assert len(resumed.events) == 10  # nothing lost: the resume has them all
    with rt.replay.follow(start) as follower:
        assert [follower.next_item(timeout=WAIT).payload for _ in range(10)] == list(range(10))  # type: ignore[union-attr]


def test_events_trimmed_before_a_subscriber_got_them_lag_it_never_skip(
    hosts: Callable[..., Runtime], sid: str
) -> None:
    rt = hosts(max_events_per_session=5)
    start = rt.replay.current_cursor(sid)
    sub = rt.replay.subscribe(start)
    assert not isinstance(sub, Gap)
    # One script appends 20 and trims to 5: the reader finds positions 16-20 only.
    rt.replay.append_many(sid, list(range(20)))
    with pytest.raises(SubscriberLagged) as lag:
        sub.next_event(timeout=WAIT)
    assert (lag.value.missed, lag.value.resume_cursor) == (15, start)
    metrics = rt.metrics()
    assert (metrics["replay_subscriber_lags"], metrics["replay_events_missed"]) == (1, 15)
    with rt.replay.follow(start) as follower:
        gap = follower.next_item(timeout=WAIT)
        assert isinstance(gap, Gap)
        assert (gap.reason, gap.oldest_position) == ("trimmed", 16)


def test_publish_keeps_one_threads_order_with_its_appends(
    hosts: Callable[..., Runtime], sid: str
) -> None:
    rt = hosts()
    start = rt.replay.current_cursor(sid)
    for n in range(50):
        rt.replay.publish(sid, n)
    rt.replay.publish_many(sid, [50, 51])
    last = rt.replay.append(sid, 52)
    assert last.position == 53  # after every publish this thread made before it
    replayed = rt.replay.after(start)
    assert isinstance(replayed, Replayed)
    assert [event.payload for event in replayed.events] == list(range(53))


def test_a_read_after_a_publish_sees_it_while_the_writer_is_sending_it(
    hosts: Callable[..., Runtime], sid: str, redis_url: str
) -> None:
    # Seen once in CI: the writer thread had taken the publish off the queue and was
    # sending it when the same thread's current_cursor looked, found the queue empty,
    # and answered before the publish was stored. Big batches keep the send long.
    rt = hosts(max_events_per_session=100_000)
    other = redis.Redis.from_url(redis_url)
    rt.replay.current_cursor(sid)
    sent = 0
    try:
        for _ in range(60):
            rt.replay.publish_many(sid, list(range(sent, sent + 2_000)))
            sent += 2_000
            other.ping()  # (waits on a socket: the writer thread takes the batch meanwhile)
            position = parse_cursor(rt.replay.current_cursor(sid)).position
            assert position == sent
    finally:
        other.close()


def test_close_sends_the_publishes_still_queued(
    hosts: Callable[..., Runtime], sid: str, redis_url: str, tmp_path: Path
) -> None:
    rt = hosts()
    start = rt.replay.current_cursor(sid)
    for n in range(300):
        rt.replay.publish(sid, n)
    rt.close()
    other = hosts()
    replayed = other.replay.after(start)
    assert isinstance(replayed, Replayed)
    assert [event.payload for event in replayed.events] == list(range(300))


def test_bad_input_appends_nothing(hosts: Callable[..., Runtime], sid: str) -> None:
    rt = hosts()
    start = rt.replay.current_cursor(sid)
    with pytest.raises(InvalidInput, match="JSON-serialisable"):
        rt.replay.append(sid, {"when": object()})
    with pytest.raises(InvalidInput, match="no defined order"):
        rt.replay.append_many(sid, {1, 2})
    with pytest.raises(InvalidInput, match="JSON-serialisable"):
        rt.replay.publish(sid, float("nan"))
    with pytest.raises(InvalidInput, match="session_id"):
        rt.replay.append("", 1)
    assert rt.replay.after(start) == Replayed(sid, (), start)


def test_sessions_without_events_and_cursors_from_elsewhere(
    hosts: Callable[..., Runtime], sid: str, redis_url: str
) -> None:
    rt = hosts()
    unborn = f"v2:{UNBORN_EPOCH}:0:0:0-0:{sid}"
    assert rt.replay.after(unborn) == Replayed(sid, (), unborn)
    in_memory = rt.replay.after(f"v1:{UNBORN_EPOCH}:0:0:{sid}")
    assert isinstance(in_memory, Gap)
    assert in_memory.reason == "unavailable"
    assert "in-memory buffer (v1)" in in_memory.detail
    ahead = rt.replay.after(f"v2:{UNBORN_EPOCH}:0:4:0-0:{sid}")
    assert isinstance(ahead, Gap)
    assert (ahead.reason, ahead.latest_cursor) == ("unavailable", unborn)
    # A gap's latest cursor of a session with no events replays what comes later.
    first = rt.replay.append(sid, "first")
    replayed = rt.replay.after(unborn)
    assert isinstance(replayed, Replayed)
    assert replayed.events == (first,)
    # An in-memory (v1) cursor, a cursor ahead, a revision ahead: unavailable.
    for cursor in (
        f"v1:0123456789abcdef:0:0:{sid}",
        first.cursor.replace(":0:1:", ":0:9:", 1),
        first.cursor.replace(":0:1:", ":7:1:", 1),
    ):
        gap = rt.replay.after(cursor)
        assert isinstance(gap, Gap), cursor
        assert gap.reason == "unavailable"
        assert gap.latest_cursor == first.cursor
    # The session's keys deleted and made again: a new epoch, the old cursor refused.
    redis.Redis.from_url(redis_url).delete(f"{KEY_PREFIX}{sid}:events", f"{KEY_PREFIX}{sid}:meta")
    again = rt.replay.append(sid, "again")
    assert again.position == 1
    gap = rt.replay.after(first.cursor)
    assert isinstance(gap, Gap)
    assert gap.reason == "unavailable"
    assert "another incarnation" in gap.detail


def test_current_cursor_revisions_bound_what_a_cursor_may_claim(
    hosts: Callable[..., Runtime], sid: str
) -> None:
    rt = hosts()
    at_five = rt.replay.current_cursor(sid, revision=5)
    assert parse_cursor(at_five).revision == 5
    ahead = at_five.replace(":5:0:", ":6:0:", 1)
    gap = rt.replay.after(ahead)
    assert isinstance(gap, Gap)
    assert "revision 6 is ahead" in gap.detail
    assert rt.replay.after(at_five) == Replayed(sid, (), at_five)


def test_a_redis_that_does_not_answer_fails_the_open(tmp_path: Path) -> None:
    config = RuntimeConfig(replay_url="redis://127.0.0.1:9/0")  # the discard port: closed
    with pytest.raises(StorageError, match="replay_url"):
        Runtime.open(tmp_path / "x.db", clock=FakeClock(), config=config)
    # Nothing was left open: the same database opens at once without Redis.
    Runtime.open(tmp_path / "x.db", clock=FakeClock()).close()


def test_a_bad_replay_url_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="replay_url must be None or a Redis URL"):
        RuntimeConfig(replay_url="http://127.0.0.1:6379")


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_async_facade_on_redis(
    hosts: Callable[..., Runtime], sid: str, loop_waits: list[str]
) -> None:
    rt = hosts()
    replay = AsyncReplay(rt.replay)
    start = await replay.current_cursor(sid)
    event = await replay.append(sid, {"n": 1})
    replayed = await replay.after(start)
    assert isinstance(replayed, Replayed)
    assert replayed.events == (event,)
    sub = await replay.subscribe(start)
    assert not isinstance(sub, Gap)
    async with sub:
        assert (await sub.next_event(timeout=WAIT)) == event
        await anyio.to_thread.run_sync(lambda: rt.replay.append(sid, {"n": 2}))
        live = await sub.next_event(timeout=WAIT)
        assert live.payload == {"n": 2}
    assert loop_waits == []


def test_a_subscription_from_before_a_sessions_first_event_resumes_exactly(
    hosts: Callable[..., Runtime], sid: str
) -> None:
    rt = hosts()
    unborn = f"v2:{UNBORN_EPOCH}:0:0:0-0:{sid}"
    sub = rt.replay.subscribe(unborn)
    assert not isinstance(sub, Gap)
    first = rt.replay.append(sid, "first")
    event = sub.next_event(timeout=WAIT)
    assert event == first  # the stream's epoch, not the unborn one
    assert rt.replay.after(event.cursor) == Replayed(sid, (), event.cursor)
    sub.close()


def test_a_cursor_or_read_after_a_publish_sees_it(hosts: Callable[..., Runtime], sid: str) -> None:
    rt = hosts()
    for n in range(200):
        rt.replay.publish(sid, n)
    tail = rt.replay.current_cursor(sid)
    assert parse_cursor(tail).position == 200
    assert rt.replay.after(tail) == Replayed(sid, (), tail)


@given(parts=st.lists(st.one_of(st.text(), st.integers()), max_size=12))
def test_resp_command_packs_a_command_as_redis_py_does(parts: list[str | int]) -> None:
    expected = b"".join(redis.Connection().pack_command("ECHO", *parts))
    assert resp_command(["ECHO", *parts]) == expected


def test_an_append_after_redis_dropped_its_connection_goes_through(
    hosts: Callable[..., Runtime], sid: str, redis_url: str
) -> None:
    rt = hosts()
    start = rt.replay.current_cursor(sid)
    rt.replay.append(sid, 1)
    # The connection this runtime's appends go on, dropped by the server.
    conn = rt.replay._conn  # type: ignore[attr-defined]
    host, port = conn._sock.getsockname()[:2]
    admin = redis.Redis.from_url(redis_url)
    try:
        assert admin.client_kill_filter(_id=None, addr=f"{host}:{port}") == 1
    finally:
        admin.close()
    event = rt.replay.append(sid, 2)  # tried again on a new connection
    assert event.position == 2
    replayed = rt.replay.after(start)
    assert isinstance(replayed, Replayed)
    assert [e.payload for e in replayed.events] == [1, 2]  # each once


_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(1, 3)),
        st.tuples(st.just("publish"), st.integers(1, 30)),
        st.tuples(st.just("read"), st.just(0)),
        st.tuples(st.just("advance"), st.integers(1, 90)),
    ),
    min_size=1,
    max_size=25,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=_OPS)
def test_trimming_keeps_the_kept_length_true_and_reads_within_the_bounds(
    hosts: Callable[..., Runtime], redis_url: str, fake_clock: FakeClock, ops: list[Any]
) -> None:
    rt = hosts(max_events_per_session=20, max_event_age_s=120.0)
    admin = redis.Redis.from_url(redis_url, decode_responses=True)
    sid = f"t-{uuid.uuid4().hex}"
    start = rt.replay.current_cursor(sid)
    appended = 0
    try:
        for op, count in ops:
            if op == "append":
                for _ in range(count):
                    rt.replay.append(sid, appended)
                    appended += 1
            elif op == "publish":  # (queued: sent in one pipeline by the writer thread)
                rt.replay.publish_many(sid, list(range(appended, appended + count)))
                appended += count
            elif op == "advance":
                fake_clock.advance(float(count))
            else:
                got = rt.replay.after(start)
                events = got.events if isinstance(got, Replayed) else ()
                assert len(events) <= 20  # a read sees no more than the maximum...
                positions = [event.position for event in events]
                assert positions == list(range(appended - len(events) + 1, appended + 1))
            rt.replay.current_cursor(sid)  # (waits for the publishes before it)
            kept = admin.hget(f"{KEY_PREFIX}{sid}:meta", "len")
            if kept is not None:  # ...and the length the meta hash keeps is the stream's
                assert int(kept) == admin.xlen(f"{KEY_PREFIX}{sid}:events")
    finally:
        admin.close()
        rt.close()  # (one runtime an example)
