"""The asyncio facade (`greenroom.aio`): coroutines that never block the event loop.

Each test runs its coroutine with `asyncio.run` (no pytest-asyncio). Waits in tests are
awaits with real-time bounds or `threading.Event` waits with timeouts, never sleeps:
`asyncio.sleep(0.01)` appears only as the event loop's own ticker, the thing a blocked
loop would stop.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import queue
import threading
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pykka
import pytest

from greenroom import FakeClock, Gap, LlmRequest, ObservationEvent, Runtime, RuntimeConfig
from greenroom.actors.replay import ReplayBuffer
from greenroom.aio import AsyncBlock, AsyncFollower, AsyncRuntime, wrap_future
from greenroom.blocks.records import ArchiveResult, OutputRead, RestoreResult, SessionStats
from greenroom.clock import stopwatch
from greenroom.errors import (
    AlreadyResponded,
    ExecutionCancelled,
    ExecutionTimeout,
    FutureTimeout,
    InvalidInput,
    InvalidTransition,
    MalformedCursor,
    NotFound,
    Stopped,
    Timeout,
    UnknownQuery,
    WrongSession,
)
from greenroom.executions import namespace as executions_api_module
from greenroom.futures import GreenroomFuture, drive
from tests.actors_for_tests import Counter

T = TypeVar("T")

WAIT = 10.0  # real seconds a test waits for anything before failing


def run(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """Run `coro` on a fresh event loop, failing (not hanging) after `timeout` s."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def ticks(n: int) -> None:
    """Let the loop's own timer fire `n` times (what a blocked loop could not do)."""
    for _ in range(n):
        await asyncio.sleep(0.01)


async def ask_once(ctx: Any, prompt: str = "What is 2+2?") -> Any:
    return {"answer": await ctx.llm(prompt)}


async def ask_three(ctx: Any) -> Any:
    first = await ctx.llm("one")
    second, third = await ctx.llm_batch([LlmRequest("two"), LlmRequest("three")])
    return [first, second, third]


# -- GreenroomFuture: done-callbacks, wait, drive ----------------------------------------------


def test_a_done_callback_runs_once_on_the_resolving_thread() -> None:
    future: GreenroomFuture[int] = GreenroomFuture()
    calls: list[tuple[int, int]] = []
    future.add_done_callback(lambda f: calls.append((f.get(), threading.get_ident())))
    assert calls == []
    resolver = threading.Thread(target=future.set, args=(7,))
    resolver.start()
    resolver.join(WAIT)
    assert calls == [(7, resolver.ident)]
    with pytest.raises(queue.Full):
        future.set(8)
    assert len(calls) == 1  # not again


def test_a_done_callback_on_a_resolved_future_runs_at_once_on_the_caller() -> None:
    future: GreenroomFuture[int] = GreenroomFuture()
    future.set(3)
    calls: list[int] = []
    future.add_done_callback(lambda f: calls.append(threading.get_ident()))
    assert calls == [threading.get_ident()]


def test_done_callbacks_run_in_order_for_an_exception_and_one_failing_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    future: GreenroomFuture[int] = GreenroomFuture()
    order: list[str] = []

    def broken(_f: GreenroomFuture[int]) -> None:
        order.append("broken")
        raise RuntimeError("callback bug")

    future.add_done_callback(broken)
    future.add_done_callback(lambda f: order.append("second"))
    with caplog.at_level(logging.ERROR, logger="greenroom.actors"):
        try:
            raise ValueError("the answer")
        except ValueError:
            future.set_exception()  # the resolver is not hurt by the broken callback
    assert order == ["broken", "second"]
    assert any("done-callback" in record.getMessage() for record in caplog.records)
    with pytest.raises(ValueError, match="the answer"):
        future.get(timeout=0)


