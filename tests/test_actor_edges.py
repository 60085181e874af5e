"""Edge cases of the actor base and the runtime found in review, pinned down."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pykka
import pytest

from greenroom import FakeClock, Runtime, RuntimeConfig, SystemClock
from greenroom.actors.base import ActorContext, GreenroomActor
from greenroom.errors import InvalidTransition, NotFound

from .actors_for_tests import Block, Counter


class SlowStart(GreenroomActor):
    kind = "slowstart"

    def __init__(self, ctx: ActorContext, gate: threading.Event) -> None:
        super().__init__(ctx)
        self.gate = gate
        self.ticks = 0

    def on_start(self) -> None:
        self.gate.wait(10)
        self.schedule_every(1.0, "tick")

    def on_receive(self, message: Any) -> Any:
        self.ticks += 1
        return self.ticks


def test_settle_waits_for_on_start(rt: Runtime, fake_clock: FakeClock) -> None:
    gate = threading.Event()
    ref = rt.spawn(SlowStart, gate, actor_id="s")
    assert rt.metrics()["messages_pending"] == 1  # start-up counts as work in hand
    gate.set()
    rt.settle()
    assert fake_clock.pending_timers() == 1
    fake_clock.advance(1)
    assert ref.proxy().ticks.get() == 1


class SlowInit(GreenroomActor):
    kind = "slowinit"

    def __init__(self, ctx: ActorContext, inside: threading.Event, gate: threading.Event):
        super().__init__(ctx)
        inside.set()
        gate.wait(10)


def test_close_never_misses_an_actor_being_spawned(db_path: Path) -> None:
    rt = Runtime.open(db_path, clock=FakeClock(), config=RuntimeConfig(stop_timeout_s=10))
    inside, gate = threading.Event(), threading.Event()
    spawned: list[Any] = []
    spawner = threading.Thread(
        target=lambda: spawned.append(rt.spawn(SlowInit, inside, gate, actor_id="x"))
    )
    spawner.start()
    assert inside.wait(10)
    closer = threading.Thread(target=rt.close)
    closer.start()
    gate.set()
    spawner.join()
    closer.join()
    assert spawned
    assert not spawned[0].is_alive()


class Boss(GreenroomActor):
    kind = "boss"

    def __init__(self, ctx: ActorContext, rt: Runtime) -> None:
        super().__init__(ctx)
        self.rt = rt

    def close_runtime(self) -> None:
        self.rt.close()

    def settle_runtime(self) -> None:
        self.rt.settle()


def test_close_and_settle_from_a_handler_are_refused(rt: Runtime) -> None:
    boss = rt.spawn(Boss, rt, actor_id="b").proxy()
    with pytest.raises(InvalidTransition, match="handler of actor boss:b"):
        boss.close_runtime().get()
    with pytest.raises(InvalidTransition, match="handler of actor boss:b"):
        boss.settle_runtime().get()
    assert not rt.closed


def test_a_failing_ask_is_logged_even_if_nobody_reads_the_future(
    rt: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    ref = rt.spawn(Counter, actor_id="c")
    with caplog.at_level(logging.INFO, logger="greenroom.actors"):
        ref.proxy().explode()  # future dropped
        rt.settle()
    lines = [r for r in caplog.records if "answered call explode()" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].levelno == logging.WARNING
    assert lines[0].actor_id == "c"  # type: ignore[attr-defined]
    assert rt.metrics()["ask_errors"] == 1


class Lookup(GreenroomActor):
    kind = "lookup"

    def find(self) -> None:
        raise NotFound("no such thing")


def test_greenroom_errors_answered_to_askers_log_quietly(
    rt: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    ref = rt.spawn(Lookup, actor_id="l")
    with caplog.at_level(logging.INFO, logger="greenroom.actors"), pytest.raises(NotFound):
        ref.proxy().find().get()
    [line] = [r for r in caplog.records if "answered call find()" in r.getMessage()]
    assert line.levelno == logging.INFO
    assert line.exc_info is None


def test_stopping_a_stopped_actor_is_no_dead_letter(rt: Runtime) -> None:
    ref = rt.spawn(Counter, actor_id="c")
    assert ref.stop() is True
    assert ref.stop() is False
    assert rt.metrics()["dead_letters"] == 0
    with pytest.raises(pykka.ActorDeadError, match="counter:c"):
        ref.tell(1)
    assert rt.metrics()["dead_letters"] == 1


class ExitOnStop(GreenroomActor):
    kind = "exitonstop"

    def on_stop(self) -> None:
        raise SystemExit("bye")


def test_base_exception_in_on_stop_still_tears_down(rt: Runtime) -> None:
    ref = rt.spawn(ExitOnStop, actor_id="e")
    ref.tell("queued")  # no on_receive: logged as unexpected, but handled
    assert ref.stop(timeout=10) is True
    rt.settle(timeout=10)
    assert rt.actor_ids("exitonstop") == []
    assert rt.metrics()["actor_failures"] == 1


class LateTimer(GreenroomActor):
    kind = "latetimer"

    def on_stop(self) -> None:
        self.schedule_once(1, "never")


def test_timers_cannot_be_scheduled_once_stopped(rt: Runtime, fake_clock: FakeClock) -> None:
    ref = rt.spawn(LateTimer, actor_id="t")
    ref.stop()
    assert fake_clock.pending_timers() == 0
    assert rt.metrics()["actor_failures"] == 1  # on_stop raised InvalidTransition


class _FlakyParticipant:
    """Looks idle, but new work appears during the first check (another runtime's)."""

    def __init__(self) -> None:
        self.entered = 0
        self.checks = 0

    def is_idle(self) -> bool:
        self.checks += 1
        if self.checks == 1:
            self.entered += 1  # a message arrived and was handled meanwhile
        return True

    def wait_idle(self, timeout: float | None) -> bool:
        return True

    def busy(self) -> dict[str, int]:
        return {}


def test_fake_clock_settle_repeats_a_pass_that_saw_new_work() -> None:
    clock = FakeClock()
    participant = _FlakyParticipant()
    clock.attach(participant)
    clock.settle()
    assert participant.checks == 2


def test_system_clock_survives_a_far_off_timer() -> None:
    clock = SystemClock()
    fired = threading.Event()
    try:
        clock.call_later(1e10, lambda: None)
        clock.call_later(0, fired.set)
        assert fired.wait(10)
    finally:
        clock.close()


def test_cancelled_timers_do_not_pile_up(fake_clock: FakeClock) -> None:
    for _ in range(10_000):
        fake_clock.call_later(3600, lambda: None).cancel()
    assert fake_clock.pending_timers() == 0
    assert len(fake_clock._timers._heap) < 200  # white box: purged, closures released


class Keeper(GreenroomActor):
    """Keeps the tells still queued at its stop (`on_unhandled`), but not "drop"."""

    kind = "keeper"

    def __init__(self, ctx: ActorContext, kept: list[Any]) -> None:
        super().__init__(ctx)
        self.kept = kept

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Block):
            message.event.wait(10)
        return None

    def on_unhandled(self, message: Any) -> bool:
        if message == "drop":
            return False
        self.kept.append(message)
        return True


def test_tells_queued_behind_a_stop_go_to_on_unhandled_not_to_dead_letters(rt: Runtime) -> None:
    kept: list[Any] = []
    ref = rt.spawn(Keeper, kept, actor_id="k")
    release = threading.Event()
    ref.tell(Block(release))  # busy: what follows waits in the mailbox, in order
    stopped = ref.stop(block=False)  # the stop is queued now
    ref.tell("after the stop")
    ref.tell("drop")
    release.set()
    stopped.get(timeout=10)
    assert kept == ["after the stop"]
    assert rt.metrics()["dead_letters"] == 1  # "drop": on_unhandled left it
