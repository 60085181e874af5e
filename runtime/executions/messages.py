"""The messages the executions actors handle: a session's actor and the GC supervisor.

A session's actor (`greenroom.actors.execution.ExecutionActor`) takes `Begin`, `Feed`,
`Cancel`, `Status` and `Reap` from the runtime and the GC, and `ThreadPause`,
`ThreadDone` and `ThreadCustom` from its own plain strategy's thread. The GC supervisor
(`greenroom.actors.execution_gc.ExecutionGC`) takes `Collect` and answers a `GcPass`.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import attrs

from greenroom.executions.records import LlmRequest
from greenroom.usage import Usage

__all__ = [
    "BEGIN",
    "COLLECT",
    "RENEW",
    "STATUS",
    "Begin",
    "Cancel",
    "Collect",
    "Feed",
    "FeedItem",
    "GcPass",
    "LeaseLost",
    "Passivate",
    "Reap",
    "Renew",
    "Status",
    "ThreadCustom",
    "ThreadDone",
    "ThreadPause",
    "ThreadStep",
]

FeedItem: TypeAlias = tuple[str | None, str, Usage | None]
"""One answer, checked: (query id, or None for the sole pending query; response; usage)."""


# -- to a session's actor ----------------------------------------------------------------


@attrs.frozen
class Begin:
    """Start the strategy; answered at its first pause or its end (a `FeedResult`)."""


BEGIN = Begin()


@attrs.frozen
class Feed:
    """Answers for the session, all applied or none; answered with a `FeedResult`.

    Not `durable`: a pause it leads to is answered once the writes made before this
    feed are committed, without waiting for this feed's own (its caller keeps the
    answers until the next call; see `Executions.feed_many`).
    """

    items: tuple[FeedItem, ...]
    durable: bool = True


@attrs.frozen
class Cancel:
    """Stop the strategy; answered with the `cancelled` result."""

    reason: str


@attrs.frozen
class Status:
    """Answered with the session's status dict."""


STATUS = Status()


@attrs.frozen
class Reap:
    """From the GC: cancel the session if it was last active at or before `cutoff`;
    answered with whether it did."""

    cutoff: float


@attrs.frozen
class Passivate:
    """From the GC: leave memory if still paused and last active at or before `cutoff`
    (a durable session only); answered with whether it did."""

    cutoff: float


# -- from a plain strategy's thread to its own session's actor ------------------------------


@attrs.frozen
class ThreadPause:
    """Asked by a plain strategy's `ctx.llm`: answered with the answers, or failed."""

    requests: tuple[LlmRequest, ...]


@attrs.frozen
class ThreadDone:
    """Told by a plain strategy's thread when the strategy returned or raised."""

    value: Any
    error: BaseException | None


@attrs.frozen
class ThreadStep:
    """Asked by a plain strategy's `ctx.step` / `ctx.now` in a durable session.

    Without `value` (`ran` False): answered `(True, journaled value)` on re-drive, or
    `(False, None)`: run it. With `ran`: journal `value`, answered once committed.
    """

    name: str
    ran: bool = False
    value: Any = None


@attrs.frozen
class ThreadCustom:
    """Told by a plain strategy's `ctx.log` (`name` None) or `ctx.metric`."""

    name: str | None
    value: Any


# -- to the GC supervisor -------------------------------------------------------------------


@attrs.frozen
class Collect:
    """Run one GC pass now (the timer sends this; asked, it answers a `GcPass`)."""


COLLECT = Collect()


@attrs.frozen
class Renew:
    """Renew this host's leases on its durable executions in memory (the GC's lease
    timer sends this, every third of `lease_s`, on a shared store)."""


RENEW = Renew()


@attrs.frozen
class LeaseLost:
    """Tell a session: another host took its lease over; let this copy go."""


@attrs.frozen
class GcPass:
    """What one GC pass did: sessions told to reap themselves, results removed."""

    reap_candidates: tuple[str, ...]
    results_expired: tuple[str, ...]
    passivate_candidates: tuple[str, ...] = ()