def test_registering_and_resolving_race_without_losing_or_doubling_a_callback() -> None:
    futures: list[GreenroomFuture[int]] = [GreenroomFuture() for _ in range(5_000)]
    counts = [0] * len(futures)
    start = threading.Barrier(2)

    def resolve_all() -> None:
        start.wait(WAIT)
        for index, future in enumerate(futures):
            future.set(index)

    resolver = threading.Thread(target=resolve_all)
    resolver.start()
    start.wait(WAIT)
    for index, future in enumerate(futures):

        def bump(f: GreenroomFuture[int], index: int = index) -> None:
            counts[index] += 1  # each index is bumped by one thread only

        future.add_done_callback(bump)
    resolver.join(WAIT)
    assert counts == [1] * len(futures)


def test_a_derived_future_calls_back_once_every_source_has_resolved() -> None:
    first: GreenroomFuture[int] = GreenroomFuture()
    second: GreenroomFuture[int] = GreenroomFuture()
    joined = first.join(second).map(sum)
    filtered = first.join(second).filter(lambda x: x > 1)
    reduced = first.join(second).reduce(lambda a, b: a * b)
    seen: list[Any] = []
    for derived in (joined, filtered, reduced):
        derived.add_done_callback(lambda f: seen.append(f.get(timeout=0)))
    first.set(2)
    assert seen == []  # one source still pending
    second.set(5)
    assert seen == [7, [2, 5], 10]


def test_futures_derived_in_unknown_ways_are_refused_clearly() -> None:
    hooked: GreenroomFuture[int] = GreenroomFuture()
    hooked.set_get_hook(lambda timeout: 1)
    with pytest.raises(InvalidTransition, match="set_get_hook"):
        hooked.add_done_callback(lambda f: None)
    foreign = GreenroomFuture().join(pykka.ThreadingFuture())
    with pytest.raises(InvalidTransition, match="not a greenroom future"):
        foreign.add_done_callback(lambda f: None)
    watched: GreenroomFuture[int] = GreenroomFuture()
    watched.add_done_callback(lambda f: None)
    with pytest.raises(InvalidTransition, match="never run"):
        watched.set_get_hook(lambda timeout: 1)


def test_wait_reports_without_raising_and_drive_runs_steps() -> None:
    future: GreenroomFuture[int] = GreenroomFuture()
    assert future.wait(0) is False
    assert future.wait(0.01) is False
    future.set_exception((ValueError, ValueError("kept"), None))
    assert future.wait() is True  # the exception is not raised by wait
    with pytest.raises(InvalidTransition, match="derived"):
        future.map(str).wait()

    def steps(f: GreenroomFuture[int]) -> Any:
        yield f
        return f.get(timeout=0) * 2

    ready: GreenroomFuture[int] = GreenroomFuture()
    ready.set(21)
    assert drive(steps(ready)) == 42
    with pytest.raises(FutureTimeout):
        drive(steps(GreenroomFuture()), timeout=0.01)


# -- wrap_future: a host's own actors -----------------------------------------------------------


def test_wrap_future_awaits_asks_and_proxy_calls_of_any_actor(rt: Runtime) -> None:
    ref = rt.spawn(Counter, actor_id="c1")

    async def main() -> None:
        assert await wrap_future(ref.ask(5, block=False)) == 5
        assert await wrap_future(ref.proxy().add(2)) == 7
        assert await wrap_future(ref.proxy().add(1).map(lambda n: n * 10)) == 80
        with pytest.raises(RuntimeError, match="told to fail"):
            await wrap_future(ref.ask("fail", block=False))
        reported: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(lambda _loop, c: reported.append(c))
        pending: GreenroomFuture[int] = GreenroomFuture()
        waiter = wrap_future(pending)
        waiter.cancel()  # giving up the wait is harmless when the value comes later
        pending.set(1)
        failing: GreenroomFuture[int] = GreenroomFuture()
        dropped = wrap_future(failing)
        dropped.cancel()
        failing.set_exception((ValueError, ValueError("late"), None))
        await ticks(2)
        assert waiter.cancelled()
        assert dropped.cancelled()
        assert reported == []  # no InvalidStateError from setting a cancelled future

    run(main())


