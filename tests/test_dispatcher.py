"""The shared dispatcher: actors on a pool of worker threads, not a thread each.

Ordering per sender, one handler at a time per actor (with state visible across the
workers an actor moves between), fairness between flooded actors, stop and dead
letters, settle across long chains, futures from outside and inside handlers, the
blocking pool, slow-handler warnings, and threads left after close().

Tests that need a handler to hold a worker use a `Gate` actor whose handler waits on a
`threading.Event`: that breaks the no-blocking rule on purpose, so those runtimes turn
the slow-handler check off.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pykka
import pytest

from greenroom import FakeClock, Runtime, RuntimeConfig
from greenroom.actors.base import ActorContext, GreenroomActor, GreenroomActorRef, current_actor
from greenroom.errors import (
    FutureTimeout,
    InvalidTransition,
    SettleTimeout,
)

from .actors_for_tests import Block, Counter

DISPATCH = "greenroom-dispatch-"
BLOCKING = "greenroom-blocking-"

MakeRuntime = Callable[..., Runtime]


@pytest.fixture
def make_rt(tmp_path: Path, fake_clock: FakeClock) -> Iterator[MakeRuntime]:
    """Opens runtimes on real SQLite files with config overrides; closes them after."""
    opened: list[Runtime] = []

    def make(**overrides: Any) -> Runtime:
        settings: dict[str, Any] = {"settle_timeout_s": 20.0, "stop_timeout_s": 10.0}
        settings.update(overrides)
        runtime = Runtime.open(
            tmp_path / f"rt{len(opened)}.db", clock=fake_clock, config=RuntimeConfig(**settings)
        )
        opened.append(runtime)
        return runtime

    yield make
    for runtime in opened:
        runtime.close()


# -- actors used here ----------------------------------------------------------------------


class Recorder(GreenroomActor):
    """Keeps every message it is told, in the order it handled them."""

    kind = "recorder"

    def __init__(self, ctx: ActorContext) -> None:
        super().__init__(ctx)
        self.seen: list[Any] = []

    def on_receive(self, message: Any) -> Any:
        self.seen.append(message)
        return None

    def note(self, value: Any) -> None:
        self.seen.append(value)

    def snapshot(self) -> list[Any]:
        return list(self.seen)


class Hold:
    """Told to a `Gate`: its handler records its thread, says so, and waits for release."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.thread: str | None = None


class Gate(GreenroomActor):
    """Holds a worker thread while a `Hold` is unreleased (breaks the rule on purpose)."""

    kind = "gate"

    def on_receive(self, message: Any) -> Any:
        assert isinstance(message, Hold)
        message.thread = threading.current_thread().name
        message.entered.set()
        message.release.wait(10)
        return None


class Where(GreenroomActor):
    """Answers with the name of the thread its handler runs on."""

    kind = "where"

    def on_receive(self, message: Any) -> Any:
        return threading.current_thread().name


class Exclusive(GreenroomActor):
    """Notices any overlap of its own handlers, and any lost update of its state."""

    kind = "exclusive"

    def __init__(self, ctx: ActorContext) -> None:
        super().__init__(ctx)
        self.inside = 0
        self.overlaps = 0
        self.count = 0
        self.threads: set[str] = set()

    def on_receive(self, message: Any) -> Any:
        self.inside += 1
        if self.inside != 1:
            self.overlaps += 1
        count = self.count
        for _ in range(3):
            os.sched_yield()  # releases the GIL: another thread in here would interleave
        self.count = count + 1
        self.threads.add(threading.current_thread().name)
        self.inside -= 1
        return None

    def report(self) -> tuple[int, int, set[str]]:
        return self.count, self.overlaps, set(self.threads)


class Flooded(GreenroomActor):
    """Appends its id to a shared trace per message (one worker: no race on the list)."""

    kind = "flooded"

    def __init__(self, ctx: ActorContext, trace: list[str]) -> None:
        super().__init__(ctx)
        self.trace = trace

    def on_receive(self, message: Any) -> Any:
        self.trace.append(self.ctx.actor_id)
        return None


class Hop(GreenroomActor):
    """One relay of a ring: passes (chain, hops left) on; at zero tells the sink where."""

    kind = "hop"

    def __init__(self, ctx: ActorContext, index: int, sink: GreenroomActorRef) -> None:
        super().__init__(ctx)
        self.index = index
        self.sink = sink
        self.next: GreenroomActorRef | None = None

    def on_receive(self, message: Any) -> Any:
        if message[0] == "link":
            self.next = message[1]
            return None
        chain, left = message
        if left == 0:
            self.sink.tell((chain, self.index))
        else:
            assert self.next is not None
            self.next.tell((chain, left - 1))
        return None


