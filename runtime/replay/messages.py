"""The messages a replay buffer actor handles, and the checks that make them from input.

Asked (`Runtime.replay.append`, `current_cursor`, `after`, `subscribe`) or told
(`publish`, `Unsubscribe`, the trimmer's `TRIM`) to one session's `ReplayBuffer`
(`greenroom.actors.replay`). A retired buffer answers every ask with `RETIRED`: the
facade then asks the session's new buffer instead.

The checks run on the caller's thread, before anything is sent, so bad input raises
`InvalidInput` and changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MappingView, Set
from typing import Any, Final

import attrs

from greenroom.checks import check_int, check_text
from greenroom.cursor import MAX_CURSOR_INT, ParsedCursor
from greenroom.errors import InvalidInput
from greenroom.jsontext import json_encoder
from greenroom.replay.subscription import Subscription

__all__ = [
    "RETIRED",
    "TRIM",
    "Append",
    "CurrentCursor",
    "ReplayAfter",
    "Retired",
    "Subscribe",
    "Trim",
    "Unsubscribe",
    "append_many_message",
    "append_message",
    "batch_of",
    "check_revision",
    "check_session_id",
    "current_cursor_message",
    "encode_payloads",
]

_SCALARS = (str, int, bool, type(None))
_encode = json_encoder()


@attrs.frozen
class Append:
    """Ask a buffer: append `payloads` at `revision`; answers the event (`single`) or
    the list of events. Told (`Runtime.replay.publish`), it answers nobody."""

    payloads: tuple[Any, ...]
    revision: int
    single: bool


@attrs.frozen
class CurrentCursor:
    """Ask a buffer: the cursor at its tail, made at `revision`."""

    revision: int


@attrs.frozen
class ReplayAfter:
    """Ask a buffer: `Replayed` or `Gap` for the events after `cursor` (parsed: `parsed`)."""

    parsed: ParsedCursor
    cursor: str


@attrs.frozen
class Subscribe:
    """Ask a buffer: queue the events after `cursor` into `subscription` and register
    it for live ones (answers `None`), or answer a `Gap`."""

    parsed: ParsedCursor
    cursor: str
    subscription: Subscription


@attrs.frozen
class Unsubscribe:
    """Tell a buffer: `subscription` was closed; stop pushing to it."""

    subscription: Subscription


@attrs.frozen
class Trim:
    """Tell a buffer: trim by age, let go of dropped subscriptions, retire if idle."""


@attrs.frozen
class Retired:
    """A retired buffer's answer to every ask: ask the session's new buffer instead."""


TRIM: Final = Trim()
RETIRED: Final = Retired()


# -- checks on the caller's thread ------------------------------------------------------


def check_session_id(session_id: object) -> str:
    """`session_id` if it is a non-empty str; `InvalidInput` otherwise."""
    return check_text(session_id, "session_id", nonempty=True)


def check_revision(revision: object) -> int:
    """`revision` if it is an int a cursor can carry (0 to 2**63 - 1); `InvalidInput`."""
    return check_int(revision, "revision", minimum=0, maximum=MAX_CURSOR_INT - 1)


def _plain(payload: Any) -> bool:
    """Whether `payload` is a scalar JSON keeps exactly, with no encoding to check."""
    cls = type(payload)
    if cls is str:
        ascii_only: bool = payload.isascii()  # other text: the encoder checks it
        return ascii_only
    if cls is int:
        printable: bool = -_BIG_INT < payload < _BIG_INT  # beyond: too many digits
        return printable
    return cls in _SCALARS


_BIG_INT = 10**4000


def _check_payloads(payloads: tuple[Any, ...]) -> None:
    """`InvalidInput` unless every payload is JSON-serialisable (checked, not copied)."""
    if all(_plain(payload) for payload in payloads):
        return
    try:
        _encode(payloads)
    except (TypeError, ValueError, RecursionError):
        for index, payload in enumerate(payloads):
            try:
                _encode(payload)
            except (TypeError, ValueError, RecursionError) as error:
                raise _not_json(payloads, index, error) from None
        raise  # pragma: no cover (each passed alone: cannot happen)


def _not_json(payloads: tuple[Any, ...], index: int, error: Exception) -> InvalidInput:
    """The error for `payloads[index]`, which JSON cannot encode."""
    where = "payload" if len(payloads) == 1 else f"payloads[{index}]"
    return InvalidInput(
        f"{where} must be JSON-serialisable (dicts with str keys, lists, str, numbers, "
        f"bools, None): {error}"
    )


_compact = json_encoder(compact=True)


def encode_payloads(payloads: tuple[Any, ...]) -> list[str]:
    """Each payload as compact JSON text (what a Redis stream stores): checked and
    encoded in one pass; `InvalidInput` as `append_message` gives for a bad one."""
    encoded = []
    for index, payload in enumerate(payloads):
        try:
            encoded.append(_compact(payload))
        except (TypeError, ValueError, RecursionError) as error:
            raise _not_json(payloads, index, error) from None
    return encoded


def batch_of(payloads: object) -> tuple[Any, ...]:
    """The payloads of a batch as a tuple, in order, not yet checked; `InvalidInput`
    for a non-sequence (a set, a dict or a dict view included)."""
    if isinstance(payloads, str | bytes | bytearray | Mapping) or not isinstance(
        payloads, Iterable
    ):
        raise InvalidInput(
            "payloads must be a list (or another iterable) of payloads, got "
            f"{type(payloads).__name__}"
        )
    if isinstance(payloads, Set | MappingView):
        raise InvalidInput(
            f"payloads must be an ordered iterable (a list or a tuple), got "
            f"{type(payloads).__name__}, which has no defined order; pass a list in the "
            "order the events happened"
        )
    return tuple(payloads)


def _check_batch(payloads: object) -> tuple[Any, ...]:
    """The payloads of a batch as a tuple, in order; `InvalidInput` for a non-sequence."""
    batch = batch_of(payloads)
    _check_payloads(batch)
    return batch


def append_message(payload: Any, revision: object) -> Append:
    """The `Append` of one event (`append`, `publish`); `InvalidInput` if bad."""
    checked = check_revision(revision)
    payloads = (payload,)
    _check_payloads(payloads)
    return Append(payloads, checked, True)


def append_many_message(payloads: object, revision: object) -> Append | None:
    """The `Append` of a batch (`append_many`, `publish_many`), all or none; `None` for
    an empty batch; `InvalidInput` if bad (a set, a dict or a dict view included)."""
    checked = check_revision(revision)
    batch = _check_batch(payloads)
    if not batch:
        return None
    return Append(batch, checked, False)


def current_cursor_message(revision: object) -> CurrentCursor:
    """The `CurrentCursor` ask at `revision`; `InvalidInput` if bad."""
    return CurrentCursor(check_revision(revision))