# -- executions ---------------------------------------------------------------------------------


def test_executions_through_the_facade_match_the_sync_runtime(rt: Runtime) -> None:
    art = AsyncRuntime(rt)

    async def main() -> None:
        first = await art.start_execution(ask_three)
        sid = first.session_id
        assert first.to_json()["query_id"] == "q-1-0"
        status = await art.execution_status(sid)
        assert (status["state"], status["pending_queries"]) == ("paused", ["q-1-0"])
        batch = await art.feed(sid, "1")
        assert batch.query_ids == ["q-2-0", "q-2-1"]
        accepted = await art.feed(
            sid, "3", query_id="q-2-1", usage={"prompt_tokens": 5, "completion_tokens": 1}
        )
        assert accepted.to_json() == {"status": "accepted", "remaining": 1}
        done = await art.feed(sid, "2", query_id="q-2-0")
        assert (done.status, done.result) == ("completed", ["1", "2", "3"])
        assert done.metrics is not None
        assert (done.metrics.llm_calls, done.metrics.rounds) == (3, 2)
        again = await art.feed(sid, "2", query_id="q-2-0")  # a retried final feed
        assert again.to_json() == done.to_json()
        assert (await art.execution_snapshots())[sid]["state"] == "completed"

        many = await art.start_execution(ask_three)
        await art.feed(many.session_id, "1")
        both = await art.feed_many(
            many.session_id, [("q-2-0", "2", None), ("q-2-1", "3", None)], timeout=WAIT
        )
        assert both.result == ["1", "2", "3"]

        paused = await art.start_execution(ask_once, "x?", timeout=WAIT)
        cancelled = await art.cancel(paused.session_id)
        assert cancelled.status == "cancelled"

    run(main())
    metrics = rt.metrics()
    assert (metrics["executions_completed"], metrics["executions_cancelled"]) == (2, 1)
    assert metrics["execution_cancels_deferred"] == 0


def test_execution_errors_are_those_of_the_sync_runtime(rt: Runtime) -> None:
    art = AsyncRuntime(rt)

    async def main() -> None:
        with pytest.raises(InvalidInput, match="strategy"):
            await art.start_execution("not a function")  # type: ignore[arg-type]
        with pytest.raises(InvalidInput, match="timeout"):
            await art.start_execution(ask_once, timeout=0)
        first = await art.start_execution(ask_three)
        sid = first.session_id
        with pytest.raises(InvalidInput, match="session_id"):
            await art.feed("", "x")
        with pytest.raises(InvalidInput, match="response"):
            await art.feed(sid, 42)  # type: ignore[arg-type]
        with pytest.raises(InvalidInput, match="feed_many"):
            await art.feed_many(sid, [])
        with pytest.raises(UnknownQuery):
            await art.feed(sid, "x", query_id="q-9-0")
        await art.feed(sid, "1")
        with pytest.raises(InvalidTransition, match="2 queries"):
            await art.feed(sid, "ambiguous")  # two pending: which one?
        await art.feed(sid, "2", query_id="q-2-0")
        with pytest.raises(AlreadyResponded):
            await art.feed(sid, "changed", query_id="q-2-0")
        with pytest.raises(NotFound, match="no execution session"):
            await art.feed("s-" + "0" * 32, "x")
        with pytest.raises(NotFound):
            await art.execution_status("s-" + "0" * 32)
        await art.feed(sid, "3", query_id="q-2-1")
        with pytest.raises(InvalidTransition, match="already completed"):
            await art.cancel(sid)
        with pytest.raises(InvalidTransition, match="already completed"):
            await art.feed(sid, "new", query_id="q-2-1")

    run(main())
    rt.close()

    async def after_close() -> None:
        with pytest.raises(Stopped):
            await art.start_execution(ask_once)
        with pytest.raises(Stopped):
            await art.feed("s-" + "0" * 32, "x")

    run(after_close())


