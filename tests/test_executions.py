"""Execution sessions through the runtime facade: pauses, feeds, errors, cancel, GC.

Real SQLite in tmp_path and a `FakeClock` (conftest fixtures). Plain (`def`)
strategies that must be caught *running* wait on a `threading.Event` the test sets;
those tests wait on futures with real-time `timeout`s, never by sleeping.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greenroom import FakeClock, FeedResult, LlmRequest, Runtime, RuntimeConfig
from greenroom.actors import execution as execution_actor
from greenroom.actors.base import ActorContext, GreenroomActor
from greenroom.actors.execution import ExecutionActor
from greenroom.errors import (
    AlreadyResponded,
    ExecutionCancelled,
    ExecutionTimeout,
    InvalidInput,
    InvalidTransition,
    NotFound,
    Stopped,
    StrategyNotRegistered,
    Timeout,
    UnknownQuery,
)
from greenroom.executions import namespace as executions_api_module
from greenroom.executions.messages import COLLECT, Cancel, Reap
from greenroom.executions.records import (
    AsyncExecutionContext,
    ExecutionContext,
    LlmCall,
    StrategyContext,
)
from greenroom.usage import Usage

WAIT_S = 10.0  # real seconds a test waits for a thread strategy before failing

EMPTY_STATS_KEYS = {
    "elapsed_ms",
    "llm_calls",
    "pauses",
    "rounds",
    "prompt_chars",
    "response_chars",
    "prompt_tokens",
    "response_tokens",
    "total_tokens",
    "custom",
    "logs",
    "logs_dropped",
}


# -- strategies ---------------------------------------------------------------------------


async def ask_once(ctx: Any, prompt: str = "What is 2+2?") -> Any:
    answer = await ctx.llm(prompt)
    return {"answer": answer}


async def ask_three(ctx: Any) -> Any:
    first = await ctx.llm("one")
    second, third = await ctx.llm_batch([LlmRequest("two"), LlmRequest("three")])
    return [first, second, third]


async def batch_of(ctx: Any, n: int) -> Any:
    return await ctx.llm_batch([LlmRequest(f"p{i}") for i in range(n)])


def plain_twice(ctx: Any) -> Any:
    first = ctx.llm("first?")
    second = ctx.llm("second?", system="be brief")
    return [first, second]


def sid_of(result: FeedResult) -> str:
    return result.session_id


# -- single and batch pauses ------------------------------------------------------------------


def test_single_pause_then_completion(rt: Runtime) -> None:
    first = rt.executions.start(ask_once, "What is 2+2?")
    assert first.status == "needs_response"
    assert re.fullmatch(r"s-[0-9a-f]{32}", first.session_id)
    assert first.query_ids == ["q-1-0"]
    assert first.queries[0].prompt == "What is 2+2?"
    done = rt.executions.feed(first.session_id, "4")
    assert done.status == "completed"
    assert done.result == {"answer": "4"}
    assert done.metrics is not None
    assert done.metrics.rounds == 1


def test_batch_pause_gives_every_query_and_answers_in_request_order(rt: Runtime) -> None:
    first = rt.executions.start(ask_three)
    sid = first.session_id
    batch = rt.executions.feed(sid, "1")
    assert batch.status == "needs_response"
    assert batch.query_ids == ["q-2-0", "q-2-1"]  # ids unique across rounds
    assert [q.prompt for q in batch.queries] == ["two", "three"]
    assert rt.executions.feed(sid, "3", query_id="q-2-1").to_json() == {
        "status": "accepted",
        "remaining": 1,
    }
    done = rt.executions.feed(sid, "2", query_id="q-2-0")
    assert done.result == ["1", "2", "3"]
    stats = done.metrics
    assert (stats.llm_calls, stats.pauses, stats.rounds) == (3, 2, 2)


def test_plain_strategy_runs_on_a_thread_and_blocks_in_llm(rt: Runtime) -> None:
    first = rt.executions.start(plain_twice, timeout=WAIT_S)
    assert first.to_json()["prompt"] == "first?"
    second = rt.executions.feed(first.session_id, "A", timeout=WAIT_S)
    assert second.queries[0].system == "be brief"
    done = rt.executions.feed(first.session_id, "B", timeout=WAIT_S)
    assert done.result == ["A", "B"]
    rt.settle()  # a finished thread strategy leaves no work in progress behind
    assert rt.metrics()["strategy_threads"] == 1


def test_a_paused_plain_strategy_does_not_hold_up_settle(
    rt: Runtime, fake_clock: FakeClock
) -> None:
    first = rt.executions.start(plain_twice, timeout=WAIT_S)
    rt.settle()
    fake_clock.advance(5)  # settles: would raise SettleTimeout if the wait counted as work
    assert rt.executions.status(first.session_id)["state"] == "paused"


# -- partial feeds in any order -----------------------------------------------------------------


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), n=st.integers(min_value=2, max_value=6))
def test_partial_feeds_in_any_order(rt: Runtime, data: st.DataObject, n: int) -> None:
    first = rt.executions.start(batch_of, n)
    sid = first.session_id
    ids = first.query_ids
    assert ids == [f"q-1-{i}" for i in range(n)]
    order = data.draw(st.permutations(ids))
    # Split the order into groups fed with feed (one) or feed_many (several).
    cuts = sorted(data.draw(st.sets(st.integers(1, n - 1), max_size=n - 1)))
    groups = [order[a:b] for a, b in zip([0, *cuts], [*cuts, n], strict=True)]
    answered = 0
    for index, group in enumerate(groups):
        if len(group) == 1 and data.draw(st.booleans()):
            result = rt.executions.feed(sid, f"a-{group[0]}", query_id=group[0])
        else:
            result = rt.executions.feed_many(sid, [(qid, f"a-{qid}", None) for qid in group])
        answered += len(group)
        if index < len(groups) - 1:
            assert result.to_json() == {"status": "accepted", "remaining": n - answered}
            assert sorted(result.query_ids) == sorted(set(ids) - set(order[:answered]))
            assert rt.executions.status(sid)["pending_queries"] == [
                qid for qid in ids if qid not in order[:answered]
            ]
    assert result.status == "completed"
    assert result.result == [f"a-{qid}" for qid in ids]


# -- sole-pending resolution ------------------------------------------------------------------


def test_query_id_none_needs_exactly_one_pending(rt: Runtime) -> None:
    sid = rt.executions.start(batch_of, 3).session_id
    with pytest.raises(InvalidTransition, match=r"has 3 queries pending .*pass query_id"):
        rt.executions.feed(sid, "x")
    rt.executions.feed(sid, "a", query_id="q-1-0")
    with pytest.raises(InvalidTransition, match="has 2 queries pending"):
        rt.executions.feed(sid, "x")
    rt.executions.feed(sid, "c", query_id="q-1-2")
    assert rt.executions.feed(sid, "b").result == ["a", "b", "c"]  # the sole one left: q-1-1


def test_query_id_none_while_running_says_nothing_is_pending(rt: Runtime) -> None:
    gate = threading.Event()

    def gated(ctx: Any) -> Any:
        gate.wait(WAIT_S)
        return ctx.llm("after")

    with pytest.raises(Timeout) as info:
        rt.executions.start(gated, timeout=0.05)
    sid = info.value.session_id  # type: ignore[attr-defined]
    try:
        with pytest.raises(InvalidTransition, match=r"no query pending \(it is running\)"):
            rt.executions.feed(sid, "x")
        with pytest.raises(UnknownQuery, match="never asked a query 'q-1-0'"):
            rt.executions.feed(sid, "x", query_id="q-1-0")
    finally:
        gate.set()
    rt.settle()  # the strategy ran on to its pause: settle waited for it
    assert rt.executions.status(sid)["pending_queries"] == ["q-1-0"]


# -- duplicates ---------------------------------------------------------------------------------


def test_the_same_answer_again_is_a_no_op_and_a_different_one_is_refused(rt: Runtime) -> None:
    sid = rt.executions.start(ask_three).session_id
    batch = rt.executions.feed(sid, "1", query_id="q-1-0")
    feeds = rt.metrics()["execution_feeds"]
    # A late duplicate from the earlier round: the current state, nothing applied.
    again = rt.executions.feed(sid, "1", query_id="q-1-0")
    assert again == batch or again.to_json() == batch.to_json()
    with pytest.raises(AlreadyResponded, match=r"'q-1-0'.*different response"):
        rt.executions.feed(sid, "one!", query_id="q-1-0")
    assert rt.executions.feed(sid, "2", query_id="q-2-0").remaining == 1
    assert rt.executions.feed(sid, "2", query_id="q-2-0").to_json() == {
        "status": "accepted",
        "remaining": 1,
    }
    with pytest.raises(AlreadyResponded):
        rt.executions.feed(sid, "two", query_id="q-2-0")
    assert rt.metrics()["execution_feeds"] == feeds + 1
    status = rt.executions.status(sid)
    assert status["pending_queries"] == ["q-2-1"]
    assert status["metrics"]["response_chars"] == 2  # rejected feeds counted nothing
    assert rt.executions.feed(sid, "3").result == ["1", "2", "3"]


def test_unknown_query_ids_are_refused(rt: Runtime) -> None:
    sid = rt.executions.start(ask_once).session_id
    with pytest.raises(UnknownQuery, match=r"never asked a query 'q-9-0'; pending: q-1-0"):
        rt.executions.feed(sid, "x", query_id="q-9-0")
    assert isinstance(UnknownQuery("x"), NotFound)
    assert rt.executions.status(sid)["pending_queries"] == ["q-1-0"]


# -- feed_many is atomic ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("items", "error", "match"),
    [
        ([("q-1-1", "b", None), ("q-7-0", "x", None)], UnknownQuery, "q-7-0"),
        ([("q-1-1", "b", None), ("q-1-0", "changed", None)], AlreadyResponded, "q-1-0"),
        ([("q-1-1", "b", None), ("q-1-1", "b", None)], InvalidInput, "more than once"),
        ([("q-1-1", "b", None), ("q-1-2", "c", {"prompt_tokens": 1})], InvalidInput, "missing"),
        ([("q-1-1", "b", None), ("q-1-2", 3, None)], InvalidInput, "response must be a str"),
        ([("q-1-1", "b")], InvalidInput, "tuple"),
        ([], InvalidInput, "at least one"),
    ],
)
def test_feed_many_applies_all_or_none(
    rt: Runtime, items: list[Any], error: type[Exception], match: str
) -> None:
    sid = rt.executions.start(batch_of, 3).session_id
    rt.executions.feed(sid, "a", query_id="q-1-0")
    before = rt.executions.status(sid)
    with pytest.raises(error, match=match):
        rt.executions.feed_many(sid, items)
    assert rt.executions.status(sid) == before  # nothing applied, nothing counted
    done = rt.executions.feed_many(
        sid, [("q-1-2", "c", None), ("q-1-1", "b", None), ("q-1-0", "a", None)]
    )
    assert done.result == ["a", "b", "c"]


# -- strategy failures ----------------------------------------------------------------------


async def fails_at_once(ctx: Any) -> Any:
    raise ValueError("boom")


async def fails_after_a_pause(ctx: Any) -> Any:
    answer = await ctx.llm("number?")
    return int(answer)


def plain_fails(ctx: Any) -> Any:
    ctx.llm("anything")
    raise KeyError("missing")


async def returns_a_set(ctx: Any) -> Any:
    return {1, 2}


async def returns_nan(ctx: Any) -> Any:
    return {"x": float("nan")}


async def sleeps(ctx: Any) -> Any:
    await asyncio.sleep(0)


async def sleeps_long(ctx: Any) -> Any:
    await asyncio.sleep(1)


async def empty_batch(ctx: Any) -> Any:
    return await ctx.llm_batch([])


def test_strategy_exception_ends_in_error_with_type_and_message(rt: Runtime) -> None:
    assert rt.executions.start(fails_at_once).to_json() == {
        "status": "error",
        "error": "ValueError: boom",
    }
    sid = rt.executions.start(fails_after_a_pause).session_id
    result = rt.executions.feed(sid, "not a number")
    assert result.status == "error"
    assert result.error == "ValueError: invalid literal for int() with base 10: 'not a number'"
    plain = rt.executions.start(plain_fails, timeout=WAIT_S)
    assert rt.executions.feed(plain.session_id, "x", timeout=WAIT_S).error == "KeyError: 'missing'"
    assert rt.executions.status(sid)["error"].startswith("ValueError")
    assert rt.metrics()["executions_failed"] == 3


@pytest.mark.parametrize(
    ("strategy", "message"),
    [
        (returns_a_set, "not JSON-serialisable: Object of type set is not JSON serializable"),
        (returns_nan, "not JSON-serialisable: Out of range float values"),
        (sleeps, "awaited None, which is not ctx.llm or ctx.llm_batch"),
        (sleeps_long, "RuntimeError: no running event loop"),
        (empty_batch, "InvalidInput: llm_batch needs at least one LlmRequest"),
    ],
)
def test_bad_results_and_awaits_end_in_error(
    rt: Runtime, strategy: Callable[..., Any], message: str
) -> None:
    result = rt.executions.start(strategy)
    assert result.status == "error"
    assert message in result.error
    if "await" in message or "event loop" in message:
        assert "without an event loop" in result.error  # says what to do instead


def test_custom_logs_and_metrics_are_recorded(
    rt: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    async def chatty(ctx: Any) -> Any:
        ctx.metric("temperature", 0.5)
        for i in range(1005):
            ctx.log(f"line {i}")
        await ctx.llm("go on?")
        ctx.metric("rounds_seen", [1, 2])
        with pytest.raises(InvalidInput, match="not JSON-serialisable"):
            ctx.metric("bad", object())
        return "ok"

    with caplog.at_level(logging.WARNING, logger="greenroom.executions"):
        first = rt.executions.start(chatty)
        done = rt.executions.feed(first.session_id, "yes")
    stats = done.to_json()["stats"]
    assert stats["custom"] == {"temperature": 0.5, "rounds_seen": [1, 2]}
    assert len(stats["logs"]) == 1000
    assert stats["logs"][0] == "line 5"
    assert stats["logs_dropped"] == 5
    assert rt.metrics()["execution_logs_dropped"] == 5
    assert sum("oldest are dropped" in r.getMessage() for r in caplog.records) == 1


def test_plain_strategy_logs_and_metrics_arrive_in_order(rt: Runtime) -> None:
    def plain(ctx: Any) -> Any:
        ctx.log("before")
        ctx.metric("k", 1)
        ctx.llm("q")
        ctx.log("after")
        return None

    first = rt.executions.start(plain, timeout=WAIT_S)
    assert first.metrics.logs == ("before",)
    done = rt.executions.feed(first.session_id, "a", timeout=WAIT_S)
    assert done.metrics.logs == ("before", "after")
    assert done.metrics.custom == {"k": 1}
    assert done.to_json()["result"] is None


# -- tokens ----------------------------------------------------------------------------------


def test_host_usage_upgrades_token_counts_to_provided(rt: Runtime) -> None:
    sid = rt.executions.start(ask_once, "x" * 40).session_id
    estimated = rt.executions.status(sid)["metrics"]
    assert estimated["prompt_tokens"] == {"value": 10, "source": "estimated"}
    done = rt.executions.feed(sid, "y" * 8, usage={"prompt_tokens": 12, "completion_tokens": 3})
    stats = done.to_json()["stats"]
    assert stats["prompt_tokens"] == {"value": 12, "source": "provided"}
    assert stats["response_tokens"] == {"value": 3, "source": "provided"}
    assert stats["total_tokens"] == {"value": 15, "source": "provided"}
    assert (stats["prompt_chars"], stats["response_chars"]) == (40, 8)


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": 112, "completion_tokens": 3},  # OpenAI
        {"prompt_tokens": 112, "completion_tokens": 3, "total_tokens": 115},
        {"input_tokens": 12, "output_tokens": 3, "cache_read_input_tokens": 100},  # Anthropic
        {
            "input_tokens": 2,
            "output_tokens": 3,
            "cache_read_input_tokens": 60,
            "cache_creation_input_tokens": 50,
        },
        Usage(input_tokens=12, output_tokens=3, cache_write_tokens=100),
    ],
)
def test_usage_in_each_providers_style_counts_every_prompt_token(rt: Runtime, usage: Any) -> None:
    # The prompt's tokens are all the input billed: uncached, cache reads and writes.
    first = rt.executions.start(batch_of, 2)
    done = rt.executions.feed_many(
        first.session_id, [("q-1-0", "a", usage), ("q-1-1", "b", Usage(1, 2))]
    )
    stats = done.to_json()["stats"]
    assert stats["prompt_tokens"] == {"value": 113, "source": "provided"}
    assert stats["response_tokens"] == {"value": 5, "source": "provided"}
    assert stats["total_tokens"] == {"value": 118, "source": "provided"}
    # The JSON shapes are those of the seed's MCP JSON, whatever the usage's style.
    assert set(done.to_json()) == {"status", "result", "stats"}
    assert rt.executions.status(first.session_id)["metrics"] == stats


def test_partial_usage_stays_estimated(rt: Runtime) -> None:
    sid = rt.executions.start(batch_of, 2).session_id
    rt.executions.feed(
        sid, "aaaa", query_id="q-1-0", usage={"prompt_tokens": 5, "completion_tokens": 1}
    )
    stats = rt.executions.feed(sid, "bbbbbbbb", query_id="q-1-1").to_json()["stats"]
    # p1 is 2 chars (0 estimated tokens); the answer to it 8 chars (2 tokens).
    assert stats["prompt_tokens"] == {"value": 5, "source": "estimated"}
    assert stats["response_tokens"] == {"value": 3, "source": "estimated"}
    assert stats["total_tokens"] == {"value": 8, "source": "estimated"}


@pytest.mark.parametrize(
    ("usage", "match"),
    [
        ("lots", "must be None, a Usage, or a mapping"),
        ([("prompt_tokens", 1)], "got list"),
        ({"prompt_tokens": 1}, "missing completion_tokens"),
        ({"prompt_tokens": 1, "completion_tokens": 2, "total": 3}, "unknown 'total'"),
        ({"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 4}, "tokens added up"),
        ({"prompt_tokens": -1, "completion_tokens": 2}, "int >= 0"),
        ({"prompt_tokens": True, "completion_tokens": 2}, "int >= 0"),
        ({"input_tokens": 1}, "missing output_tokens"),
        ({"input_tokens": 1, "output_tokens": 2.0}, r"usage\['output_tokens'\] must be an int"),
        ({"prompt_tokens": 1, "completion_tokens": 2, "input_tokens": 3}, "unknown 'input_tokens'"),
        ({}, "missing input_tokens, output_tokens"),
    ],
)
def test_malformed_usage_is_refused(rt: Runtime, usage: Any, match: str) -> None:
    sid = rt.executions.start(ask_once).session_id
    before = rt.executions.status(sid)
    with pytest.raises(InvalidInput, match=match):
        rt.executions.feed(sid, "4", usage=usage)
    with pytest.raises(InvalidInput, match=f"feed_many item 0: .*{match}"):
        rt.executions.feed_many(sid, [("q-1-0", "4", usage)])
    assert rt.executions.status(sid) == before  # nothing applied
    assert rt.executions.feed(sid, "4").result == {"answer": "4"}


# -- cancel ---------------------------------------------------------------------------------


def test_one_llm_call_awaited_twice_asks_twice(rt: Runtime) -> None:
    async def twice(ctx: Any) -> Any:
        call = ctx.llm("again?")
        return [await call, await call]

    first = rt.executions.start(twice)
    second = rt.executions.feed(first.session_id, "a")
    assert second.status == "needs_response"
    assert second.query_ids == ["q-2-0"]
    assert second.queries[0].prompt == "again?"
    assert rt.executions.feed(first.session_id, "b").result == ["a", "b"]


def test_a_cancel_reaches_the_strategy_as_generator_exit_at_its_await(rt: Runtime) -> None:
    caught: list[type[BaseException]] = []

    async def watchful(ctx: Any) -> Any:
        try:
            await ctx.llm("wait for me")
        except BaseException as error:
            caught.append(type(error))
            raise

    sid = rt.executions.start(watchful).session_id
    assert rt.executions.cancel(sid).status == "cancelled"
    assert caught == [GeneratorExit]


def test_cancel_a_paused_async_session_closes_its_coroutine(rt: Runtime) -> None:
    closed = []

    async def careful(ctx: Any) -> Any:
        try:
            await ctx.llm("wait for me")
        finally:
            closed.append(True)
            ctx.log("closing")

    sid = rt.executions.start(careful).session_id
    cancelled = rt.executions.cancel(sid)
    assert cancelled.status == "cancelled"
    assert closed == [True]
    assert cancelled.metrics.logs == ("closing",)
    status = rt.executions.status(sid)
    assert (status["state"], status["reason"]) == ("cancelled", "cancelled by the host")
    with pytest.raises(InvalidTransition, match="already been cancelled; cannot cancel"):
        rt.executions.cancel(sid)
    with pytest.raises(InvalidTransition, match="already been cancelled; cannot feed"):
        rt.executions.feed(sid, "late")
    assert rt.metrics()["executions_cancelled"] == 1


def test_cancel_a_paused_plain_session_raises_in_its_llm_call(rt: Runtime) -> None:
    seen: list[BaseException] = []

    def plain(ctx: Any) -> Any:
        try:
            ctx.llm("wait")
        except ExecutionCancelled as error:
            seen.append(error)
            raise

    sid = rt.executions.start(plain, timeout=WAIT_S).session_id
    assert rt.executions.cancel(sid).status == "cancelled"
    rt.settle()  # the strategy unwinds on its thread; settle waits for that
    assert len(seen) == 1
    assert "cancelled" in str(seen[0])
    assert rt.executions.status(sid)["state"] == "cancelled"  # the unwinding changed nothing


def test_cancel_a_running_plain_session(rt: Runtime) -> None:
    gate = threading.Event()
    seen: list[BaseException] = []

    def busy(ctx: Any) -> Any:
        gate.wait(WAIT_S)
        try:
            ctx.llm("too late")
        except ExecutionCancelled as error:
            seen.append(error)
            raise
        return "unreachable"

    with pytest.raises(Timeout, match=r"neither paused nor finished within 0\.05 s") as info:
        rt.executions.start(busy, timeout=0.05)
    sid = info.value.session_id  # type: ignore[attr-defined]
    assert rt.executions.status(sid)["state"] == "running"
    assert sid in rt.executions.snapshots()
    cancelled = rt.executions.cancel(sid)
    gate.set()
    rt.settle()
    assert cancelled.to_json()["status"] == "cancelled"
    assert len(seen) == 1
    assert rt.executions.status(sid)["state"] == "cancelled"


def test_feed_timeout_leaves_the_answer_applied_and_the_session_visible(rt: Runtime) -> None:
    gate = threading.Event()

    def slow_second_round(ctx: Any) -> Any:
        first = ctx.llm("first")
        gate.wait(WAIT_S)
        return [first, ctx.llm("second")]

    sid = rt.executions.start(slow_second_round, timeout=WAIT_S).session_id
    with pytest.raises(Timeout) as info:
        rt.executions.feed(sid, "one", timeout=0.05)
    assert info.value.session_id == sid  # type: ignore[attr-defined]
    status = rt.executions.status(sid)
    assert (status["state"], status["metrics"]["rounds"]) == ("running", 1)
    gate.set()
    rt.settle()
    assert rt.executions.status(sid)["pending_queries"] == ["q-2-0"]
    assert rt.executions.feed(sid, "two", timeout=WAIT_S).result == ["one", "two"]


# -- GC -------------------------------------------------------------------------------------


def test_gc_reaps_idle_sessions_and_expired_results(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    rt = open_rt(execution_ttl_s=300, gc_interval_s=60, result_retention_s=600)
    idle = rt.executions.start(ask_three).session_id
    active = rt.executions.start(ask_three).session_id
    done = rt.executions.start(fails_at_once).session_id  # finished at t=0
    fake_clock.advance(240)
    rt.executions.feed(active, "1")  # active again at t=240
    with caplog.at_level(logging.INFO, logger="greenroom.executions"):
        fake_clock.advance(120)  # t=360: the tick at t=300 found `idle` idle for 300 s
    status = rt.executions.status(idle)
    assert status["state"] == "cancelled"
    assert "reaped by the GC" in status["reason"]
    assert rt.executions.status(active)["state"] == "paused"
    assert rt.metrics()["executions_reaped"] == 1
    assert any("reaped by the GC" in r.getMessage() for r in caplog.records)
    with pytest.raises(InvalidTransition, match="already been cancelled"):
        rt.executions.feed(idle, "late answer")
    fake_clock.advance(600)  # t=960: `done` (t=0) and `idle` (t=300) results expire
    for gone in (done, idle):
        with pytest.raises(NotFound, match="result_retention_s"):
            rt.executions.status(gone)
        with pytest.raises(NotFound):
            rt.executions.feed(gone, "x")
    # `active`, idle since t=240, was reaped at t=540 and is still retained.
    assert rt.executions.status(active)["state"] == "cancelled"
    metrics = rt.metrics()
    assert (metrics["executions_reaped"], metrics["execution_results_expired"]) == (2, 2)
    assert (metrics["executions_active"], metrics["executions_retained"]) == (0, 1)
    assert set(rt.executions.snapshots()) == {active}


def test_gc_reaps_a_running_plain_session(open_rt: Callable[..., Runtime]) -> None:
    rt = open_rt(execution_ttl_s=300, gc_interval_s=60)
    gate = threading.Event()
    seen: list[BaseException] = []

    def stuck(ctx: Any) -> Any:
        gate.wait(WAIT_S)
        try:
            return ctx.llm("x")
        except ExecutionCancelled as error:
            seen.append(error)
            raise

    with pytest.raises(Timeout) as info:
        rt.executions.start(stuck, timeout=0.05)
    sid = info.value.session_id  # type: ignore[attr-defined]
    # The thread counts as work in progress, so FakeClock.advance would wait for it:
    # age the session by hand and run one GC pass directly.
    rt.executions._registry.live(sid).last_active = -1e9
    gc_pass = rt.executions._execution_gc().ask(COLLECT)
    assert gc_pass.reap_candidates == (sid,)
    gate.set()
    rt.settle()  # the Reap is handled, the strategy unwound
    status = rt.executions.status(sid)
    assert status["state"] == "cancelled"
    assert "reaped" in status["reason"]
    assert len(seen) == 1
    assert "reaped by the GC" in str(seen[0])
    assert rt.metrics()["executions_reaped"] == 1


# -- 1,000 sessions, 8 feeding threads ----------------------------------------------------------


async def arithmetic(ctx: Any, n: int) -> Any:
    doubled = await ctx.llm(f"double {n}")
    plus_one, minus_n = await ctx.llm_batch(
        [LlmRequest(f"inc {doubled}"), LlmRequest(f"neg {n}", grounded=True)]
    )
    return {"n": n, "sum": int(plus_one) + int(minus_n)}


def _answer(prompt: str) -> str:
    op, value = prompt.split()
    return str({"double": 2 * int(value), "inc": int(value) + 1, "neg": -int(value)}[op])


def test_thousand_async_sessions_fed_from_eight_threads(rt: Runtime) -> None:
    threads = 8
    per_thread = 125
    barrier = threading.Barrier(threads)

    def start(offset: int) -> list[FeedResult]:
        barrier.wait()
        return [rt.executions.start(arithmetic, n) for n in range(offset, 1000, threads)]

    def feed_all(firsts: list[FeedResult]) -> list[Any]:
        rng = random.Random(len(firsts))
        barrier.wait()
        batches = []
        for first in firsts:
            batches.append(rt.executions.feed(first.session_id, _answer(first.queries[0].prompt)))
        results = []
        for batch in batches:
            assert batch.status == "needs_response"
            assert len(batch.queries) == 2
            items = [(q.id, _answer(q.prompt), None) for q in batch.queries]
            rng.shuffle(items)
            if rng.random() < 0.5:
                results.append(rt.executions.feed_many(batch.session_id, items))
            else:
                rt.executions.feed(batch.session_id, items[0][1], query_id=items[0][0])
                results.append(
                    rt.executions.feed(batch.session_id, items[1][1], query_id=items[1][0])
                )
        return results

    with ThreadPoolExecutor(threads) as pool:
        started = list(pool.map(start, range(threads)))
        assert all(len(firsts) == per_thread for firsts in started)
        assert rt.metrics()["executions_active"] == 1000  # all paused at once
        # Each thread feeds another thread's sessions.
        finished = list(pool.map(feed_all, started[1:] + started[:1]))
    results = [result for chunk in finished for result in chunk]
    assert len(results) == 1000
    assert all(result.status == "completed" for result in results)
    assert sorted(r.result["n"] for r in results) == list(range(1000))
    assert all(r.result["sum"] == r.result["n"] + 1 for r in results)
    metrics = rt.metrics()
    assert metrics["executions_completed"] == 1000
    assert metrics["executions_active"] == 0
    assert metrics["execution_feeds"] == 3000
    assert metrics["strategy_threads"] == 0  # async sessions use no thread


# -- exact JSON shapes ------------------------------------------------------------------------


def test_exact_json_of_every_status(rt: Runtime, fake_clock: FakeClock) -> None:
    async def shapes(ctx: Any) -> Any:
        await ctx.llm("plain")
        await ctx.llm("full", system="sys", max_tokens=50, grounded=True, underspecified=True)
        await ctx.llm_batch(
            [
                LlmRequest("a", grounded=True),
                LlmRequest("b", system="s", max_tokens=7, underspecified=True),
            ]
        )
        ctx.metric("m", {"k": [1]})
        return {"ok": True, "items": (1, 2)}

    first = rt.executions.start(shapes)
    sid = first.session_id
    assert first.to_json() == {
        "status": "needs_response",
        "session_id": sid,
        "query_id": "q-1-0",
        "prompt": "plain",
        "system": None,
        "max_tokens": 1024,
    }
    fake_clock.advance(2.5)
    assert rt.executions.feed(sid, "r1").to_json() == {
        "status": "needs_response",
        "session_id": sid,
        "query_id": "q-2-0",
        "prompt": "full",
        "system": "sys",
        "max_tokens": 50,
        "grounded": True,
        "underspecified": True,
    }
    assert rt.executions.feed(sid, "r2").to_json() == {
        "status": "needs_response",
        "session_id": sid,
        "queries": [
            {"id": "q-3-0", "prompt": "a", "system": None, "max_tokens": 1024, "grounded": True},
            {"id": "q-3-1", "prompt": "b", "system": "s", "max_tokens": 7, "underspecified": True},
        ],
    }
    assert rt.executions.feed(sid, "r3a", query_id="q-3-0").to_json() == {
        "status": "accepted",
        "remaining": 1,
    }
    stats = {
        "elapsed_ms": 2500,
        "llm_calls": 4,
        "pauses": 3,
        "rounds": 3,
        "prompt_chars": 5 + 4 + 3 + 1 + 2,
        "response_chars": 2 + 2 + 3 + 4,
        "prompt_tokens": {"value": 1 + 1 + 0 + 0, "source": "estimated"},
        "response_tokens": {"value": 0 + 0 + 0 + 1, "source": "estimated"},
        "total_tokens": {"value": 3, "source": "estimated"},
        "custom": {"m": {"k": [1]}},
        "logs": [],
        "logs_dropped": 0,
    }
    assert rt.executions.feed(sid, "r3bb", query_id="q-3-1").to_json() == {
        "status": "completed",
        "result": {"ok": True, "items": [1, 2]},
        "stats": stats,
    }
    assert rt.executions.status(sid) == {
        "session_id": sid,
        "state": "completed",
        "round": 3,
        "pending_queries": [],
        "metrics": stats,
        "durable": False,
        "result": {"ok": True, "items": [1, 2]},
    }

    assert rt.executions.start(fails_at_once).to_json() == {
        "status": "error",
        "error": "ValueError: boom",
    }

    paused = rt.executions.start(ask_once, "hello").session_id
    live = rt.executions.status(paused)
    assert set(live) == {"session_id", "state", "round", "pending_queries", "metrics", "durable"}
    assert (live["state"], live["round"], live["pending_queries"]) == ("paused", 1, ["q-1-0"])
    assert set(live["metrics"]) == EMPTY_STATS_KEYS
    fake_clock.advance(1)
    assert rt.executions.cancel(paused).to_json() == {
        "status": "cancelled",
        "stats": {
            "elapsed_ms": 1000,
            "llm_calls": 1,
            "pauses": 1,
            "rounds": 0,
            "prompt_chars": 5,
            "response_chars": 0,
            "prompt_tokens": {"value": 1, "source": "estimated"},
            "response_tokens": {"value": 0, "source": "estimated"},
            "total_tokens": {"value": 1, "source": "estimated"},
            "custom": {},
            "logs": [],
            "logs_dropped": 0,
        },
    }


# -- the facade's refusals ----------------------------------------------------------------------


async def gen_strategy(ctx: Any) -> Any:
    yield 1


class Starter(GreenroomActor):
    kind = "starter"

    def __init__(self, ctx: ActorContext, rt: Runtime) -> None:
        super().__init__(ctx)
        self.rt = rt

    def on_receive(self, message: Any) -> Any:
        return self.rt.executions.start(ask_once)


def test_bad_arguments_are_refused_with_nothing_started(rt: Runtime) -> None:
    with pytest.raises(StrategyNotRegistered, match="no strategy is registered as 'not callable'"):
        rt.executions.start("not callable")  # a str names a registered strategy
    for strategy, match in [
        (42, "must be an async def or a plain def"),
        (Starter, "must be an async def"),
        (gen_strategy, "generator function"),
    ]:
        with pytest.raises(InvalidInput, match=match):
            rt.executions.start(strategy)
    bad_timeouts = [-1, 1e12, float("nan"), float("inf"), "5", True]
    for timeout in bad_timeouts:
        with pytest.raises(InvalidInput, match="timeout must be a finite number"):
            rt.executions.start(ask_once, timeout=timeout)
    sid = rt.executions.start(ask_once).session_id
    for timeout in bad_timeouts:
        with pytest.raises(InvalidInput, match="timeout"):
            rt.executions.feed(sid, "4", timeout=timeout)
        with pytest.raises(InvalidInput, match="timeout"):
            rt.executions.feed_many(sid, [("q-1-0", "4", None)], timeout=timeout)
    with pytest.raises(InvalidInput, match="response must be a str"):
        rt.executions.feed(sid, 4)
    with pytest.raises(InvalidInput, match="query_id"):
        rt.executions.feed(sid, "4", query_id=5)
    with pytest.raises(InvalidInput, match="query_id must not be empty"):
        rt.executions.feed(sid, "4", query_id="")
    with pytest.raises(InvalidInput, match="session_id"):
        rt.executions.feed(None, "4")
    with pytest.raises(InvalidInput, match="session_id must not be empty"):
        rt.executions.cancel("")
    with pytest.raises(InvalidInput, match="session_id"):
        rt.executions.status(7)
    with pytest.raises(NotFound, match="no execution session 's-nope'"):
        rt.executions.feed("s-nope", "4")
    with pytest.raises(NotFound):
        rt.executions.cancel("s-nope")
    with pytest.raises(NotFound):
        rt.executions.status("s-nope")
    assert rt.metrics()["executions_started"] == 1
    assert rt.executions.status(sid)["state"] == "paused"


def test_a_zero_timeout_polls_and_the_longest_is_ten_years(rt: Runtime) -> None:
    entered, gate = threading.Event(), threading.Event()

    def gated(ctx: Any) -> str:
        entered.set()
        gate.wait(WAIT_S)
        return ctx.llm("go?")

    with pytest.raises(ExecutionTimeout, match=r"within 0 s of this start") as info:
        rt.executions.start(gated, timeout=0)  # started, not waited for
    sid = info.value.session_id
    assert entered.wait(WAIT_S)  # running on its thread: work in progress from here
    gate.set()
    rt.settle()  # the strategy runs up to its pause
    assert rt.executions.status(sid)["pending_queries"] == ["q-1-0"]
    ten_years = 10.0 * 365 * 24 * 3600
    assert rt.executions.feed(sid, "yes", timeout=ten_years).result == "yes"
    assert rt.metrics()["executions_started"] == 1


def test_start_execution_is_refused_inside_a_handler(rt: Runtime) -> None:
    ref = rt.spawn(Starter, rt)
    with pytest.raises(InvalidTransition, match=r"executions\.start\(\) was called from a handler"):
        ref.ask("go")


def test_an_async_callable_object_is_driven_as_async(rt: Runtime) -> None:
    class Strategy:
        async def __call__(self, ctx: Any) -> Any:
            return await ctx.llm("hi")

    first = rt.executions.start(Strategy())
    assert rt.executions.feed(first.session_id, "there").result == "there"
    assert rt.metrics()["strategy_threads"] == 0


def test_close_stops_paused_and_running_strategies(open_rt: Callable[..., Runtime]) -> None:
    rt = open_rt()
    seen: list[BaseException] = []
    closed: list[str] = []

    def plain(ctx: Any) -> Any:
        try:
            ctx.llm("never answered")
        except ExecutionCancelled as error:
            seen.append(error)
            raise

    async def careful(ctx: Any) -> Any:
        try:
            await ctx.llm("wait for me")
        finally:
            closed.append("closed")

    # A plain strategy caught running: its start waits on another thread; the strategy
    # goes on (and reaches ctx.llm) only once that start was answered by the close.
    running = threading.Event()
    gate = threading.Event()
    seen_running: list[BaseException] = []
    waiter_errors: list[BaseException] = []

    def busy(ctx: Any) -> Any:
        running.set()
        gate.wait(WAIT_S)
        try:
            return ctx.llm("too late")
        except ExecutionCancelled as error:
            seen_running.append(error)
            raise

    def start_busy() -> None:
        try:
            rt.executions.start(busy)
        except Stopped as error:
            waiter_errors.append(error)
        finally:
            gate.set()

    plain_sid = rt.executions.start(plain, timeout=WAIT_S).session_id
    rt.executions.start(careful)
    starter = threading.Thread(target=start_busy)
    starter.start()
    assert running.wait(WAIT_S)
    running_sid = next(
        sid for sid, status in rt.executions.snapshots().items() if status["state"] == "running"
    )
    rt.close()  # returns: the waiting thread was woken, the coroutine closed
    starter.join(WAIT_S)
    assert len(seen) == 1
    assert closed == ["closed"]
    assert len(waiter_errors) == 1  # the start waiting on the running strategy: Stopped
    assert "the runtime was closed" in str(waiter_errors[0])
    assert len(seen_running) == 1  # the running strategy's next ctx call raised
    with pytest.raises(Stopped):
        rt.executions.feed(plain_sid, "late")
    with pytest.raises(Stopped):
        rt.executions.feed(running_sid, "late")


def test_close_while_a_feed_waits_on_a_running_plain_strategy(
    open_rt: Callable[..., Runtime],
) -> None:
    rt = open_rt()
    resumed = threading.Event()
    gate = threading.Event()
    waiter_errors: list[BaseException] = []

    def two_rounds(ctx: Any) -> Any:
        first = ctx.llm("one")
        resumed.set()
        gate.wait(WAIT_S)
        return [first, ctx.llm("two")]

    sid = rt.executions.start(two_rounds, timeout=WAIT_S).session_id

    def feed() -> None:
        try:
            rt.executions.feed(sid, "1")
        except Stopped as error:
            waiter_errors.append(error)
        finally:
            gate.set()

    feeder = threading.Thread(target=feed)
    feeder.start()
    assert resumed.wait(WAIT_S)  # the feed was applied and waits for the next pause
    rt.close()
    feeder.join(WAIT_S)
    assert [type(error) for error in waiter_errors] == [Stopped]


def test_metrics_start_at_zero(rt: Runtime) -> None:
    metrics = rt.metrics()
    for key in (
        "executions_started",
        "executions_completed",
        "executions_failed",
        "executions_cancelled",
        "executions_reaped",
        "execution_results_expired",
        "execution_feeds",
        "execution_logs_dropped",
        "executions_active",
        "executions_retained",
        "strategy_threads",
    ):
        assert metrics[key] == 0, key


# -- the feed protocol against a model -------------------------------------------------------


async def rounds_of(ctx: Any, sizes: list[int]) -> Any:
    answers: list[str] = []
    for k, size in enumerate(sizes):
        if size == 1:
            answers.append(await ctx.llm(f"r{k}"))
        else:
            answers += await ctx.llm_batch([LlmRequest(f"r{k}-{i}") for i in range(size)])
    return answers


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sizes=st.lists(st.integers(1, 4), min_size=1, max_size=4), data=st.data())
def test_feed_protocol_matches_a_model(rt: Runtime, sizes: list[int], data: st.DataObject) -> None:
    first = rt.executions.start(rounds_of, sizes)
    sid = first.session_id
    round_no = 1
    pending = [f"q-1-{i}" for i in range(sizes[0])]
    assert first.query_ids == pending
    answered: dict[str, str] = {}
    in_round = 0  # answered in the current round
    expected_result: list[str] = []
    feeds = 0
    while True:
        op = data.draw(st.sampled_from(["answer", "answer", "sole", "repeat", "change", "unknown"]))
        if op == "repeat" and answered:
            qid = data.draw(st.sampled_from(sorted(answered)))
            result = rt.executions.feed(sid, answered[qid], query_id=qid)
            if in_round:
                assert result.to_json() == {"status": "accepted", "remaining": len(pending)}
            else:
                assert result.status == "needs_response"
                assert result.query_ids == pending
            continue
        if op == "change" and answered:
            qid = data.draw(st.sampled_from(sorted(answered)))
            with pytest.raises(AlreadyResponded):
                rt.executions.feed(sid, answered[qid] + "!", query_id=qid)
            continue
        if op == "unknown":
            qid = data.draw(st.sampled_from([f"q-{round_no + 1}-0", "q-0-0", f"q-{round_no}-9"]))
            with pytest.raises(UnknownQuery):
                rt.executions.feed(sid, "x", query_id=qid)
            continue
        if op == "sole" and len(pending) != 1:
            with pytest.raises(InvalidTransition, match=f"has {len(pending)} queries pending"):
                rt.executions.feed(sid, "x")
            continue
        qid = pending[0] if op == "sole" else data.draw(st.sampled_from(pending))
        text = f"answer to {qid}"
        result = rt.executions.feed(sid, text, query_id=None if op == "sole" else qid)
        feeds += 1
        answered[qid] = text
        pending.remove(qid)
        in_round += 1
        if pending:
            assert result.to_json() == {"status": "accepted", "remaining": len(pending)}
            continue
        expected_result += [f"answer to q-{round_no}-{i}" for i in range(sizes[round_no - 1])]
        if round_no == len(sizes):
            assert result.status == "completed"
            assert result.result == expected_result
            break
        round_no += 1
        in_round = 0
        pending = [f"q-{round_no}-{i}" for i in range(sizes[round_no - 1])]
        assert result.status == "needs_response"
        assert result.query_ids == pending
    stats = result.metrics
    assert (stats.rounds, stats.pauses, stats.llm_calls) == (len(sizes), len(sizes), sum(sizes))
    assert stats.response_chars == sum(map(len, answered.values()))
    assert feeds == sum(sizes)


def test_many_plain_sessions_fed_from_four_threads(open_rt: Callable[..., Runtime]) -> None:
    rt = open_rt(strategy_threads=8)

    def plain(ctx: Any, n: int) -> Any:
        total = 0
        for step in range(3):
            total += int(ctx.llm(f"{n} {step}"))
        return total

    def run(n: int) -> Any:
        result = rt.executions.start(plain, n, timeout=WAIT_S)
        while result.status == "needs_response":
            value, step = map(int, result.queries[0].prompt.split())
            result = rt.executions.feed(result.session_id, str(value * 10 + step), timeout=WAIT_S)
        return result

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, range(60)))
    assert [r.result for r in results] == [n * 30 + 3 for n in range(60)]
    rt.settle()  # every thread's work in progress was counted out again
    metrics = rt.metrics()
    assert metrics["executions_completed"] == 60
    assert metrics["strategy_threads"] <= 8


# -- review fixes -------------------------------------------------------------------------------


def _actor_of(rt: Runtime, sid: str) -> Any:
    return rt.executions._registry.live(sid).ref._actor_weakref()


class _SignallingTracker:
    """Wraps a session's tracker: `left` is set when the strategy thread stops counting
    (just after it has sent its pause to the actor)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.left = threading.Event()

    def enter(self) -> None:
        self.inner.enter()

    def leave(self, handled: int = 0) -> None:
        self.inner.leave(handled)
        self.left.set()


