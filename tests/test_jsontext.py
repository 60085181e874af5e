"""`json_encoder` gives `json.dumps`'s text and `json.dumps`'s errors, for any value."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greenroom.jsontext import json_encoder

_OPTIONS = [(True, False), (False, False), (True, True), (False, True)]

_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and infinities included: refused alike
    | st.text(),  # lone surrogates included
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=8) | st.integers() | st.booleans(), inner, max_size=5)
    ),
    max_leaves=30,
)


def _dumps(value: Any, ascii_only: bool, compact: bool) -> str:
    separators = (",", ":") if compact else None
    return json.dumps(value, allow_nan=False, ensure_ascii=ascii_only, separators=separators)


def _outcome(encode: Any, value: Any) -> tuple[str, str]:
    try:
        return ("text", encode(value))
    except (TypeError, ValueError, RecursionError) as error:
        return (type(error).__name__, str(error))


@settings(max_examples=300, deadline=None)
@given(_values, st.sampled_from(_OPTIONS))
def test_the_text_and_the_errors_are_json_dumps(value: Any, options: tuple[bool, bool]) -> None:
    ascii_only, compact = options
    ours = _outcome(json_encoder(ascii_only=ascii_only, compact=compact), value)
    theirs = _outcome(lambda v: _dumps(v, ascii_only, compact), value)
    assert ours == theirs


@pytest.mark.parametrize("value", [math.nan, [math.inf], {"x": -math.inf}, {1j: 1}, object()])
def test_values_json_has_no_form_for_are_refused_as_json_dumps_refuses_them(value: Any) -> None:
    assert _outcome(json_encoder(), value) == _outcome(lambda v: _dumps(v, True, False), value)
    assert _outcome(json_encoder(), value)[0] != "text"


def test_a_circular_reference_is_the_value_error_json_dumps_raises() -> None:
    loop: list[Any] = []
    loop.append({"again": loop})
    with pytest.raises(ValueError, match="Circular reference detected"):
        json_encoder()(loop)


def test_threads_share_one_encoder() -> None:
    encode = json_encoder(compact=True)
    values = [{"n": n, "items": list(range(n % 7)), "text": "é" * (n % 5)} for n in range(300)]
    wrong: list[int] = []

    def work() -> None:
        for _ in range(20):
            for n, value in enumerate(values):
                if encode(value) != _dumps(value, True, True):
                    wrong.append(n)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert wrong == []


def test_a_cycle_is_found_even_with_a_raised_recursion_limit() -> None:
    # In a child: without the circular check, a cycle under a limit of 1,000,000 runs
    # the C stack out (the process dies) rather than reach RecursionError.
    script = (
        "import sys\n"
        "from greenroom.jsontext import json_encoder\n"
        "sys.setrecursionlimit(1_000_000)\n"
        "loop = []\n"
        "loop.append(loop)\n"
        "try:\n"
        "    json_encoder()(loop)\n"
        "except ValueError as error:\n"
        "    print(error)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout.strip()) == (0, "Circular reference detected")


def test_a_value_that_encodes_while_it_is_encoded_gets_its_own_memo() -> None:
    encode = json_encoder()

    class Nested(dict):  # type: ignore[type-arg]
        def items(self) -> Any:
            return [("inner", encode({"x": [1, 2]}))]

    assert encode([Nested(a=1), {"b": 2}]) == json.dumps(
        [{"inner": '{"x": [1, 2]}'}, {"b": 2}], allow_nan=False
    )
    assert encode({"after": [1]}) == '{"after": [1]}'
