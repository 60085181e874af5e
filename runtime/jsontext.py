"""JSON text from encoders made once.

`json.dumps(value, allow_nan=False, ...)` builds a `JSONEncoder`, and the encoder's C
core, at every call: for a small record that costs as much again as the encoding.
Greenroom encodes every journal record, metadata update and checked argument, so its
encoders are built once, here.
"""

from __future__ import annotations

import json
import json.encoder
from collections.abc import Callable
from typing import Any

__all__ = ["json_encoder"]

_MAKE_CORE: Any = getattr(json.encoder, "c_make_encoder", None)


def json_encoder(*, ascii_only: bool = True, compact: bool = False) -> Callable[[Any], str]:
    """`json.dumps(value, allow_nan=False, ensure_ascii=ascii_only)` (with `(",", ":")`
    separators when `compact`) as a function of `value`, built once.

    The text and the errors are `json.dumps`'s: `TypeError` for a value JSON has no
    form for, `ValueError` for NaN or infinity and for a circular reference,
    `RecursionError` for nesting deeper than Python's limit. Thread-safe.
    """
    encoder = json.JSONEncoder(
        allow_nan=False,
        ensure_ascii=ascii_only,
        separators=(",", ":") if compact else None,
    )
    if _MAKE_CORE is None:  # pragma: no cover (an interpreter without the C accelerator)
        return encoder.encode
    # No circular-reference check in the core (its memo would be shared by threads): a
    # cycle ends in RecursionError, and the slow path then says what json.dumps says.
    core = _MAKE_CORE(
        None,
        encoder.default,
        json.encoder.encode_basestring_ascii if ascii_only else json.encoder.encode_basestring,
        None,
        encoder.key_separator,
        encoder.item_separator,
        False,
        False,
        False,
    )
    slow = encoder.encode

    def encode(value: Any) -> str:
        try:
            return "".join(core(value, 0))
        except RecursionError:
            return slow(value)

    return encode