class Impatient(GreenroomActor):
    """Tries to wait on futures inside its handlers."""

    kind = "impatient"

    def wait_on_ask(self, other: GreenroomActorRef) -> tuple[str, str, bool]:
        future = other.ask("get", block=False)
        try:
            value = future.get(timeout=5)
        except InvalidTransition as error:
            return "refused", str(error), future.done
        return "got", repr(value), future.done

    def blocking_ask(self, other: GreenroomActorRef) -> str:
        try:
            other.ask("get", timeout=5)
        except InvalidTransition as error:
            return str(error)
        return "not refused"

    def proxy_call(self, other: GreenroomActorRef) -> str:
        try:
            other.proxy().add(1).get()
        except InvalidTransition as error:
            return str(error)
        return "not refused"

    def get_all(self, other: GreenroomActorRef) -> str:
        futures = [other.ask("get", block=False) for _ in range(3)]
        try:
            pykka.get_all(futures)
        except InvalidTransition as error:
            return str(error)
        return "not refused"

    def read(self, future: pykka.Future[Any]) -> Any:
        return future.get()


class Offloader(GreenroomActor):
    """Hands work to run_blocking and records what comes back through `then`."""

    kind = "offloader"

    def __init__(self, ctx: ActorContext) -> None:
        super().__init__(ctx)
        self.results: list[tuple[Any, str, bool]] = []

    def offload(self, fn: Callable[..., Any], *args: Any) -> None:
        self.run_blocking(fn, *args, then=self._done)

    def offload_without_then(self, fn: Callable[..., Any], *args: Any) -> None:
        self.run_blocking(fn, *args)

    def _done(self, future: pykka.Future[Any]) -> None:
        try:
            outcome: Any = ("ok", future.get())
        except Exception as error:
            outcome = ("error", error)
        self.results.append((outcome, threading.current_thread().name, current_actor() is self))

    def get_results(self) -> list[tuple[Any, str, bool]]:
        return list(self.results)


class Ping:
    """A plain message class: slow-handler warnings name it by its class name."""


class Probe(GreenroomActor):
    """A quick handler for tells and proxy calls."""

    kind = "probe"

    def __init__(self, ctx: ActorContext) -> None:
        super().__init__(ctx)
        self.pings = 0

    def on_receive(self, message: Any) -> Any:
        self.pings += 1
        return self.pings

    def note(self) -> int:
        return self.pings


class StartProbe(GreenroomActor):
    """Records on_start (held at a gate) and every message after it."""

    kind = "startprobe"

    def __init__(
        self, ctx: ActorContext, entered: threading.Event, release: threading.Event
    ) -> None:
        super().__init__(ctx)
        self.entered = entered
        self.release = release
        self.events: list[Any] = []

    def on_start(self) -> None:
        me = threading.current_thread().name
        self.events.append(("on_start", me, current_actor() is self))
        self.entered.set()
        self.release.wait(10)

    def on_receive(self, message: Any) -> Any:
        self.events.append(message)
        return None

    def get_events(self) -> list[Any]:
        return list(self.events)


