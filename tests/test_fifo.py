"""`Fifo` behaves as a `deque` used first-in, first-out, whatever the mix of calls."""

from __future__ import annotations

from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greenroom.fifo import Fifo

_steps = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers()),
        st.tuples(st.just("extend"), st.lists(st.integers(), max_size=80)),
        st.tuples(st.just("popleft"), st.integers(1, 90)),
        st.tuples(st.just("since"), st.integers(-3, 200)),
    ),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(_steps)
def test_a_fifo_matches_a_deque(steps: list[tuple[str, object]]) -> None:
    fifo: Fifo[int] = Fifo()
    model: deque[int] = deque()
    for name, arg in steps:
        if name == "append":
            assert isinstance(arg, int)
            fifo.append(arg)
            model.append(arg)
        elif name == "extend":
            assert isinstance(arg, list)
            fifo.extend(arg)
            model.extend(arg)
        elif name == "popleft":
            assert isinstance(arg, int)
            for _ in range(min(arg, len(model))):
                assert fifo.popleft() == model.popleft()
        else:
            assert isinstance(arg, int)
            assert fifo.since(arg) == tuple(model)[max(arg, 0) :]
        assert len(fifo) == len(model)
        assert bool(fifo) is bool(model)
        assert list(fifo) == list(model)
        if model:
            assert fifo.first() == model[0]


def test_an_empty_fifo_refuses_first_and_popleft_with_index_error() -> None:
    fifo: Fifo[str] = Fifo()
    with pytest.raises(IndexError):
        fifo.first()
    with pytest.raises(IndexError):
        fifo.popleft()
    fifo.extend(["a", "b"])
    assert fifo.popleft() == "a"
    assert fifo.popleft() == "b"
    with pytest.raises(IndexError):
        fifo.popleft()


def test_popped_items_are_let_go_and_the_list_is_cut() -> None:
    fifo: Fifo[object] = Fifo()
    fifo.extend(object() for _ in range(1_000))
    for _ in range(999):
        fifo.popleft()
    # Only the newest is held: the popped slots were cut away as they reached half.
    assert len(fifo._items) - fifo._head == 1
    assert len(fifo._items) < 64
