"""Replay buffer actors: one `ReplayBuffer` per session, and the `ReplayTrimmer`.

A `ReplayBuffer` owns one incarnation of a session's buffer: its random epoch, its
events (a `Fifo`, oldest first, positions contiguous), the time each append arrived,
and its live subscriptions. Everything about one session happens in its messages, one
at a time, so a replay snapshot and a subscriber's registration taken in the same
message can never miss or repeat an event appended around them. A buffer that was
dormant (only published to, with no actor: see `greenroom.replay.slot`) is taken over
when its actor starts, its held events, positions and times kept.

Bounds: at most `max_events_per_session` events (trimmed on append) and none older
than `max_event_age_s` of the runtime clock (trimmed on append, before every replay,
and on the trimmer's tick every `replay_trim_interval_s`).

Idleness: a buffer is idle while it holds no events and has no subscribers. The idle
time starts when the buffer is made, when its last event is trimmed, when its last
subscriber goes, and again whenever `current_cursor` hands out a cursor (so a cursor
just handed out stays resumable for at least `max_event_age_s`). Reads
(`Runtime.replay.after`, and a `subscribe` answered with a `Gap`) do not extend it. A
buffer idle for longer than `max_event_age_s` retires on a tick: it answers any ask
still queued with `RETIRED` (the facade asks a fresh buffer instead), leaves the
facade's lookup and stops, so its memory is returned. It never retires while told
appends (`Runtime.replay.publish`) are on their way to it: its `BufferSlot`
(`greenroom.replay.slot`) counts those sent and those handled, and the facade lets it
retire only when the two are equal (under the lock publishers take), so a publish can
never reach a retired buffer and be lost. Every trim, drop and lag is counted in
`Runtime.metrics()` and logged (logger `greenroom.replay`; trims at DEBUG). The
messages are in `greenroom.replay.messages`.

Live events are pushed into each subscription's bounded queue without waiting
(`Subscription._offer`); one that overflows lags, is detached, and is told so on its
next `next_event`. Subscriptions are held weakly: one its holder dropped without
closing it is let go at the next append or tick.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from pykka import ActorDeadError

from greenroom.actors.base import DEFERRED, ActorContext, GreenroomActor, GreenroomActorRef
from greenroom.cursor import CURSOR_VERSION, ParsedCursor
from greenroom.fifo import Fifo
from greenroom.replay.messages import (
    RETIRED,
    TRIM,
    Append,
    CurrentCursor,
    ReplayAfter,
    Subscribe,
    Trim,
    Unsubscribe,
)
from greenroom.replay.records import TRIMMED, UNAVAILABLE, Gap, ObservationEvent, Replayed
from greenroom.replay.slot import BufferSlot, note_dropped, note_trimmed
from greenroom.replay.subscription import Subscription

__all__ = ["ReplayBuffer", "ReplayTrimmer", "gap_after"]

log = logging.getLogger("greenroom.replay")


def gap_after(
    cursor: ParsedCursor,
    requested: str,
    session_id: str,
    epoch: str,
    tail: int,
    revision: int,
    oldest: int | None,
    *,
    latest: str | None = None,
) -> Gap | None:
    """The `Gap` for resuming after `cursor` from a buffer in this state, or `None`.

    `tail` is the buffer's last position ever appended, `revision` the highest it has
    seen, `oldest` the position of its oldest held event (`None`: it holds none). The
    rules are in `greenroom.replay.records`'s docstring. The facade applies them too, to a
    session with no buffer: an empty buffer at the epoch reserved for its next one.
    `latest` is the buffer's tail cursor (default: the in-memory `v1` one; the Redis
    streams pass their `v2` one).
    """
    if latest is None:
        latest = f"{CURSOR_VERSION}:{epoch}:{revision}:{tail}:{session_id}"
    detail = None
    if cursor.epoch != epoch:
        detail = (
            f"the cursor is from another incarnation of this session's buffer (epoch "
            f"{cursor.epoch}, now {epoch}): it was dropped and made again, or the "
            "process restarted, and what it held is gone"
        )
    elif cursor.position > tail:
        detail = f"the cursor's position {cursor.position} is ahead of the buffer's tail {tail}"
    elif cursor.revision > revision:
        detail = (
            f"the cursor's revision {cursor.revision} is ahead of the buffer's revision {revision}"
        )
    if detail is not None:
        return Gap(session_id, UNAVAILABLE, requested, latest, revision, None, detail)
    first = oldest if oldest is not None else tail + 1
    if cursor.position + 1 < first:
        held = f"the oldest held is {oldest}" if oldest is not None else "none are held"
        return Gap(
            session_id,
            TRIMMED,
            requested,
            latest,
            revision,
            oldest,
            f"events {cursor.position + 1} to {first - 1} were trimmed; {held}",
        )
    return None


class ReplayBuffer(GreenroomActor):
    """One incarnation of a session's replay buffer; see the module docstring."""

    kind = "replay_buffer"

    def __init__(
        self,
        ctx: ActorContext,
        session_id: str,
        slot: BufferSlot,
        on_retire: Callable[[str, BufferSlot], bool],
        on_detached: Callable[[Subscription], None],
    ) -> None:
        super().__init__(ctx)
        config = ctx.config
        self.session_id = session_id
        self._slot = slot
        epoch = self.epoch = slot.epoch
        self._prefix = f"{CURSOR_VERSION}:{epoch}:"
        self._max_events = config.max_events_per_session
        self._max_age = config.max_event_age_s
        self._on_retire = on_retire
        self._on_detached = on_detached
        self._events: Fifo[ObservationEvent] = Fifo()
        # (arrival time on the runtime clock, last position of that append), oldest
        # first: one entry per append message, not per event.
        self._stamps: Fifo[tuple[float, int]] = Fifo()
        self._tail = 0  # position of the last event ever appended (0: none)
        self._revision = 0  # highest revision appended or asked a cursor for
        # Weak: a subscription its holder dropped without closing is let go, not kept
        # (with its queue, and this buffer) for ever.
        self._subs: Sequence[weakref.ref[Subscription]] = ()  # (a list once subscribed)
        self._idle_since = ctx.clock.monotonic()
        self._retired = False
        # A dormant slot's appends (list, first index, first position), until `_adopt`.
        self._raw: tuple[list[Any], int, int] | None = None
        self._take_over(slot)

    def _take_over(self, slot: BufferSlot) -> None:
        """Take over what a dormant slot held (see `greenroom.replay.slot`). This runs in
        the spawn, under the facade's lock, so no publish slips in between; the events
        are made in the first turn (`_adopt`), not under that lock."""
        held = slot.held
        if held is None:
            return
        slot.held = None
        self._tail = slot.tail
        self._revision = slot.revision
        self._idle_since = slot.idle_since
        self._raw = (held, slot.head, slot.oldest)

    def _adopt(self) -> None:
        """Make the events a dormant slot held (before any message sees the buffer)."""
        assert self._raw is not None
        held, at, position = self._raw
        self._raw = None
        sid = self.session_id
        position -= 1
        events = []
        while at < len(held):  # (flat: time, revision, count, payloads; see the slot)
            stamp, revision, count = held[at : at + 3]
            head = f"{self._prefix}{revision}:"
            for payload in held[at + 3 : at + 3 + count]:
                position += 1
                events.append(
                    ObservationEvent(sid, revision, position, f"{head}{position}:{sid}", payload)
                )
            self._stamps.append((stamp, position))
            at += 3 + count
        self._events.extend(events)

    def on_stop(self) -> None:
        subs, self._subs = self._subs, ()
        for ref in subs:
            sub = ref()
            if sub is not None:
                sub._stop(
                    f"the replay buffer of session {self.session_id!r} stopped (runtime closed)"
                )

    def on_receive(self, message: object) -> Any:
        if self._raw is not None:
            self._adopt()
        if self._retired:
            if self._reply_to is None and type(message) is Append:
                # Cannot happen (the facade lets a buffer retire only with no told
                # append on its way); said loudly rather than lost in silence.
                log.error(
                    "replay buffer %r (epoch %s) retired, yet a told append of %d events "
                    "reached it; they are not appended. This is a greenroom bug: report it",
                    self.session_id,
                    self.epoch,
                    len(message.payloads),
                )
            return RETIRED
        # (`type(...) is`: exact classes, the cheapest test, and one mypy narrows.)
        if type(message) is Append:
            return self._append(message)
        if type(message) is ReplayAfter:
            return self._replay_after(message)
        if type(message) is Subscribe:
            return self._subscribe(message)
        if type(message) is CurrentCursor:
            return self._current_cursor(message.revision)
        if type(message) is Unsubscribe:
            self._unsubscribe(message.subscription)
            return None
        if type(message) is Trim:
            self._tick()
            return None
        return super().on_receive(message)

    # -- appends ------------------------------------------------------------------------

    def _append(self, message: Append) -> Any:
        now = self.ctx.clock.monotonic()
        revision = message.revision
        if revision > self._revision:
            self._revision = revision
        sid = self.session_id
        head = f"{self._prefix}{revision}:"
        position = self._tail
        events = []
        for payload in message.payloads:
            position += 1
            events.append(
                ObservationEvent(sid, revision, position, f"{head}{position}:{sid}", payload)
            )
        self._tail = position
        self._events.extend(events)
        self._stamps.append((now, position))
        excess = len(self._events) - self._max_events
        if excess > 0:
            self._trim_count(excess)
        self._trim_age(now)
        self.ctx.metrics.incr("replay_events_appended", len(events))
        if self._reply_to is None:  # told (replay_publish): nobody to answer
            self._slot.handled += 1
            if self._subs:
                self._fan_out(events)
            return None
        answer = events[0] if message.single else events
        if not self._subs:
            return answer
        # The appender is answered first (the events are held, so replayable, from
        # here on): it can send its next append while this one is fanned out.
        self.reply_later().set(answer)
        self._fan_out(events)
        return DEFERRED

    def _trim_count(self, excess: int) -> None:
        events = self._events
        for _ in range(excess):
            events.popleft()
        first = events.first().position if events else self._tail + 1
        stamps = self._stamps
        while stamps and stamps.first()[1] < first:
            stamps.popleft()
        note_trimmed(self.ctx.metrics, self.session_id, excess, 0, self._max_events, self._max_age)

    def _trim_age(self, now: float) -> None:
        stamps = self._stamps
        cutoff = now - self._max_age
        if not stamps or stamps.first()[0] >= cutoff:
            return
        events = self._events
        trimmed = 0
        while stamps and stamps.first()[0] < cutoff:
            last = stamps.popleft()[1]
            while events and events.first().position <= last:
                events.popleft()
                trimmed += 1
        if not events:
            self._idle_since = now
        if trimmed:
            note_trimmed(
                self.ctx.metrics, self.session_id, 0, trimmed, self._max_events, self._max_age
            )

    def _fan_out(self, events: list[ObservationEvent]) -> None:
        detached: list[weakref.ref[Subscription]] | None = None
        for ref in self._subs:
            sub = ref()
            if sub is None or not sub._offer(events):
                if detached is None:
                    detached = []
                detached.append(ref)
        if detached is None:
            return
        self._subs = [ref for ref in self._subs if ref not in detached]
        if not self._subs:
            self._idle_since = self.ctx.clock.monotonic()
        for ref in detached:
            sub = ref()
            if sub is None:
                continue  # dropped by its holder: gone from the facade's set as well
            if sub._lagged:
                self.ctx.metrics.incr("replay_subscriber_lags")
                self.ctx.metrics.incr("replay_events_missed", sub._missed)
                log.warning(
                    "replay subscriber of session %r lagged: more than %d live events "
                    "were waiting (subscriber_queue_size); %d dropped from its queue. Its "
                    "next next_event raises SubscriberLagged with cursor %r to resume from",
                    self.session_id,
                    sub._capacity,
                    sub._missed,
                    sub.cursor,
                )
            self._on_detached(sub)

    # -- cursors, replays and subscriptions -------------------------------------------

    def _current_cursor(self, revision: int) -> str:
        self._touch()
        if revision > self._revision:
            self._revision = revision
        return f"{self._prefix}{revision}:{self._tail}:{self.session_id}"

    def _touch(self) -> None:
        if not self._events and not self._subs:
            self._idle_since = self.ctx.clock.monotonic()

    def _gap(self, cursor: ParsedCursor, requested: str) -> Gap | None:
        events = self._events
        return gap_after(
            cursor,
            requested,
            self.session_id,
            self.epoch,
            self._tail,
            self._revision,
            events.first().position if events else None,
        )

    def _after(self, position: int) -> tuple[ObservationEvent, ...]:
        """The held events after `position` (which the gap check found in range)."""
        events = self._events
        if not events:
            return ()
        return events.since(position + 1 - events.first().position)

    def _replay_after(self, message: ReplayAfter) -> Replayed | Gap:
        # A read: it does not extend the buffer's idleness (see the module docstring).
        self._trim_age(self.ctx.clock.monotonic())
        gap = self._gap(message.parsed, message.cursor)
        if gap is not None:
            return gap
        events = self._after(message.parsed.position)
        latest = events[-1].cursor if events else message.cursor
        return Replayed(self.session_id, events, latest)

    def _subscribe(self, message: Subscribe) -> Gap | None:
        # Registered, the subscriber keeps the buffer; answered with a Gap, it is a read.
        self._trim_age(self.ctx.clock.monotonic())
        gap = self._gap(message.parsed, message.cursor)
        if gap is not None:
            return gap
        sub = message.subscription
        sub._start(self._after(message.parsed.position))
        if not sub.closed:
            self._subs = [*self._subs, weakref.ref(sub)]
        return None

    def _unsubscribe(self, sub: Subscription) -> None:
        kept = [ref for ref in self._subs if ref() is not sub]
        if len(kept) != len(self._subs):
            self._subs = kept
            self._touch()

    # -- the trimmer's tick ---------------------------------------------------------------

    def _tick(self) -> None:
        now = self.ctx.clock.monotonic()
        self._trim_age(now)
        if self._subs:
            # Let go of subscriptions dropped by their holders without a close (and any
            # closed one whose Unsubscribe has not arrived yet).
            kept = []
            for ref in self._subs:
                sub = ref()
                if sub is not None and not sub.closed:
                    kept.append(ref)
            if len(kept) != len(self._subs):
                self._subs = kept
                self._touch()
            if kept:
                return
        if self._events or now - self._idle_since <= self._max_age:
            return
        if not self._on_retire(self.session_id, self._slot):
            # Told appends are on their way: they will make it busy again.
            return
        self._retired = True
        self.actor_ref.stop(block=False)
        note_dropped(self.ctx.metrics, self.session_id, self.epoch, self._tail, self._max_age)


class ReplayTrimmer(GreenroomActor):
    """Tells every replay buffer to trim (and maybe retire) every `replay_trim_interval_s`."""

    kind = "replay_trimmer"
    stop_order = -10  # first: no tick reaches buffers while they stop

    def __init__(self, ctx: ActorContext, buffers: Callable[[], list[GreenroomActorRef]]) -> None:
        super().__init__(ctx)
        self._buffers = buffers

    def on_start(self) -> None:
        self.schedule_every(self.ctx.config.replay_trim_interval_s, TRIM)

    def on_receive(self, message: object) -> Any:
        if type(message) is Trim:
            for ref in self._buffers():
                if ref.actor_stopped.is_set():
                    continue
                # Retired between the listing and the tell: nothing to trim.
                with contextlib.suppress(ActorDeadError):
                    ref.tell(TRIM)
            return None
        return super().on_receive(message)
