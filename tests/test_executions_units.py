"""Execution sessions, the parts on their own: records and their JSON, the metrics
accounting, the registry's retention, the bounded strategy pool, cheap paused sessions."""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from greenroom import FakeClock, FeedResult, LlmRequest, Runtime
from greenroom.errors import (
    AlreadyResponded,
    ExecutionCancelled,
    InvalidInput,
    InvalidTransition,
    Timeout,
)
from greenroom.executions.records import (
    MAX_LOG_CHARS,
    ExecutionStats,
    LlmQuery,
    SessionMetrics,
    TokenCount,
    answer_digest,
    describe_error,
    json_copy,
    json_value,
)
from greenroom.executions.registry import ExecutionRegistry, LiveSnapshot, RetainedResult
from greenroom.metrics import Metrics
from greenroom.usage import Usage

WAIT_S = 10.0


# -- LlmRequest -----------------------------------------------------------------------------


def test_llm_request_defaults_and_validation() -> None:
    request = LlmRequest("hi")
    assert (request.system, request.max_tokens, request.grounded, request.underspecified) == (
        None,
        1024,
        False,
        False,
    )
    for kwargs, match in [
        ({"prompt": ""}, "LlmRequest.prompt must not be empty"),
        ({"prompt": 3}, "LlmRequest.prompt must be a str"),
        ({"prompt": "p", "system": 1}, "LlmRequest.system must be a str"),
        ({"prompt": "p", "max_tokens": 0}, "LlmRequest.max_tokens must be an int >= 1"),
        ({"prompt": "p", "max_tokens": True}, "LlmRequest.max_tokens must be an int >= 1"),
        ({"prompt": "p", "grounded": 1}, "LlmRequest.grounded must be True or False"),
        ({"prompt": "p", "underspecified": "yes"}, "underspecified must be True or False"),
    ]:
        with pytest.raises(InvalidInput, match=match):
            LlmRequest(**kwargs)
    with pytest.raises(TypeError):
        LlmRequest("p", None)  # type: ignore[misc]  # the options are keyword-only


# -- FeedResult.to_json ---------------------------------------------------------------------------


def _query(index: int, **flags: Any) -> LlmQuery:
    return LlmQuery(f"q-1-{index}", f"prompt-{index}", None, 100, **flags)


@given(grounded=st.booleans(), underspecified=st.booleans(), system=st.none() | st.text())
def test_single_query_json_has_flags_only_when_true(
    grounded: bool, underspecified: bool, system: str | None
) -> None:
    query = LlmQuery("q-1-0", "p", system, 5, grounded, underspecified)
    out = FeedResult("needs_response", "s-x", (query,)).to_json()
    expected: dict[str, Any] = {
        "status": "needs_response",
        "session_id": "s-x",
        "query_id": "q-1-0",
        "prompt": "p",
        "system": system,
        "max_tokens": 5,
    }
    if grounded:
        expected["grounded"] = True
    if underspecified:
        expected["underspecified"] = True
    assert out == expected


@given(flags=st.lists(st.tuples(st.booleans(), st.booleans()), min_size=2, max_size=6))
def test_several_queries_go_under_queries(flags: list[tuple[bool, bool]]) -> None:
    queries = tuple(_query(i, grounded=g, underspecified=u) for i, (g, u) in enumerate(flags))
    out = FeedResult("needs_response", "s-m", queries).to_json()
    assert set(out) == {"status", "session_id", "queries"}
    assert [q["id"] for q in out["queries"]] == [f"q-1-{i}" for i in range(len(flags))]
    for entry, (grounded, underspecified) in zip(out["queries"], flags, strict=True):
        assert ("grounded" in entry) is grounded
        assert ("underspecified" in entry) is underspecified
        assert entry["system"] is None
        assert entry["max_tokens"] == 100


def test_terminal_and_accepted_json() -> None:
    stats = ExecutionStats(elapsed_ms=3, llm_calls=1)
    assert FeedResult("accepted", "s-a", remaining=3).to_json() == {
        "status": "accepted",
        "remaining": 3,
    }
    done = FeedResult("completed", "s-d", result={"answer": 42}, metrics=stats).to_json()
    assert done == {"status": "completed", "result": {"answer": 42}, "stats": stats.to_json()}
    assert FeedResult("error", "s-e", error="lua error: bad").to_json() == {
        "status": "error",
        "error": "lua error: bad",
    }
    cancelled = FeedResult("cancelled", "s-c", metrics=stats).to_json()
    assert cancelled == {"status": "cancelled", "stats": stats.to_json()}
    assert FeedResult("completed", "s-d").finished
    assert not FeedResult("accepted", "s-d").finished


