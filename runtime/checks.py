"""Reusable checks for callers' input: each raises `InvalidInput` naming what was wrong.

Every check takes the value and `what` (the name a message uses, such as `"timeout"` or
`"RuntimeConfig.stop_timeout_s"`) and returns the value, normalised where that helps
(a path becomes a `Path`). `validator(check, **options)` makes an attrs validator of any
of them, naming the field as `Class.field`:

    timeout: float = attrs.field(validator=validator(check_number, positive=True))
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, TypeVar

import attrs

from greenroom.errors import InvalidInput

__all__ = [
    "MAX_TIMEOUT_S",
    "check_bool",
    "check_callable",
    "check_choice",
    "check_int",
    "check_number",
    "check_path",
    "check_text",
    "check_timeout",
    "shown",
    "validator",
]

T = TypeVar("T")

MAX_TIMEOUT_S = 10.0 * 365 * 24 * 3600
"""The longest timeout a call takes (ten years): larger ones overflow the OS's waits."""


def check_int(
    value: Any, what: str, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """`value` as an int (never a bool) within [minimum, maximum]."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or (minimum is not None and value < minimum)
        or (maximum is not None and value > maximum)
    ):
        bounds = ([f">= {minimum}"] if minimum is not None else []) + (
            [f"<= {maximum}"] if maximum is not None else []
        )
        need = f" {' and '.join(bounds)}" if bounds else ""
        raise InvalidInput(f"{what} must be an int{need}, got {shown(value)}")
    return value


def check_number(
    value: Any,
    what: str,
    *,
    positive: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
) -> float:
    """`value` as a finite int or float (never a bool): positive, or within the bounds."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not _finite(value)
        or (positive and value <= 0)
        or (minimum is not None and value < minimum)
        or (maximum is not None and value > maximum)
    ):
        bounds = []
        if positive:
            bounds.append("> 0")
        if minimum is not None:
            bounds.append(f">= {_number(minimum)}")
        if maximum is not None:
            bounds.append(f"<= {_number(maximum)}")
        need = f" {' and '.join(bounds)}" if bounds else ""
        raise InvalidInput(f"{what} must be a finite number{need}, got {shown(value)}")
    return value


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def check_timeout(value: Any, what: str = "timeout") -> float | None:
    """`None` (wait as long as it takes) or seconds: finite, >= 0, at most ten years."""
    if value is None:
        return None
    return check_number(value, what, minimum=0, maximum=MAX_TIMEOUT_S)


def check_bool(value: Any, what: str) -> bool:
    """`value` if it is True or False (not merely truthy)."""
    if not isinstance(value, bool):
        raise InvalidInput(f"{what} must be True or False, got {shown(value)}")
    return value


def check_text(value: Any, what: str, *, nonempty: bool = False) -> str:
    """`value` as a str that encodes to UTF-8 (no lone surrogate); non-empty if asked."""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a str, got {type(value).__name__}")
    if nonempty and not value:
        raise InvalidInput(f"{what} must not be empty")
    if not value.isascii():  # ASCII always encodes; the check costs nothing then
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            raise InvalidInput(
                f"{what} is not valid Unicode (a lone surrogate at position {error.start})"
            ) from None
    return value


def check_choice(value: Any, what: str, choices: Collection[T]) -> T:
    """`value` if it is one of `choices`."""
    if not isinstance(value, str | int) or value not in choices:
        names = ", ".join(repr(choice) for choice in choices)
        raise InvalidInput(f"{what} must be one of {names}, got {shown(value)}")
    return value  # type: ignore[return-value]


def check_callable(value: Any, what: str) -> Callable[..., Any]:
    """`value` if it can be called."""
    if not callable(value):
        raise InvalidInput(f"{what} must be callable, got {shown(value)}")
    function: Callable[..., Any] = value
    return function


def check_path(value: Any, what: str) -> Path:
    """`value` (a str or an `os.PathLike`) as a `Path`: non-empty, no NUL, encodable."""
    if not isinstance(value, str | os.PathLike):
        raise InvalidInput(f"{what} must be a str or os.PathLike path, got {shown(value)}")
    text = os.fspath(value)
    if isinstance(text, bytes):
        raise InvalidInput(f"{what} must be a text path, got bytes {text!r}")
    if not text:
        raise InvalidInput(f"{what} must not be empty")
    if "\0" in text:
        raise InvalidInput(f"{what} must not hold a NUL character, got {text!r}")
    try:
        os.fsencode(text)
    except UnicodeEncodeError:
        raise InvalidInput(f"{what} cannot be encoded for the file system: {text!r}") from None
    return Path(text)


def validator(
    check: Callable[..., Any], *, optional: bool = False, **options: Any
) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    """An attrs validator running `check` (with `options`); `None` passes if `optional`.

    For `check_bool`, `check_text` and `check_int` a good value passes an inline test
    first (records are made on hot paths: a question a feed, every message of a
    transcript's resume); anything else goes through `check`, whose errors it raises.
    """

    def validate(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if optional and value is None:
            return
        try:
            check(value, "", **options)
        except InvalidInput:
            # Named only on failure: a good value needs no message.
            check(value, f"{type(inst).__name__}.{attribute.name}", **options)
            raise

    passes = _good_value_test(check, options)
    if passes is None:
        return validate

    def validate_fast(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not passes(value):
            validate(inst, attribute, value)

    return validate_fast


def _good_value_test(
    check: Callable[..., Any], options: dict[str, Any]
) -> Callable[[Any], bool] | None:
    """A test that is true only of values `check` accepts with `options` (a subset of
    them: what it leaves out goes through `check`); `None` for other checks."""
    if check is check_bool and not options:
        return lambda value: value is True or value is False
    if check is check_text and set(options) <= {"nonempty"}:
        if options.get("nonempty"):
            return lambda value: type(value) is str and value != "" and value.isascii()
        return lambda value: type(value) is str and value.isascii()
    if check is check_int and set(options) <= {"minimum", "maximum"}:
        # (An int compares with an infinite float exactly: no bound passes everything.)
        low = -math.inf if options.get("minimum") is None else options["minimum"]
        high = math.inf if options.get("maximum") is None else options["maximum"]
        return lambda value: type(value) is int and low <= value <= high
    return None


def _number(bound: float) -> str:
    # 315,360,000 rather than 3.1536e+08: a bound the reader can act on.
    if float(bound).is_integer() and abs(bound) < 1e16:
        return f"{int(bound):,}"
    return f"{bound:g}"


def shown(value: Any) -> str:
    """`repr(value)` cut to 200 characters (a huge int: its number of digits), for messages."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**30:
        return f"an int of {len(str(abs(value))) if abs(value) < 10**4000 else 'over 4000'} digits"
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def check_bytes(value: Any, what: str) -> bytes:
    """`value` (bytes, a bytearray or a memoryview) as `bytes`."""
    if not isinstance(value, bytes | bytearray | memoryview):
        raise InvalidInput(
            f"{what} must be bytes (or a bytearray or memoryview), got {type(value).__name__}"
        )
    return bytes(value)