def _by_sender(seen: list[tuple[int, int]]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = defaultdict(list)
    for sender, seq in seen:
        out[sender].append(seq)
    return dict(out)


def _run_senders(count: int, send: Callable[[int], None]) -> None:
    """Run `send(k)` on `count` threads started together; re-raise a sender's error."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def body(k: int) -> None:
        try:
            barrier.wait(10)
            send(k)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=body, args=(k,)) for k in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    assert not errors, errors


# -- 1. ordering per sender ----------------------------------------------------------------


def test_each_senders_messages_arrive_complete_and_in_order(make_rt: MakeRuntime) -> None:
    rt = make_rt(dispatcher_threads=4, dispatcher_throughput=3)
    ref = rt.spawn(Recorder, actor_id="one")
    senders, per_sender = 8, 2_000

    def send(k: int) -> None:
        for seq in range(per_sender):
            ref.tell((k, seq))

    _run_senders(senders, send)
    rt.settle()
    seen = ref.proxy().snapshot().get(timeout=10)
    assert len(seen) == senders * per_sender
    assert _by_sender(seen) == {k: list(range(per_sender)) for k in range(senders)}


def test_order_per_sender_holds_across_many_actors(make_rt: MakeRuntime) -> None:
    rt = make_rt(dispatcher_threads=4, dispatcher_throughput=2)
    refs = [rt.spawn(Recorder, actor_id=f"r{i}") for i in range(40)]
    senders, per_actor = 8, 150

    def send(k: int) -> None:
        order = list(refs)
        random.Random(k).shuffle(order)  # each sender visits the actors its own way
        for seq in range(per_actor):
            for ref in order:
                ref.tell((k, seq))

    _run_senders(senders, send)
    rt.settle()
    seen = pykka.get_all([ref.proxy().snapshot() for ref in refs], timeout=10)
    for actor_seen in seen:
        assert _by_sender(actor_seen) == {k: list(range(per_actor)) for k in range(senders)}


def test_tells_proxy_calls_and_asks_from_one_sender_keep_their_order(
    make_rt: MakeRuntime,
) -> None:
    rt = make_rt(dispatcher_threads=4, dispatcher_throughput=1)
    ref = rt.spawn(Recorder, actor_id="mixed")
    proxy = ref.proxy()
    futures = []
    for n in range(300):
        if n % 3 == 0:
            ref.tell(n)
        elif n % 3 == 1:
            futures.append(proxy.note(n))
        else:
            futures.append(ref.ask(n, block=False))
    pykka.get_all(futures, timeout=10)
    assert proxy.snapshot().get(timeout=10) == list(range(300))


# -- 2. one handler at a time, state visible across workers -------------------------------


def test_an_actor_never_runs_on_two_threads_at_once(make_rt: MakeRuntime) -> None:
    rt = make_rt(dispatcher_threads=8, dispatcher_throughput=1)
    hot = rt.spawn(Exclusive, actor_id="hot")
    others = [rt.spawn(Exclusive, actor_id=f"e{i}") for i in range(15)]
    senders, per_sender = 8, 2_000

    def send(k: int) -> None:
        for i in range(per_sender):
            if i % 2 == 0:
                hot.tell(i)
            else:
                others[(i + k) % len(others)].tell(i)

    _run_senders(senders, send)
    rt.settle()
    reports = pykka.get_all([ref.proxy().report() for ref in [hot, *others]], timeout=10)
    counts = [count for count, _, _ in reports]
    overlaps = [overlap for _, overlap, _ in reports]
    threads_used = set().union(*(threads for _, _, threads in reports))
    assert overlaps == [0] * len(reports)
    # Exact counts: no update lost, even though turns ran on different workers.
    assert counts[0] == senders * per_sender // 2
    assert sum(counts) == senders * per_sender
    assert len(threads_used) > 1
    assert all(name.startswith(DISPATCH) for name in threads_used)


def test_an_actor_moves_between_workers_and_sees_its_own_writes(make_rt: MakeRuntime) -> None:
    """Deterministic migration: with two workers, hold one, then the other."""
    rt = make_rt(dispatcher_threads=2, slow_handler_warning_s=None)
    gate_1 = rt.spawn(Gate, actor_id="g1")
    gate_2 = rt.spawn(Gate, actor_id="g2")
    where = rt.spawn(Where, actor_id="w")
    counter = rt.spawn(Counter, actor_id="c")
    rt.settle()
    hold_1, hold_2 = Hold(), Hold()
    try:
        gate_1.tell(hold_1)
        assert hold_1.entered.wait(10)
        first = where.ask("where?", timeout=10)  # only the other worker is free
        counter.tell(41)  # written on that worker too
        assert counter.ask("get", timeout=10) == 41
        gate_2.tell(hold_2)  # takes that same worker
        assert hold_2.entered.wait(10)
        hold_1.release.set()
        second = where.ask("where?", timeout=10)  # only the first gate's worker is free
        counter.tell(1)
        assert counter.ask("get", timeout=10) == 42  # read on the other worker
    finally:
        hold_1.release.set()
        hold_2.release.set()
    assert first == hold_2.thread
    assert second == hold_1.thread
    assert first != second
    assert {first, second} == {f"{DISPATCH}0", f"{DISPATCH}1"}


# -- 3. stop and dead letters --------------------------------------------------------------


def test_stop_handles_earlier_mail_and_dead_letters_the_rest(
    rt: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    ref = rt.spawn(Counter, actor_id="c")
    actor = ref._actor_weakref()
    release = threading.Event()
    with caplog.at_level(logging.WARNING, logger="greenroom.actors"):
        try:
            ref.tell(Block(release))  # nothing after this runs until release
            for n in (1, 2, 3):
                ref.tell(n)
            stopping = ref.stop(block=False)
            ref.tell(100)  # queued behind the stop: accepted now, never handled
            ref.tell(200)
            late_ask = ref.ask("get", block=False)
            assert rt.metrics()["dead_letters"] == 0
        finally:
            release.set()
        assert stopping.get(timeout=10) is True
        with pytest.raises(pykka.ActorDeadError, match="counter:c"):
            late_ask.get(timeout=10)
    assert actor.stopped_with == 6  # 1 + 2 + 3, and nothing after the stop
    assert rt.metrics()["dead_letters"] == 3
    dead = [r for r in caplog.records if "was not delivered" in r.getMessage()]
    assert len(dead) == 3
    assert all("counter:c" in r.getMessage() for r in dead)

    with pytest.raises(pykka.ActorDeadError, match="counter:c"):
        ref.tell(1)
    with pytest.raises(pykka.ActorDeadError, match="counter:c"):
        ref.ask("get", block=False).get(timeout=10)
    with pytest.raises(pykka.ActorDeadError):
        ref.ask("get", timeout=10)
    assert rt.metrics()["dead_letters"] == 6
    assert ref.stop() is False
    assert rt.metrics()["dead_letters"] == 6  # stopping a dead actor loses nothing
    assert rt.actor_ids("counter") == []
    assert not ref.is_alive()


def test_stop_from_outside_is_true_once_then_false(make_rt: MakeRuntime) -> None:
    rt = make_rt(dispatcher_threads=2, dispatcher_throughput=5)
    refs = [rt.spawn(Counter, actor_id=f"c{i}") for i in range(20)]
    actors = [ref._actor_weakref() for ref in refs]
    for ref in refs:
        for _ in range(50):
            ref.tell(1)
    assert [ref.stop(timeout=10) for ref in refs] == [True] * 20
    assert [actor.stopped_with for actor in actors] == [50] * 20
    assert [ref.stop(timeout=10) for ref in refs] == [False] * 20
    metrics = rt.metrics()
    assert metrics["actors_stopped"] == 20
    assert metrics["actors_alive"] == 0
    assert metrics["dead_letters"] == 0


# -- 4. failures do not stop an actor on the pool ------------------------------------------


class Fragile(Counter):
    kind = "fragile"

    def __init__(self, ctx: ActorContext) -> None:
        super().__init__(ctx)
        self.failure_threads: list[str] = []

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        self.failure_threads.append(threading.current_thread().name)


def test_a_failing_tell_does_not_stop_the_actor_on_the_pool(
    make_rt: MakeRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    rt = make_rt(dispatcher_threads=4, dispatcher_throughput=1)
    ref = rt.spawn(Fragile, actor_id="f")
    with caplog.at_level(logging.ERROR, logger="greenroom.actors"):
        for n in range(200):
            ref.tell("fail" if n % 2 else 1)
        rt.settle()
    assert ref.is_alive()
    assert ref.ask("get", timeout=10) == 100  # every good message handled, state kept
    assert rt.metrics()["actor_failures"] == 100
    failures = [r for r in caplog.records if "failed handling str" in r.getMessage()]
    assert len(failures) == 100
    assert all("fragile:f" in r.getMessage() for r in failures)
    failure_threads = ref.proxy().failure_threads.get(timeout=10)
    assert len(failure_threads) == 100
    assert all(name.startswith(DISPATCH) for name in failure_threads)


# -- 5. fairness ---------------------------------------------------------------------------


def test_a_flooded_actor_yields_its_worker_after_a_turn(make_rt: MakeRuntime) -> None:
    throughput = 16
    rt = make_rt(
        dispatcher_threads=1, dispatcher_throughput=throughput, slow_handler_warning_s=None
    )
    trace: list[str] = []
    gate = rt.spawn(Gate, actor_id="g")
    flood_a = rt.spawn(Flooded, trace, actor_id="a")
    flood_b = rt.spawn(Flooded, trace, actor_id="b")
    late = rt.spawn(Flooded, trace, actor_id="late")
    rt.settle()
    hold = Hold()
    try:
        gate.tell(hold)
        assert hold.entered.wait(10)  # the only worker is held
        for _ in range(5_000):
            flood_a.tell("x")
        for _ in range(5 * throughput):
            flood_b.tell("x")
        late.tell("x")  # queued behind two floods
    finally:
        hold.release.set()
    rt.settle()
    assert trace.count("a") == 5_000
    assert trace.count("b") == 5 * throughput
    # Each actor had one turn of `throughput` messages before `late` got the worker.
    assert trace.index("late") == 2 * throughput
    assert trace[: 2 * throughput] == ["a"] * throughput + ["b"] * throughput
    runs = [(name, len(list(group))) for name, group in itertools.groupby(trace)]
    # Then turns alternate between the floods until b runs dry.
    assert runs[:12] == [
        ("a", throughput),
        ("b", throughput),
        ("late", 1),
        *[("a", throughput), ("b", throughput)] * 4,
        ("a", 5_000 - 5 * throughput),
    ]
    assert rt.metrics()["slow_handlers"] == 0  # the check is off


# -- 6. settle across long chains ----------------------------------------------------------


def test_settle_waits_for_chains_hopping_around_a_ring_of_1000(
    rt: Runtime, fake_clock: FakeClock
) -> None:
    ring_size, hops, chains = 1_000, 5_003, 8
    sink = rt.spawn(Recorder, actor_id="sink")
    ring = [rt.spawn(Hop, i, sink, actor_id=f"h{i}") for i in range(ring_size)]
    for here, nxt in zip(ring, ring[1:] + ring[:1], strict=True):
        here.tell(("link", nxt))
    rt.settle()
    handled_before = rt.metrics()["messages_handled"]
    starts = {chain: chain * 125 for chain in range(chains)}
    for chain, start in starts.items():
        ring[start].tell((chain, hops))
    rt.settle()
    metrics = rt.metrics()
    assert metrics["messages_pending"] == 0
    # Every hop, and every chain's end at the sink, was handled before settle returned.
    assert metrics["messages_handled"] - handled_before == chains * (hops + 1) + chains
    expected = {(chain, (start + hops) % ring_size) for chain, start in starts.items()}
    seen = sink.proxy().snapshot().get(timeout=10)
    assert sorted(seen) == sorted(expected)

    # The same started from a timer: advance() returns once the chains have finished.
    def start_again() -> None:
        for chain, start in starts.items():
            ring[start].tell((10 + chain, hops))

    fake_clock.call_later(1, start_again)
    fake_clock.advance(1)
    seen = sink.proxy().snapshot().get(timeout=10)
    assert len(seen) == 2 * chains
    assert {(chain - 10, where) for chain, where in seen if chain >= 10} == expected


# -- 7. asks and proxy calls from outside --------------------------------------------------


def test_asks_and_proxy_calls_answer_values_and_exceptions(make_rt: MakeRuntime) -> None:
    rt = make_rt(dispatcher_threads=4, dispatcher_throughput=4)
    refs = [rt.spawn(Counter, i * 1_000, actor_id=f"c{i}") for i in range(100)]
    proxies = [ref.proxy() for ref in refs]
    futures = [proxy.add(n) for n in range(1, 11) for proxy in proxies]
    results = pykka.get_all(futures, timeout=10)
    # Each actor added 1..10 in order: its answers are its running totals.
    expected = [i * 1_000 + n * (n + 1) // 2 for n in range(1, 11) for i in range(100)]
    assert results == expected
    assert pykka.get_all([ref.ask("get", block=False) for ref in refs], timeout=10) == [
        i * 1_000 + 55 for i in range(100)
    ]

    with pytest.raises(ValueError, match="exploded on purpose"):
        proxies[0].explode().get(timeout=10)
    with pytest.raises(RuntimeError, match="told to fail"):
        refs[1].ask("fail", timeout=10)
    with pytest.raises(RuntimeError, match="told to fail"):
        pykka.get_all([refs[2].ask("get", block=False), refs[2].ask("fail", block=False)])
    assert rt.metrics()["ask_errors"] == 3
    assert all(ref.is_alive() for ref in refs)

    assert refs[3].ask("get", block=False).map(lambda v: v * 2).get(timeout=10) == 6_110
    doubled = proxies[4].add(5).map(lambda v: v + 1)
    assert doubled.get(timeout=10) == 4_061
    assert doubled.get(timeout=10) == 4_061  # the mapped value is kept
    joined = refs[5].ask("get", block=False).join(refs[6].ask("get", block=False))
    assert joined.get(timeout=10) == [5_055, 6_055]
    total = joined.reduce(lambda a, b: a + b)
    assert total.get(timeout=10) == 11_110
    assert joined.filter(lambda v: v > 6_000).get(timeout=10) == [6_055]
    failing = proxies[7].explode().map(lambda v: "never")
    with pytest.raises(ValueError, match="exploded on purpose"):
        failing.get(timeout=10)
    assert proxies[8].count.get(timeout=10) == 8_055  # attribute reads go through too


# -- 8. threads: a pool, not a thread per actor, and none left after close -----------------


def test_2000_actors_run_on_the_pool_and_close_leaves_no_thread(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    config = RuntimeConfig(dispatcher_threads=4, blocking_threads=2, settle_timeout_s=20)
    rt = Runtime.open(tmp_path / "threads.db", clock=FakeClock(), config=config)
    try:
        refs = [rt.spawn(Counter, i, actor_id=f"c{i}") for i in range(2_000)]
        answers = pykka.get_all([ref.ask("get", block=False) for ref in refs], timeout=20)
        assert answers == list(range(2_000))
        offloader = rt.spawn(Offloader, actor_id="o")
        offloader.proxy().offload(sum, [1, 2, 3]).get(timeout=10)
        rt.settle()
        assert offloader.proxy().get_results().get(timeout=10)[0][0] == ("ok", 6)
        new = [t for t in threading.enumerate() if t not in before]
        names = sorted(t.name for t in new)
        assert names == [f"{BLOCKING}0", *(f"{DISPATCH}{n}" for n in range(4))]
        metrics = rt.metrics()
        assert metrics["actors_alive"] == 2_001
        assert metrics["dispatcher_threads"] == 4
        assert metrics["blocking_threads"] == 1
    finally:
        rt.close()
    # close() joined every thread it started: none is left, not even briefly.
    left = [t for t in threading.enumerate() if t not in before]
    assert left == []
    assert not any(t.is_alive() for t in new)


def test_close_with_an_owned_system_clock_leaves_no_thread(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    rt = Runtime.open(tmp_path / "system.db", config=RuntimeConfig(settle_timeout_s=20))
    try:
        ticked = threading.Event()

        class Ticks(GreenroomActor):
            kind = "ticks"

            def on_start(self) -> None:
                self.schedule_once(0.0, "tick")

            def on_receive(self, message: Any) -> Any:
                ticked.set()
                return None

        rt.spawn(Ticks, actor_id="t")
        assert ticked.wait(10)  # the timer thread fired into the pool
        names = {t.name for t in threading.enumerate() if t not in before}
        assert "greenroom-timer" in names
    finally:
        rt.close()
    assert [t for t in threading.enumerate() if t not in before] == []


# -- 9. handlers do not block; run_blocking ------------------------------------------------


def test_waiting_on_an_unresolved_future_inside_a_handler_is_refused(
    make_rt: MakeRuntime,
) -> None:
    rt = make_rt(dispatcher_threads=4, slow_handler_warning_s=None)
    other = rt.spawn(Counter, 7, actor_id="other")
    impatient = rt.spawn(Impatient, actor_id="i").proxy()
    release = threading.Event()
    try:
        other.tell(Block(release))  # the other actor cannot answer before release
        kind, text, done = impatient.wait_on_ask(other).get(timeout=10)
        assert (kind, done) == ("refused", False)
        assert "impatient:i" in text
        assert "run_blocking" in text
        assert "impatient:i" in impatient.blocking_ask(other).get(timeout=10)
        assert "impatient:i" in impatient.proxy_call(other).get(timeout=10)
        assert "impatient:i" in impatient.get_all(other).get(timeout=10)
    finally:
        release.set()
    rt.settle()
    # The refused waits' messages were still delivered: one of them was add(1).
    # A resolved future is fine inside a handler: get() returns without waiting.
    resolved = other.ask("get", block=False)
    assert resolved.get(timeout=10) == 8
    assert impatient.read(resolved).get(timeout=10) == 8
    failed = other.ask("fail", block=False)
    with pytest.raises(RuntimeError, match="told to fail"):
        failed.get(timeout=10)
    with pytest.raises(RuntimeError, match="told to fail"):
        impatient.read(failed).get(timeout=10)
    assert other.ask("get", timeout=10) == 8


def _wait_then_answer(gate: threading.Event, ran_on: list[str]) -> int:
    ran_on.append(threading.current_thread().name)
    if not gate.wait(10):
        raise AssertionError("gate never opened")
    return 42


def _fail_in_job() -> None:
    raise ValueError("the job failed")


def _ask_from_job(ref: GreenroomActorRef) -> Any:
    return ref.ask("get", timeout=10)  # allowed here: not a dispatcher thread


def test_run_blocking_delivers_its_result_back_into_the_actor(
    make_rt: MakeRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    rt = make_rt()
    offloader = rt.spawn(Offloader, actor_id="o")
    counter = rt.spawn(Counter, 5, actor_id="c")
    gate = threading.Event()
    ran_on: list[str] = []
    try:
        offloader.proxy().offload(_wait_then_answer, gate, ran_on).get(timeout=10)
        # The job is work in progress: settle cannot finish while it runs.
        with pytest.raises(SettleTimeout) as info:
            rt.settle(timeout=0.2)
        assert "blocking:_wait_then_answer" in info.value.busy
        assert offloader.proxy().get_results().get(timeout=10) == []
    finally:
        gate.set()
    rt.settle()
    [(outcome, then_thread, in_actor)] = offloader.proxy().get_results().get(timeout=10)
    assert outcome == ("ok", 42)
    assert then_thread.startswith(DISPATCH)  # `then` ran in the actor, on the pool
    assert in_actor
    assert len(ran_on) == 1
    assert ran_on[0].startswith(BLOCKING)  # the job did not hold a dispatcher thread

    with caplog.at_level(logging.WARNING, logger="greenroom.blocking"):
        offloader.proxy().offload(_fail_in_job).get(timeout=10)
        rt.settle()
    outcome, then_thread, in_actor = offloader.proxy().get_results().get(timeout=10)[-1]
    assert outcome[0] == "error"
    assert isinstance(outcome[1], ValueError)
    assert str(outcome[1]) == "the job failed"
    assert any("the job failed" in r.getMessage() for r in caplog.records)

    offloader.proxy().offload(_ask_from_job, counter).get(timeout=10)
    rt.settle()
    assert offloader.proxy().get_results().get(timeout=10)[-1][0] == ("ok", 5)


def test_the_blocking_pool_is_bounded(make_rt: MakeRuntime) -> None:
    rt = make_rt(blocking_threads=2)
    offloader = rt.spawn(Offloader, actor_id="o")
    gate = threading.Event()
    started = threading.Semaphore(0)

    def job(n: int) -> int:
        started.release()
        if not gate.wait(10):
            raise AssertionError("gate never opened")
        return n

    try:
        for n in range(5):
            offloader.proxy().offload(job, n).get(timeout=10)
        assert started.acquire(timeout=10)
        assert started.acquire(timeout=10)
        metrics = rt.metrics()
        assert metrics["blocking_threads"] == 2
        assert metrics["blocking_queued"] == 3
    finally:
        gate.set()
    rt.settle()
    results = offloader.proxy().get_results().get(timeout=10)
    assert sorted(outcome for outcome, _, _ in results) == [("ok", n) for n in range(5)]
    assert rt.metrics()["blocking_threads"] == 2


def test_close_called_from_a_blocking_job_does_not_wedge_the_runtime(tmp_path: Path) -> None:
    """A blocking job may call rt.close(): it must not leave the runtime half closed.

    close() is refused in handlers because it would wait for the handler; a blocking job
    is not a handler, so nothing refuses it there. Whatever close() from a job does
    (refuse with a GreenroomError, or close), a host's later close() must return and the
    pools' threads must be gone.
    """
    before = set(threading.enumerate())
    rt = Runtime.open(tmp_path / "job-close.db", clock=FakeClock(), config=RuntimeConfig())
    outcome: list[BaseException | None] = []
    finished = threading.Event()

    def close_from_job() -> None:
        try:
            rt.close()
            outcome.append(None)
        except BaseException as error:
            outcome.append(error)
        finally:
            finished.set()

    offloader = rt.spawn(Offloader, actor_id="o")
    offloader.proxy().offload_without_then(close_from_job).get(timeout=10)
    assert finished.wait(20)
    host_closed = threading.Event()
    closer = threading.Thread(target=lambda: (rt.close(), host_closed.set()), daemon=True)
    closer.start()
    problems = []
    if not host_closed.wait(5):
        problems.append("a host's close() after the job's close() never returned")
    [error] = outcome
    if not isinstance(error, InvalidTransition) or "run_blocking job" not in str(error):
        problems.append(f"close() from a blocking job was not refused: {error!r}")
    left = [t for t in threading.enumerate() if t not in before and t is not closer]
    for thread in left:
        if thread.name.startswith(BLOCKING):
            thread.join(5)  # grace for the job's thread, finishing after its own close()
    alive = sorted(t.name for t in left if t.is_alive())
    if alive:
        problems.append(f"threads still running: {', '.join(alive)}")
    assert not problems, "; ".join(problems)


# -- 10. slow-handler warnings -------------------------------------------------------------


def test_slow_handlers_are_logged_with_actor_and_message_type(
    make_rt: MakeRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    rt = make_rt(slow_handler_warning_s=1e-9)  # every handler is "slow"
    ref = rt.spawn(Probe, actor_id="p")
    rt.settle()
    before = rt.metrics()["slow_handlers"]
    with caplog.at_level(logging.WARNING, logger="greenroom.actors"):
        ref.tell(Ping())
        assert ref.proxy().note().get(timeout=10) == 1
        rt.settle()
    slow = [r for r in caplog.records if "slow_handler_warning_s" in r.getMessage()]
    assert len(slow) == 2
    assert all(r.levelno == logging.WARNING for r in slow)
    assert all(r.name == "greenroom.actors" for r in slow)
    assert all("probe:p" in r.getMessage() for r in slow)
    assert "handling Ping " in slow[0].getMessage()
    assert "handling call note() " in slow[1].getMessage()
    assert slow[0].actor_id == "p"  # type: ignore[attr-defined]
    assert rt.metrics()["slow_handlers"] - before == 2


def test_quick_handlers_log_no_slow_warning_by_default(
    rt: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    assert rt.config.slow_handler_warning_s == 0.1
    ref = rt.spawn(Probe, actor_id="p")
    with caplog.at_level(logging.DEBUG, logger="greenroom.actors"):
        for _ in range(20):
            ref.tell(Ping())
        assert ref.proxy().note().get(timeout=10) == 20
        rt.settle()
    assert not [r for r in caplog.records if "slow_handler_warning_s" in r.getMessage()]
    assert rt.metrics()["slow_handlers"] == 0


# -- 11. future timeouts -------------------------------------------------------------------


def test_an_ask_that_times_out_raises_future_timeout(make_rt: MakeRuntime) -> None:
    rt = make_rt(slow_handler_warning_s=None)
    ref = rt.spawn(Counter, actor_id="c")
    release = threading.Event()
    try:
        ref.tell(Block(release))
        with pytest.raises(FutureTimeout) as info:
            ref.ask("get", timeout=0.05)
        assert isinstance(info.value, pykka.Timeout)
        assert isinstance(info.value, TimeoutError)
        with pytest.raises(pykka.Timeout):
            ref.proxy().add(1).get(timeout=0.05)
        mapped = ref.ask("get", block=False).map(lambda v: v * 10)
        with pytest.raises(FutureTimeout):
            mapped.get(timeout=0.05)
        with pytest.raises(TimeoutError):
            pykka.get_all([mapped], timeout=0.05)
    finally:
        release.set()
    assert mapped.get(timeout=10) == 10  # the same future answers once the actor does
    assert ref.ask("get", timeout=10) == 1


# -- 12. on_start --------------------------------------------------------------------------


def test_on_start_runs_on_the_pool_before_any_message(make_rt: MakeRuntime) -> None:
    rt = make_rt(slow_handler_warning_s=None)
    entered, release = threading.Event(), threading.Event()
    try:
        ref = rt.spawn(StartProbe, entered, release, actor_id="s")  # returns at once
        for n in range(100):
            ref.tell(n)
        assert entered.wait(10)
        assert rt.metrics()["messages_pending"] >= 1
    finally:
        release.set()
    rt.settle()
    events = ref.proxy().get_events().get(timeout=10)
    (what, thread, in_actor), *messages = events
    assert what == "on_start"
    assert thread.startswith(DISPATCH)
    assert in_actor
    assert messages == list(range(100))


# -- review follow-ups ---------------------------------------------------------------------


def test_settle_from_a_blocking_job_is_refused(make_rt: MakeRuntime) -> None:
    rt = make_rt()
    offloader = rt.spawn(Offloader, actor_id="o")
    outcome: list[BaseException | None] = []
    finished = threading.Event()

    def settle_from_job() -> None:
        try:
            rt.settle(timeout=1)
            outcome.append(None)
        except BaseException as error:
            outcome.append(error)
        finally:
            finished.set()

    offloader.proxy().offload_without_then(settle_from_job).get(timeout=10)
    assert finished.wait(10)
    [error] = outcome
    assert isinstance(error, InvalidTransition)
    assert "run_blocking job" in str(error)


class Poller(GreenroomActor):
    """Polls another actor's future with a zero timeout from inside a handler."""

    kind = "poller"

    def poll(self, target: GreenroomActorRef, message: Any) -> str:
        future = target.ask(message, block=False)
        try:
            future.get(timeout=0)
        except FutureTimeout:
            return "not yet"
        return "done"


def test_a_zero_timeout_poll_inside_a_handler_is_not_refused(make_rt: MakeRuntime) -> None:
    rt = make_rt(slow_handler_warning_s=None)
    gate = rt.spawn(Gate, actor_id="g")
    hold, second = Hold(), Hold()
    gate.tell(hold)
    assert hold.entered.wait(10)
    try:
        poller = rt.spawn(Poller, actor_id="p")
        assert poller.proxy().poll(gate, second).get(timeout=10) == "not yet"
    finally:
        hold.release.set()
        second.release.set()


def test_an_abandoned_actor_answers_its_queued_asks_once_its_handler_returns(
    tmp_path: Path,
) -> None:
    rt = Runtime.open(
        tmp_path / "abandon.db",
        clock=FakeClock(),
        config=RuntimeConfig(stop_timeout_s=0.3, slow_handler_warning_s=None),
    )
    gate = rt.spawn(Gate, actor_id="g")
    hold = Hold()
    gate.tell(hold)
    assert hold.entered.wait(10)
    queued = gate.ask(Hold(), block=False)  # behind the stuck handler
    rt.close()  # gives up on the gate after stop_timeout_s
    hold.release.set()  # the handler returns after the dispatcher is shut down
    with pytest.raises(pykka.ActorDeadError):
        queued.get(timeout=10)


class FailsFirstStart(GreenroomActor):
    """Its first incarnation fails in on_start; its first start() waits before returning."""

    kind = "flaky"
    failed_once = False
    first_start_returned = threading.Event()
    let_first_start_return = threading.Event()
    first_start_used = False

    def on_start(self) -> None:
        if not FailsFirstStart.failed_once:
            FailsFirstStart.failed_once = True
            raise RuntimeError("first start fails")

    @classmethod
    def start(cls, *args: Any, **kwargs: Any) -> GreenroomActorRef:
        ref = super().start(*args, **kwargs)
        if not FailsFirstStart.first_start_used:
            FailsFirstStart.first_start_used = True
            FailsFirstStart.first_start_returned.set()
            FailsFirstStart.let_first_start_return.wait(10)
        return ref


def test_a_stalled_spawn_does_not_replace_a_newer_actor_with_the_same_id(
    make_rt: MakeRuntime,
) -> None:
    rt = make_rt()
    first: list[GreenroomActorRef] = []
    spawner = threading.Thread(target=lambda: first.append(rt.spawn(FailsFirstStart, actor_id="x")))
    spawner.start()
    assert FailsFirstStart.first_start_returned.wait(10)
    rt.settle()  # the first incarnation failed on_start and left the lookup
    second = rt.spawn(FailsFirstStart, actor_id="x")
    FailsFirstStart.let_first_start_return.set()
    spawner.join(10)
    assert not first[0].is_alive()
    assert rt.get_actor("flaky", "x") is second
    assert second.is_alive()