def test_timeouts_are_kept_by_the_loop_and_raise_execution_timeout(rt: Runtime) -> None:
    art = AsyncRuntime(rt)
    gate = threading.Event()

    def gated(ctx: Any, at_start: bool) -> str:
        if at_start:
            gate.wait(WAIT)
        ctx.llm("go?")
        return "released" if gate.wait(WAIT) else "timed out"

    async def main() -> None:
        first = await art.start_execution(gated, False, timeout=WAIT)
        sid = first.session_id
        began = stopwatch()
        with pytest.raises(ExecutionTimeout, match=r"within 0\.05 s of this feed") as info:
            await art.feed(sid, "go", timeout=0.05)
        assert info.value.session_id == sid
        assert stopwatch() - began < WAIT / 2
        assert (await art.execution_status(sid))["state"] == "running"  # the answer applied
        with pytest.raises(ExecutionTimeout, match="of this start") as started:
            await art.start_execution(gated, True, timeout=0.05)
        gate.set()
        done = await art.feed(sid, "go", query_id="q-1-0")  # the same again: the result
        assert (done.status, done.result) == ("completed", "released")
        late = await art.cancel(started.value.session_id)  # it paused meanwhile, or not
        assert late.status == "cancelled"

    run(main())


def test_a_cancel_of_a_busy_session_is_deferred_without_blocking_the_loop(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executions_api_module, "CANCEL_WAIT_S", 0.2)
    art = AsyncRuntime(rt)
    entered, release = threading.Event(), threading.Event()

    async def busy(ctx: Any) -> Any:
        entered.set()
        release.wait(WAIT)  # a long step: holds the session's actor
        return await ctx.llm("x")

    async def main() -> str:
        with pytest.raises(ExecutionTimeout) as info:
            await art.start_execution(busy, timeout=0.05)
        sid = info.value.session_id
        assert entered.wait(WAIT)
        ticked = [0]

        async def ticker() -> None:
            while True:
                await ticks(1)
                ticked[0] += 1

        try:
            ticking = asyncio.create_task(ticker())
            cancelled = await art.cancel(sid)
            during = ticked[0]  # a cancel that blocked the loop would leave this at 0
            ticking.cancel()
            assert during >= 3, f"{during} ticks while the cancel waited 0.2 s"
            assert cancelled.status == "cancelled"
            assert (await art.execution_status(sid))["cancel_requested"] == "cancelled by the host"
        finally:
            release.set()
        return sid

    sid = run(main())
    rt.settle()
    assert rt.executions.status(sid)["state"] == "cancelled"
    assert rt.metrics()["execution_cancels_deferred"] == 1


def test_no_turn_of_a_session_runs_on_the_loop_thread(rt: Runtime) -> None:
    art = AsyncRuntime(rt)
    where: list[int] = []

    async def records(ctx: Any) -> str:
        where.append(threading.get_ident())
        await ctx.llm("a")
        where.append(threading.get_ident())
        await ctx.llm("b")
        where.append(threading.get_ident())
        return "done"

    async def main() -> int:
        for _ in range(20):
            step = await art.start_execution(records)
            step = await art.feed(step.session_id, "1")
            assert (await art.feed(step.session_id, "2")).result == "done"
        return threading.get_ident()

    loop_thread = run(main())
    assert len(where) == 60
    assert loop_thread not in where
    # The sync call, by contrast, runs the turns on the calling thread (caller runs):
    # what this test would see if the facade waited the sync way.
    where.clear()
    step = rt.executions.start(records)
    rt.executions.feed(rt.executions.feed(step.session_id, "1").session_id, "2")
    assert threading.get_ident() in where


