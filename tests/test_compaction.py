"""Compaction units: the cut point (with hypothesis), the size estimate, the default summary."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greenroom import (
    AssistantMessage,
    CompactionConfig,
    CompactionSummary,
    FakeClock,
    Runtime,
    ToolCall,
    ToolResult,
    Usage,
    UserMessage,
)
from greenroom.pricing import BUILTIN_PRICING, ModelPricing, lookup_pricing
from greenroom.transcripts.compaction import choose_cut, context_tokens, default_summarizer
from greenroom.transcripts.logformat import Node, estimate_tokens, iso_utc

# -- random turn shapes ------------------------------------------------------------------------


@st.composite
def turn_shapes(draw: st.DrawFn) -> list[Any]:
    """Messages of several turns: a user message, then steps of an assistant message
    with 0-3 tool calls followed by their results (in any order, some possibly
    missing), maybe a final answer. Maybe a leading summary."""
    ids = itertools.count()
    text = st.integers(min_value=0, max_value=240).map(lambda n: "x" * n)
    messages: list[Any] = []
    if draw(st.booleans()):
        messages.append(CompactionSummary(draw(text), "1", 0, 0))
    for _turn in range(draw(st.integers(min_value=1, max_value=5))):
        if draw(st.integers(0, 9)):  # now and then a turn starts without a user message
            messages.append(UserMessage(draw(text)))
        for _step in range(draw(st.integers(min_value=0, max_value=3))):
            calls = [
                ToolCall(f"c{next(ids)}", "tool", {"a": draw(text)})
                for _ in range(draw(st.integers(min_value=0, max_value=3)))
            ]
            messages.append(AssistantMessage(draw(text), tool_calls=calls))
            answered = draw(st.permutations(calls))
            if answered and draw(st.integers(0, 9)) == 0:
                answered = answered[:-1]  # a call never answered
            messages.extend(ToolResult(call.id, draw(text)) for call in answered)
        if draw(st.booleans()):
            messages.append(AssistantMessage(draw(text)))
    return messages


def pairs(messages: list[Any]) -> list[tuple[int, int]]:
    """(call index, result index) of every answered tool call: a result goes with the
    newest call before it that has its id (ids may repeat across turns)."""
    where: dict[str, int] = {}
    found = []
    for index, message in enumerate(messages):
        if isinstance(message, AssistantMessage):
            where.update((call.id, index) for call in message.tool_calls)
        elif isinstance(message, ToolResult) and message.tool_call_id in where:
            found.append((where[message.tool_call_id], index))
    return found


def splits(messages: list[Any], cut: int) -> bool:
    return any(call < cut <= result for call, result in pairs(messages))


@settings(max_examples=300, deadline=None)
@given(messages=turn_shapes(), keep=st.integers(min_value=1, max_value=600))
def test_cut_never_splits_a_tool_call_from_its_result(messages: list[Any], keep: int) -> None:
    tokens = [estimate_tokens(m) for m in messages]
    cut = choose_cut(messages, tokens, keep)
    lowest = 2 if messages and isinstance(messages[0], CompactionSummary) else 1
    allowed = [c for c in range(lowest, len(messages)) if not splits(messages, c)]
    if cut is None:
        assert allowed == []  # None only when every possible cut would split a pair
        return
    assert cut in allowed
    kept = sum(tokens[cut:])
    within = [c for c in allowed if sum(tokens[c:]) <= keep]
    if within:
        assert kept <= keep  # the budget holds whenever some allowed cut meets it
        boundaries = [c for c in within if isinstance(messages[c], UserMessage)]
        if boundaries:
            assert cut == boundaries[0]  # a turn boundary, keeping the most it can
        else:
            assert cut == within[0]
    else:
        assert cut == allowed[-1]  # over budget: as little over as the pairs allow


def test_cut_prefers_the_turn_boundary_within_the_budget() -> None:
    messages = [
        UserMessage("a" * 400),  # 100 tokens each
        AssistantMessage("b" * 400),
        UserMessage("c" * 400),
        AssistantMessage("d" * 400),
        AssistantMessage("e" * 400),
    ]
    tokens = [estimate_tokens(m) for m in messages]
    assert choose_cut(messages, tokens, 350) == 2  # the whole last turn fits
    assert choose_cut(messages, tokens, 250) == 3  # it does not: inside the turn
    assert choose_cut(messages, tokens, 50) == 4  # even one message is over: keep one


def test_cut_keeps_a_tool_call_with_its_result_even_over_budget() -> None:
    call = ToolCall("c1", "read", {})
    messages = [
        UserMessage("q" * 40),
        AssistantMessage("", tool_calls=[call]),
        ToolResult("c1", "r" * 4000),  # 1,000 tokens
    ]
    tokens = [estimate_tokens(m) for m in messages]
    assert choose_cut(messages, tokens, 100) == 1  # not 2, which would orphan the result


def test_nothing_to_cut() -> None:
    assert choose_cut([], [], 10) is None
    one = [UserMessage("x")]
    assert choose_cut(one, [0], 10) is None
    summary_and_one = [CompactionSummary("s", "1", 0, 0), UserMessage("x")]
    assert choose_cut(summary_and_one, [0, 0], 10) is None


# -- through a live transcript -----------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_rt(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder: Path = tmp_path_factory.mktemp("compaction")
    with Runtime.open(folder / "db", clock=FakeClock()) as rt:
        yield rt


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(turns=st.lists(turn_shapes(), min_size=1, max_size=4))
def test_live_compactions_never_orphan_a_tool_result(shared_rt: Runtime, turns: list[Any]) -> None:
    config = CompactionConfig(
        context_window_tokens=1_000, threshold_tokens=120, keep_recent_tokens=60
    )
    t = shared_rt.transcripts.create(compaction=config, durability="none")
    written: list[Any] = []  # every message of the transcript, in order (one branch)
    try:
        for turn in turns:
            turn = [m for m in turn if not isinstance(m, CompactionSummary)]
            if not turn:
                continue
            result = t.on_turn_end(turn)
            written += turn
            context = t.context()
            if result.compaction is not None:
                assert list(result.compaction.context) == context
            # The context is [summary?, ...the newest written messages]: where it starts.
            kept = context[1:] if isinstance(context[0], CompactionSummary) else context
            start = len(written) - len(kept)
            assert written[start:] == kept
            # Over the whole context, in both directions: a result kept has its call
            # kept (before it), and a call kept has its result kept when there is one.
            for call_index, result_index in pairs(written):
                assert (call_index >= start) == (result_index >= start), (
                    call_index,
                    result_index,
                    start,
                )
    finally:
        t.close()


# -- the size estimate ----------------------------------------------------------------------------


def test_estimate_counts_text_bytes_and_tool_arguments() -> None:
    assert estimate_tokens(UserMessage("abcdefgh")) == 2
    assert estimate_tokens(UserMessage("é" * 4)) == 2  # bytes, not characters
    call = ToolCall("c", "name", {"k": "v" * 30})  # '{"k":"vvv...v"}' is 38 bytes
    assert call.size_bytes == 4 + 38
    assert estimate_tokens(AssistantMessage("abcd", tool_calls=[call])) == (4 + 4 + 38) // 4
    assert estimate_tokens(ToolResult("c", "x" * 41)) == 10


def test_context_tokens_prefers_the_newest_usage_after_the_last_compaction() -> None:
    messages = [
        CompactionSummary("s" * 40, "2", 0, 0),
        AssistantMessage("old", usage=Usage(9_000)),  # kept from before the compaction
        UserMessage("u" * 40),
        AssistantMessage("a", usage=Usage(100, 20, 30, 40)),
        ToolResult("c", "r" * 400),
    ]
    items = [Node(str(n), None, m, estimate_tokens(m)) for n, m in enumerate(messages)]
    total = sum(item.tokens for item in items)
    assert context_tokens(items, 2, total) == 190 + 100
    # Only usage from before the compaction: the byte estimate.
    head = sum(item.tokens for item in items[:3])
    assert context_tokens(items[:3], 2, head) == head


# -- the default summary -------------------------------------------------------------------------


def test_default_summary_is_deterministic_and_bounded() -> None:
    messages: list[Any] = [CompactionSummary("earlier things " * 50, "1", 0, 0)]
    for n in range(200):
        messages += [
            UserMessage(f"please do task {n} " + "x" * 500),
            AssistantMessage("", tool_calls=[ToolCall(f"c{n}", "bash", {"cmd": "ls"})]),
            ToolResult(f"c{n}", "y" * 500, is_error=n % 10 == 0),
            AssistantMessage(f"done {n}"),
        ]
    summary = default_summarizer(messages)
    assert summary == default_summarizer(list(messages))
    assert len(summary) <= 8_000
    assert "800 earlier messages: 200 from the user, 400 from the assistant" in summary
    assert "200 tool results (20 errors)" in summary
    assert "bash x200" in summary
    assert "please do task 199" in summary
    small = default_summarizer([UserMessage("hi"), AssistantMessage("hello")])
    assert len(small) <= 400


# -- small helpers ------------------------------------------------------------------------------


def test_iso_timestamps() -> None:
    assert iso_utc(0) == "1970-01-01T00:00:00.000Z"
    assert iso_utc(1_767_225_600_007) == "2026-01-01T00:00:00.007Z"


def test_pricing_lookup() -> None:
    assert (
        lookup_pricing("anthropic:claude-sonnet-4-5")
        == BUILTIN_PRICING["anthropic:claude-sonnet-4-5"]
    )
    assert lookup_pricing("gpt-4o") == BUILTIN_PRICING["openai:gpt-4o"]  # provider left out
    assert lookup_pricing("acme:nothing") is None
    assert lookup_pricing("") is None
    mine = ModelPricing(1, 1)
    assert lookup_pricing("openai:gpt-4o", {"openai:gpt-4o": mine}) is mine
