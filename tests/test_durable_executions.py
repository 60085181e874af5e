"""Durable executions: named strategies, the journal, re-drive, passivation, clear loss."""

from __future__ import annotations

import json
import logging
import threading
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

import greenroom
from greenroom import FakeClock, LlmRequest, Runtime
from greenroom.errors import (
    Conflict,
    ExecutionLost,
    GreenroomError,
    InvalidInput,
    InvalidTransition,
    NotFound,
    StorageError,
    StrategyNotRegistered,
    UnknownQuery,
)
from greenroom.executions.journal import encode, start_record, step_record
from greenroom.store import AppendFile, CreateObject
from tests.conftest import QUIET
from tests.stores import ENGINES

OpenRt = Callable[..., Runtime]


@pytest.fixture(params=ENGINES)
def open_rt(
    request: pytest.FixtureRequest, db_path: Path, fake_clock: FakeClock, tmp_path: Path
) -> Iterator[OpenRt]:
    """Open runtimes on the test's database: the SQLite file, or a PostgreSQL schema of
    the test's own (every durable-execution test runs on both stores)."""
    opened: list[Runtime] = []
    target: str | Path = db_path
    if request.param == "postgres":
        target = request.getfixturevalue("pg_url")

    def open_(**config: Any) -> Runtime:
        settings = attrs.evolve(QUIET, archive_dir=tmp_path / "archives", **config)
        rt = Runtime.open(target, clock=fake_clock, config=settings)
        opened.append(rt)
        return rt

    yield open_
    for rt in opened:
        rt.close()


SIDE_EFFECTS: list[str] = []


async def essay(ctx: Any, topic: str, *, rounds: int = 3) -> dict[str, Any]:
    """Asks `rounds` questions, the second a batch of two, with a step and the time."""
    stamp = await ctx.step("fetch", _fetch, topic)
    started = ctx.now()
    answers = []
    for index in range(rounds):
        if index == 1:
            pair = await ctx.llm_batch([LlmRequest(f"{topic} a"), LlmRequest(f"{topic} b")])
            answers.append("+".join(pair))
        else:
            answers.append(await ctx.llm(f"{topic} round {index}", max_tokens=50))
        ctx.metric("done", index + 1)
    return {"answers": answers, "stamp": stamp, "started": started}


def plain_essay(ctx: Any, topic: str) -> list[str]:
    """The plain (def) twin: blocking ctx.llm and ctx.step."""
    stamp = ctx.step("fetch", _fetch, topic)
    first = ctx.llm(f"{topic} round 0")
    second = ctx.llm(f"{topic} round 1")
    return [stamp, first, second]


def _fetch(topic: str) -> str:
    SIDE_EFFECTS.append(topic)
    return f"fetched {topic} #{len(SIDE_EFFECTS)}"


@pytest.fixture(autouse=True)
def _fresh_side_effects() -> None:
    SIDE_EFFECTS.clear()


def _started_then_closed(open_rt: OpenRt) -> str:
    """Start `essay` on "moon" in a runtime and close it; the session's id."""
    first = open_rt()
    first.executions.register("essay", essay)
    sid: str = first.executions.start("essay", "moon").session_id
    first.close()
    return sid


def _answer_all(rt: Runtime, sid: str, prefix: str = "") -> Any:
    """Feed every pending query until the session ends; its final result."""
    step = rt.executions.status(sid)
    while step["state"] == "paused":
        items = [(qid, f"{prefix}{qid}", None) for qid in step["pending_queries"]]
        result = rt.executions.feed_many(sid, items)
        step = rt.executions.status(sid)
    assert step["state"] == "completed", step
    return result.result