def test_the_loop_runs_while_a_feed_waits_for_its_strategy(rt: Runtime) -> None:
    art = AsyncRuntime(rt)
    gate = threading.Event()

    def gated(ctx: Any) -> str:
        ctx.llm("go?")
        # Released by the loop itself: a blocked loop would never set it.
        return "released" if gate.wait(WAIT) else "timed out"

    async def main() -> None:
        first = await art.start_execution(gated, timeout=WAIT)
        feed = asyncio.create_task(art.feed(first.session_id, "go"))
        await ticks(3)
        assert not feed.done()
        gate.set()
        done = await feed
        assert done.result == "released"

    run(main())


def test_block_calls_through_the_facade(rt: Runtime) -> None:
    art = AsyncRuntime(rt)

    async def main() -> None:
        pane = await art.block("pane-1")
        assert isinstance(pane, AsyncBlock)
        assert pane.block_id == "pane-1"
        await pane.append_output(b'{"type":"text","text":"hello"}\n{"type":"done"}\n')
        await pane.record_line(8)
        stats = await pane.stats()
        assert isinstance(stats, SessionStats)
        assert (stats.line_count, stats.token_estimate) == (3, 7 + 3 + 2)
        await pane.flush()
        assert (await pane.meta())["session:line_count"] == 3
        assert (await pane.update_meta({"title": "build"}))["title"] == "build"
        archived = await pane.archive()
        assert isinstance(archived, ArchiveResult)
        assert archived.archived_bytes == 47
        read = await pane.read_output()
        assert isinstance(read, OutputRead)
        assert read.archived
        assert read.data.endswith(b'{"type":"done"}\n')
        restored = await pane.restore()
        assert restored == RestoreResult("pane-1", 47)
        assert not (await pane.read_output()).archived
        notes = await art.block("notes", view="notes")
        assert (await notes.meta())["view"] == "notes"

    run(main())
    assert rt.blocks.get("pane-1").read_output().line_count == 2  # the sync handle agrees


def test_block_errors_are_those_of_the_sync_handle(rt: Runtime) -> None:
    art = AsyncRuntime(rt)

    async def main() -> None:
        with pytest.raises(InvalidInput, match="block id"):
            await art.block("no spaces allowed")
        with pytest.raises(InvalidInput, match="view"):
            await art.block("pane-1", view="")
        pane = await art.block("pane-1")
        with pytest.raises(InvalidInput, match="bytes"):
            await pane.append_output("text")  # type: ignore[arg-type]
        with pytest.raises(InvalidInput, match="byte count"):
            await pane.record_line(-1)
        with pytest.raises(InvalidTransition, match="not archived"):
            await pane.restore()

    run(main())


def test_a_block_handle_reconnects_when_its_actor_was_stopped(rt: Runtime) -> None:
    art = AsyncRuntime(rt)

    async def main() -> AsyncBlock:
        pane = await art.block("pane-1")
        await pane.append_output(b"one\n")
        await pane.flush()
        return pane

    pane = run(main())
    old = rt.get_actor("block", "pane-1")
    old.stop()  # as the sweep or a failure might

    async def again() -> None:
        assert (await pane.stats()).line_count == 1  # a new actor, the counters carried on
        await pane.append_output(b"two\n")
        assert (await pane.stats()).line_count == 2

    run(again())
    assert rt.get_actor("block", "pane-1") is not old
    rt.close()

    async def closed() -> None:
        with pytest.raises(Stopped):
            await pane.stats()
        with pytest.raises(Stopped):
            await art.block("pane-2")

    run(closed())


# -- replay -------------------------------------------------------------------------------------


