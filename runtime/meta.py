"""Metadata merge rules shared by the store and everything that updates metadata."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from greenroom.errors import InvalidInput

__all__ = ["apply_update", "dumps_meta", "merge_meta", "validate_update"]

_WILDCARD = ":*"


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
        checked[key] = value
    return checked


_BIG_INT = 10**4000  # beyond, an int has too many digits for JSON to print


def _as_json(value: object, where: str) -> Any:
    """The value as a JSON round trip gives it back; `InvalidInput` if it has none."""
    if type(value) is bool or (type(value) is int and -_BIG_INT < value < _BIG_INT):
        return value  # the common case, already exactly what JSON keeps
    if type(value) is str:
        _check_text(value, where)
        return value
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
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
    return json.dumps(meta, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