# -- metrics ------------------------------------------------------------------------------------


@given(
    prompts=st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=8),
    data=st.data(),
)
def test_token_accounting(prompts: list[str], data: st.DataObject) -> None:
    metrics = SessionMetrics(0.0)
    queries = [LlmQuery(f"q-1-{i}", p, None, 10) for i, p in enumerate(prompts)]
    metrics.asked(queries)
    prompt_total = 0
    response_total = 0
    all_provided = True
    for query in queries:
        response = data.draw(st.text(max_size=40))
        usage = data.draw(
            st.none()
            | st.builds(
                Usage,
                input_tokens=st.integers(0, 99),
                output_tokens=st.integers(0, 99),
                cache_read_tokens=st.integers(0, 99),
                cache_write_tokens=st.integers(0, 99),
            )
        )
        metrics.answered(query, response, usage)
        if usage is None:
            all_provided = False
            prompt_total += len(query.prompt) // 4
            response_total += len(response) // 4
        else:
            prompt_total += usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
            response_total += usage.output_tokens
    stats = metrics.snapshot(1.5)
    source = "provided" if all_provided else "estimated"
    assert stats.prompt_tokens == TokenCount(prompt_total, source)
    assert stats.response_tokens == TokenCount(response_total, source)
    assert stats.total_tokens == TokenCount(prompt_total + response_total, source)
    assert stats.prompt_chars == sum(map(len, prompts))
    assert (stats.elapsed_ms, stats.llm_calls, stats.pauses) == (1500, len(prompts), 1)


def test_sessions_with_the_same_small_counts_share_their_token_count_objects() -> None:
    def stats(prompt: str, answer: str) -> ExecutionStats:
        metrics = SessionMetrics(0.0)
        query = LlmQuery("q-1-0", prompt, None, 1024)
        metrics.asked([query])
        metrics.answered(query, answer, None)
        return metrics.snapshot(1.0)

    one, two = stats("p" * 400, "a" * 40), stats("q" * 400, "b" * 40)
    assert one.prompt_tokens is two.prompt_tokens  # equal small counts: one object
    assert one.total_tokens is two.total_tokens
    big = stats("p" * 40_000, "a"), stats("p" * 40_000, "a")
    assert big[0].prompt_tokens == big[1].prompt_tokens == TokenCount(10_000, "estimated")
    assert big[0].prompt_tokens is not big[1].prompt_tokens  # large ones are not kept


def test_no_queries_means_estimated_zero() -> None:
    stats = SessionMetrics(0.0).snapshot(0.0)
    assert stats.total_tokens == TokenCount(0, "estimated")
    assert stats.to_json()["logs"] == []


def test_json_helpers() -> None:
    assert json_value((1, {"a": (2,)}), "x") == [1, {"a": [2]}]
    with pytest.raises(InvalidInput, match="x is not JSON-serialisable"):
        json_value(float("inf"), "x")
    assert describe_error(ValueError()) == "ValueError"
    assert describe_error(ValueError("v")) == "ValueError: v"


# -- the registry's retention ----------------------------------------------------------------------


def test_registry_expires_results_at_the_retention_limit() -> None:
    metrics = Metrics()
    registry = ExecutionRegistry(metrics, retention_s=100)
    final = FeedResult("completed", "s-1", result=1)
    registry.finish("s-1", RetainedResult(final, {"state": "completed"}, finished_at=10.0))
    assert registry.retained("s-1", 109.9) is not None
    assert registry.expire(109.9) == []
    assert [sid for sid, _kept in registry.expire(110.0)] == ["s-1"]
    assert registry.retained("s-1", 110.0) is None
    assert metrics.get("execution_results_expired") == 1
    registry.finish("s-2", RetainedResult(final, {}, finished_at=0.0))
    assert registry.retained("s-2", 500.0) is None  # found expired on lookup: counted too
    assert metrics.get("execution_results_expired") == 2


# -- the strategy pool ------------------------------------------------------------------------


def test_plain_strategies_share_a_bounded_pool(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock
) -> None:
    rt = open_rt(strategy_threads=1)
    ran: list[str] = []

    def holds_the_thread(ctx: Any) -> Any:
        return ctx.llm("x")  # the only thread waits here for the host

    def queued(ctx: Any) -> Any:
        ran.append("queued")
        return 1

    holder = rt.executions.start(holds_the_thread, timeout=WAIT_S).session_id
    with pytest.raises(Timeout) as info:
        rt.executions.start(queued, timeout=0.05)  # waits for the only thread
    sid = info.value.session_id  # type: ignore[attr-defined]
    assert rt.executions.status(sid)["state"] == "running"
    # A job queued behind a thread that waits for the host is not work in progress.
    fake_clock.advance(1)
    assert rt.executions.cancel(sid).status == "cancelled"
    assert rt.executions.feed(holder, "y", timeout=WAIT_S).result == "y"
    assert rt.metrics()["strategy_threads"] == 1
    rt.close()  # runs what the pool still had queued, then joins its thread
    assert ran == []  # cancelled before it got a thread: it never ran