def test_replay_calls_through_the_facade(rt: Runtime) -> None:
    art = AsyncRuntime(rt)

    async def main() -> None:
        start = await art.current_cursor("s1")
        event = await art.replay_append("s1", {"type": "commit"}, revision=3)
        assert isinstance(event, ObservationEvent)
        assert (event.position, event.revision) == (1, 3)
        events = await art.replay_append_many("s1", [1, 2], revision=3)
        assert [e.position for e in events] == [2, 3]
        assert await art.replay_append_many("s1", []) == []
        art.replay_publish("s1", "published")
        art.replay_publish_many("s1", ["more"])
        replayed = await art.replay_after(start)
        assert [e.payload for e in replayed.events] == [
            {"type": "commit"},
            1,
            2,
            "published",
            "more",
        ]
        assert (await art.replay_after(replayed.latest_cursor)).events == ()
        assert await art.current_cursor("s1") == replayed.latest_cursor  # "more" was at 0
        unknown = await art.replay_after("v1:0000000000000000:0:5:nobody")
        assert isinstance(unknown, Gap)
        assert unknown.reason == "unavailable"

    run(main())


def test_replay_errors_are_those_of_the_sync_runtime(rt: Runtime) -> None:
    art = AsyncRuntime(rt)

    async def main() -> None:
        with pytest.raises(InvalidInput, match="JSON"):
            await art.replay_append("s1", {1, 2})
        with pytest.raises(InvalidInput, match="revision"):
            await art.current_cursor("s1", -1)
        with pytest.raises(InvalidInput, match="ordered"):
            await art.replay_append_many("s1", {1, 2})
        with pytest.raises(MalformedCursor):
            await art.replay_after("nonsense")
        cursor = await art.current_cursor("s1")
        with pytest.raises(WrongSession):
            await art.replay_after(cursor, session_id="s2")
        with pytest.raises(MalformedCursor):
            art.follow("nonsense")
        assert rt.metrics()["replay_subscribers"] == 0

    run(main())


def test_follow_gives_the_replay_then_live_events(rt: Runtime) -> None:
    art = AsyncRuntime(rt)

    async def main() -> None:
        start = await art.current_cursor("s")  # starts the dispatcher's threads
        threads = threading.active_count()
        await art.replay_append_many("s", [1, 2])
        follower = art.follow(start)
        assert isinstance(follower, AsyncFollower)
        got: list[Any] = []

        async def consume() -> None:
            async for item in follower:
                assert isinstance(item, ObservationEvent)
                got.append(item.payload)
                if len(got) == 5:
                    break

        consumer = asyncio.create_task(consume())
        await ticks(2)
        assert got == [1, 2]  # replayed; now waiting on the loop, not on a thread
        assert threading.active_count() <= threads
        await art.replay_append("s", 3)
        art.replay_publish_many("s", [4, 5])
        await consumer
        assert got == [1, 2, 3, 4, 5]
        assert follower.cursor == await art.current_cursor("s")
        await follower.aclose()
        assert [item async for item in follower] == []

    run(main())
    assert rt.metrics()["replay_subscribers"] == 0


def test_follow_recovers_from_a_lag(open_rt: Callable[..., Runtime]) -> None:
    rt = open_rt(subscriber_queue_size=4)
    art = AsyncRuntime(rt)

    async def main() -> None:
        async with art.follow(await art.current_cursor("s")) as follower:
            for n in range(1, 11):
                await art.replay_append("s", n)  # overflows the subscription at the 5th
            got = [(await anext(follower)).payload for _ in range(10)]  # type: ignore[union-attr]
            assert got == list(range(1, 11))
            assert follower.lags == 1
        assert follower.closed

    run(main())
    assert rt.metrics()["replay_subscriber_lags"] == 1
    assert rt.metrics()["replay_subscribers"] == 0


def test_follow_yields_a_gap_once_and_goes_on(open_rt: Callable[..., Runtime]) -> None:
    rt = open_rt(max_events_per_session=2)
    art = AsyncRuntime(rt)

    async def main() -> None:
        start = await art.current_cursor("s")
        await art.replay_append_many("s", [1, 2, 3])
        async with art.follow(start) as follower:
            gap = await anext(follower)
            assert isinstance(gap, Gap)
            assert (gap.reason, gap.requested_cursor) == ("trimmed", start)
            await art.replay_append("s", 4)
            event = await anext(follower)
            assert isinstance(event, ObservationEvent)
            assert (event.payload, event.position) == (4, 4)
            assert (follower.gaps, follower.lags) == (1, 0)

    run(main())