def test_a_registered_strategy_runs_durable_and_an_unregistered_one_does_not(
    open_rt: OpenRt,
) -> None:
    rt = open_rt()
    rt.executions.register("essay", essay)
    by_name = rt.executions.start("essay", "tides").session_id
    by_function = rt.executions.start(essay, "tides").session_id
    assert rt.executions.status(by_name)["durable"] is True
    assert rt.executions.status(by_function)["durable"] is True  # registered: same function

    async def adhoc(ctx: Any) -> str:
        return str(await ctx.llm("hi"))

    memory_only = rt.executions.start(adhoc).session_id
    assert rt.executions.status(memory_only)["durable"] is False
    assert rt.executions.strategies() == ["essay"]


def test_a_durable_execution_comes_back_after_a_restart_at_the_exact_round(
    open_rt: OpenRt,
) -> None:
    reference = open_rt()
    reference.executions.register("essay", essay)
    expected = _answer_all(reference, reference.executions.start("essay", "moon").session_id)
    reference.close()
    SIDE_EFFECTS.clear()

    first = open_rt()
    first.executions.register("essay", essay)
    started = first.executions.start("essay", "moon")
    sid = started.session_id
    assert started.query_ids == ["q-1-0"]
    step = first.executions.feed(sid, "q-1-0")
    assert step.query_ids == ["q-2-0", "q-2-1"]
    assert first.executions.feed(sid, "q-2-0", query_id="q-2-0").status == "accepted"
    first.close()

    second = open_rt()
    second.executions.register("essay", essay)
    status = second.executions.status(sid)  # from the journal, without re-driving
    assert (status["state"], status["pending_queries"]) == ("paused", ["q-2-1"])
    assert status["durable"] is True
    assert status["in_memory"] is False
    assert second.metrics()["executions_redriven"] == 0
    # The same answer again is a no-op; the open query takes its answer.
    again = second.executions.feed(sid, "q-2-0", query_id="q-2-0")
    assert (again.status, again.remaining) == ("accepted", 1)
    assert second.metrics()["executions_redriven"] == 1
    assert second.executions.feed(sid, "q-2-1", query_id="q-2-1").query_ids == ["q-3-0"]
    final = second.executions.feed(sid, "q-3-0")
    assert final.status == "completed"
    assert final.result == expected
    assert SIDE_EFFECTS == ["moon"]  # the step ran once, in the first runtime
    assert final.metrics is not None
    assert final.metrics.rounds == 3
    assert final.metrics.custom == {"done": 3}


def test_a_plain_strategy_comes_back_too(open_rt: OpenRt) -> None:
    first = open_rt()
    first.executions.register("plain", plain_essay)
    sid = first.executions.start("plain", "sea").session_id
    first.executions.feed(sid, "one")
    first.close()

    second = open_rt()
    second.executions.register("plain", plain_essay)
    assert second.executions.status(sid)["pending_queries"] == ["q-2-0"]
    final = second.executions.feed(sid, "two")
    assert final.status == "completed"
    assert final.result == ["fetched sea #1", "one", "two"]
    assert SIDE_EFFECTS == ["sea"]


# Two runtimes driving one execution in turns: on a shared store, leases decide who
# drives (tests/test_execution_leases.py), so this is the single-host store's case.
@pytest.mark.parametrize("open_rt", ["sqlite"], indirect=True)
def test_a_step_runs_once_across_five_re_drives(open_rt: OpenRt) -> None:
    async def long(ctx: Any) -> list[str]:
        out = [await ctx.step("effect", _fetch, "x")]
        for index in range(5):
            out.append(await ctx.llm(f"q{index}"))
        return out

    sid = ""
    for restart in range(6):
        rt = open_rt()
        rt.executions.register("long", long)
        if restart == 0:
            sid = rt.executions.start("long").session_id
            continue
        result = rt.executions.feed(sid, f"a{restart}")
        rt.close()
    assert result.status == "completed"
    assert result.result == ["fetched x #1", "a1", "a2", "a3", "a4", "a5"]
    assert SIDE_EFFECTS == ["x"]


