"""The actor base: settle, failure handling, dead letters, timers, stop semantics."""

from __future__ import annotations

import contextlib
import gc
import itertools
import logging
import threading
import weakref
from typing import Any

import pykka
import pytest

from greenroom import FakeClock, Runtime, RuntimeConfig
from greenroom.actors.base import ActorContext, GreenroomActor
from greenroom.errors import InvalidInput, InvalidTransition, NotFound, SettleTimeout

from .actors_for_tests import BadStart, Block, Counter, Relay, Ticker
from .conftest import START_MS


def test_tell_ask_and_proxy_through_the_runtime(rt: Runtime) -> None:
    ref = rt.spawn(Counter, 10, actor_id="c1")
    ref.tell(5)
    assert ref.ask("get") == 15
    assert ref.proxy().add(1).get() == 16
    assert rt.get_actor("counter", "c1") is ref
    assert rt.actor_ids("counter") == ["c1"]


def test_settle_waits_for_a_chain_of_messages(rt: Runtime) -> None:
    sink = rt.spawn(Counter, actor_id="sink")
    relays = [rt.spawn(Relay, sink, actor_id=f"r{i}") for i in range(50)]
    for here, nxt in itertools.pairwise(relays):
        here.proxy().link(nxt).get()
    for _ in range(20):
        relays[0].tell(49)  # hops through every relay, then tells the sink
    rt.settle()
    assert rt.metrics()["messages_pending"] == 0
    # If settle returned early the sink would not have every message yet.
    assert sink.ask("get") == 20


def test_fake_clock_advance_settles_what_timers_set_off(rt: Runtime, fake_clock: FakeClock) -> None:
    ticker = rt.spawn(Ticker, 10.0, actor_id="t")
    fake_clock.advance(35)
    ticks = ticker.proxy().get_ticks().get()
    # Each tick was handled while time stood at the timer's own due time.
    assert ticks == [START_MS + 10_000, START_MS + 20_000, START_MS + 30_000]


def test_settle_timeout_names_the_busy_actor(rt: Runtime) -> None:
    release = threading.Event()

    ref = rt.spawn(Counter, actor_id="stuck")
    ref.proxy().add.defer(1)  # normal traffic first
    blocker = threading.Thread(target=lambda: ref.ask(Block(release)))
    blocker.start()
    try:
        with pytest.raises(SettleTimeout, match=r"counter:stuck \(\d+ pending\)") as info:
            rt.settle(timeout=0.2)
        assert "counter:stuck" in info.value.busy
    finally:
        release.set()
        blocker.join()
    rt.settle()