def test_breaking_out_of_async_for_ends_the_subscription(rt: Runtime) -> None:
    art = AsyncRuntime(rt)

    async def main() -> None:
        start = await art.current_cursor("s")
        await art.replay_append_many("s", [1, 2, 3])
        async for item in art.follow(start):
            assert isinstance(item, ObservationEvent)
            break
        await asyncio.sleep(0)  # the close runs on the loop, as for async generators
        assert rt.metrics()["replay_subscribers"] == 0

    gc.disable()  # the follower must go by itself, not by a collection
    try:
        run(main())
    finally:
        gc.enable()


def test_cancelling_a_waiting_follower_unsubscribes(rt: Runtime) -> None:
    art = AsyncRuntime(rt)

    async def cancel_consumer(consume: Callable[[], Awaitable[None]]) -> Any:
        consumer = asyncio.create_task(consume())
        await ticks(2)
        assert rt.metrics()["replay_subscribers"] == 1
        (sub,) = rt.replay._replay_subs
        assert sub._waiters  # the follower's waker: waiting without a thread
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        return sub

    async def main() -> None:
        start = await art.current_cursor("s")

        async def in_async_with() -> None:
            async with art.follow(start) as follower:
                async for _item in follower:
                    pass

        sub = await cancel_consumer(in_async_with)
        assert rt.metrics()["replay_subscribers"] == 0  # at once: the block's end closed it
        assert (sub._waiters, sub.closed) == ([], True)

        async def bare() -> None:
            async for _item in art.follow(start):
                pass

        sub = await cancel_consumer(bare)  # the task's traceback still holds the follower
        assert rt.metrics()["replay_subscribers"] == 0  # but the cancel has closed it
        assert (sub._waiters, sub.closed) == ([], True)

    run(main())


def test_next_item_waits_with_a_bound_and_goes_on_following(
    open_rt: Callable[..., Runtime],
) -> None:
    rt = open_rt(subscriber_queue_size=2)
    art = AsyncRuntime(rt)

    async def main() -> None:
        async with art.follow(await art.current_cursor("s")) as follower:
            with pytest.raises(Timeout, match="still following"):
                await follower.next_item(timeout=0.02)
            with pytest.raises(InvalidInput, match="timeout"):
                await follower.next_item(timeout=-1)
            await art.replay_append_many("s", [1, 2, 3])  # lags: a re-subscribe follows
            assert [(await follower.next_item(WAIT)).payload for _ in range(3)] == [1, 2, 3]  # type: ignore[union-attr]
            assert follower.lags == 1
            assert not follower.closed
        with pytest.raises(Stopped):
            await follower.next_item(timeout=0)

        follower = art.follow(await art.current_cursor("s"))
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.02):
                await anext(follower)  # a cancelled iteration: it stops following
        assert follower.closed
        assert rt.metrics()["replay_subscribers"] == 0

    run(main())


