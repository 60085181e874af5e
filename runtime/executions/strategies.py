"""Named strategies: the table that makes an execution durable, and the decorator.

A strategy registered under a name (`rt.executions.register("essay", essay)`, or
`@greenroom.strategy("essay")` collected by `rt.executions.register_all(module)`) runs
*durable*: its journal lets any process that registers the same name bring it back.
A callable that is not registered runs in memory only, as before.

    @greenroom.strategy("essay")
    async def essay(ctx, topic):
        return await ctx.llm(f"Write about {topic}")

    rt.executions.register_all(my_strategies)   # every @strategy in the module
    rt.executions.start("essay", "tides")       # or start(essay, "tides")
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

from greenroom.errors import InvalidInput, InvalidTransition

__all__ = ["MAX_NAME_CHARS", "STRATEGY_ATTRIBUTE", "StrategyTable", "check_name", "strategy"]

F = TypeVar("F", bound=Callable[..., Any])

STRATEGY_ATTRIBUTE = "__greenroom_strategy__"
"""The attribute `@strategy(name)` sets on the function: the name it registers under."""

MAX_NAME_CHARS = 200
"""Longest strategy name."""

_NAME = re.compile(r"[A-Za-z0-9_.:/@-]+")


def check_name(name: object) -> str:
    """`name` if it is a usable strategy name; `InvalidInput` saying what is allowed."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_CHARS:
        raise InvalidInput(
            f"a strategy name is a str of 1 to {MAX_NAME_CHARS} characters, got {name!r}"
        )
    if not _NAME.fullmatch(name):
        raise InvalidInput(f"strategy name {name!r} may hold only letters, digits and _ . : / @ -")
    return name


def strategy(name: str) -> Callable[[F], F]:
    """Mark a function as the strategy `name`; `register_all(module)` registers it.

    The function itself is returned unchanged (it only gains an attribute), so it can
    still be called or passed to `rt.executions.start` directly.
    """
    check_name(name)

    def mark(fn: F) -> F:
        if not callable(fn):
            raise InvalidInput(f"@strategy({name!r}) decorates a function, got {fn!r}")
        setattr(fn, STRATEGY_ATTRIBUTE, name)
        return fn

    return mark


class StrategyTable:
    """Strategies by name, and names by strategy (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_name: dict[str, Callable[..., Any]] = {}
        self._by_id: dict[int, str] = {}

    def register(self, name: str, fn: Callable[..., Any]) -> None:
        """Register `fn` as `name`; the same pair again is a no-op.

        `InvalidTransition` if `name` is taken by another function (two processes
        must agree on what a name runs, so a name is never silently rebound).
        """
        check_name(name)
        with self._lock:
            current = self._by_name.get(name)
            if current is fn:
                return
            if current is not None:
                raise InvalidTransition(
                    f"strategy name {name!r} is already registered to {current!r}; "
                    "a name runs one strategy (pick another name)"
                )
            self._by_name[name] = fn
            self._by_id.setdefault(id(fn), name)

    def collect(self, module: ModuleType) -> list[str]:
        """Register every `@strategy` function of `module`; their names, sorted."""
        if not isinstance(module, ModuleType):
            raise InvalidInput(f"register_all takes a module, got {type(module).__name__}")
        found: list[tuple[str, Callable[..., Any]]] = []
        for value in list(vars(module).values()):
            name = getattr(value, STRATEGY_ATTRIBUTE, None) if callable(value) else None
            if isinstance(name, str):
                found.append((name, value))
        for name, fn in found:
            self.register(name, fn)
        return sorted(name for name, _fn in found)

    def get(self, name: str) -> Callable[..., Any] | None:
        """The strategy registered as `name`, or None."""
        return self._by_name.get(name)

    def name_of(self, fn: Callable[..., Any]) -> str | None:
        """The name `fn` is registered under, or None (it runs in memory only)."""
        name = self._by_id.get(id(fn))
        if name is not None and self._by_name.get(name) is fn:
            return name
        return None

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        with self._lock:
            return sorted(self._by_name)