def test_failing_tell_is_logged_counted_and_the_actor_goes_on(
    rt: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    ref = rt.spawn(Counter, actor_id="c")
    with caplog.at_level(logging.ERROR, logger="greenroom.actors"):
        ref.tell(1)
        ref.tell("fail")
        ref.proxy().explode.defer()
        ref.tell(2)
        rt.settle()
    assert ref.ask("get") == 3  # state kept, later messages handled
    assert rt.metrics()["actor_failures"] == 2
    failures = [r for r in caplog.records if "failed handling" in r.getMessage()]
    assert len(failures) == 2
    assert "counter:c" in failures[0].getMessage()
    assert "call explode()" in failures[1].getMessage()
    assert failures[0].exc_info is not None


def test_failing_ask_goes_to_the_asker_not_the_failure_count(rt: Runtime) -> None:
    ref = rt.spawn(Counter, actor_id="c")
    with pytest.raises(ValueError, match="exploded"):
        ref.proxy().explode().get()
    assert ref.is_alive()
    metrics = rt.metrics()
    assert metrics["actor_failures"] == 0
    assert metrics["ask_errors"] == 1


def test_start_failure_stops_the_actor(rt: Runtime, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="greenroom.actors"):
        ref = rt.spawn(BadStart, actor_id="b")
        rt.settle()
        with pytest.raises(pykka.ActorDeadError):
            ref.ask("anything", timeout=5)
    assert not ref.is_alive()
    assert rt.metrics()["actor_start_failures"] == 1
    assert any("failed to start" in r.getMessage() for r in caplog.records)
    with pytest.raises(NotFound):
        rt.get_actor("badstart", "b")


def test_stop_handles_what_was_queued_before_it_then_dead_letters(rt: Runtime) -> None:
    ref = rt.spawn(Counter, actor_id="c")
    actor_stop = ref.stop(block=False)
    for n in range(3):
        # May land before or after the stop: handled, answered dead, or refused at once.
        with contextlib.suppress(pykka.ActorDeadError):
            ref.tell(n)
    actor_stop.get(timeout=10)
    assert not ref.is_alive()
    with pytest.raises(pykka.ActorDeadError):
        ref.tell(1)
    with pytest.raises(pykka.ActorDeadError):
        ref.ask("get", timeout=5)
    assert rt.metrics()["dead_letters"] >= 2
    assert rt.actor_ids("counter") == []


def test_messages_before_stop_are_handled_and_on_stop_runs(rt: Runtime) -> None:
    ref = rt.spawn(Counter, actor_id="c")
    actor = ref._actor_weakref()
    for _ in range(100):
        ref.tell(1)
    assert ref.stop() is True
    assert actor.stopped_with == 100
    assert ref.stop() is False  # already dead


def test_a_ref_kept_after_the_stop_does_not_keep_the_actor(rt: Runtime) -> None:
    ref = rt.spawn(Counter, actor_id="c")
    assert ref.proxy().count.get() == 0  # (pykka's proxies find the actor through the ref)
    actor = weakref.ref(ref._actor_weakref())
    assert ref.stop() is True
    assert ref._actor_weakref() is None
    gc.collect()
    assert actor() is None  # gone, though the host still holds its ref
    with pytest.raises(pykka.ActorDeadError):
        ref.proxy()


class _SelfProxy(GreenroomActor):
    """Makes a proxy of itself in its constructor, as pykka allows."""

    kind = "self_proxy"

    def __init__(self, ctx: ActorContext) -> None:
        super().__init__(ctx)
        self.me = self.actor_ref.proxy()

    def hello(self) -> str:
        return "hi"


class _Answer:
    """An answer whose life a test follows (a weak reference to it)."""


class _Answers(GreenroomActor):
    kind = "answers"

    def on_receive(self, message: Any) -> Any:
        return _Answer()


def test_a_proxy_made_in_the_constructor_works(rt: Runtime) -> None:
    ref = rt.spawn(_SelfProxy, actor_id="p")
    assert ref.proxy().hello().get(timeout=5) == "hi"
    assert ref.ask("x", timeout=5) is None


def test_an_idle_actor_keeps_neither_its_last_askers_future_nor_the_answer(rt: Runtime) -> None:
    ref = rt.spawn(_Answers, actor_id="a")
    answer = weakref.ref(ref.ask("question"))
    gc.collect()
    assert answer() is None  # the asker dropped it, and so did the actor
    future = ref.ask("again", block=False)
    kept = weakref.ref(future.get(timeout=5))
    del future
    gc.collect()
    assert kept() is None


def test_spawn_rejects_duplicates_and_non_actors(rt: Runtime) -> None:
    rt.spawn(Counter, actor_id="same")
    with pytest.raises(InvalidTransition, match="already running"):
        rt.spawn(Counter, actor_id="same")
    with pytest.raises(InvalidInput):
        rt.spawn(object, actor_id="x")  # type: ignore[type-var]
    with pytest.raises(InvalidInput):
        rt.spawn(Counter, actor_id="")


def test_timers_die_with_their_actor(rt: Runtime, fake_clock: FakeClock) -> None:
    ticker = rt.spawn(Ticker, 1.0, actor_id="t")
    fake_clock.advance(2)
    ticker.stop()
    assert fake_clock.pending_timers() == 0
    fake_clock.advance(5)
    assert rt.metrics()["dead_letters"] == 0


def test_close_stops_every_actor_gracefully(db_path, fake_clock: FakeClock) -> None:
    rt = Runtime.open(db_path, clock=fake_clock, config=RuntimeConfig(settle_timeout_s=10))
    refs = [rt.spawn(Counter, actor_id=f"c{i}") for i in range(20)]
    actors = [ref._actor_weakref() for ref in refs]
    for ref in refs:
        for _ in range(10):
            ref.tell(1)
    rt.close()
    assert [actor.stopped_with for actor in actors] == [10] * 20
    assert not any(ref.is_alive() for ref in refs)


def test_fake_clock_settles_every_runtime_attached_to_it(tmp_path, fake_clock: FakeClock) -> None:
    config = RuntimeConfig(settle_timeout_s=10)
    with (
        Runtime.open(tmp_path / "a.db", clock=fake_clock, config=config) as rt_a,
        Runtime.open(tmp_path / "b.db", clock=fake_clock, config=config) as rt_b,
    ):
        sink = rt_b.spawn(Counter, actor_id="sink")
        relays = [rt_a.spawn(Relay, sink, actor_id=f"r{i}") for i in range(20)]
        for here, nxt in itertools.pairwise(relays):
            here.proxy().link(nxt).get()
        fake_clock.call_later(1, lambda: relays[0].tell(19))
        fake_clock.advance(1)
        # The timer started a chain through runtime A that ends in runtime B.
        assert sink.ask("get") == 1