def test_polling_a_follower_while_its_subscribe_is_held_piles_up_nothing(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    art = AsyncRuntime(rt)
    entered, release = threading.Event(), threading.Event()
    subscribe = ReplayBuffer._subscribe

    def held(buffer: ReplayBuffer, message: Any) -> Any:
        entered.set()
        release.wait(WAIT)  # a slow buffer: the Subscribe stays unanswered meanwhile
        return subscribe(buffer, message)

    async def main() -> None:
        start = await art.current_cursor("s")
        await art.replay_append("s", "first")  # the session's buffer exists
        monkeypatch.setattr(ReplayBuffer, "_subscribe", held)
        follower = art.follow(start)
        assert entered.wait(WAIT)
        pending = follower._pending
        assert pending is not None
        try:
            for _ in range(2_000):
                with pytest.raises(Timeout):
                    await follower.next_item(0)
            # One loop waiter for the pending subscribe, however often the host polled.
            assert len(pending.future._callbacks or ()) == 1
        finally:
            release.set()
        item = await follower.next_item(WAIT)
        assert isinstance(item, ObservationEvent)
        assert item.payload == "first"
        await art.replay_append("s", "second")
        assert (await follower.next_item(WAIT)).payload == "second"  # type: ignore[union-attr]
        await follower.aclose()

    run(main())
    assert rt.metrics()["replay_subscribers"] == 0


def test_closing_a_follower_from_another_thread_ends_its_iteration(rt: Runtime) -> None:
    art = AsyncRuntime(rt)

    async def main() -> list[Any]:
        follower = art.follow(await art.current_cursor("s"))
        await art.replay_append("s", "kept")  # something to yield, then a wait
        closer = threading.Thread(target=follower.close)

        async def consume() -> list[Any]:
            return [item async for item in follower]

        consumer = asyncio.create_task(consume())
        await ticks(2)
        closer.start()
        items = await consumer
        closer.join(WAIT)
        return items

    items = run(main())
    assert [item.payload for item in items] == ["kept"]
    assert rt.metrics()["replay_subscribers"] == 0


def test_closing_the_runtime_ends_a_waiting_follower(db_path: Path, fake_clock: FakeClock) -> None:
    async def main() -> None:
        art = await AsyncRuntime.open(db_path, clock=fake_clock)
        follower = art.follow(await art.current_cursor("s"))

        async def consume() -> list[Any]:
            return [item async for item in follower]

        consumer = asyncio.create_task(consume())
        await ticks(2)
        await art.aclose()  # off the loop: the consumer's wake-up comes meanwhile
        assert await consumer == []
        assert follower.closed

    run(main())


# -- opening and closing ------------------------------------------------------------------------


def test_open_as_a_context_manager_or_awaited(db_path: Path, fake_clock: FakeClock) -> None:
    async def main() -> None:
        async with AsyncRuntime.open(db_path, clock=fake_clock) as art:
            assert isinstance(art.runtime, Runtime)
            step = await art.start_execution(ask_once)
            sid = step.session_id
            assert (await art.feed(sid, "4")).result == {"answer": "4"}
        assert art.closed
        with pytest.raises(Stopped):
            await art.execution_status(sid)
        config = RuntimeConfig(settle_timeout_s=5.0)
        reopened = await AsyncRuntime.open(db_path, clock=fake_clock, config=config)
        assert reopened.runtime.config is config
        await reopened.aclose()
        await reopened.aclose()  # idempotent
        with pytest.raises(InvalidInput, match="RuntimeConfig"):
            await AsyncRuntime.open(db_path, config="nope")  # type: ignore[arg-type]

    run(main())
    with pytest.raises(InvalidInput, match="wraps a Runtime"):
        AsyncRuntime("app.db")  # type: ignore[arg-type]


def test_the_loop_runs_while_the_runtime_closes(open_rt: Callable[..., Runtime]) -> None:
    rt = open_rt(stop_timeout_s=WAIT)
    art = AsyncRuntime(rt)
    cancelled, gate = threading.Event(), threading.Event()

    def holds(ctx: Any) -> str:
        try:
            return ctx.llm("wait")
        except ExecutionCancelled:
            cancelled.set()  # the close woke it; closing now waits for this thread...
            gate.wait(WAIT)  # ...which only the loop releases
            raise

    async def release_when_cancelled() -> None:
        while not cancelled.is_set():
            await ticks(1)
        gate.set()

    async def main() -> float:
        await art.start_execution(holds, timeout=WAIT)
        releaser = asyncio.create_task(release_when_cancelled())
        began = stopwatch()
        async with art:
            pass  # closes on the executor, joining the strategy thread
        took = stopwatch() - began
        await releaser
        return took

    took = run(main())
    assert rt.closed
    assert took < WAIT / 2  # not the stop timeout a blocked loop would have cost