def test_cancelled_plain_strategy_cannot_log_any_more(rt: Runtime) -> None:
    gate = threading.Event()
    seen: list[BaseException] = []

    def logs_late(ctx: Any) -> Any:
        gate.wait(WAIT_S)
        try:
            ctx.log("after cancel")
        except ExecutionCancelled as error:
            seen.append(error)

    with pytest.raises(Timeout) as info:
        rt.executions.start(logs_late, timeout=0.05)
    sid = info.value.session_id  # type: ignore[attr-defined]
    rt.executions.cancel(sid)
    gate.set()
    rt.settle()
    assert len(seen) == 1
    assert "cancelled by the host" in str(seen[0])
    assert rt.executions.status(sid)["metrics"]["logs"] == []


def test_paused_async_sessions_take_no_threads(rt: Runtime) -> None:
    async def waits(ctx: Any) -> Any:
        return await ctx.llm("?")

    rt.executions.start(waits)  # dispatcher threads up
    before = threading.active_count()
    sids = [rt.executions.start(waits).session_id for _ in range(500)]
    # (not ==: a thread an earlier test left, such as an idle anyio worker, may end)
    assert threading.active_count() <= before
    assert rt.metrics()["executions_active"] == 501
    assert len(rt.executions.snapshots()) == 501
    assert rt.executions.feed(sids[-1], "!").result == "!"


def test_a_second_concurrent_llm_call_of_a_plain_strategy_is_refused(rt: Runtime) -> None:
    errors: list[BaseException] = []
    go = threading.Event()
    refused = threading.Event()

    def two_threads(ctx: Any) -> Any:
        def second() -> None:
            go.wait(WAIT_S)  # set by the test once the first call is pending
            try:
                ctx.llm("from a second thread")
            except InvalidTransition as error:
                errors.append(error)
            finally:
                refused.set()

        answers: list[str] = []
        threads = [
            threading.Thread(target=lambda: answers.append(ctx.llm("first"))),
            threading.Thread(target=second),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT_S)
        return answers

    first = rt.executions.start(two_threads, timeout=WAIT_S)
    assert first.query_ids == ["q-1-0"]
    go.set()
    assert refused.wait(WAIT_S)  # the host answers only after the second call was refused
    assert rt.executions.feed(first.session_id, "one", timeout=WAIT_S).result == ["one"]
    assert len(errors) == 1
    assert "another ctx.llm call" in str(errors[0])


# -- review fixes: odd values, copies, retained answers, snapshots ------------------------------


class _BadDict(dict):  # type: ignore[type-arg]
    def items(self) -> Any:
        raise KeyError("boom")


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise ValueError("no")


def test_helpers_survive_odd_values() -> None:
    with pytest.raises(InvalidInput, match="serialising it raised KeyError: 'boom'"):
        json_value(_BadDict(a=1), "x")
    with pytest.raises(InvalidInput, match="not JSON-serialisable"):
        json_value({"a": [_BadDict(a=1)]}, "x")
    assert describe_error(_Unprintable()) == "_Unprintable: <unprintable _Unprintable object>"


def test_json_copy_is_deep() -> None:
    value = {"a": [1, {"b": [2]}], "c": "s"}
    copied = json_copy(value)
    assert copied == value
    copied["a"][1]["b"].append(3)
    assert value == {"a": [1, {"b": [2]}], "c": "s"}


def test_records_with_json_values_are_unhashable_and_hand_out_copies() -> None:
    stats = ExecutionStats(custom={"m": [1]})
    result = FeedResult("completed", "s-1", result={"r": [1]}, metrics=stats)
    for record in (stats, result):
        with pytest.raises(TypeError, match="unhashable"):
            hash(record)
    assert result == FeedResult("completed", "s-1", result={"r": [1]}, metrics=stats)
    out = result.to_json()
    out["result"]["r"].append(2)
    out["stats"]["custom"]["m"].append(2)
    mine = result.detached()
    mine.result["r"].append(2)
    mine.metrics.custom["m"].append(2)
    assert (result.result, stats.custom) == ({"r": [1]}, {"m": [1]})
    plain = FeedResult("accepted", "s-1", remaining=1, metrics=ExecutionStats())
    assert plain.detached() is plain  # nothing mutable to copy