def test_a_changed_strategy_ends_in_error_naming_the_round_and_both_prompts(
    open_rt: OpenRt,
) -> None:
    first = open_rt()
    first.executions.register("essay", essay)
    sid = first.executions.start("essay", "moon").session_id
    first.executions.feed(sid, "one")
    first.close()

    async def changed(ctx: Any, topic: str, *, rounds: int = 3) -> str:
        await ctx.step("fetch", _fetch, topic)
        ctx.now()
        await ctx.llm(f"{topic} round 0", max_tokens=50)
        return str(await ctx.llm(f"a different question about {topic}"))

    second = open_rt()
    second.executions.register("essay", changed)
    result = second.executions.feed(sid, "a", query_id="q-2-0")
    assert result.status == "error"
    assert result.error is not None
    assert result.error.startswith("NonDeterministicStrategy: round 2 asks 1 query")
    assert "'moon a'" in result.error
    assert "'a different question about moon'" in result.error
    assert second.executions.status(sid)["state"] == "error"


def test_a_strategy_missing_after_a_restart_is_a_typed_error_and_keeps_the_session(
    open_rt: OpenRt, caplog: pytest.LogCaptureFixture
) -> None:
    sid = _started_then_closed(open_rt)

    second = open_rt()
    with pytest.raises(StrategyNotRegistered, match="strategy 'essay', which is not registered"):
        second.executions.feed(sid, "one")
    assert any(r.levelname == "WARNING" and "not registered" in r.message for r in caplog.records)
    assert second.executions.status(sid)["state"] == "paused"  # kept
    second.close()

    third = open_rt()
    third.executions.register("essay", essay)
    assert third.executions.feed(sid, "one").query_ids == ["q-2-0", "q-2-1"]


def test_an_execution_that_was_not_durable_is_lost_clearly(
    open_rt: OpenRt, caplog: pytest.LogCaptureFixture
) -> None:
    async def adhoc(ctx: Any) -> str:
        return str(await ctx.llm("hi"))

    first = open_rt()
    sid = first.executions.start(adhoc).session_id
    first.close()
    assert any(r.levelname == "WARNING" and "not durable" in r.message for r in caplog.records)

    second = open_rt()
    for call in (
        lambda: second.executions.status(sid),
        lambda: second.executions.feed(sid, "x"),
        lambda: second.executions.cancel(sid),
    ):
        with pytest.raises(ExecutionLost, match="it was not durable"):
            call()
    with pytest.raises(NotFound, match="never started here") as info:
        second.executions.status("s-0123456789abcdef0123456789abcdef")
    assert not isinstance(info.value, ExecutionLost)


def test_an_idle_paused_execution_leaves_memory_and_comes_back(
    open_rt: OpenRt, fake_clock: FakeClock
) -> None:
    closed: list[str] = []

    async def careful(ctx: Any) -> str:
        try:
            first = await ctx.llm("first")
            return str(first + await ctx.llm("second"))
        finally:
            closed.append("finally")

    rt = open_rt(execution_passivate_after_s=30.0, gc_interval_s=10.0)
    rt.executions.register("careful", careful)
    sid = rt.executions.start("careful").session_id
    fake_clock.advance(20)
    assert rt.metrics()["executions_passivated"] == 0
    fake_clock.advance(20)
    assert rt.metrics()["executions_passivated"] == 1
    assert rt.metrics()["executions_active"] == 0
    assert closed == ["finally"]  # the coroutine was closed
    status = rt.executions.status(sid)
    assert (status["state"], status["in_memory"]) == ("paused", False)
    assert sid in rt.executions.snapshots()
    assert rt.executions.feed(sid, "a").query_ids == ["q-2-0"]
    assert rt.metrics()["executions_redriven"] == 1
    assert rt.executions.feed(sid, "b").result == "ab"


