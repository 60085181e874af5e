"""`BufferSlot`: what the facade and one replay buffer actor share about that buffer, and
the counting and logging of trims and drops both do."""

from __future__ import annotations

import logging
from typing import Any

from greenroom.metrics import Metrics

__all__ = ["BufferSlot", "note_dropped", "note_trimmed"]

log = logging.getLogger("greenroom.replay")

_CUT_AT = 96  # trimmed entries kept at the front before the list is cut (when half of it)


class BufferSlot:
    """One buffer incarnation's epoch, its told appends and, while it has no actor, its
    events (shared state, not a message).

    A buffer starts dormant: `publish` appends to `held` here, on the publisher's
    thread, under the facade's replay lock, and no actor exists (most sessions are only
    ever published to, and an actor per session is the larger part of their cost). The
    first call that needs the buffer's actor (an ask, a subscribe) spawns it under that
    lock; the actor takes `held`, `tail`, `revision` and `idle_since` over in its
    constructor (and makes the events in its first turn, off that lock) and `held`
    becomes `None`: from then on publishes are told.

    `sent` is bumped by publishers under the facade's replay lock before they tell;
    `handled` only by the buffer, on its own thread, as it handles each one. The
    buffer may retire only when the two are equal, checked under that same lock (see
    `greenroom.actors.replay`). The facade keeps the buffer's actor ref in a subclass
    of its own (`greenroom.replay.namespace`): this module sits below the actors.
    """

    __slots__ = (
        "epoch",
        "handled",
        "head",
        "held",
        "idle_since",
        "oldest",
        "revision",
        "sent",
        "tail",
    )

    def __init__(self, epoch: str, now: float) -> None:
        self.epoch = epoch
        self.sent = 0
        self.handled = 0
        # While dormant: the held appends, oldest first, flat: arrival time, revision,
        # count, then that many payloads, for each (a tuple per append would be one
        # more object for the cyclic GC to walk, per event of every session), from
        # index `head` on (trimmed ones before it: the list is cut when they are half
        # of it, as a `Fifo` is, so a trim costs what it trims). Their positions run
        # from `oldest` to `tail`, contiguous; `revision` is the highest seen,
        # `idle_since` when the buffer was made or last became empty.
        self.held: list[Any] | None = []
        self.head = 0
        self.tail = 0
        self.oldest = 1
        self.revision = 0
        self.idle_since = now

    @property
    def pending(self) -> int:
        """Told appends sent and not handled yet."""
        return self.sent - self.handled

    @property
    def dormant(self) -> bool:
        """Whether the buffer has no actor yet (its events are held here)."""
        return self.held is not None

    def hold(
        self, now: float, revision: int, payloads: tuple[Any, ...], max_events: int, max_age: float
    ) -> tuple[int, int]:
        """Append `payloads` while dormant (under the facade's lock), then trim as the
        actor does on an append; the numbers trimmed by count and by age."""
        held = self.held
        assert held is not None
        held += (now, revision, len(payloads), *payloads)
        self.tail += len(payloads)
        if revision > self.revision:
            self.revision = revision
        return self.trim_held(max_events, now - max_age, now)

    def trim_held(self, max_events: int, cutoff: float, now: float) -> tuple[int, int]:
        """Drop held events beyond the newest `max_events` and those that arrived before
        `cutoff` (as the actor trims); the numbers dropped by count and by age."""
        held = self.held
        assert held is not None
        at = self.head
        by_count = by_age = 0
        excess = self.tail - self.oldest + 1 - max_events
        while excess > 0:
            count = held[at + 2]
            if count <= excess:
                at += 3 + count
                taken = count
            else:  # (a batch across the bound keeps its newer part: its head moves up)
                stamp, revision = held[at], held[at + 1]
                at += excess
                held[at : at + 3] = (stamp, revision, count - excess)
                taken = excess
            by_count += taken
            excess -= taken
        while at < len(held) and held[at] < cutoff:
            taken = held[at + 2]
            at += 3 + taken
            by_age += taken
        if at != self.head:
            self.oldest += by_count + by_age
            if at == len(held):
                held.clear()
                at = 0
                self.idle_since = now
            elif at >= _CUT_AT and at * 2 >= len(held):
                del held[:at]
                at = 0
            self.head = at
        return by_count, by_age

    def __repr__(self) -> str:
        state = f"held={self.tail - self.oldest + 1}" if self.dormant else "live"
        return f"<BufferSlot epoch={self.epoch} {state} sent={self.sent} handled={self.handled}>"


def note_trimmed(
    metrics: Metrics,
    session_id: str,
    by_count: int,
    by_age: int,
    max_events: int,
    max_age: float,
) -> None:
    """Count and log events trimmed from a session's buffer (awake or dormant)."""
    metrics.incr("replay_events_trimmed", by_count + by_age)
    if by_count:
        log.debug(
            "replay buffer %r: trimmed %d events over max_events_per_session=%d",
            session_id,
            by_count,
            max_events,
        )
    if by_age:
        log.debug(
            "replay buffer %r: trimmed %d events older than max_event_age_s=%g",
            session_id,
            by_age,
            max_age,
        )


def note_dropped(metrics: Metrics, session_id: str, epoch: str, tail: int, max_age: float) -> None:
    """Count and log a buffer dropped for being idle (awake or dormant)."""
    metrics.incr("replay_buffers_dropped")
    log.info(
        "replay buffer %r (epoch %s, tail %d) dropped: no events and no subscribers for more "
        "than max_event_age_s=%g",
        session_id,
        epoch,
        tail,
        max_age,
    )
