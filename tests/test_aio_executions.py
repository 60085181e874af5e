"""`AsyncExecutions` (`greenroom.aio.executions`): `rt.executions` awaited under asyncio and
trio, never blocking the event loop.

Every test runs under both backends (anyio's pytest plugin, the `anyio_backend` fixture
below). Waits are awaits bounded by `WAIT` or `threading.Event` waits with timeouts,
never sleeps: `anyio.sleep(0.01)` appears only as the loop's own ticker, the thing a
blocked loop would stop.
"""

from __future__ import annotations

import ast
import contextvars
import inspect
import threading
import types
from pathlib import Path
from typing import Any

import anyio
import pytest

import greenroom
from greenroom import LlmRequest, Runtime
from greenroom.aio import executions as aio_executions
from greenroom.aio.executions import AsyncExecutions
from greenroom.errors import (
    AlreadyResponded,
    ExecutionTimeout,
    InvalidInput,
    InvalidTransition,
    NotFound,
    Stopped,
    StrategyNotRegistered,
    UnknownQuery,
)
from greenroom.executions import namespace as executions_namespace
from greenroom.executions.records import AsyncExecutionContext, ExecutionContext
from greenroom.usage import Usage

pytestmark = pytest.mark.anyio

_HOST_VAR: contextvars.ContextVar[str] = contextvars.ContextVar("host", default="unset")

WAIT = 10.0  # real seconds a test waits for anything before failing


async def ticks(n: int) -> None:
    """Let the loop's own timer fire `n` times (what a blocked loop could not do)."""
    for _ in range(n):
        await anyio.sleep(0.01)


async def ask_once(ctx: AsyncExecutionContext, prompt: str = "What is 2+2?") -> Any:
    answer: str = await ctx.llm(prompt)
    return {"answer": answer}


async def ask_three(ctx: AsyncExecutionContext) -> list[str]:
    first = await ctx.llm("one")
    second, third = await ctx.llm_batch([LlmRequest("two"), LlmRequest("three")])
    return [first, second, third]


def plain_twice(ctx: ExecutionContext) -> str:
    first: str = ctx.llm("first?")
    return first + ctx.llm_batch([LlmRequest("second?")])[0]


# -- the calls ---------------------------------------------------------------------------------


async def test_executions_through_the_facade_match_the_sync_runtime(
    rt: Runtime, loop_waits: list[str]
) -> None:
    executions = AsyncExecutions(rt.executions)
    first = await executions.start(ask_three)
    sid = first.session_id
    assert first.to_json()["query_id"] == "q-1-0"
    status = executions.status(sid)  # plain: it never waits
    assert (status["state"], status["pending_queries"]) == ("paused", ["q-1-0"])
    batch = await executions.feed(sid, "1")
    assert batch.query_ids == ["q-2-0", "q-2-1"]
    accepted = await executions.feed(
        sid, "3", query_id="q-2-1", usage={"prompt_tokens": 5, "completion_tokens": 1}
    )
    assert accepted.to_json() == {"status": "accepted", "remaining": 1}
    done = await executions.feed(sid, "2", query_id="q-2-0")
    assert (done.status, done.result) == ("completed", ["1", "2", "3"])
    assert done.metrics is not None
    assert (done.metrics.llm_calls, done.metrics.rounds) == (3, 2)
    again = await executions.feed(sid, "2", query_id="q-2-0")  # a retried final feed
    assert again.to_json() == done.to_json()
    assert executions.snapshots()[sid]["state"] == "completed"
    assert executions.status(sid) == rt.executions.status(sid)

    many = await executions.start(ask_three)
    await executions.feed(many.session_id, "1")
    both = await executions.feed_many(
        many.session_id, [("q-2-0", "2", None), ("q-2-1", "3", None)], timeout=WAIT
    )
    assert both.result == ["1", "2", "3"]

    plain = await executions.start(plain_twice, timeout=WAIT)
    plain = await executions.feed(plain.session_id, "a", timeout=WAIT)
    assert (await executions.feed(plain.session_id, "b", timeout=WAIT)).result == "ab"

    paused = await executions.start(ask_once, "x?", timeout=WAIT)
    cancelled = await executions.cancel(paused.session_id)
    assert cancelled.status == "cancelled"
    assert executions.status(paused.session_id)["reason"] == "cancelled by the host"

    metrics = rt.metrics()
    assert (metrics["executions_completed"], metrics["executions_cancelled"]) == (3, 1)
    assert metrics["execution_cancels_deferred"] == 0
    assert loop_waits == []


