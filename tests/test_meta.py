"""The metadata merge rules of `greenroom.meta`, against a simple reference model."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greenroom.errors import GreenroomError, InvalidInput
from greenroom.meta import apply_update, dumps_meta, merge_meta, validate_update

# -- the reference model ------------------------------------------------------------------


def reference_merge(current: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """The documented rules, key by key, written independently of the implementation.

    A key named in the update (not a wildcard) ends up with the update's value, or absent
    for None. Any other key of `current` survives unless a `"p:*": True` wildcard in the
    update covers it (it is `p` or starts with `p:`).
    """
    prefixes = [key[:-2] for key, value in update.items() if key.endswith(":*") and value is True]

    def covered(key: str) -> bool:
        return any(key == prefix or key.startswith(prefix + ":") for prefix in prefixes)

    result: dict[str, Any] = {}
    for key in [*current, *update]:
        if key in result:
            continue
        if key in update and not key.endswith(":*"):
            if update[key] is not None:
                result[key] = update[key]
        elif key in current and not covered(key):
            result[key] = current[key]
    return result


# -- strategies ---------------------------------------------------------------------------

PLAIN_KEYS = ["a", "a:b", "a:b:c", "ab", "ab:c", "b", "b:a", "a:", "a::x", ":", ":a", "A:b"]
WILDCARD_KEYS = ["a:*", "a:b:*", "ab:*", "b:*", ":*", "a::*"]

json_scalars = (
    st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
current_metas = st.dictionaries(
    st.sampled_from(PLAIN_KEYS + WILDCARD_KEYS) | st.text(min_size=1, max_size=5),
    json_values | st.none(),
    max_size=10,
)
updates = st.builds(
    lambda plain, wild: {**plain, **wild},
    st.dictionaries(st.sampled_from(PLAIN_KEYS), json_values | st.none(), max_size=8),
    st.dictionaries(st.sampled_from(WILDCARD_KEYS), st.booleans(), max_size=4),
)


# -- properties ---------------------------------------------------------------------------


@given(current=current_metas, update=updates)
def test_merge_meta_matches_the_reference_model(
    current: dict[str, Any], update: dict[str, Any]
) -> None:
    assert merge_meta(current, update) == reference_merge(current, update)


@given(current=current_metas, update=updates)
def test_merge_meta_never_mutates_its_inputs(
    current: dict[str, Any], update: dict[str, Any]
) -> None:
    current_before = copy.deepcopy(current)
    update_before = copy.deepcopy(update)
    merged = merge_meta(current, update)
    assert current == current_before
    assert update == update_before
    assert merged is not current
    assert merged is not update
    merged["__new__"] = 1
    merged.pop("a", None)
    assert current == current_before
    assert update == update_before


@given(current=current_metas, update=updates)
def test_merge_meta_is_idempotent(current: dict[str, Any], update: dict[str, Any]) -> None:
    once = merge_meta(current, update)
    assert merge_meta(once, update) == once


@given(current=current_metas, update=updates, data=st.data())
def test_key_order_of_the_update_does_not_matter(
    current: dict[str, Any], update: dict[str, Any], data: st.DataObject
) -> None:
    shuffled = dict(data.draw(st.permutations(list(update.items()))))
    assert merge_meta(current, shuffled) == merge_meta(current, update)


@given(current=current_metas, update=updates)
def test_what_the_update_says_holds_in_the_result(
    current: dict[str, Any], update: dict[str, Any]
) -> None:
    merged = merge_meta(current, update)
    for key, value in update.items():
        if key.endswith(":*"):
            assert key not in merged or (key in current and value is False)
        elif value is None:
            assert key not in merged
        else:
            assert merged[key] == value


@given(current=current_metas, update=updates)
def test_validate_then_apply_equals_merge(current: dict[str, Any], update: dict[str, Any]) -> None:
    checked = validate_update(update)
    assert checked == update
    assert checked is not update
    assert type(checked) is dict
    assert apply_update(current, checked) == merge_meta(current, update)


@given(meta=st.dictionaries(st.text(min_size=1, max_size=6), json_values, max_size=6))
def test_dumps_meta_round_trips_compactly(meta: dict[str, Any]) -> None:
    text = dumps_meta(meta)
    assert json.loads(text) == meta
    assert text == json.dumps(meta, ensure_ascii=False, separators=(",", ":"))


# -- explicit examples --------------------------------------------------------------------


def test_wildcard_deletes_prefix_and_colon_children_only() -> None:
    current = {
        "a": 1,
        "a:b": 2,
        "a:b:c": 3,
        "a:": 4,
        "a::x": 5,
        "ab": 6,
        "ab:c": 7,
        "b:a": 8,
        "A:b": 9,
        "aa:b": 10,
    }
    assert merge_meta(current, {"a:*": True}) == {
        "ab": 6,
        "ab:c": 7,
        "b:a": 8,
        "A:b": 9,
        "aa:b": 10,
    }


def test_nested_wildcard_keeps_the_parent() -> None:
    current = {"a": 1, "a:b": 2, "a:b:c": 3, "a:bc": 4}
    assert merge_meta(current, {"a:b:*": True}) == {"a": 1, "a:bc": 4}


def test_wildcard_false_changes_nothing() -> None:
    current = {"a": 1, "a:b": 2}
    assert merge_meta(current, {"a:*": False}) == current


def test_wildcard_runs_before_sets_in_either_order() -> None:
    current = {"a": 1, "a:b": 2, "a:c": 3}
    expected = {"a:b": "new", "x": 1}
    assert merge_meta(current, {"a:*": True, "a:b": "new", "x": 1}) == expected
    assert merge_meta(current, {"a:b": "new", "x": 1, "a:*": True}) == expected


def test_none_deletes_and_missing_none_is_harmless() -> None:
    assert merge_meta({"a": 1, "b": 2}, {"a": None, "zzz": None}) == {"b": 2}


def test_falsy_values_overwrite_rather_than_delete() -> None:
    merged = merge_meta(
        {"a": 1, "b": 1, "c": 1, "d": 1, "e": 1},
        {
            "a": 0,
            "b": False,
            "c": "",
            "d": [],
            "e": {},
        },
    )
    assert merged == {"a": 0, "b": False, "c": "", "d": [], "e": {}}


def test_nested_none_is_a_value_not_a_delete() -> None:
    assert merge_meta({"a": 1}, {"a": {"x": None}, "b": [None]}) == {
        "a": {"x": None},
        "b": [None],
    }


def test_any_mapping_is_accepted_and_a_plain_dict_returned() -> None:
    current = MappingProxyType({"a": 1, "a:b": 2})
    update = MappingProxyType({"a:*": True, "c": 3})
    merged = merge_meta(current, update)
    assert type(merged) is dict
    assert merged == {"c": 3}


def test_empty_update_returns_an_equal_copy() -> None:
    current = {"a": [1, 2]}
    merged = merge_meta(current, {})
    assert merged == current
    assert merged is not current


# -- invalid updates ----------------------------------------------------------------------

BAD_UPDATES: list[Any] = [
    pytest.param({1: "x"}, id="int-key"),
    pytest.param({None: "x"}, id="none-key"),
    pytest.param({("a",): "x"}, id="tuple-key"),
    pytest.param({b"a": "x"}, id="bytes-key"),
    pytest.param({"": 1}, id="empty-key"),
    pytest.param({"s": {1, 2}}, id="set-value"),
    pytest.param({"s": frozenset()}, id="frozenset-value"),
    pytest.param({"n": math.nan}, id="nan"),
    pytest.param({"n": math.inf}, id="inf"),
    pytest.param({"n": -math.inf}, id="minus-inf"),
    pytest.param({"n": [1, {"deep": math.nan}]}, id="nested-nan"),
    pytest.param({"n": {"deep": [{1, 2}]}}, id="nested-set"),
    pytest.param({"o": object()}, id="object"),
    pytest.param({"b": b"bytes"}, id="bytes-value"),
    pytest.param({"c": 1j}, id="complex"),
    pytest.param({"a:*": None}, id="wildcard-none"),
    pytest.param({"a:*": 1}, id="wildcard-one"),
    pytest.param({"a:*": 0}, id="wildcard-zero"),
    pytest.param({"a:*": "true"}, id="wildcard-str"),
    pytest.param({"a:*": [True]}, id="wildcard-list"),
    pytest.param({"ok": 1, "a:*": "yes"}, id="good-then-bad-wildcard"),
    pytest.param([("a", 1)], id="list-of-pairs"),
    pytest.param(None, id="none"),
    pytest.param("a=1", id="str"),
]


@pytest.mark.parametrize("update", BAD_UPDATES)
def test_invalid_updates_raise_invalid_input(update: Any) -> None:
    current = {"a": 1, "a:b": 2}
    before = copy.deepcopy(current)
    with pytest.raises(InvalidInput) as info:
        merge_meta(current, update)
    assert isinstance(info.value, GreenroomError)
    assert isinstance(info.value, ValueError)
    assert current == before
    with pytest.raises(InvalidInput):
        validate_update(update)


def test_validate_update_names_where_in_the_message() -> None:
    with pytest.raises(InvalidInput, match=r"^initial metadata"):
        validate_update({"n": math.nan}, where="initial metadata")


bad_entries = st.one_of(
    st.tuples(st.integers() | st.none() | st.binary(max_size=3), json_values),
    st.tuples(st.just(""), json_values),
    st.tuples(st.sampled_from(PLAIN_KEYS), st.sampled_from([math.nan, math.inf, {1}, object()])),
    st.tuples(
        st.sampled_from(WILDCARD_KEYS),
        st.none() | st.integers() | st.text(max_size=3) | st.lists(st.booleans(), max_size=2),
    ),
)


@settings(max_examples=200)
@given(current=current_metas, update=updates, bad=bad_entries, data=st.data())
def test_one_bad_entry_anywhere_makes_the_whole_update_invalid(
    current: dict[str, Any],
    update: dict[str, Any],
    bad: tuple[Any, Any],
    data: st.DataObject,
) -> None:
    bad_key, bad_value = bad
    items = [item for item in update.items() if item[0] != bad_key]
    position = data.draw(st.integers(min_value=0, max_value=len(items)))
    items.insert(position, (bad_key, bad_value))
    poisoned = dict(items)
    current_before = copy.deepcopy(current)
    with pytest.raises(InvalidInput):
        merge_meta(current, poisoned)
    assert current == current_before