def test_a_passivated_execution_can_be_cancelled(open_rt: OpenRt, fake_clock: FakeClock) -> None:
    rt = open_rt(execution_passivate_after_s=5.0, gc_interval_s=10.0)
    rt.executions.register("essay", essay)
    sid = rt.executions.start("essay", "moon").session_id
    fake_clock.advance(10)
    assert rt.metrics()["executions_passivated"] == 1
    cancelled = rt.executions.cancel(sid)
    assert cancelled.status == "cancelled"
    status = rt.executions.status(sid)
    assert (status["state"], status["reason"]) == ("cancelled", "cancelled by the host")
    with pytest.raises(InvalidTransition, match="already been cancelled"):
        rt.executions.feed(sid, "late")


def test_a_session_not_in_memory_is_cancelled_even_without_its_strategy(
    open_rt: OpenRt,
) -> None:
    sid = _started_then_closed(open_rt)
    second = open_rt()
    assert second.executions.cancel(sid).status == "cancelled"
    assert second.executions.status(sid)["state"] == "cancelled"


def test_the_gc_reaps_and_removes_executions_not_in_memory(
    open_rt: OpenRt, fake_clock: FakeClock
) -> None:
    config = {
        "execution_passivate_after_s": 5.0,
        "gc_interval_s": 10.0,
        "execution_ttl_s": 100.0,
        "result_retention_s": 50.0,
    }
    rt = open_rt(**config)
    rt.executions.register("essay", essay)
    sid = rt.executions.start("essay", "moon").session_id
    fake_clock.advance(10)
    assert rt.metrics()["executions_passivated"] == 1
    fake_clock.advance(100)
    assert rt.metrics()["executions_reaped"] == 1
    status = rt.executions.status(sid)
    assert status["state"] == "cancelled"
    assert "reaped by the GC" in status["reason"]
    fake_clock.advance(60)
    with pytest.raises(NotFound):
        rt.executions.status(sid)
    assert rt.store.find_object("execution", sid) is None  # its journal is gone


def test_a_finished_durable_result_is_kept_and_then_removed(
    open_rt: OpenRt, fake_clock: FakeClock
) -> None:
    rt = open_rt(result_retention_s=50.0, gc_interval_s=10.0)
    rt.executions.register("essay", essay)
    sid = rt.executions.start("essay", "moon", rounds=1).session_id
    assert rt.executions.feed(sid, "done").status == "completed"
    assert rt.store.find_object("execution", sid) is not None
    fake_clock.advance(60)
    assert rt.store.find_object("execution", sid) is None


def test_a_refused_feed_writes_nothing(open_rt: OpenRt) -> None:
    rt = open_rt()
    rt.executions.register("essay", essay)
    sid = rt.executions.start("essay", "moon").session_id
    before = rt.store.read_file("execution", sid, "journal")
    with pytest.raises(UnknownQuery):
        rt.executions.feed(sid, "x", query_id="q-9-9")
    with pytest.raises(InvalidInput):
        rt.executions.feed_many(sid, [("q-1-0", "a", None), ("q-1-0", "b", None)])
    assert rt.store.read_file("execution", sid, "journal") == before
    rt.executions.feed(sid, "a")
    assert len(rt.store.read_file("execution", sid, "journal")) > len(before)


def test_durable_arguments_must_be_json(open_rt: OpenRt) -> None:
    rt = open_rt()
    rt.executions.register("essay", essay)
    with pytest.raises(InvalidInput, match="arguments of strategy 'essay'"):
        rt.executions.start("essay", object())
    assert rt.metrics()["executions_started"] == 0


def test_strategy_names_are_checked_and_never_rebound(open_rt: OpenRt) -> None:
    rt = open_rt()
    rt.executions.register("essay", essay)
    rt.executions.register("essay", essay)  # the same pair: a no-op
    with pytest.raises(InvalidTransition, match="already registered"):
        rt.executions.register("essay", plain_essay)
    for bad in ("", "has space", "x" * 201, 3):
        with pytest.raises(InvalidInput, match="strategy name"):
            rt.executions.register(bad, essay)  # type: ignore[arg-type]