@pytest.mark.parametrize("how", ["cancel", "reap", "close"])
def test_a_stop_landing_between_the_cancel_check_and_the_pause_wakes_the_strategy(
    open_rt: Callable[..., Runtime], monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """The pause of a plain strategy queued behind the session's stop is answered
    (ActorDeadError -> ExecutionCancelled), so its thread does not wait forever."""
    rt = open_rt(execution_ttl_s=300)
    checked, go = threading.Event(), threading.Event()
    outcome: list[str] = []
    done = threading.Event()
    tracker: list[_SignallingTracker] = []

    original_check = execution_actor._ThreadLink._refuse_if_cancelled

    def check(link: Any) -> None:
        original_check(link)  # passes: not cancelled yet
        checked.set()
        go.wait(WAIT_S)  # the stop lands here

    monkeypatch.setattr(execution_actor._ThreadLink, "_refuse_if_cancelled", check)

    def hold_until_the_pause_is_queued() -> None:
        go.set()  # the stop is queued; let the strategy send its pause behind it
        assert tracker[0].left.wait(WAIT_S)

    if how == "close":
        original_on_stop = ExecutionActor.on_stop

        def on_stop(actor: Any) -> None:
            original_on_stop(actor)
            hold_until_the_pause_is_queued()

        monkeypatch.setattr(ExecutionActor, "on_stop", on_stop)
    else:
        kind = Cancel if how == "cancel" else Reap
        original = execution_actor._HANDLERS[kind]

        def handler(actor: Any, message: Any) -> Any:
            result = original(actor, message)  # ends the session: its stop is queued
            hold_until_the_pause_is_queued()
            return result

        monkeypatch.setitem(execution_actor._HANDLERS, kind, handler)

    def plain(ctx: Any) -> Any:
        try:
            ctx.llm("q")
            outcome.append("answered")
        except ExecutionCancelled as error:
            outcome.append(str(error))
            raise
        finally:
            done.set()

    with pytest.raises(ExecutionTimeout) as info:
        rt.executions.start(plain, timeout=0.05)
    sid = info.value.session_id
    assert checked.wait(WAIT_S)
    actor = _actor_of(rt, sid)
    tracker.append(_SignallingTracker(actor._link.tracker))
    actor._link.tracker = tracker[0]
    if how == "cancel":
        assert rt.executions.cancel(sid).status == "cancelled"
    elif how == "reap":
        rt.executions._registry.live(sid).last_active = -1e9
        assert rt.executions._execution_gc().ask(COLLECT).reap_candidates == (sid,)
    else:
        rt.close()
    assert done.wait(WAIT_S), "the strategy still waits in ctx.llm"
    assert len(outcome) == 1
    assert "has ended" in outcome[0]
    if how != "close":
        rt.settle()
        assert rt.executions.status(sid)["state"] == "cancelled"
        assert rt.metrics()["dead_letters"] >= 1  # the pause was dead-lettered, counted


class _BadDict(dict):  # type: ignore[type-arg]
    def items(self) -> Any:
        raise KeyError("boom")


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise ValueError("unprintable")


def _plain_bad_dict(ctx: Any) -> Any:
    return _BadDict(a=1)


async def _async_bad_dict(ctx: Any) -> Any:
    return _BadDict(a=1)


def _plain_unprintable(ctx: Any) -> Any:
    raise _Unprintable


async def _async_unprintable(ctx: Any) -> Any:
    raise _Unprintable


def _plain_set(ctx: Any) -> Any:
    return {1, 2}


@pytest.mark.parametrize(
    ("strategy", "message"),
    [
        (_plain_bad_dict, "not JSON-serialisable: serialising it raised KeyError: 'boom'"),
        (_async_bad_dict, "not JSON-serialisable: serialising it raised KeyError: 'boom'"),
        (_plain_unprintable, "_Unprintable: <unprintable _Unprintable object>"),
        (_async_unprintable, "_Unprintable: <unprintable _Unprintable object>"),
        (_plain_set, "not JSON-serialisable: Object of type set is not JSON serializable"),
    ],
)
def test_odd_results_and_errors_end_the_session_in_error(
    rt: Runtime, strategy: Callable[..., Any], message: str
) -> None:
    result = rt.executions.start(strategy, timeout=WAIT_S)
    assert result.status == "error"
    assert message in result.error
    assert rt.executions.status(result.session_id)["state"] == "error"
    assert rt.metrics()["executions_active"] == 0


@pytest.mark.parametrize("strategy", [ask_once, plain_twice])
def test_a_failure_handling_the_outcome_ends_the_session_in_error(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch, strategy: Callable[..., Any]
) -> None:
    def broken(actor: Any, value: Any) -> Any:
        raise RuntimeError("internal")

    first = rt.executions.start(strategy, timeout=WAIT_S)
    monkeypatch.setattr(ExecutionActor, "_complete", broken)
    result = first
    while result.status == "needs_response":
        result = rt.executions.feed(first.session_id, "x", timeout=WAIT_S)
    assert result.status == "error"
    assert "failed handling its strategy: RuntimeError: internal" in result.error
    assert rt.executions.status(first.session_id)["state"] == "error"


@pytest.mark.parametrize("error", [SystemExit(3), KeyboardInterrupt(), GeneratorExit()])
def test_a_base_exception_from_an_async_strategy_ends_the_session_in_error(
    rt: Runtime, error: BaseException
) -> None:
    async def raises_at_once(ctx: Any) -> Any:
        raise error

    async def raises_after_a_pause(ctx: Any) -> Any:
        await ctx.llm("q")
        raise error

    result = rt.executions.start(raises_at_once)
    assert result.status == "error"
    assert result.error.startswith(type(error).__name__)
    sid = rt.executions.start(raises_after_a_pause).session_id
    assert rt.executions.feed(sid, "a").status == "error"
    assert rt.executions.status(sid)["state"] == "error"
    metrics = rt.metrics()
    assert (metrics["executions_failed"], metrics["executions_active"]) == (2, 0)


def test_a_helper_thread_waiting_in_llm_is_woken_when_the_strategy_returns(rt: Runtime) -> None:
    release = threading.Event()
    helper_done = threading.Event()
    helper_out: list[BaseException | str] = []

    def leaves_a_helper(ctx: Any) -> Any:
        def helper() -> None:
            try:
                helper_out.append(ctx.llm("from the helper"))
            except ExecutionCancelled as error:
                helper_out.append(error)
            finally:
                helper_done.set()

        threading.Thread(target=helper, daemon=True).start()
        release.wait(WAIT_S)
        return "done"

    first = rt.executions.start(leaves_a_helper, timeout=WAIT_S)
    assert first.query_ids == ["q-1-0"]  # the helper's pause
    release.set()
    assert helper_done.wait(WAIT_S), "the helper still waits in ctx.llm"
    assert isinstance(helper_out[0], ExecutionCancelled)
    assert "has ended (completed)" in str(helper_out[0])
    status = rt.executions.status(first.session_id)
    assert (status["state"], status["result"]) == ("completed", "done")


@pytest.mark.parametrize("then", ["pauses", "returns", "fails"])
def test_a_busy_async_session_is_visible_and_cancellable(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch, then: str
) -> None:
    monkeypatch.setattr(executions_api_module, "CANCEL_WAIT_S", 0.01)
    entered, release = threading.Event(), threading.Event()
    closed: list[bool] = []

    async def busy(ctx: Any) -> Any:
        entered.set()
        release.wait(WAIT_S)  # a long CPU step: holds the actor
        if then == "returns":
            return "computed"
        if then == "fails":
            raise ValueError("late")
        try:
            return await ctx.llm("x")
        finally:
            closed.append(True)

    with pytest.raises(ExecutionTimeout) as info:
        rt.executions.start(busy, timeout=0.05)
    sid = info.value.session_id
    assert isinstance(info.value, Timeout)
    assert entered.wait(WAIT_S)
    try:
        status = rt.executions.status(sid)  # answers at once, from the snapshot
        assert (status["state"], status["pending_queries"]) == ("running", [])
        assert rt.executions.snapshots()[sid]["state"] == "running"
        cancelled = rt.executions.cancel(sid)  # returns after CANCEL_WAIT_S: recorded
        assert cancelled.status == "cancelled"
        assert cancelled.to_json()["stats"]["llm_calls"] == 0
        assert rt.metrics()["execution_cancels_deferred"] == 1
        status = rt.executions.status(sid)
        assert status["state"] == "running"
        assert status["cancel_requested"] == "cancelled by the host"
    finally:
        release.set()
    rt.settle()
    final = rt.executions.status(sid)
    assert (final["state"], final["reason"]) == ("cancelled", "cancelled by the host")
    assert "result" not in final
    assert closed == ([True] if then == "pauses" else [])
    with pytest.raises(InvalidTransition, match="already been cancelled"):
        rt.executions.feed(sid, "x")
    metrics = rt.metrics()
    assert (metrics["executions_cancelled"], metrics["executions_completed"]) == (1, 0)


def test_a_full_strategy_pool_is_logged_and_counted(
    open_rt: Callable[..., Runtime], caplog: pytest.LogCaptureFixture
) -> None:
    rt = open_rt(strategy_threads=1)

    def holds(ctx: Any) -> Any:
        return ctx.llm("x")

    holder = rt.executions.start(holds, timeout=WAIT_S).session_id
    assert rt.metrics()["strategy_queued"] == 0
    with (
        caplog.at_level(logging.WARNING, logger="greenroom.executions"),
        pytest.raises(ExecutionTimeout) as info,
    ):
        rt.executions.start(holds, timeout=0.05)
    metrics = rt.metrics()
    assert (metrics["strategy_queued"], metrics["strategy_starts_queued"]) == (1, 1)
    assert any("all 1 strategy threads are held" in r.getMessage() for r in caplog.records)
    rt.executions.cancel(info.value.session_id)
    assert rt.executions.feed(holder, "y", timeout=WAIT_S).result == "y"


def test_waiting_calls_are_refused_on_a_strategy_thread(rt: Runtime) -> None:
    paused = rt.executions.start(ask_once).session_id

    def nests(ctx: Any) -> Any:
        refused = {}
        for name, call in [
            ("start_plain", lambda: rt.executions.start(_plain_set)),
            ("start_async", lambda: rt.executions.start(ask_once)),
            ("feed", lambda: rt.executions.feed(paused, "x")),
            ("feed_many", lambda: rt.executions.feed_many(paused, [("q-1-0", "x", None)])),
            ("cancel", lambda: rt.executions.cancel(paused)),
            ("settle", lambda: rt.settle(timeout=1)),
        ]:
            try:
                call()
                refused[name] = "allowed"
            except InvalidTransition as error:
                refused[name] = "strategy pool" in str(error)
        # The status calls never wait: allowed here.
        refused["status"] = rt.executions.status(ctx.session_id)["state"]
        refused["snapshots"] = len(rt.executions.snapshots())
        return refused

    result = rt.executions.start(nests, timeout=WAIT_S)
    assert result.result == {
        "start_plain": True,
        "start_async": True,
        "feed": True,
        "feed_many": True,
        "cancel": True,
        "settle": True,
        "status": "running",
        "snapshots": 2,
    }
    assert rt.executions.status(paused)["state"] == "paused"
    assert rt.metrics()["executions_started"] == 2


def test_status_calls_are_allowed_in_a_handler(rt: Runtime) -> None:
    class Looker(GreenroomActor):
        kind = "looker"

        def __init__(self, ctx: ActorContext, rt: Runtime) -> None:
            super().__init__(ctx)
            self.rt = rt

        def on_receive(self, message: Any) -> Any:
            return self.rt.executions.status(message)["state"], len(self.rt.executions.snapshots())

    sid = rt.executions.start(ask_once).session_id
    assert rt.spawn(Looker, rt).ask(sid) == ("paused", 1)


@pytest.mark.parametrize(
    ("strategy", "answer", "ended"),
    [(ask_once, "4", "completed"), (fails_after_a_pause, "NaN!", "failed \\(error\\)")],
)
def test_late_feeds_to_a_finished_session_name_its_state(
    rt: Runtime, strategy: Callable[..., Any], answer: str, ended: str
) -> None:
    sid = rt.executions.start(strategy).session_id
    final = rt.executions.feed(sid, answer)
    feeds = rt.metrics()["execution_feeds"]
    with pytest.raises(InvalidTransition, match=f"has already {ended}; cannot feed it"):
        rt.executions.feed(sid, "late")  # no query id: nothing is pending any more
    with pytest.raises(InvalidTransition, match=f"has already {ended}; cannot feed it"):
        rt.executions.feed(sid, "late", query_id="q-2-0")  # never asked
    with pytest.raises(AlreadyResponded, match="different response"):
        rt.executions.feed(sid, answer + "!", query_id="q-1-0")
    # A retried final answer: the same answer again is a no-op giving the final result.
    assert rt.executions.feed(sid, answer, query_id="q-1-0") == final
    assert rt.executions.feed_many(sid, [("q-1-0", answer, None)]) == final
    with pytest.raises(InvalidTransition, match=f"has already {ended}"):
        rt.executions.feed_many(sid, [("q-1-0", answer, None), ("q-9-0", "x", None)])
    assert rt.metrics()["execution_feeds"] == feeds


def test_returned_records_are_the_callers_own(rt: Runtime) -> None:
    async def keeps(ctx: Any) -> Any:
        ctx.metric("m", [1])
        await ctx.llm("x")
        return {"list": [1]}

    first = rt.executions.start(keeps)
    sid = first.session_id
    first.metrics.custom["m"].append("host")
    rt.executions.status(sid)["metrics"]["custom"]["m"].append("host")
    rt.executions.snapshots()[sid]["metrics"]["custom"]["m"].append("host")
    assert rt.executions.status(sid)["metrics"]["custom"] == {"m": [1]}
    with pytest.raises(TypeError, match="unhashable"):
        hash(first)
    done = rt.executions.feed(sid, "y")
    done.result["list"].append("host")
    done.to_json()["result"]["list"].append("host")
    done.to_json()["stats"]["custom"]["m"].append("host")
    assert done.metrics.custom == {"m": [1]}
    status = rt.executions.status(sid)
    assert status["result"] == {"list": [1]}
    assert status["metrics"]["custom"] == {"m": [1]}
    again = rt.executions.feed(sid, "y", query_id="q-1-0")  # the retained final result, a copy
    assert again.result == {"list": [1]}
    assert again.to_json()["stats"]["custom"] == {"m": [1]}


def test_long_log_messages_are_cut_and_counted(rt: Runtime) -> None:
    async def verbose(ctx: Any) -> Any:
        ctx.log("x" * 5000)
        ctx.log("short")
        return None

    logs = rt.executions.start(verbose).metrics.logs
    assert logs[0] == "x" * 4000 + "[... 1000 more chars truncated]"
    assert logs[1] == "short"
    assert rt.metrics()["execution_logs_truncated"] == 1


def test_execution_config_defaults() -> None:
    config = RuntimeConfig()
    assert config.result_retention_s == 3600
    assert config.execution_ttl_s == 10800
    assert config.gc_interval_s == 60


def test_a_start_timeout_is_an_execution_timeout_naming_the_session(rt: Runtime) -> None:
    gate = threading.Event()

    def gated(ctx: Any) -> Any:
        gate.wait(WAIT_S)
        return 1

    try:
        with pytest.raises(ExecutionTimeout, match="neither paused nor finished") as info:
            rt.executions.start(gated, timeout=0.05)
    finally:
        gate.set()
    assert isinstance(info.value, Timeout)
    rt.settle()
    assert rt.executions.status(info.value.session_id)["result"] == 1


# -- the contexts a strategy gets ------------------------------------------------------------


def test_each_kind_of_strategy_gets_its_own_context(rt: Runtime) -> None:
    seen: list[Any] = []

    async def awaiting(ctx: AsyncExecutionContext) -> str:
        call = ctx.llm("a?")
        seen.append((ctx, call))
        answer: str = await call
        return answer

    def blocking(ctx: ExecutionContext) -> str:
        answer = ctx.llm("b?")
        seen.append((ctx, answer))
        return answer

    first = rt.executions.start(awaiting)
    assert rt.executions.feed(first.session_id, "A").result == "A"
    second = rt.executions.start(blocking, timeout=WAIT_S)
    assert rt.executions.feed(second.session_id, "B", timeout=WAIT_S).result == "B"
    (async_ctx, call), (plain_ctx, answer) = seen
    assert type(async_ctx) is AsyncExecutionContext
    assert isinstance(call, LlmCall)
    assert repr(call) == "<pending ctx.llm of 1 query>"
    assert type(plain_ctx) is ExecutionContext
    assert (type(answer), answer) == (str, "B")
    assert repr(plain_ctx) == f"<ExecutionContext {second.session_id}>"
    for ctx in (async_ctx, plain_ctx):
        assert isinstance(ctx, StrategyContext)


def test_context_arguments_are_checked(rt: Runtime) -> None:
    refused: list[str] = []

    async def careless(ctx: AsyncExecutionContext) -> str:
        for call in (
            lambda: ctx.log(3),  # type: ignore[arg-type]
            lambda: ctx.metric("", 1),
            lambda: ctx.metric("nan", float("nan")),
            lambda: ctx.llm(""),
            lambda: ctx.llm("q", max_tokens=0),
            lambda: ctx.llm_batch("q"),  # type: ignore[arg-type]
            lambda: ctx.llm_batch([LlmRequest("q"), "q"]),  # type: ignore[list-item]
        ):
            with pytest.raises(InvalidInput) as info:
                call()
            refused.append(str(info.value))
        return "ok"

    assert rt.executions.start(careless).result == "ok"
    assert refused == [
        "ctx.log's message must be a str, got int",
        "a metric name must not be empty",
        "metric 'nan' must be a finite number, got nan",
        "LlmRequest.prompt must not be empty",
        "LlmRequest.max_tokens must be an int >= 1, got 0",
        "llm_batch takes a list of LlmRequest, got str",
        "llm_batch item 1 must be an LlmRequest, got str",
    ]


# -- the seam the async facade shares: send without waiting, then the outcome ----------------


def test_a_sent_step_is_read_once_resolved_or_timed_out(rt: Runtime) -> None:
    gate = threading.Event()

    def gated(ctx: ExecutionContext) -> str:
        gate.wait(WAIT_S)
        return ctx.llm("go?")

    pending = rt.executions.send_start(gated, timeout=0.05)
    assert (pending.action, pending.timeout, pending.items) == ("start", 0.05, ())
    assert not pending.future.done  # sent, not waited for
    with pytest.raises(ExecutionTimeout, match=r"within 0\.05 s of this start") as info:
        rt.executions.outcome(pending)  # its time has run out: the same error as start's
    assert info.value.session_id == pending.session_id
    gate.set()
    assert pending.future.wait(WAIT_S)
    first = rt.executions.outcome(pending)  # resolved since: the result after all
    assert (first.status, first.query_ids) == ("needs_response", ["q-1-0"])

    feed = rt.executions.send_feed(
        first.session_id, "yes", usage={"input_tokens": 1, "output_tokens": 2}
    )
    assert feed.items == ((None, "yes", Usage(1, 2)),)  # checked: the usage read
    assert feed.future.wait(WAIT_S)
    done = rt.executions.outcome(feed)
    assert done.result == "yes"
    assert rt.executions.outcome(feed) == done  # read again: the same (a copy)
    # To a finished session a feed is answered from the retained result at once.
    retry = rt.executions.send_feed_many(first.session_id, [("q-1-0", "yes", None)])
    assert retry.future.done
    assert rt.executions.outcome(retry).to_json() == done.to_json()
    changed = rt.executions.send_feed(first.session_id, "no", query_id="q-1-0")
    with pytest.raises(AlreadyResponded):
        rt.executions.outcome(changed)


def test_the_outcome_of_a_step_sent_without_a_timeout_is_asked_for_too_early(
    rt: Runtime,
) -> None:
    gate = threading.Event()

    def gated(ctx: ExecutionContext) -> str:
        gate.wait(WAIT_S)
        return ctx.llm("go?")

    pending = rt.executions.send_start(gated)
    assert pending.timeout is None
    with pytest.raises(InvalidTransition, match=r"not answered yet.*wait for pending\.future"):
        rt.executions.outcome(pending)
    gate.set()
    assert pending.future.wait(WAIT_S)
    assert rt.executions.outcome(pending).status == "needs_response"


def test_a_sent_cancel_waits_cancel_wait_s_then_defers(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executions_api_module, "CANCEL_WAIT_S", 0.01)
    entered, release = threading.Event(), threading.Event()

    async def busy(ctx: AsyncExecutionContext) -> str:
        entered.set()
        release.wait(WAIT_S)  # a long step: holds the session's actor
        return await ctx.llm("x")

    with pytest.raises(ExecutionTimeout) as info:
        rt.executions.start(busy, timeout=0.05)
    sid = info.value.session_id
    assert entered.wait(WAIT_S)
    try:
        pending = rt.executions.send_cancel(sid)
        assert (pending.action, pending.timeout) == ("cancel", 0.01)
        assert rt.executions.status(sid)["cancel_requested"] == "cancelled by the host"
        deferred = rt.executions.outcome(pending)  # not answered: deferred, at once
        assert deferred.status == "cancelled"
        assert rt.metrics()["execution_cancels_deferred"] == 1
    finally:
        release.set()
    assert pending.future.wait(WAIT_S)
    assert rt.executions.outcome(pending).status == "cancelled"
    rt.settle()
    assert rt.executions.status(sid)["state"] == "cancelled"
    with pytest.raises(InvalidTransition, match="already been cancelled; cannot cancel"):
        rt.executions.send_cancel(sid)


# -- what a paused session keeps ------------------------------------------------------------

PAUSED_SESSION_GC_OBJECTS = 21  # a durable paused session's (see docs/performance.md)


def test_a_paused_session_keeps_few_objects_for_the_cyclic_gc(rt: Runtime) -> None:
    # Every full collection walks every tracked object of every live session, so a
    # host with 100,000 paused sessions pays for each one kept (its results dropped).
    rt.executions.register("units.ask_once", ask_once)
    rt.executions.start("units.ask_once")  # warm up: the actors' shared parts are made
    count = 300
    gc.collect()
    before = len(gc.get_objects())
    for _ in range(count):
        assert rt.executions.start("units.ask_once").status == "needs_response"
    gc.collect()
    kept = (len(gc.get_objects()) - before) / count
    assert kept <= PAUSED_SESSION_GC_OBJECTS + 0.5, kept
