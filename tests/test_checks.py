"""The attrs validators of `greenroom.checks`: their inline tests for good values accept
exactly what the checks accept, and a bad value gets the check's error, named."""

from __future__ import annotations

import enum
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from greenroom.checks import check_bool, check_int, check_text, validator
from greenroom.errors import InvalidInput


class Level(enum.IntEnum):
    LOW = 1


@attrs.frozen
class Record:
    flag: bool = attrs.field(default=False, validator=validator(check_bool))
    text: str = attrs.field(default="a", validator=validator(check_text))
    word: str = attrs.field(default="a", validator=validator(check_text, nonempty=True))
    maybe: str | None = attrs.field(default=None, validator=validator(check_text, optional=True))
    count: int = attrs.field(default=1, validator=validator(check_int, minimum=1, maximum=100))
    floor: int = attrs.field(default=0, validator=validator(check_int, minimum=0))
    ceiling: int = attrs.field(default=0, validator=validator(check_int, maximum=9))
    any_int: int = attrs.field(default=0, validator=validator(check_int))


CHECKS: dict[str, tuple[Any, dict[str, Any]]] = {
    "flag": (check_bool, {}),
    "text": (check_text, {}),
    "word": (check_text, {"nonempty": True}),
    "maybe": (check_text, {}),
    "count": (check_int, {"minimum": 1, "maximum": 100}),
    "floor": (check_int, {"minimum": 0}),
    "ceiling": (check_int, {"maximum": 9}),
    "any_int": (check_int, {}),
}

VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=200),
    st.sampled_from([Level.LOW, 1.0, 0.0, b"a", "", "\ud800", "é", "a", 2**70]),
    st.text(max_size=5),
    st.floats(allow_nan=True),
)


def _accepted(field: str, value: Any) -> bool:
    if field == "maybe" and value is None:
        return True
    check, options = CHECKS[field]
    try:
        check(value, "x", **options)
    except InvalidInput:
        return False
    return True


@given(st.sampled_from(sorted(CHECKS)), VALUES)
def test_a_validator_accepts_exactly_what_its_check_accepts(field: str, value: Any) -> None:
    if _accepted(field, value):
        assert getattr(Record(**{field: value}), field) is value
    else:
        with pytest.raises(InvalidInput, match=rf"^Record\.{field} (must|is not valid)"):
            Record(**{field: value})


def test_values_off_the_inline_path_still_pass_their_check() -> None:
    # An IntEnum is an int the inline test leaves to check_int; "é" is not ASCII.
    record = Record(count=Level.LOW, text="é", word="é", maybe="é")
    assert (record.count, record.text) == (Level.LOW, "é")


def test_a_lone_surrogate_is_refused_with_its_position() -> None:
    with pytest.raises(InvalidInput, match=r"Record\.text is not valid Unicode .* position 1"):
        Record(text="a\ud800")
