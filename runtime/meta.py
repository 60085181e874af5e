"""Metadata merge rules shared by the store and everything that updates metadata.

Metadata is a JSON object. What an update may write is what a read gives back: text
that encodes to UTF-8, finite numbers, ints of fewer than 4,000 digits, values nested at
most `MAX_META_DEPTH` levels. A stored value outside those bounds (a hand-edited
database) reads back as a `StorageError` (`loads_meta`), never as a bare `ValueError`
or `RecursionError`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from greenroom.errors import InvalidInput, StorageError
from greenroom.jsontext import json_encoder

__all__ = [
    "MAX_META_DEPTH",
    "apply_update",
    "dumps_meta",
    "loads_meta",
    "merge_meta",
    "validate_update",
]

MAX_META_DEPTH = 100
"""How deep metadata may nest: the object is level 1, a list or object in one of its
values level 2, and so on."""

_WILDCARD = ":*"
_MAX_DIGITS = 4000  # an int of more digits is refused on write, and so on read


def validate_update(update: object, *, where: str = "metadata update") -> dict[str, Any]:
    """Check that `update` is a mapping of str keys to JSON values; return a plain copy.

    Values in the copy are as JSON keeps them (tuples become lists, dict keys become
    strings), so what a merge returns is exactly what a later read gives back.

    A key ending in `":*"` (a prefix wildcard) takes `True` (delete the prefix) or
    `False` (do nothing); anything else there is refused.
    """
    if not isinstance(update, Mapping):
        raise InvalidInput(f"{where} must be a mapping of str keys, got {type(update).__name__}")
    checked: dict[str, Any] = {}
    for key, value in update.items():
        if not isinstance(key, str) or not key:
            raise InvalidInput(f"{where}: keys must be non-empty strings, got {key!r}")
        _check_text(key, f"{where}: key {key!r}")
        if key.endswith(_WILDCARD):
            if not isinstance(value, bool):
                raise InvalidInput(
                    f"{where}: wildcard key {key!r} takes True (delete every "
                    f"{key[:-2]!r} key) or False, got {value!r}"
                )
        elif value is not None:
            value = _as_json(value, f"{where}: value of {key!r}")
            if isinstance(value, dict | list) and _deeper_than(value, MAX_META_DEPTH - 1):
                raise InvalidInput(
                    f"{where}: value of {key!r} nests deeper than metadata may "
                    f"({MAX_META_DEPTH} levels, the metadata object included)"
                )
        checked[key] = value
    return checked


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether `value` nests lists and objects more than `limit` levels (no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


_encode = json_encoder(ascii_only=False)
_encode_compact = json_encoder(ascii_only=False, compact=True)  # as the store keeps it
_BIG_INT = 10**_MAX_DIGITS  # beyond, an int has too many digits for JSON to print


def _as_json(value: object, where: str) -> Any:
    """The value as a JSON round trip gives it back; `InvalidInput` if it has none."""
    if type(value) is bool or (type(value) is int and -_BIG_INT < value < _BIG_INT):
        return value  # the common case, already exactly what JSON keeps
    if type(value) is str:
        _check_text(value, where)
        return value
    try:
        text = _encode(value)
        text.encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:  # UnicodeEncodeError: ValueError
        raise InvalidInput(f"{where} is not JSON-serialisable: {exc}") from None
    return json.loads(text)


def _check_text(text: str, where: str) -> None:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInput(f"{where} is not valid Unicode text (lone surrogate)") from None


def merge_meta(current: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Return `current` with `update` applied; neither argument is changed.

    Rules: first, every key `"prefix:*"` whose value is `True` deletes the key
    `prefix` and every key starting `prefix:`. Then every other key is applied: a
    value of `None` deletes that key, any other value overwrites it.
    """
    return apply_update(current, validate_update(update))


def apply_update(current: Mapping[str, Any], checked: Mapping[str, Any]) -> dict[str, Any]:
    """`merge_meta` for an update that `validate_update` has already checked."""
    merged = dict(current)
    for key, value in checked.items():
        if key.endswith(_WILDCARD) and value is True:
            prefix = key[: -len(_WILDCARD)]
            with_colon = prefix + ":"
            for existing in [k for k in merged if k == prefix or k.startswith(with_colon)]:
                del merged[existing]
    for key, value in checked.items():
        if key.endswith(_WILDCARD):
            continue
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def dumps_meta(meta: Mapping[str, Any]) -> str:
    """Serialise metadata the way the store keeps it (compact, stable key order)."""
    return _encode_compact(meta)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]!r} is out of range")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_DIGITS:
        raise ValueError(f"an int of {len(text):,} digits (at most {_MAX_DIGITS:,})")
    return int(text)


# Stored metadata is read strictly: no NaN or Infinity, no overflowing number.
_decode = json.JSONDecoder(
    parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_bounded_int
).decode
_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


def loads_meta(text: object, where: str) -> dict[str, Any]:
    """Stored metadata (JSON text) as a dict; `StorageError` naming `where` if it is not
    a JSON object within the bounds an update may write."""
    if not isinstance(text, str):
        raise StorageError(f"{where}: its stored metadata is a {type(text).__name__}, not text")
    try:
        value = _decode(text)
    except RecursionError:
        raise StorageError(f"{where}: its stored metadata nests too deep to read") from None
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise StorageError(
            f"{where}: its stored metadata is not valid JSON: {_clip(str(exc))}"
        ) from None
    if not isinstance(value, dict):
        raise StorageError(
            f"{where}: its stored metadata is a JSON {_json_kind(value)}, not an object"
        )
    # The walk only when there are enough brackets to nest that deep at all.
    if text.count("{") + text.count("[") > MAX_META_DEPTH and _deeper_than(value, MAX_META_DEPTH):
        raise StorageError(
            f"{where}: its stored metadata nests deeper than {MAX_META_DEPTH} levels"
        )
    if _SURROGATE.search(text) is not None:
        try:
            dumps_meta(value).encode("utf-8")
        except UnicodeEncodeError:
            raise StorageError(
                f"{where}: its stored metadata holds a lone surrogate (not valid Unicode text)"
            ) from None
    return value


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return "number"


def _clip(text: str) -> str:
    return text if len(text) <= 200 else text[:197] + "..."
