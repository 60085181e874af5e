"""A turn's pieces made the fast way are what the slow way made: its lines encoded in
one pass, its usage totals unchecked, its context size before the write, its stamps
formatted once per second."""

from __future__ import annotations

import tempfile
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greenroom import (
    AssistantMessage,
    CompactionConfig,
    FakeClock,
    Runtime,
    RuntimeConfig,
    Usage,
    UserMessage,
)
from greenroom.errors import InvalidInput
from greenroom.transcripts.logformat import IsoStamps, encode, encode_lines, iso_utc
from greenroom.usage import ZERO_USAGE, unchecked_usage

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
_entries = st.lists(st.dictionaries(st.text(), _json, max_size=5), max_size=12)


@given(_entries)
def test_one_pass_is_the_lines_one_by_one(entries: list[dict[str, Any]]) -> None:
    assert encode_lines(entries) == b"".join(encode(entry) for entry in entries)


@pytest.mark.parametrize(
    "bad",
    [{"x": float("nan")}, {"x": float("inf")}, {"x": {1, 2}}, {"x": "\ud800"}, {"x": object()}],
    ids=["nan", "inf", "set", "lone surrogate", "object"],
)
def test_what_one_line_refuses_the_turn_refuses(bad: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput, match="could not be written as JSON"):
        encode(bad)
    with pytest.raises(InvalidInput, match="could not be written as JSON"):
        encode_lines([{"ok": 1}, bad])


@given(st.lists(st.integers(min_value=0, max_value=10**18), min_size=4, max_size=4))
def test_unchecked_totals_are_the_checked_usage(counts: list[int]) -> None:
    made = unchecked_usage(*counts)
    assert made == Usage(*counts)
    assert hash(made) == hash(Usage(*counts))
    assert made + made == Usage(*(2 * count for count in counts))
    assert (made + Usage()).total_tokens == sum(counts)


_usage = st.none() | st.builds(
    Usage,
    st.integers(0, 5_000),
    st.integers(0, 500),
    st.integers(0, 5_000),
    st.integers(0, 100),
)
_message = st.one_of(
    st.builds(UserMessage, st.text(max_size=40)),
    st.builds(
        lambda text, usage: AssistantMessage(text, usage=usage or ZERO_USAGE),
        st.text(max_size=40),
        _usage,
    ),
)


@settings(max_examples=40, deadline=None)
@given(turns=st.lists(st.lists(_message, min_size=1, max_size=4), min_size=1, max_size=8))
def test_a_turn_s_context_size_is_the_transcript_s_after_it(turns: list[list[Any]]) -> None:
    """`TurnResult.context_tokens`, made before the write, is what `context_tokens()`
    says once the turn is in, compaction or not."""
    small = CompactionConfig(
        context_window_tokens=400,
        threshold_tokens=60,
        keep_recent_tokens=20,
        summarizer=lambda messages: f"{len(messages)} messages",
    )
    with tempfile.TemporaryDirectory() as folder:
        config = RuntimeConfig(transcript_dir=folder)
        with Runtime.open(":memory:", clock=FakeClock(), config=config) as rt:
            for compaction in (CompactionConfig(enabled=False), small):
                t = rt.transcripts.create(compaction=compaction)
                for turn in turns:
                    result = t.on_turn_end(turn)
                    if result.compaction is None:
                        assert result.context_tokens == t.context_tokens()
                t.close()


@settings(max_examples=200, deadline=None)
@given(
    st.integers(-(10**12), 10**13),
    st.lists(st.integers(-2_500, 2_500) | st.integers(-(10**10), 10**10), max_size=30),
)
def test_stamps_formatted_once_a_second_equal_iso_utc(start: int, steps: list[int]) -> None:
    stamp = IsoStamps()
    ms = start
    for step in [0, *steps]:  # mostly small moves, either way, across second boundaries
        ms += step
        assert stamp(ms) == iso_utc(ms)
