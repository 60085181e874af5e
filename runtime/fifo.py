"""`Fifo`: a first-in, first-out list for one thread, small while it holds little."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any, Generic, TypeVar

__all__ = ["Fifo"]

T = TypeVar("T")

_COMPACT_AT = 32  # popped slots kept before the list is cut (when they are half of it)


class Fifo(Generic[T]):
    """Items oldest first: added at the back, taken from the front, O(1) amortised.

    For state that one actor owns (it is not thread-safe). A `collections.deque` costs
    about 770 bytes even when empty; a `Fifo` is a list and an offset (about 110 bytes
    and 8 a held item), which counts when each of 100,000 sessions keeps a few.
    """

    __slots__ = ("_head", "_items")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._head = 0  # index of the oldest item: the slots before it are popped

    def __len__(self) -> int:
        return len(self._items) - self._head

    def __bool__(self) -> bool:
        return len(self._items) > self._head

    def __iter__(self) -> Iterator[T]:
        return islice(self._items, self._head, None)

    def first(self) -> T:
        """The oldest item; `IndexError` when empty."""
        if self._head >= len(self._items):
            raise IndexError("first() of an empty Fifo")
        item: T = self._items[self._head]
        return item

    def append(self, item: T) -> None:
        """Add `item` at the back."""
        self._items.append(item)

    def extend(self, items: Iterable[T]) -> None:
        """Add `items` at the back, in order."""
        self._items.extend(items)

    def popleft(self) -> T:
        """Take the oldest item; `IndexError` when empty."""
        items, head = self._items, self._head
        if head >= len(items):
            raise IndexError("popleft() from an empty Fifo")
        item: T = items[head]
        items[head] = None  # (let it go now, not at the next cut)
        head += 1
        if head == len(items):
            items.clear()
            head = 0
        elif head >= _COMPACT_AT and head * 2 >= len(items):
            del items[:head]
            head = 0
        self._head = head
        return item

    def since(self, start: int) -> tuple[T, ...]:
        """The items from the `start`-th oldest (0: all) to the newest."""
        return tuple(self._items[self._head + max(start, 0) :])
