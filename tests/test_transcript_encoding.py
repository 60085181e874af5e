"""A turn's lines encoded in one pass are the lines encoded one by one; a turn's usage
totals, made unchecked, are the checked `Usage`."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from greenroom import Usage
from greenroom.errors import InvalidInput
from greenroom.transcripts.logformat import encode, encode_lines
from greenroom.usage import unchecked_usage

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