async def test_usage_in_each_providers_style(rt: Runtime) -> None:
    executions = AsyncExecutions(rt.executions)
    first = await executions.start(ask_three)
    sid = first.session_id
    anthropic = {"input_tokens": 2, "output_tokens": 3, "cache_read_input_tokens": 10}
    await executions.feed(sid, "1", usage=anthropic)
    done = await executions.feed_many(
        sid,
        [
            ("q-2-0", "2", {"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8}),
            ("q-2-1", "3", Usage(input_tokens=4, output_tokens=2)),
        ],
    )
    stats = done.to_json()["stats"]
    assert stats["prompt_tokens"] == {"value": 23, "source": "provided"}
    assert stats["response_tokens"] == {"value": 6, "source": "provided"}
    assert stats["total_tokens"] == {"value": 29, "source": "provided"}

    refused = await executions.start(ask_once)
    for usage in ({"prompt_tokens": 1}, {"tokens": 3}, 12, "lots"):
        with pytest.raises(InvalidInput, match="usage"):
            await executions.feed(refused.session_id, "4", usage=usage)  # type: ignore[arg-type]
    assert executions.status(refused.session_id)["state"] == "paused"


async def test_execution_errors_are_those_of_the_sync_runtime(rt: Runtime) -> None:
    executions = AsyncExecutions(rt.executions)
    with pytest.raises(InvalidInput, match="strategy"):
        await executions.start(42)  # type: ignore[arg-type]
    with pytest.raises(NotFound, match="no strategy is registered as 'not a function'"):
        await executions.start("not a function")
    for timeout in (-1, 1e12, float("nan")):
        with pytest.raises(InvalidInput, match="timeout must be a finite number"):
            await executions.start(ask_once, timeout=timeout)
    assert rt.metrics()["executions_started"] == 0  # nothing started
    first = await executions.start(ask_three)
    sid = first.session_id
    with pytest.raises(InvalidInput, match="session_id"):
        await executions.feed("", "x")
    with pytest.raises(InvalidInput, match="response"):
        await executions.feed(sid, 42)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="timeout"):
        await executions.feed(sid, "1", timeout=1e12)
    with pytest.raises(InvalidInput, match="feed_many"):
        await executions.feed_many(sid, [])
    with pytest.raises(UnknownQuery):
        await executions.feed(sid, "x", query_id="q-9-0")
    await executions.feed(sid, "1")
    with pytest.raises(InvalidTransition, match="2 queries"):
        await executions.feed(sid, "ambiguous")  # two pending: which one?
    await executions.feed(sid, "2", query_id="q-2-0")
    with pytest.raises(AlreadyResponded):
        await executions.feed(sid, "changed", query_id="q-2-0")
    with pytest.raises(NotFound, match="no execution session"):
        await executions.feed("s-" + "0" * 32, "x")
    with pytest.raises(NotFound, match="no execution session"):
        await executions.cancel("s-" + "0" * 32)
    with pytest.raises(NotFound):
        executions.status("s-" + "0" * 32)
    await executions.feed(sid, "3", query_id="q-2-1")
    with pytest.raises(InvalidTransition, match="already completed"):
        await executions.cancel(sid)
    with pytest.raises(InvalidTransition, match="already completed"):
        await executions.feed(sid, "new", query_id="q-2-1")

    await anyio.to_thread.run_sync(rt.close)
    with pytest.raises(Stopped):
        await executions.start(ask_once)
    with pytest.raises(Stopped):
        await executions.feed("s-" + "0" * 32, "x")
    with pytest.raises(Stopped):
        executions.status(sid)


async def test_timeouts_are_kept_by_the_loop_and_raise_execution_timeout(
    rt: Runtime, loop_waits: list[str]
) -> None:
    executions = AsyncExecutions(rt.executions)
    gate = threading.Event()

    def gated(ctx: ExecutionContext, at_start: bool) -> str:
        if at_start:
            gate.wait(WAIT)
        ctx.llm("go?")
        return "released" if gate.wait(WAIT) else "timed out"

    first = await executions.start(gated, False, timeout=WAIT)
    sid = first.session_id
    with pytest.raises(ExecutionTimeout, match=r"within 0\.05 s of this feed") as info:
        await executions.feed(sid, "go", timeout=0.05)
    assert info.value.session_id == sid
    assert executions.status(sid)["state"] == "running"  # the answer applied
    with pytest.raises(ExecutionTimeout, match="of this start") as started:
        await executions.start(gated, True, timeout=0.05)
    with pytest.raises(ExecutionTimeout, match="within 0 s of this start"):
        await executions.start(gated, True, timeout=0)
    gate.set()
    done = await executions.feed(sid, "go", query_id="q-1-0")  # the same again: the result
    assert (done.status, done.result) == ("completed", "released")
    late = await executions.cancel(started.value.session_id)  # it paused meanwhile, or not
    assert late.status == "cancelled"
    assert loop_waits == []


async def test_a_cancel_of_a_busy_session_is_deferred_without_blocking_the_loop(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch, loop_waits: list[str]
) -> None:
    monkeypatch.setattr(executions_namespace, "CANCEL_WAIT_S", 0.2)
    executions = AsyncExecutions(rt.executions)
    entered, release = threading.Event(), threading.Event()

    async def busy(ctx: AsyncExecutionContext) -> str:
        entered.set()
        release.wait(WAIT)  # a long step: holds the session's actor
        return await ctx.llm("x")

    with pytest.raises(ExecutionTimeout) as info:
        await executions.start(busy, timeout=0.05)
    sid = info.value.session_id
    assert entered.wait(WAIT)
    ticked = [0]

    async def ticker() -> None:
        while True:
            await ticks(1)
            ticked[0] += 1

    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(ticker)
            cancelled = await executions.cancel(sid)
            during = ticked[0]  # a cancel that blocked the loop would leave this at 0
            tasks.cancel_scope.cancel()
        assert during >= 1, "the loop did not run while the cancel waited"
        assert cancelled.status == "cancelled"
        assert executions.status(sid)["cancel_requested"] == "cancelled by the host"
    finally:
        release.set()
    await anyio.to_thread.run_sync(rt.settle)
    assert executions.status(sid)["state"] == "cancelled"
    assert rt.metrics()["execution_cancels_deferred"] == 1
    assert loop_waits == []


async def test_on_asyncio_an_untimed_step_runs_on_the_loop_a_timed_one_on_a_worker(
    rt: Runtime, loop_waits: list[str], anyio_backend: str
) -> None:
    executions = AsyncExecutions(rt.executions)
    where: list[int] = []

    async def records(ctx: AsyncExecutionContext) -> str:
        where.append(threading.get_ident())
        await ctx.llm("a")
        where.append(threading.get_ident())
        await ctx.llm("b")
        where.append(threading.get_ident())
        return "done"

    loop_thread = threading.get_ident()
    for _ in range(20):
        step = await executions.start(records)
        step = await executions.feed(step.session_id, "1")
        assert (await executions.feed(step.session_id, "2")).result == "done"
    assert len(where) == 60
    if anyio_backend == "asyncio":
        # The loop ran each turn itself: no hand-off to a worker and back.
        assert set(where) == {loop_thread}
    else:
        # trio: the workers run them (the loop only waits).
        assert loop_thread not in where
    assert loop_waits == []
    # With a timeout the loop must be free to give up: the turns go to the workers.
    where.clear()
    step = await executions.start(records, timeout=WAIT)
    step = await executions.feed(step.session_id, "1", timeout=WAIT)
    assert (await executions.feed(step.session_id, "2", timeout=WAIT)).result == "done"
    assert len(where) == 3
    assert loop_thread not in where
    assert loop_waits == []


async def test_durable_feeds_in_flight_together_share_commits_a_lone_one_commits_alone(
    rt: Runtime, loop_waits: list[str], anyio_backend: str
) -> None:
    executions = AsyncExecutions(rt.executions)
    executions.register("ask_three", ask_three)
    steps = [await executions.start("ask_three") for _ in range(200)]
    before = rt.metrics()["store_commits"]
    # One at a time: each feed's journal write is its own commit.
    for step in steps[:10]:
        assert (await executions.feed(step.session_id, "1")).status == "needs_response"
    assert rt.metrics()["store_commits"] - before == 10
    # 190 in flight at once: their writes share commits (on asyncio the loop leaves
    # them to the committer; on trio the workers' writes queue behind each other).
    before = rt.metrics()["store_commits"]
    fed = await _gather([executions.feed(step.session_id, "1") for step in steps[10:]])
    assert {step.status for step in fed} == {"needs_response"}
    assert rt.metrics()["store_commits"] - before < 190
    for step in fed[:3]:  # and every one of them was stored: a re-read agrees
        assert rt.executions.status(step.session_id)["round"] == 2
    assert loop_waits == []


async def _gather(calls: list[Any]) -> list[Any]:
    """Run `calls` (coroutines) at once on the running loop; their results, in order."""
    results: list[Any] = [None] * len(calls)

    async def one(index: int, call: Any) -> None:
        results[index] = await call

    async with anyio.create_task_group() as tasks:
        for index, call in enumerate(calls):
            tasks.start_soon(one, index, call)
    return results


async def test_on_asyncio_a_turn_keeps_the_callers_context_variables_out(
    rt: Runtime, anyio_backend: str
) -> None:
    if anyio_backend != "asyncio":
        pytest.skip("only asyncio runs turns on the loop")
    executions = AsyncExecutions(rt.executions)
    seen: list[str] = []

    async def reads(ctx: AsyncExecutionContext) -> str:
        seen.append(_HOST_VAR.get())
        _HOST_VAR.set("changed by the strategy")
        await ctx.llm("a")
        return "done"

    token = _HOST_VAR.set("the host's")
    try:
        step = await executions.start(reads)
        assert (await executions.feed(step.session_id, "1")).result == "done"
        # The turn ran in a fresh context, as on a worker: it saw none of the host's
        # variables, and its change did not leak back into the host's task.
        assert seen == ["unset"]
        assert _HOST_VAR.get() == "the host's"
    finally:
        _HOST_VAR.reset(token)


async def test_the_loop_runs_while_a_feed_waits_for_its_strategy(
    rt: Runtime, loop_waits: list[str]
) -> None:
    executions = AsyncExecutions(rt.executions)
    gate = threading.Event()
    results: list[Any] = []

    def gated(ctx: ExecutionContext) -> str:
        ctx.llm("go?")
        # Released by the loop itself: a blocked loop would never set it.
        return "released" if gate.wait(WAIT) else "timed out"

    first = await executions.start(gated, timeout=WAIT)

    async def feed() -> None:
        results.append(await executions.feed(first.session_id, "go"))

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(feed)
        await ticks(3)
        assert results == []  # still waiting for the strategy
        gate.set()
    assert results[0].result == "released"
    assert loop_waits == []


async def test_cancelling_the_wait_leaves_the_step_sent(rt: Runtime) -> None:
    executions = AsyncExecutions(rt.executions)
    gate = threading.Event()

    def gated(ctx: ExecutionContext) -> str:
        answer = ctx.llm("go?")
        gate.wait(WAIT)
        return answer

    first = await executions.start(gated, timeout=WAIT)
    with anyio.move_on_after(0.05) as scope:
        await executions.feed(first.session_id, "go")
    assert scope.cancelled_caught
    assert executions.status(first.session_id)["state"] == "running"  # the answer applied
    gate.set()
    retry = await executions.feed(first.session_id, "go", query_id="q-1-0", timeout=WAIT)
    assert (retry.status, retry.result) == ("completed", "go")  # the same again: the result


def test_the_facade_is_built_on_the_public_seam_only(rt: Runtime) -> None:
    executions = AsyncExecutions(rt.executions)
    assert executions.executions is rt.executions
    for name in ("start", "feed", "feed_many", "cancel"):
        assert inspect.iscoroutinefunction(getattr(AsyncExecutions, name)), name
    for name in ("status", "snapshots"):
        assert not inspect.iscoroutinefunction(getattr(AsyncExecutions, name)), name
    # Only public names of the sync namespace are used (`self._executions.<public>`).
    tree = ast.parse(Path(aio_executions.__file__).read_text(encoding="utf-8"))
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "_executions"
    }
    assert used >= {"send_start", "send_feed", "send_feed_many", "send_cancel", "outcome"}
    assert not [name for name in used if name.startswith("_")]