def test_the_decorator_marks_strategies_that_register_all_collects(open_rt: OpenRt) -> None:
    module = types.ModuleType("my_strategies")

    @greenroom.strategy("greet")
    async def greet(ctx: Any, name: str) -> str:
        return str(await ctx.llm(f"greet {name}"))

    module.greet = greet  # type: ignore[attr-defined]
    module.unrelated = essay  # type: ignore[attr-defined]
    rt = open_rt()
    assert rt.executions.register_all(module) == ["greet"]
    first = rt.executions.start("greet", "ada")
    assert rt.executions.feed(first.session_id, "hello ada").result == "hello ada"


def test_feeds_from_many_threads_meet_passivation_and_lose_nothing(
    open_rt: OpenRt, fake_clock: FakeClock
) -> None:
    async def counter(ctx: Any, index: int) -> list[str]:
        return [await ctx.llm(f"{index}: round {n}") for n in range(5)]

    rt = open_rt(execution_passivate_after_s=1.0, gc_interval_s=1.0)
    rt.executions.register("counter", counter)
    sids = [rt.executions.start("counter", index).session_id for index in range(40)]
    results: dict[str, Any] = {}
    errors: list[BaseException] = []

    def feeder(mine: list[str]) -> None:
        try:
            for sid in mine:
                for n in range(5):
                    result = rt.executions.feed(sid, f"{sid[-4:]}-{n}")
                results[sid] = result
        except BaseException as error:  # reported below
            errors.append(error)

    fake_clock.advance(2)
    assert rt.metrics()["executions_passivated"] == 40  # every one left memory first
    threads = [threading.Thread(target=feeder, args=(sids[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        fake_clock.advance(2)  # GC passes: idle paused sessions leave memory meanwhile
    for thread in threads:
        thread.join()
    assert errors == []
    assert rt.metrics()["executions_redriven"] >= 40
    for sid in sids:
        assert results[sid].status == "completed"
        assert results[sid].result == [f"{sid[-4:]}-{n}" for n in range(5)]


def test_a_durable_start_commits_once_with_its_first_pause(open_rt: OpenRt) -> None:
    async def ask_once(ctx: Any, topic: str) -> str:
        return str(await ctx.llm(topic))

    rt = open_rt()
    rt.executions.register("ask_once", ask_once)
    rt.executions.register("essay", essay)
    rt.executions.start("ask_once", "warm")  # the runtime's own record, once
    before = rt.metrics()["store_commits"]
    rt.executions.start("ask_once", "moon")
    assert rt.metrics()["store_commits"] - before == 1  # the start and the first ask
    sid = rt.executions.start("essay", "moon").session_id
    # Steps (ctx.now() is one too) are submitted as the strategy goes on; the start
    # answers once all of them are committed.
    lines = rt.store.read_file("execution", sid, "journal").splitlines()
    assert [json.loads(line)["k"] for line in lines] == ["start", "step", "step", "ask"]


def test_the_journal_writes_of_many_sessions_share_commits(open_rt: OpenRt) -> None:
    async def ask_once(ctx: Any, topic: str) -> str:
        return str(await ctx.llm(topic))

    rt = open_rt()
    rt.executions.register("ask_once", ask_once)
    rt.executions.start("ask_once", "warm")  # the runtime's own record, once
    before = rt.metrics()["store_commits"]
    sent = [rt.executions.send_start("ask_once", ("moon",)) for _ in range(200)]
    for pending in sent:
        assert pending.future.wait(30)
    steps = [rt.executions.outcome(pending) for pending in sent]
    assert {step.status for step in steps} == {"needs_response"}
    # Submitted, not waited for, by 4 workers: far fewer commits than sessions.
    assert rt.metrics()["store_commits"] - before < 100
    for step in steps:  # and each answered only once its start was stored
        journal = rt.store.read_file("execution", step.session_id, "journal")
        assert [json.loads(line)["k"] for line in journal.splitlines()] == ["start", "ask"]


def test_a_journal_write_that_fails_fails_the_answer_and_the_next_call_redrives(
    open_rt: OpenRt, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = open_rt()
    rt.executions.register("essay", essay)
    sid = rt.executions.start("essay", "moon").session_id

    def failing_submit(writes: Any, on_done: Any, **kwargs: Any) -> None:
        # A transaction that failed: nothing written, told on another thread.
        error = StorageError("disk full")
        threading.Thread(target=on_done, args=(None, error)).start()

    monkeypatch.setattr(rt.store, "submit_atomic", failing_submit)
    with pytest.raises(StorageError, match="disk full"):
        rt.executions.feed(sid, "first answer")
    monkeypatch.undo()
    # The answer is not in the journal, and the session left memory: it is re-driven
    # from the journal, where round 1 still waits, and the step does not run again.
    status = rt.executions.status(sid)
    assert (status["state"], status["pending_queries"]) == ("paused", ["q-1-0"])
    assert rt.executions.feed(sid, "first answer").query_ids == ["q-2-0", "q-2-1"]
    assert SIDE_EFFECTS == ["moon"]
    assert rt.metrics()["executions_redriven"] == 1


def test_an_end_is_seen_only_once_it_is_stored(
    open_rt: OpenRt, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def ask_once(ctx: Any, topic: str) -> str:
        return str(await ctx.llm(topic))

    rt = open_rt()
    rt.executions.register("ask_once", ask_once)
    sid = rt.executions.start("ask_once", "moon").session_id
    real_submit = rt.store.submit_atomic
    release = threading.Event()
    held: list[threading.Thread] = []

    def slow_submit(writes: Any, on_done: Any, **kwargs: Any) -> None:
        # The commit happens later, on another thread (a slow disk, say).
        def later() -> None:
            assert release.wait(30)
            real_submit(writes, on_done, inline=True)

        held.append(threading.Thread(target=later))
        held[-1].start()

    monkeypatch.setattr(rt.store, "submit_atomic", slow_submit)
    pending = rt.executions.send_feed(sid, "the answer")
    assert not pending.future.wait(0.2)  # answered only once stored
    assert rt.executions.status(sid)["state"] != "completed"  # not seen as ended yet
    journal = rt.store.read_file("execution", sid, "journal")
    assert b'"end"' not in journal
    release.set()
    assert pending.future.wait(30)
    assert rt.executions.outcome(pending).status == "completed"
    assert rt.executions.status(sid)["state"] == "completed"
    for thread in held:
        thread.join(30)


# Two runtimes driving one execution in turns: on a shared store, leases decide who
# drives (tests/test_execution_leases.py), so this is the single-host store's case.
@pytest.mark.parametrize("open_rt", ["sqlite"], indirect=True)
def test_two_runtimes_never_both_drive_one_execution(open_rt: OpenRt) -> None:
    first = open_rt()
    first.executions.register("essay", essay)
    sid = first.executions.start("essay", "moon").session_id  # live in `first`
    second = open_rt()  # another process on the same database, say
    second.executions.register("essay", essay)
    assert second.executions.feed(sid, "from second").query_ids == ["q-2-0", "q-2-1"]

    # `first` still holds round 1 in memory: its answer would fork the session.
    journal = first.store.read_file("execution", sid, "journal")
    with pytest.raises(Conflict, match=r"driven by another runtime.*call again"):
        first.executions.feed(sid, "from first")
    assert first.store.read_file("execution", sid, "journal") == journal
    assert first.metrics()["execution_conflicts"] == 1
    # Called again, `first` goes on from the journal as `second` left it.
    status = first.executions.status(sid)
    assert (status["state"], status["pending_queries"]) == ("paused", ["q-2-0", "q-2-1"])
    step = first.executions.feed_many(sid, [("q-2-0", "a", None), ("q-2-1", "b", None)])
    assert step.query_ids == ["q-3-0"]
    # ... and now `second` is the stale one; a stale cancel is refused alike.
    with pytest.raises(Conflict):
        second.executions.cancel(sid)
    assert second.executions.cancel(sid).status == "cancelled"
    # `first` sees it at its next write (a status from memory may lag until then).
    with pytest.raises(Conflict):
        first.executions.feed(sid, "late")
    assert first.executions.status(sid)["state"] == "cancelled"
    with pytest.raises(InvalidTransition, match=r"already .*cancelled"):
        first.executions.feed(sid, "later")
    assert SIDE_EFFECTS == ["moon"]  # the step ran once, in `first`


def test_a_stale_cancel_of_a_session_not_in_memory_is_refused(open_rt: OpenRt) -> None:
    first = open_rt()
    first.executions.register("essay", essay)
    sid = first.executions.start("essay", "moon").session_id
    first.close()
    bare = open_rt()  # the strategy is not registered here
    stored = bare.executions.status(sid)
    assert stored["in_memory"] is False
    driver = open_rt()
    driver.executions.register("essay", essay)
    driver.executions.feed(sid, "on")
    # Reading and cancelling race the driver: the journal is re-read on every cancel,
    # so a cancel here still ends it, after what the driver wrote.
    assert bare.executions.cancel(sid).status == "cancelled"
    with pytest.raises(Conflict):
        driver.executions.feed_many(sid, [("q-2-0", "a", None), ("q-2-1", "b", None)])
    assert driver.executions.status(sid)["state"] == "cancelled"


def test_a_session_that_died_running_comes_back_on_resume(open_rt: OpenRt) -> None:
    rt = open_rt()
    rt.executions.register("essay", essay)
    # The journal as a kill -9 during the strategy's second step leaves it: the start
    # and the first step committed, no round asked yet.
    sid = "s-" + "ab" * 16
    rt.store.write_atomic(
        [
            CreateObject("execution", sid, {"durable": True, "strategy": "essay"}),
            AppendFile(
                "execution",
                sid,
                "journal",
                encode([start_record("essay", ["moon"], {}), step_record("fetch", "kept")]),
            ),
        ]
    )
    status = rt.executions.status(sid)
    assert (status["state"], status["in_memory"]) == ("running", False)
    step = rt.executions.resume(sid)  # re-drives it to its first pause
    assert (step.status, step.query_ids) == ("needs_response", ["q-1-0"])
    assert SIDE_EFFECTS == []  # the journaled step was not run again
    assert rt.executions.resume(sid).query_ids == ["q-1-0"]  # live: where it is
    assert _answer_all(rt, sid)["stamp"] == "kept"
    assert rt.executions.resume(sid).status == "completed"  # its retained end


def test_a_session_without_a_readable_start_can_still_be_cancelled(open_rt: OpenRt) -> None:
    rt = open_rt()
    rt.executions.register("essay", essay)
    sid = "s-" + "cd" * 16  # as a crash before greenroom committed starts whole left it
    rt.store.create_object("execution", sid, {"durable": True, "strategy": "essay"})
    with pytest.raises(StorageError, match=r"no readable start record.*cancel\("):
        rt.executions.resume(sid)
    assert rt.executions.cancel(sid).status == "cancelled"
    assert rt.executions.status(sid)["state"] == "cancelled"


async def one_question(ctx: Any) -> str:
    return str(await ctx.llm("the one question"))


def test_an_end_that_cannot_be_journaled_is_counted_and_logged_once(
    open_rt: OpenRt, caplog: pytest.LogCaptureFixture
) -> None:
    rt = open_rt()
    rt.executions.register("one", one_question)
    sid = rt.executions.start("one").session_id
    rt.store.close()  # every later write fails at once (Stopped)
    with (
        caplog.at_level(logging.ERROR, logger="greenroom.executions"),
        pytest.raises(GreenroomError),
    ):
        rt.executions.feed(sid, "the answer")
    assert rt.metrics()["execution_journal_failures"] == 1
    logged = [r for r in caplog.records if "could not be journaled" in r.getMessage()]
    assert len(logged) == 1, [r.getMessage() for r in logged]
