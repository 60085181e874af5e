"""Caller runs: an ask that waits runs an idle actor's turn on the asking thread."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import pytest

from greenroom import Runtime
from greenroom.actors.base import ActorContext, GreenroomActor, GreenroomActorRef, current_actor
from greenroom.errors import InvalidInput, InvalidTransition

from .actors_for_tests import Block, Counter


class Where(GreenroomActor):
    """Answers with the thread its handler ran on; can interrupt itself or chain."""

    kind = "where"

    def __init__(self, ctx: ActorContext) -> None:
        super().__init__(ctx)
        self.handled: list[Any] = []
        self.threads: list[int] = []

    def on_receive(self, message: Any) -> Any:
        self.threads.append(threading.get_ident())
        if message == "sigint twice":
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)  # the second one is delivered here
            self.handled.append("not reached")
            return None
        if isinstance(message, tuple) and message[0] == "set var":
            before = message[1].get("unset")
            message[1].set("set by the handler")
            return before
        if message == "sigint":
            # Ctrl-C arriving in the middle of a handler on the main thread.
            signal.raise_signal(signal.SIGINT)
            self.handled.append("after sigint")
            return threading.get_ident()
        if isinstance(message, tuple) and message[0] == "ask":
            return message[1].ask("where")  # a handler that waits: refused
        if isinstance(message, tuple) and message[0] == "tell_self":
            for n in range(message[1]):
                self.actor_ref.tell(("note", n))
            return threading.get_ident()
        self.handled.append(message)
        if message == "fail":
            raise ValueError("failed on purpose")
        return threading.get_ident()

    def seen(self) -> list[Any]:
        return list(self.handled)


def test_a_waiting_ask_runs_the_idle_actors_turn_on_the_callers_thread(rt: Runtime) -> None:
    ref = rt.spawn(Where)
    assert ref.ask("where") == threading.get_ident()
    assert current_actor() is None  # the turn's marker is cleared afterwards
    # From another host thread too.
    seen: list[int] = []
    thread = threading.Thread(target=lambda: seen.append(ref.ask("where")))
    thread.start()
    thread.join()
    assert seen == [thread.ident]


def test_caller_runs_off_sends_every_turn_to_a_worker(open_rt: Callable[..., Runtime]) -> None:
    rt = open_rt(caller_runs=False)
    ref = rt.spawn(Where)
    assert ref.ask("where") != threading.get_ident()


@pytest.mark.parametrize("how", ["timeout", "future", "proxy"])
def test_asks_that_may_not_wait_forever_go_to_a_worker(rt: Runtime, how: str) -> None:
    ref = rt.spawn(Where)
    if how == "timeout":
        ident = ref.ask("where", timeout=10)
    elif how == "future":
        ident = ref.ask("where", block=False).get()
    else:
        ident = ref.proxy().on_receive("where").get()
    assert ident != threading.get_ident()


def test_a_busy_actor_is_left_to_its_worker(rt: Runtime) -> None:
    ref = rt.spawn(Counter)
    release = threading.Event()
    ref.tell(Block(release))  # occupies a worker until released
    answers: list[int] = []
    asker = threading.Thread(target=lambda: answers.append(ref.ask(5)))
    asker.start()
    asker.join(0.2)  # real time: the ask must wait for the busy turn, not run beside it
    assert asker.is_alive()
    assert answers == []
    release.set()
    asker.join(10)
    assert answers == [5]


def test_a_handler_never_runs_another_actors_turn(rt: Runtime) -> None:
    a = rt.spawn(Where, actor_id="a")
    b = rt.spawn(Where, actor_id="b")
    # a's turn runs here; its handler's ask to b goes to a worker. Whether b answers
    # before a's handler waits is a race: a wait on an unresolved future is refused.
    answer: Any
    try:
        answer = a.ask(("ask", b))
    except InvalidTransition as error:
        answer = error
    if isinstance(answer, InvalidTransition):
        assert "must not block" in str(answer)
    else:
        assert answer != threading.get_ident()
    rt.settle()
    assert b.proxy().seen().get() == ["where"]
    assert b.proxy().threads.get() != [threading.get_ident()]


def test_mail_left_after_a_callers_turn_goes_to_the_workers(
    open_rt: Callable[..., Runtime],
) -> None:
    rt = open_rt(dispatcher_throughput=4)
    ref = rt.spawn(Where)
    assert ref.ask(("tell_self", 50)) == threading.get_ident()
    rt.settle()
    assert ref.proxy().seen().get() == [("note", n) for n in range(50)]


def test_a_failing_handler_answers_the_caller_and_the_actor_goes_on(rt: Runtime) -> None:
    ref = rt.spawn(Where)
    with pytest.raises(ValueError, match="on purpose"):
        ref.ask("fail")
    assert ref.ask("where") == threading.get_ident()
    assert rt.metrics()["ask_errors"] == 1


def test_ctrl_c_in_a_callers_turn_is_raised_after_it_and_the_actor_survives(
    rt: Runtime,
) -> None:
    assert threading.current_thread() is threading.main_thread()
    ref = rt.spawn(Where)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        ref.ask("sigint")
    # The handler ran to its end, the actor is alive, SIGINT's handler is back.
    assert ref.proxy().seen().get() == ["after sigint"]
    assert not ref.actor_stopped.is_set()
    assert signal.getsignal(signal.SIGINT) is before
    assert rt.metrics()["actor_failures"] == 0


def test_a_custom_sigint_handler_is_put_back_and_called_once(rt: Runtime) -> None:
    calls: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: calls.append(signum))
    try:
        ref = rt.spawn(Where)
        ref.ask("sigint")  # the custom handler does not raise
        assert calls == [signal.SIGINT]
        assert ref.proxy().seen().get() == ["after sigint"]
    finally:
        signal.signal(signal.SIGINT, previous)


def test_an_ask_to_a_stopped_actor_is_a_dead_letter(rt: Runtime) -> None:
    import pykka

    ref: GreenroomActorRef = rt.spawn(Where)
    ref.stop()
    with pytest.raises(pykka.ActorDeadError):
        ref.ask("where")
    with pytest.raises(pykka.ActorDeadError):
        ref.ask_here("where").get()
    assert rt.metrics()["dead_letters"] == 2


def test_settle_counts_a_callers_turn(rt: Runtime) -> None:
    ref = rt.spawn(Counter)
    assert ref.ask(3) == 3
    rt.settle()  # returns: nothing is left counted as busy
    assert rt.metrics()["messages_handled"] >= 1


def test_caller_runs_must_be_a_bool() -> None:
    from greenroom import RuntimeConfig

    with pytest.raises(InvalidInput, match="caller_runs must be True or False"):
        RuntimeConfig(caller_runs="yes")  # type: ignore[arg-type]


def test_a_second_ctrl_c_interrupts_a_long_turn_and_reaches_the_caller(rt: Runtime) -> None:
    ref = rt.spawn(Where)
    with pytest.raises(KeyboardInterrupt):
        ref.ask("sigint twice")
    # Delivered inside the handler: a BaseException there stops a plain actor.
    assert ref.actor_stopped.wait(10)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_with_another_python_signal_handler_the_main_thread_leaves_turns_to_workers(
    rt: Runtime,
) -> None:
    ref = rt.spawn(Where)
    previous = signal.signal(signal.SIGUSR1, lambda _signum, _frame: None)
    try:
        assert ref.ask("where") != threading.get_ident()
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert ref.ask("where") == threading.get_ident()


def test_context_variables_do_not_cross_into_or_out_of_a_callers_turn(rt: Runtime) -> None:
    var: ContextVar[str] = ContextVar("request_id")
    token = var.set("the host's")
    try:
        ref = rt.spawn(Where)
        assert ref.ask(("set var", var)) == "unset"
        assert var.get() == "the host's"
    finally:
        var.reset(token)