def test_long_log_entries_are_cut() -> None:
    metrics = SessionMetrics(0.0)
    metrics.log("y" * (MAX_LOG_CHARS + 7))
    metrics.log("z" * MAX_LOG_CHARS)
    first, second = metrics.snapshot(0.0).logs
    assert first == "y" * MAX_LOG_CHARS + "[... 7 more chars truncated]"
    assert second == "z" * MAX_LOG_CHARS


def test_retained_result_takes_a_retried_answer_only() -> None:
    final = FeedResult("completed", "s-1", result=1)
    kept = RetainedResult(final, {}, 0.0, {"q-1-0": answer_digest("a")})
    assert kept.refeed([("q-1-0", "a", None)]) is final
    with pytest.raises(AlreadyResponded, match=r"'q-1-0'.*different response"):
        kept.refeed([("q-1-0", "b", None)])
    with pytest.raises(InvalidTransition, match="has already completed; cannot feed it"):
        kept.refeed([(None, "a", None)])
    with pytest.raises(InvalidTransition, match="'q-2-0' was never answered"):
        kept.refeed([("q-1-0", "a", None), ("q-2-0", "a", None)])


def test_live_snapshot_status_computes_elapsed_when_read() -> None:
    metrics = SessionMetrics(10.0)
    metrics.custom["m"] = [1]
    snapshot = LiveSnapshot("paused", 2, ("q-2-0",), metrics.snapshot(11.0), 10.0)
    status = snapshot.status("s-1", 12.5, None)
    assert status["metrics"]["elapsed_ms"] == 2500
    assert (status["state"], status["round"], status["pending_queries"]) == (
        "paused",
        2,
        ["q-2-0"],
    )
    assert "cancel_requested" not in status
    status["metrics"]["custom"]["m"].append(2)
    assert snapshot.status("s-1", 12.5, "why")["cancel_requested"] == "why"
    assert snapshot.stats.custom == {"m": [1]}


@pytest.mark.parametrize("estimated", [0, 1])
def test_a_snapshot_of_counts_reads_as_the_stats_it_stands_for(estimated: int) -> None:
    # A running session publishes only its counts; read, they are the same stats.
    metrics = SessionMetrics(10.0)
    metrics.llm_calls, metrics.pauses, metrics.rounds, metrics.responses = 3, 2, 1, 2
    metrics.prompt_chars, metrics.response_chars = 40, 12
    metrics.prompt_tokens, metrics.response_tokens = 10, 3
    metrics.prompt_estimated = metrics.response_estimated = estimated
    metrics.custom["m"] = [1]
    metrics.log("hello")
    from_counts = LiveSnapshot("running", 2, (), metrics.counts(), 10.0)
    from_stats = LiveSnapshot("running", 2, (), metrics.snapshot(11.0), 10.0)
    assert from_counts.stats_at(12.5) == from_stats.stats_at(12.5)
    stats = from_counts.stats_at(12.5)
    assert (stats.elapsed_ms, stats.rounds, stats.logs) == (2500, 1, ("hello",))
    assert stats.total_tokens.value == 13
    assert {stats.prompt_tokens.source, stats.total_tokens.source} == {
        "estimated" if estimated else "provided"
    }
    stats.custom["m"].append(2)  # the reader's own copy
    metrics.custom["m"] = [3]  # (ctx.metric sets a copy) the session's later values
    assert from_counts.stats_at(12.5).custom == {"m": [1]}


def test_counts_without_custom_entries_are_not_walked_by_the_gc() -> None:
    # A paused session's snapshot keeps its counts: with only atomic values in them,
    # Python's cyclic GC stops tracking the tuple (one object fewer per session).
    metrics = SessionMetrics(10.0)
    metrics.llm_calls = metrics.pauses = 1
    metrics.log("hello")
    counts = metrics.counts()
    gc.collect()
    assert not gc.is_tracked(counts)
    metrics.custom["m"] = 1
    assert metrics.counts()[10] == {"m": 1}


def test_a_snapshot_without_custom_entries_gives_each_reader_its_own_dict() -> None:
    snapshot = LiveSnapshot("paused", 1, ("q-1-0",), SessionMetrics(10.0).counts(), 10.0)
    first = snapshot.stats_at(11.0)
    assert first.custom == {}
    first.custom["x"] = 1  # the reader's own
    assert snapshot.stats_at(11.0).custom == {}
    assert snapshot.status("s-1", 11.0, None)["metrics"]["custom"] == {}
