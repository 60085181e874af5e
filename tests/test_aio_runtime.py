"""`AsyncRuntime` and the bridge: greenroom futures awaited under asyncio and trio.

Every test runs under both backends (anyio's pytest plugin). Nothing here sleeps for a
result: the loop's own checkpoints are the ticker a blocked loop would stop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from greenroom import FakeClock, Runtime, RuntimeConfig
from greenroom.aio import AsyncRuntime, wait
from greenroom.aio.bridge import settled
from greenroom.errors import ExecutionCancelled, InvalidInput, Stopped
from greenroom.futures import GreenroomFuture
from tests.actors_for_tests import Counter

WAIT = 10.0  # real seconds a test waits for anything before failing


async def ask_once(ctx: Any, prompt: str = "What is 2+2?") -> Any:
    return {"answer": await ctx.llm(prompt)}


@pytest.mark.anyio
async def test_wait_awaits_asks_and_proxy_calls_of_a_hosts_own_actor(rt: Runtime) -> None:
    ref = rt.spawn(Counter, actor_id="c1")
    assert await wait(ref.ask(5, block=False)) == 5
    assert await wait(ref.proxy().add(2)) == 7
    assert await wait(ref.proxy().add(1).map(lambda n: n * 10)) == 80
    with pytest.raises(RuntimeError, match="told to fail"):
        await wait(ref.ask("fail", block=False))


@pytest.mark.anyio
async def test_a_future_resolved_from_another_thread_wakes_the_waiting_task() -> None:
    future: GreenroomFuture[int] = GreenroomFuture()
    ticks = 0
    done = anyio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await anyio.lowlevel.checkpoint()
            if ticks == 50:
                threading.Thread(target=future.set, args=(42,)).start()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(ticker)
        assert await wait(future) == 42
        done.set()
    assert ticks >= 50  # the loop kept running while the task waited


@pytest.mark.anyio
async def test_settled_gives_up_after_its_timeout_and_the_value_still_lands() -> None:
    future: GreenroomFuture[str] = GreenroomFuture()
    assert await settled(future, timeout=0.01) is False
    future.set("late")  # a callback for the abandoned wait finds nobody: no error
    assert await settled(future, timeout=0) is True
    assert await wait(future) == "late"


@pytest.mark.anyio
async def test_cancelling_a_wait_leaves_the_future_alone() -> None:
    future: GreenroomFuture[int] = GreenroomFuture()
    with anyio.move_on_after(0.01) as scope:
        await wait(future)
    assert scope.cancelled_caught
    future.set(1)
    assert await wait(future) == 1


@pytest.mark.anyio
async def test_open_as_a_context_manager_or_awaited(db_path: Path, fake_clock: FakeClock) -> None:
    async with AsyncRuntime.open(db_path, clock=fake_clock) as art:
        assert isinstance(art.runtime, Runtime)
        step = await art.executions.start(ask_once)
        sid = step.session_id
        assert (await art.executions.feed(sid, "4")).result == {"answer": "4"}
        await art.settle()
        assert art.metrics()["executions_completed"] == 1
    assert art.closed
    with pytest.raises(Stopped):
        art.executions.status(sid)
    config = RuntimeConfig(settle_timeout_s=5.0)
    reopened = await AsyncRuntime.open(db_path, clock=fake_clock, config=config)
    assert reopened.runtime.config is config
    await reopened.aclose()
    await reopened.aclose()  # idempotent
    with pytest.raises(InvalidInput, match="RuntimeConfig"):
        await AsyncRuntime.open(db_path, config="nope")  # type: ignore[arg-type]


def test_only_a_runtime_is_wrapped() -> None:
    with pytest.raises(InvalidInput, match="wraps a Runtime"):
        AsyncRuntime("app.db")  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_the_namespaces_mirror_the_runtimes(rt: Runtime) -> None:
    art = AsyncRuntime(rt)
    assert {"blocks", "executions", "transcripts", "replay"} <= set(dir(art))
    for part in ("blocks", "executions", "transcripts", "replay"):
        sync_names = {name for name in dir(getattr(rt, part)) if not name.startswith("_")}
        async_names = {name for name in dir(getattr(art, part)) if not name.startswith("_")}
        public = {
            "blocks": {"get", "ids", "sweep", "archive_dir"},
            "executions": {"start", "feed", "feed_many", "cancel", "status", "snapshots"},
            "transcripts": {"create", "resume", "fork", "directory"},
            "replay": {
                "append",
                "append_many",
                "publish",
                "publish_many",
                "current_cursor",
                "after",
                "subscribe",
                "follow",
            },
        }[part]
        assert public <= sync_names, part
        assert public <= async_names, part


@pytest.mark.anyio
async def test_the_loop_runs_while_the_runtime_closes(open_rt: Callable[..., Runtime]) -> None:
    rt = open_rt(stop_timeout_s=WAIT)
    art = AsyncRuntime(rt)
    cancelled, gate = threading.Event(), threading.Event()
    order: list[str] = []

    def holds(ctx: Any) -> str:
        try:
            return str(ctx.llm("wait"))
        except ExecutionCancelled:
            cancelled.set()  # the close woke it; closing now waits for this thread...
            gate.wait(WAIT)  # ...which only the loop releases
            raise

    async def release_when_cancelled() -> None:
        while not cancelled.is_set():
            await anyio.sleep(0.001)
        order.append("released by the loop")
        gate.set()

    await art.executions.start(holds, timeout=WAIT)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(release_when_cancelled)
        async with art:
            pass  # closes on a worker thread, joining the strategy thread
        order.append("closed")
    assert rt.closed
    # A blocked loop would have released the strategy only after the close gave up on it.
    assert order == ["released by the loop", "closed"]
    assert rt.closed


# -- cancellation: what a cancelled task leaves behind ---------------------------------------


@pytest.mark.anyio
async def test_a_cancelled_async_with_still_closes_the_runtime(
    db_path: Path, fake_clock: FakeClock
) -> None:
    opened: list[AsyncRuntime] = []
    with anyio.move_on_after(0.05) as scope:
        async with AsyncRuntime.open(db_path, clock=fake_clock) as art:
            opened.append(art)
            await art.replay.current_cursor("s1")
            await anyio.sleep(WAIT)  # cancelled here: the exit is cancelled too
    assert scope.cancelled_caught
    assert opened[0].closed  # a shielded close: every actor and thread stopped


@pytest.mark.anyio
async def test_a_cancelled_start_cancels_the_session_nobody_can_name(
    open_rt: Callable[..., Runtime],
) -> None:
    rt = open_rt(strategy_threads=2)
    art = AsyncRuntime(rt)
    asked, go = threading.Event(), threading.Event()

    def plain(ctx: Any) -> str:
        asked.set()
        go.wait(WAIT)  # still in its first step when the host gives up
        return str(ctx.llm("q"))

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(art.executions.start, plain)
        while not asked.is_set():
            await anyio.sleep(0.001)
        tasks.cancel_scope.cancel()  # the host gives up before the first pause
    go.set()
    await art.settle()
    states = [status["state"] for status in art.executions.snapshots().values()]
    assert states == ["cancelled"]  # not left paused on a strategy thread for hours


@pytest.mark.anyio
async def test_waits_that_give_up_leave_no_callback_on_the_future(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from greenroom.aio import bridge

    wakes: list[int] = []
    original = bridge.call_soon_threadsafe

    def counting() -> Callable[[Callable[[], object]], None]:
        soon = original()

        def wake(fn: Callable[[], object]) -> None:
            wakes.append(1)
            soon(fn)

        return wake

    monkeypatch.setattr(bridge, "call_soon_threadsafe", counting)
    future: GreenroomFuture[int] = GreenroomFuture()
    for _ in range(50):
        assert await settled(future, timeout=0.0001) is False
        with anyio.move_on_after(0):
            await wait(future)
    assert await settled(future, timeout=0) is False
    future.set(1)
    assert wakes == []  # no abandoned waiter is woken
    assert await wait(future) == 1


@pytest.mark.anyio
async def test_settled_sees_a_derived_future_arrive() -> None:
    source: GreenroomFuture[int] = GreenroomFuture()
    doubled = source.map(lambda value: value * 2)
    threading.Timer(0.01, source.set, args=(21,)).start()
    assert await settled(doubled, timeout=WAIT) is True
    assert await wait(doubled) == 42


@pytest.mark.anyio
async def test_settle_can_be_cancelled_while_a_strategy_step_runs(rt: Runtime) -> None:
    art = AsyncRuntime(rt)
    gate = threading.Event()
    running = threading.Event()

    async def slow(ctx: Any) -> str:
        running.set()
        gate.wait(WAIT)  # a step that holds its session's turn until the test lets go
        return "done"

    async def start() -> None:
        # With a timeout, the step runs on a worker even on asyncio (an untimed one
        # would run on the loop, and this step blocks whatever thread runs it).
        await art.executions.start(slow, timeout=WAIT)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(start)
        try:
            # settle only once the step runs: a settle that starts first finds
            # nothing busy and returns before the cancel (seen under CI load)
            await anyio.to_thread.run_sync(running.wait, WAIT)
            assert running.is_set()
            with anyio.move_on_after(0.05) as scope:
                await art.settle()
            assert scope.cancelled_caught  # settle gave way to the cancel, not to the step
        finally:
            gate.set()  # start() returns only once the step ends
    await art.settle()


@pytest.mark.anyio
async def test_only_namespaces_are_wrapped(rt: Runtime) -> None:
    from greenroom.aio import AsyncExecutions, AsyncTranscripts

    with pytest.raises(InvalidInput, match="wraps an Executions"):
        AsyncExecutions(rt)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="wraps a Transcripts"):
        AsyncTranscripts(rt.executions)  # type: ignore[arg-type]
