"""The messages the transcript actor (`greenroom.actors.transcript`) answers.

Every one is an ask sent by the `Transcript` handle, which checks the caller's input
first: the actor trusts what it gets.

    ref.ask(TurnEnd((UserMessage("hi"),), None))   # a TurnResult
    ref.ask(GET_USAGE)                              # the Usage over the whole file
"""

from __future__ import annotations

import attrs

from greenroom.checks import check_choice, validator
from greenroom.transcripts.records import TurnMessage, Usage

__all__ = [
    "CLOSE",
    "GET_CONTEXT",
    "GET_CONTEXT_TOKENS",
    "GET_COST",
    "GET_NEXT_ID",
    "GET_TIP",
    "GET_USAGE",
    "QUERIES",
    "AppendLeaf",
    "Close",
    "Compact",
    "Get",
    "TurnEnd",
]


@attrs.frozen
class TurnEnd:
    """Ask: append a turn's messages (and a leaf), then compact if over the threshold;
    answered with a `TurnResult`."""

    messages: tuple[TurnMessage, ...]
    usage: Usage | None


@attrs.frozen
class Compact:
    """Ask: compact now; answered with a `CompactionResult` or `None`."""

    reason: str


@attrs.frozen
class AppendLeaf:
    """Ask: move the active branch to end at `entry_id`; answered with `None`."""

    entry_id: str


QUERIES = ("context", "context_tokens", "usage", "cost", "next_id", "tip")
"""What a `Get` may read."""


@attrs.frozen
class Get:
    """Ask: read one thing of the transcript's state, named by `what` (see `QUERIES`)."""

    what: str = attrs.field(validator=validator(check_choice, choices=QUERIES))


@attrs.frozen
class Close:
    """Ask: flush and close the file; answered with `None` (the handle then stops the
    actor). Idempotent."""


GET_CONTEXT = Get("context")
GET_CONTEXT_TOKENS = Get("context_tokens")
GET_USAGE = Get("usage")
GET_COST = Get("cost")
GET_NEXT_ID = Get("next_id")
GET_TIP = Get("tip")
CLOSE = Close()
