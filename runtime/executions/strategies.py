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
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any, TypeVar

import attrs

from greenroom.errors import InvalidInput, InvalidTransition
from greenroom.executions.records import json_value

__all__ = [
    "MAX_NAME_CHARS",
    "STRATEGY_ATTRIBUTE",
    "StrategyInfo",
    "StrategyTable",
    "check_name",
    "strategy",
]

F = TypeVar("F", bound=Callable[..., Any])

STRATEGY_ATTRIBUTE = "__greenroom_strategy__"
"""The attribute `@strategy(name)` sets on the function: the name it registers under."""

_OPTIONS_ATTRIBUTE = "__greenroom_strategy_options__"


@attrs.frozen
class StrategyInfo:
    """A registered strategy: its name, the function, and how tools describe it."""

    name: str
    strategy: Callable[..., Any]
    input_schema: Mapping[str, Any] | None = None
    """An explicit JSON schema of its keyword arguments (None: from its signature)."""
    description: str | None = None
    """What it does, for a tool list (None: its docstring's first paragraph)."""


def check_input_schema(schema: object) -> dict[str, Any] | None:
    """`schema` as a JSON object schema (a copy), or None; `InvalidInput` if it is not."""
    if schema is None:
        return None
    if not isinstance(schema, Mapping) or schema.get("type") != "object":
        raise InvalidInput(
            'an input schema is a JSON schema of an object ({"type": "object", '
            f'"properties": {{...}}}}), got {schema!r:.200}'
        )
    checked: dict[str, Any] = json_value(dict(schema), "the input schema")
    return checked


def _check_description(description: object) -> str | None:
    if description is not None and not isinstance(description, str):
        raise InvalidInput(f"a description is a str, got {type(description).__name__}")
    return description


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


def strategy(
    name: str,
    *,
    input_schema: Mapping[str, Any] | None = None,
    description: str | None = None,
) -> Callable[[F], F]:
    """Mark a function as the strategy `name`; `register_all(module)` registers it.

    `input_schema` and `description` are as in `rt.executions.register`. The function
    itself is returned unchanged (it only gains attributes), so it can still be called
    or passed to `rt.executions.start` directly.
    """
    check_name(name)
    options = {
        "input_schema": check_input_schema(input_schema),
        "description": _check_description(description),
    }

    def mark(fn: F) -> F:
        if not callable(fn):
            raise InvalidInput(f"@strategy({name!r}) decorates a function, got {fn!r}")
        setattr(fn, STRATEGY_ATTRIBUTE, name)
        setattr(fn, _OPTIONS_ATTRIBUTE, options)
        return fn

    return mark


class StrategyTable:
    """Strategies by name, and names by strategy (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_name: dict[str, Callable[..., Any]] = {}
        self._by_id: dict[int, str] = {}
        self._info: dict[str, StrategyInfo] = {}

    def register(
        self,
        name: str,
        fn: Callable[..., Any],
        *,
        input_schema: Mapping[str, Any] | None = None,
        description: str | None = None,
    ) -> None:
        """Register `fn` as `name`; the same pair again is a no-op (or updates the
        schema and description, when given). A schema and description given to
        `@strategy` are used where none is given here.

        `InvalidTransition` if `name` is taken by another function (two processes
        must agree on what a name runs, so a name is never silently rebound).
        """
        check_name(name)
        marked = getattr(fn, _OPTIONS_ATTRIBUTE, None) or {}  # @strategy(...)'s options
        schema = check_input_schema(input_schema) or marked.get("input_schema")
        text = _check_description(description) or marked.get("description")
        with self._lock:
            current = self._by_name.get(name)
            if current is not None and current is not fn:
                raise InvalidTransition(
                    f"strategy name {name!r} is already registered to {current!r}; "
                    "a name runs one strategy (pick another name)"
                )
            known = self._info.get(name)
            if known is not None and schema is None and text is None:
                return
            self._by_name[name] = fn
            self._by_id.setdefault(id(fn), name)
            self._info[name] = StrategyInfo(
                name,
                fn,
                schema if schema is not None else (known.input_schema if known else None),
                text if text is not None else (known.description if known else None),
            )

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

    def info(self, name: str) -> StrategyInfo | None:
        """What is registered as `name`, or None."""
        return self._info.get(name)

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
