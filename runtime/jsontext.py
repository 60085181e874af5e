"""JSON text from encoders made once.

`json.dumps(value, allow_nan=False, ...)` builds a `JSONEncoder`, and the encoder's C
core, at every call: for a small record that costs as much again as the encoding.
Greenroom encodes every journal record, metadata update and checked argument, so its
encoders are built once, here (once per thread: the core's memo of the containers it
is inside of, which finds circular references, is not thread-safe).
"""

from __future__ import annotations

import json
import json.encoder
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["json_encoder"]

_MAKE_CORE: Any = getattr(json.encoder, "c_make_encoder", None)


class _Cores(threading.local):
    """One thread's encoder core and the memo of containers it is inside of."""

    core: Any = None
    markers: dict[int, Any] | None = None
    busy = False  # encoding (a value's own code may encode again: that takes the slow path)


def json_encoder(*, ascii_only: bool = True, compact: bool = False) -> Callable[[Any], str]:
    """`json.dumps(value, allow_nan=False, ensure_ascii=ascii_only)` (with `(",", ":")`
    separators when `compact`) as a function of `value`, built once.

    The text and the errors are `json.dumps`'s: `TypeError` for a value JSON has no
    form for, `ValueError` for NaN or infinity and for a circular reference,
    `RecursionError` for nesting deeper than Python's limit. Thread-safe: each thread
    has a core of its own, since the memo that finds circular references is the
    core's.
    """
    encoder = json.JSONEncoder(
        allow_nan=False,
        ensure_ascii=ascii_only,
        separators=(",", ":") if compact else None,
    )
    slow = encoder.encode
    if _MAKE_CORE is None:  # pragma: no cover (an interpreter without the C accelerator)
        return slow
    strings = json.encoder.encode_basestring_ascii if ascii_only else json.encoder.encode_basestring
    cores = _Cores()

    def encode(value: Any) -> str:
        if cores.busy:
            return slow(value)
        markers = cores.markers
        if markers is None:
            markers = cores.markers = {}
            cores.core = _MAKE_CORE(
                markers,
                encoder.default,
                strings,
                None,
                encoder.key_separator,
                encoder.item_separator,
                False,
                False,
                False,
            )
        cores.busy = True
        try:
            return "".join(cores.core(value, 0))
        finally:
            cores.busy = False
            markers.clear()  # (an error leaves the ids of the containers it was in)

    return encode