async def test_durable_executions_come_back_through_the_facade(
    db_path: Path, loop_waits: list[str]
) -> None:
    first = Runtime.open(db_path)
    executions = AsyncExecutions(first.executions)
    executions.register("ask_three", ask_three)
    started = await executions.start("ask_three", timeout=WAIT)
    sid = started.session_id
    assert executions.status(sid)["durable"] is True
    await executions.feed(sid, "1", timeout=WAIT)
    first.close()

    second = Runtime.open(db_path)
    try:
        executions = AsyncExecutions(second.executions)
        names = executions.register_all(_module_with(ask_three))
        assert names == ["aio.ask_three"]
        with pytest.raises(StrategyNotRegistered, match="not registered"):
            await executions.feed(sid, "2", query_id="q-2-0", timeout=WAIT)
        executions.register("ask_three", ask_three)
        status = executions.status(sid)  # from the journal
        assert (status["in_memory"], status["pending_queries"]) == (False, ["q-2-0", "q-2-1"])
        where = await executions.resume(sid, timeout=WAIT)  # re-driven
        assert where.query_ids == ["q-2-0", "q-2-1"]
        done = await executions.feed_many(
            sid, [("q-2-0", "2", None), ("q-2-1", "3", None)], timeout=WAIT
        )
        assert done.result == ["1", "2", "3"]
        assert second.metrics()["executions_redriven"] == 1
    finally:
        second.close()
    assert loop_waits == []


def _module_with(strategy: Any) -> types.ModuleType:
    """A module holding a decorated copy of `strategy` (the original stays unmarked)."""

    @greenroom.strategy("aio.ask_three")
    async def marked(ctx: AsyncExecutionContext) -> Any:
        return await strategy(ctx)

    module = types.ModuleType("aio_strategies")
    module.marked = marked  # type: ignore[attr-defined]
    return module
