"""JSON schemas of strategy tools: inputs from a strategy's signature, outputs by shape.

A strategy `async def essay(ctx, topic: str, rounds: int = 3)` takes the tool input
`{"topic": "...", "rounds": 3}`: every parameter after `ctx` is a property, typed from
its annotation (`str`, `int`, `float`, `bool`, `None`, `list[...]`, `dict[str, ...]`,
`Literal[...]`, unions, `X | None`), required unless it has a default. An unannotated
parameter takes any JSON value; `*args` cannot be given by name and is refused.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from greenroom.errors import InvalidInput

__all__ = [
    "FINAL_SCHEMA",
    "QUERY_SCHEMA",
    "STATS_SCHEMA",
    "STEP_SCHEMA",
    "input_schema_of",
    "output_schema_of",
]

_SCALARS: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    type(None): {"type": "null"},
    None: {"type": "null"},
}


def input_schema_of(strategy: Callable[..., Any]) -> dict[str, Any]:
    """The JSON schema of `strategy`'s keyword arguments (all but `ctx`)."""
    try:
        signature = inspect.signature(strategy)
        hints = typing.get_type_hints(strategy)
    except (TypeError, ValueError, NameError) as error:
        raise InvalidInput(
            f"the signature of strategy {strategy!r} cannot be read ({error}); register it "
            "with an explicit input_schema"
        ) from None
    properties: dict[str, Any] = {}
    required: list[str] = []
    additional = False
    for index, parameter in enumerate(signature.parameters.values()):
        if index == 0:
            continue  # ctx
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            raise InvalidInput(
                f"strategy {strategy!r} takes *{parameter.name}, which a tool cannot pass "
                "by name; register it with an explicit input_schema"
            )
        if parameter.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise InvalidInput(
                f"strategy {strategy!r} takes {parameter.name} by position only, which a "
                "tool cannot pass by name"
            )
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            additional = True
            continue
        schema = _schema_of(hints.get(parameter.name, Any))
        if parameter.default is inspect.Parameter.empty:
            required.append(parameter.name)
        elif _is_json(parameter.default):
            schema = {**schema, "default": parameter.default}
        properties[parameter.name] = schema
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        out["required"] = required
    out["additionalProperties"] = additional
    return out


def output_schema_of(strategy: Callable[..., Any]) -> dict[str, Any]:
    """The JSON schema of a strategy tool's final result: `FINAL_SCHEMA` with `result`
    typed from the strategy's return annotation."""
    try:
        returned = typing.get_type_hints(strategy).get("return", Any)
    except (TypeError, ValueError, NameError):
        returned = Any
    schema = {**FINAL_SCHEMA, "properties": dict(FINAL_SCHEMA["properties"])}
    schema["properties"]["result"] = _schema_of(returned)
    return schema


def _schema_of(annotation: Any) -> dict[str, Any]:
    """The JSON schema of a type annotation; `{}` (any JSON) when it says nothing."""
    if annotation is Any or annotation is inspect.Parameter.empty or annotation is object:
        return {}
    if annotation in _SCALARS:
        return dict(_SCALARS[annotation])
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [_schema_of(arg) for arg in args]}
    if annotation in (list, tuple) or origin in (list, tuple):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return {
                "type": "array",
                "prefixItems": [_schema_of(arg) for arg in args],
                "minItems": len(args),
                "maxItems": len(args),
            }
        item = _schema_of(args[0]) if args else {}
        return {"type": "array", "items": item} if item else {"type": "array"}
    if annotation is dict or origin in (dict, Mapping):
        value = _schema_of(args[1]) if len(args) == 2 else {}
        return {"type": "object", "additionalProperties": value} if value else {"type": "object"}
    if typing.is_typeddict(annotation):
        hints = typing.get_type_hints(annotation)
        keys = getattr(annotation, "__required_keys__", frozenset(hints))
        return {
            "type": "object",
            "properties": {key: _schema_of(hint) for key, hint in hints.items()},
            "required": sorted(keys),
        }
    return {}  # a class JSON does not name: any value, checked by the strategy


def _is_json(value: Any) -> bool:
    if value is None or isinstance(value, str | bool | int | float):
        return True
    if isinstance(value, list | tuple):
        return all(_is_json(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(key, str) and _is_json(item) for key, item in value.items())
    return False


_TOKENS = {
    "type": "object",
    "properties": {"value": {"type": "integer"}, "source": {"enum": ["estimated", "provided"]}},
    "required": ["value", "source"],
}

STATS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "elapsed_ms": {"type": "integer"},
        "llm_calls": {"type": "integer"},
        "pauses": {"type": "integer"},
        "rounds": {"type": "integer"},
        "prompt_chars": {"type": "integer"},
        "response_chars": {"type": "integer"},
        "prompt_tokens": _TOKENS,
        "response_tokens": _TOKENS,
        "total_tokens": _TOKENS,
        "custom": {"type": "object"},
        "logs": {"type": "array", "items": {"type": "string"}},
        "logs_dropped": {"type": "integer"},
    },
}
"""A session's `stats`."""

QUERY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "prompt": {"type": "string"},
        "system": {"type": ["string", "null"]},
        "max_tokens": {"type": "integer"},
        "grounded": {"type": "boolean"},
        "underspecified": {"type": "boolean"},
    },
    "required": ["id", "prompt", "system", "max_tokens"],
}
"""One query the strategy asks."""

FINAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "session_id": {"type": "string"},
        "status": {"enum": ["completed"]},
        "result": {},
        "stats": STATS_SCHEMA,
    },
    "required": ["session_id", "status", "result", "stats"],
}
"""A strategy tool's final result (multi round-trip mode)."""

STEP_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "session_id": {"type": "string"},
        "status": {"enum": ["accepted", "needs_response", "completed", "error", "cancelled"]},
        "queries": {"type": "array", "items": QUERY_SCHEMA},
        "query_id": {"type": "string"},
        "prompt": {"type": "string"},
        "system": {"type": ["string", "null"]},
        "max_tokens": {"type": "integer"},
        "grounded": {"type": "boolean"},
        "underspecified": {"type": "boolean"},
        "remaining": {"type": "integer"},
        "result": {},
        "error": {"type": "string"},
        "reason": {"type": "string"},
        "stats": STATS_SCHEMA,
    },
    "required": ["session_id", "status"],
}
"""What `greenroom_start`, `greenroom_feed` and `greenroom_cancel` answer: the session's
step, in the seed's shapes, always with `session_id` (and `queries` when it needs
responses, the single-query keys beside them when there is one)."""
