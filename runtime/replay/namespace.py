"""`rt.replay`: per-session event buffers with cursors, gaps and live subscriptions.

    start = rt.replay.current_cursor("s1")
    event = rt.replay.append("s1", {"type": "commit"}, revision=3)
    rt.replay.publish("s1", {"type": "turn_activity"})  # fire and forget
    rt.replay.after(start)          # Replayed(events=(event, ...), ...) or a Gap
    sub = rt.replay.subscribe(start) # replayed events, then live ones (or a Gap)
    for item in rt.replay.follow(start):   # events and gaps; recovers from lags by itself
        ...

Each session's buffer is a `ReplayBuffer` actor (`greenroom.actors.replay`), made on
first use by a call that needs one: `append`, `current_cursor` (a cursor names a
buffer incarnation, so there must be one to name) and a `subscribe` that registers a
subscriber. `publish` makes a dormant buffer: its events are held in the buffer's slot
(`greenroom.replay.slot`), appended on the publisher's thread under the replay lock,
until any call but a publish (`append`, `current_cursor`, `after`, any `subscribe`)
reaches the session and starts the actor, which takes them over. Reads never make
one: `after` (or `subscribe`, `follow`) of a cursor of a session that has no buffer
is answered here, as by an empty buffer at the epoch reserved for the session's next
buffer: `Gap(unavailable)` for any cursor but
that reserved epoch's own at position 0 (which replays nothing), and the gap's
`latest_cursor` names that reserved epoch, so resuming from it replays everything
appended from then on. Reservations are held for the last `_MAX_RESERVED` sessions
asked about; a client resuming from an older one gets another `Gap(unavailable)`,
never a wrong replay. An empty buffer nobody subscribes to is dropped again once idle
for `max_event_age_s`. See `greenroom.replay.records` for the gap rules and
`greenroom.cursor` for the cursor format.

Publishing: `publish` / `publish_many` append to a dormant buffer here, or tell an
awake buffer's actor instead of asking it, so they never wait (usable inside actor
handlers) and the actor handles many appends per turn. Backpressure: there is none
beyond the actor's mailbox, which is unbounded. A host that publishes faster than the
buffer appends and fans out grows that mailbox; `rt.metrics()["replay_publishes_pending"]`
shows how many publishes are on their way, and `append` (which waits for its event)
paces a producer that needs it.

Where the waiting calls (`append`, `append_many`, `current_cursor`, `after`,
`subscribe`, `follow`) may be called: from a host thread, a `run_blocking` job or a
plain strategy's thread, never inside an actor's handler (`InvalidTransition`: the
kernel's one guard, `Kernel.refuse_inside_actor`); `publish` and `publish_many`
anywhere.

The seam the sync and the async face share (`greenroom.aio.replay`): each waiting call
is written once as steps (`greenroom.futures.Steps`: a generator of the futures it
waits for, see `greenroom.futures.drive`) or, for `subscribe`, a `PendingSubscribe`.
The sync methods drive them on the calling thread; the async ones await each future on
the event loop. They check their input when called (before anything is sent) and
never wait themselves:

    append_steps(session_id, payload, *, revision=0, caller_runs=False)
    append_many_steps(session_id, payloads, *, revision=0, caller_runs=False)
    current_cursor_steps(session_id, revision=0, *, caller_runs=False)
    after_steps(cursor, *, session_id=None, caller_runs=False)
    subscribe_pending(cursor, *, session_id=None) -> PendingSubscribe
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, Final, TypeVar

import attrs
from pykka import ActorDeadError

from greenroom.actors.base import GreenroomActorRef
from greenroom.actors.replay import ReplayBuffer, ReplayTrimmer, gap_after
from greenroom.checks import check_timeout
from greenroom.clock import stopwatch
from greenroom.cursor import ParsedCursor, parse_cursor
from greenroom.errors import FutureTimeout, InvalidTransition
from greenroom.futures import GreenroomFuture, Steps, drive
from greenroom.ids import next_hex_id
from greenroom.kernel import Kernel
from greenroom.replay.follower import Follower
from greenroom.replay.messages import (
    RETIRED,
    Append,
    ReplayAfter,
    Subscribe,
    Unsubscribe,
    append_many_message,
    append_message,
    check_session_id,
    current_cursor_message,
)
from greenroom.replay.records import Gap, ObservationEvent, Replayed
from greenroom.replay.slot import BufferSlot, note_dropped, note_trimmed
from greenroom.replay.subscription import Subscription

__all__ = ["PendingSubscribe", "Replay"]

log = logging.getLogger("greenroom.replay")

R = TypeVar("R")

_MAX_RESERVED = 4096  # sessions without a buffer whose next epoch is kept (see above)
_RETRIES = 16  # a buffer retiring under a call is replaced; more than once is a bug


class _NoBuffer:
    """What `_ask_steps` answers when the session has no buffer and may not get one."""


class _Again:
    """What `_unknown` answers when the session got a buffer meanwhile: ask that."""


_NO_BUFFER: Final = _NoBuffer()
_AGAIN: Final = _Again()


class _Slot(BufferSlot):
    """The facade's entry for one buffer incarnation: the shared slot, and its actor."""

    __slots__ = ("ref",)

    def __init__(self, epoch: str, now: float) -> None:
        super().__init__(epoch, now)
        self.ref: GreenroomActorRef | None = None  # set once the actor is spawned

    @property
    def actor(self) -> GreenroomActorRef:
        """The buffer's actor (`_slot` spawns it before handing the slot out)."""
        assert self.ref is not None
        return self.ref


def _answered(value: R) -> Steps[R]:
    """Steps that wait for nothing and give `value`."""
    yield from ()
    return value


class Replay:
    """The replay buffers of one runtime (`rt.replay`): append, read after, subscribe."""

    def __init__(self, kernel: Kernel) -> None:
        """Build the namespace on `kernel`; `Runtime` makes one."""
        self._kernel = kernel
        self._config = kernel.config
        self._check_open = kernel.check_open
        self._refuse_inside_actor = functools.partial(kernel.refuse_inside_actor, pools=False)
        self._spawn = kernel.spawn
        self._clock = kernel.clock
        self._metrics = kernel.metrics
        self._lock = threading.Lock()
        self._buffers: dict[str, _Slot] = {}
        # The epoch the next buffer of a session without one will take (see the
        # module docstring); oldest first, at most _MAX_RESERVED.
        self._reserved: OrderedDict[str, str] = OrderedDict()
        # Weak, as the buffers' lists are: a subscription dropped without a close goes.
        self._subs: weakref.WeakSet[Subscription] = weakref.WeakSet()
        self._trimmer: GreenroomActorRef | None = None
        # Bound once: every buffer gets these two objects, not a pair of its own.
        self._on_retire = self._retire
        self._on_detached = self._detached

    def counters(self) -> dict[str, int]:
        """This part's counters (at zero until bumped) and gauges (`Runtime.metrics`).

        Counters: `replay_events_appended` (asked or published), `replay_events_trimmed`
        (by count or age), `replay_subscriber_lags`, `replay_events_missed` (dropped
        from lagging subscribers' queues at the overflow), `replay_buffers_dropped`
        (idle buffers retired). Gauges: `replay_buffers` (buffers, dormant ones too),
        `replay_subscribers` (open subscriptions), `replay_publishes_pending`
        (`publish` messages sent and not yet appended, over every buffer).
        """
        with self._lock:
            buffers = len(self._buffers)
            subscribers = len(self._subs)
            pending = sum(slot.pending for slot in self._buffers.values())
        return {
            "replay_events_appended": 0,
            "replay_events_trimmed": 0,
            "replay_subscriber_lags": 0,
            "replay_events_missed": 0,
            "replay_buffers_dropped": 0,
            "replay_buffers": buffers,
            "replay_subscribers": subscribers,
            "replay_publishes_pending": pending,
        }

    def close(self) -> None:
        """Release this part's resources; `close()` calls it after every actor stopped.

        Ends every subscription still open, so a `next_event` waiting on a host thread
        wakes (with the events already queued, then `Stopped`).
        """
        if not self._kernel.closed:
            raise InvalidTransition(
                "rt.replay.close() runs as part of Runtime.close(), once every actor has "
                "stopped; close the runtime instead"
            )
        with self._lock:
            subs = list(self._subs)
            self._subs.clear()
            self._buffers.clear()
            self._reserved.clear()
            self._trimmer = None
        for sub in subs:
            sub._stop(f"the runtime closed; subscription to session {sub.session_id!r} is over")

    # -- the public surface: waiting calls --------------------------------------------------

    def append(self, session_id: str, payload: Any, *, revision: int = 0) -> ObservationEvent:
        """Append one event to the session's buffer; the event, with its cursor.

        `payload` is any JSON-serialisable value, stored as given (not copied; do not
        change it afterwards). `revision` is the session revision the event belongs
        to (an int >= 0). Bad input raises `InvalidInput` and appends nothing. Waits
        for the buffer (not from inside an actor handler: use `publish`).
        """
        self._refuse_inside_actor("replay.append()")
        return drive(self.append_steps(session_id, payload, revision=revision, caller_runs=True))

    def append_many(
        self, session_id: str, payloads: Iterable[Any], *, revision: int = 0
    ) -> list[ObservationEvent]:
        """Append several events in one message; the events, in order.

        All or none: one bad payload raises `InvalidInput` and appends nothing, as
        does a batch with no defined order (a set, a dict or a dict view). A batch
        reaches subscribers at once, so a batch larger than `subscriber_queue_size`
        lags every live subscriber.
        """
        self._refuse_inside_actor("replay.append_many()")
        return drive(
            self.append_many_steps(session_id, payloads, revision=revision, caller_runs=True)
        )

    def current_cursor(self, session_id: str, revision: int = 0) -> str:
        """The cursor at the session's tail now, made at `revision`.

        `after` of it replays what is appended from now on. Makes the session's
        buffer if it has none, and restarts the buffer's idle time (the cursor stays
        resumable for at least `max_event_age_s` if nothing is appended).
        """
        self._refuse_inside_actor("replay.current_cursor()")
        return drive(self.current_cursor_steps(session_id, revision, caller_runs=True))

    def after(self, cursor: str, *, session_id: str | None = None) -> Replayed | Gap:
        """The events after `cursor`, in order (`Replayed`), or a `Gap` saying why not.

        A malformed cursor raises `MalformedCursor` (naming the bad part); with
        `session_id`, a cursor of another session raises `WrongSession`. A read: it
        makes no buffer and does not extend a buffer's idle time.
        """
        self._refuse_inside_actor("replay.after()")
        return drive(self.after_steps(cursor, session_id=session_id, caller_runs=True))

    def subscribe(self, cursor: str, *, session_id: str | None = None) -> Subscription | Gap:
        """A `Subscription` giving the events after `cursor`, then live ones; or a `Gap`.

        The replay and the registration happen in one message of the session's
        buffer, so there is no gap and no duplicate between them. Errors as for
        `after`. A subscription is what makes a buffer for a session that has
        none (a `Gap` answer makes none).
        """
        self._refuse_inside_actor("replay.subscribe()")
        return self.subscribe_pending(cursor, session_id=session_id).wait(None)

    def follow(self, cursor: str, *, session_id: str | None = None) -> Follower:
        """An iterator of the session's events after `cursor` that recovers by itself.

        Yields `ObservationEvent`s; on a gap it yields the `Gap` once and goes on from
        the gap's `latest_cursor`; when its subscription lags it subscribes again from
        the last cursor it yielded. It subscribes at once (events appended after this
        call returns are never missed). Iteration ends on `close()` (from any thread)
        or when the runtime closes; `next_item(timeout)` waits for at most `timeout`
        in all, re-subscribing included. Errors as for `after`.
        """
        self._refuse_inside_actor("replay.follow()")
        sid = self._parse(cursor, session_id).session_id
        return Follower(functools.partial(self.subscribe_pending, session_id=sid), cursor)

    # -- the public surface: calls that never wait ------------------------------------------

    def publish(self, session_id: str, payload: Any, *, revision: int = 0) -> None:
        """Append one event without waiting for it (fire and forget).

        The payload, session id and revision are checked on the caller's thread
        (`InvalidInput`, nothing appended), then the event is appended here if the buffer
        is dormant (see the module docstring), or its actor is told. Never waits, so
        it may be called from inside actor handlers. Events published from one thread
        are appended in the order sent (also relative to that thread's
        `append` calls); the buffer never retires while publishes are on their way
        to it, so none is lost. There is no backpressure: see the module docstring
        (`replay_publishes_pending` in `metrics()`). The event's position and cursor
        are not returned: subscribers get it, and `current_cursor` names the tail.
        """
        self._check_open()
        check_session_id(session_id)
        self._tell(session_id, append_message(payload, revision))

    def publish_many(self, session_id: str, payloads: Iterable[Any], *, revision: int = 0) -> None:
        """`publish` of a batch, in one message, all or none (as `append_many`)."""
        self._check_open()
        check_session_id(session_id)
        message = append_many_message(payloads, revision)
        if message is not None:
            self._tell(session_id, message)

    # -- the seam the sync and the async face share (see the module docstring) -------------

    def append_steps(
        self, session_id: str, payload: Any, *, revision: int = 0, caller_runs: bool = False
    ) -> Steps[ObservationEvent]:
        """`append` as steps that send the message and give the event; never waits.

        The input is checked now (`InvalidInput`, `Stopped`), the message sent when
        the steps are first run. Drive them with `greenroom.futures.drive` on a thread,
        or await each future they yield on an event loop (`greenroom.aio.replay`).
        With `caller_runs`, an idle buffer's turn may run on the thread that runs the
        steps (when `RuntimeConfig.caller_runs` allows): only for a driver that is
        about to wait for the answer on that thread, as the sync methods are; an
        event loop leaves it False.
        """
        self._check_open()
        check_session_id(session_id)
        message = append_message(payload, revision)
        steps: Steps[ObservationEvent] = self._ask_steps(session_id, message, caller_runs)
        return steps

    def append_many_steps(
        self,
        session_id: str,
        payloads: Iterable[Any],
        *,
        revision: int = 0,
        caller_runs: bool = False,
    ) -> Steps[list[ObservationEvent]]:
        """`append_many` as steps (see `append_steps`); an empty batch sends nothing."""
        self._check_open()
        check_session_id(session_id)
        message = append_many_message(payloads, revision)
        if message is None:
            return _answered([])
        steps: Steps[list[ObservationEvent]] = self._ask_steps(session_id, message, caller_runs)
        return steps

    def current_cursor_steps(
        self, session_id: str, revision: int = 0, *, caller_runs: bool = False
    ) -> Steps[str]:
        """`current_cursor` as steps (see `append_steps`)."""
        self._check_open()
        check_session_id(session_id)
        message = current_cursor_message(revision)
        steps: Steps[str] = self._ask_steps(session_id, message, caller_runs)
        return steps

    def after_steps(
        self, cursor: str, *, session_id: str | None = None, caller_runs: bool = False
    ) -> Steps[Replayed | Gap]:
        """`after` as steps (see `append_steps`); the cursor is checked now."""
        return self._after_steps(self._parse(cursor, session_id), cursor, caller_runs)

    def subscribe_pending(self, cursor: str, *, session_id: str | None = None) -> PendingSubscribe:
        """`subscribe`, sent now and answered later: a `PendingSubscribe`; never waits.

        The cursor is checked now (errors as for `after`) and the subscribe sent at
        once, so what is appended after this returns is never missed. `wait(timeout)`
        on a thread, or await `future` then `poll()` on an event loop, gives the
        `Subscription` or the `Gap`; `cancel()` gives it up.
        """
        return PendingSubscribe(self, self._parse(cursor, session_id), cursor)

    # -- buffers --------------------------------------------------------------------------

    def _parse(self, cursor: str, session_id: str | None) -> ParsedCursor:
        """`cursor`'s parts, checked (`Stopped`, `InvalidInput`, `MalformedCursor`, ...)."""
        self._check_open()
        if session_id is not None:
            check_session_id(session_id)
        return parse_cursor(cursor, session_id=session_id)

    def _slot_locked(self, session_id: str) -> _Slot:
        """The session's buffer, made (dormant) if it has none; call with the replay
        lock held."""
        slot = self._buffers.get(session_id)
        if slot is not None:
            return slot
        self._check_open()
        if self._trimmer is None:
            self._trimmer = self._spawn(ReplayTrimmer, self._tick, actor_id="replay_trimmer")
        epoch = self._reserved.pop(session_id, None) or next_hex_id()
        slot = self._buffers[session_id] = _Slot(epoch, self._clock.monotonic())
        return slot

    def _wake_locked(self, session_id: str, slot: _Slot) -> None:
        """Spawn the dormant `slot`'s actor, which takes its held events over; call with
        the replay lock held (no publish can slip in between)."""
        # The epoch makes the id unique; the session part only names it, with a NUL
        # (which a session id may hold, and an actor id may not) spelled out.
        name = session_id.replace("\x00", "\\x00")
        slot.ref = self._spawn(
            ReplayBuffer,
            session_id,
            slot,
            self._on_retire,
            self._on_detached,
            actor_id=f"{name}#{slot.epoch}",
        )

    def _slot(self, session_id: str, *, make: bool = True) -> _Slot | None:
        """The session's buffer with its actor: made if it has none (`None` instead
        when not `make`), its actor spawned if it is dormant."""
        slot = self._buffers.get(session_id)
        if slot is not None and slot.ref is not None:
            return slot
        if slot is None and not make:
            return None
        with self._lock:
            slot = self._buffers.get(session_id)
            if slot is None:
                if not make:
                    return None
                slot = self._slot_locked(session_id)
            if slot.ref is None:
                self._wake_locked(session_id, slot)
            return slot

    def _tick(self) -> list[GreenroomActorRef]:
        """The trimmer's tick: trim the dormant buffers by age here and drop those idle
        past `max_event_age_s` (as a buffer's actor does on its tick); every other
        buffer's actor, for the trimmer to tell."""
        config = self._config
        max_age = config.max_event_age_s
        now = self._clock.monotonic()
        cutoff = now - max_age
        refs: list[GreenroomActorRef] = []
        trimmed: list[tuple[str, int]] = []
        dropped: list[tuple[str, _Slot]] = []
        with self._lock:
            for session_id, slot in list(self._buffers.items()):
                if slot.ref is not None:
                    refs.append(slot.ref)
                    continue
                held = slot.held
                assert held is not None
                if len(held) > slot.head and held[slot.head] >= cutoff:
                    continue  # (the common case: nothing old enough)
                _, by_age = slot.trim_held(config.max_events_per_session, cutoff, now)
                if by_age:
                    trimmed.append((session_id, by_age))
                if not held and now - slot.idle_since > max_age:
                    del self._buffers[session_id]
                    dropped.append((session_id, slot))
        max_events = config.max_events_per_session
        for session_id, by_age in trimmed:
            note_trimmed(self._metrics, session_id, 0, by_age, max_events, max_age)
        for session_id, slot in dropped:
            note_dropped(self._metrics, session_id, slot.epoch, slot.tail, max_age)
        return refs

    def _retire(self, session_id: str, slot: BufferSlot) -> bool:
        """Whether the idle buffer of `slot` may retire (then it leaves the lookup).

        On the retiring buffer's thread, under the lock publishers take: not while a
        told append is on its way to it (`slot.handled` is only moved by that thread).
        """
        with self._lock:
            if slot.sent != slot.handled:
                return False
            if self._buffers.get(session_id) is slot:
                del self._buffers[session_id]
            return True

    def _forget(self, session_id: str, slot: _Slot) -> None:
        """`slot`'s actor is stopped: take it out of the lookup."""
        with self._lock:
            if self._buffers.get(session_id) is slot:
                del self._buffers[session_id]

    def _detached(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)

    def _ask_steps(
        self, session_id: str, message: object, caller_runs: bool, *, make: bool = True
    ) -> Steps[Any]:
        """The session's buffer's answer to `message`, as steps (`_NO_BUFFER`: it has
        none, and not `make`)."""
        for _ in range(_RETRIES):
            slot = self._slot(session_id, make=make)
            if slot is None:
                return _NO_BUFFER
            ref = slot.actor
            future = ref.ask_here(message) if caller_runs else ref.ask(message, block=False)
            yield future
            try:
                answer = future.get(timeout=0)  # resolved: the driver waited for it
            except ActorDeadError:
                self._check_open()
                self._forget(session_id, slot)
                continue
            if answer is not RETIRED:
                return answer
        raise InvalidTransition(  # pragma: no cover (a fresh buffer never retires at once)
            f"the replay buffer of session {session_id!r} kept retiring; try again"
        )

    def _after_steps(
        self, parsed: ParsedCursor, cursor: str, caller_runs: bool
    ) -> Steps[Replayed | Gap]:
        sid = parsed.session_id
        for _ in range(_RETRIES):
            message = ReplayAfter(parsed, cursor)
            answer = yield from self._ask_steps(sid, message, caller_runs, make=False)
            if answer is not _NO_BUFFER:
                result: Replayed | Gap = answer
                return result
            unknown = self._unknown(parsed, cursor)
            if not isinstance(unknown, _Again):
                return Replayed(sid, (), cursor) if unknown is None else unknown
        raise InvalidTransition(  # pragma: no cover (a fresh buffer never retires at once)
            f"the replay buffer of session {sid!r} kept retiring; try again"
        )

    def _tell(self, session_id: str, message: Append) -> None:
        """Append `message` to a dormant buffer, or tell the session's buffer's actor;
        never waits (see `publish`)."""
        config = self._config
        for _ in range(_RETRIES):
            with self._lock:
                now = self._clock.monotonic()  # (read here: stamps stay in order)
                slot = self._slot_locked(session_id)
                held = slot.held is not None
                if held:
                    by_count, by_age = slot.hold(
                        now,
                        message.revision,
                        message.payloads,
                        config.max_events_per_session,
                        config.max_event_age_s,
                    )
                else:
                    # Counted before the tell, under the lock the buffer retires under:
                    # it cannot retire between here and the tell landing in its mailbox.
                    slot.sent += 1
            if held:  # appended here, in the caller's thread
                self._metrics.incr("replay_events_appended", len(message.payloads))
                if by_count or by_age:
                    note_trimmed(
                        self._metrics,
                        session_id,
                        by_count,
                        by_age,
                        config.max_events_per_session,
                        config.max_event_age_s,
                    )
                return
            try:
                slot.actor.tell(message)
                return
            except ActorDeadError:
                # Stopped (the runtime is closing, or the actor died): not delivered.
                with self._lock:
                    slot.sent -= 1
                self._check_open()
                self._forget(session_id, slot)
        raise InvalidTransition(  # pragma: no cover (a fresh buffer never stops at once)
            f"the replay buffer of session {session_id!r} kept stopping; try again"
        )

    def _unknown(self, parsed: ParsedCursor, cursor: str) -> Gap | _Again | None:
        """For a session with no buffer: the `Gap` for `cursor`, or `None` (it is the
        reserved epoch's cursor at position 0: nothing to replay); `_AGAIN` when the
        session got a buffer meanwhile (ask that)."""
        sid = parsed.session_id
        with self._lock:
            self._check_open()
            if sid in self._buffers:
                return _AGAIN
            reserved = self._reserved
            epoch = reserved.get(sid)
            if epoch is None:
                epoch = reserved[sid] = next_hex_id()
                if len(reserved) > _MAX_RESERVED:
                    forgotten, _ = reserved.popitem(last=False)
                    log.debug(
                        "replay: forgot the epoch reserved for session %r (more than %d "
                        "sessions without a buffer were asked about)",
                        forgotten,
                        _MAX_RESERVED,
                    )
            else:
                reserved.move_to_end(sid)
        gap = gap_after(parsed, cursor, sid, epoch, 0, 0, None)
        if gap is None:
            return None
        return attrs.evolve(
            gap,
            detail=f"{gap.detail} (the session has no replay buffer now; resume from "
            "latest_cursor to get what is appended from now on)",
        )

    def _closed(self, sub: Subscription) -> None:
        """A subscription was closed by its holder: forget it and detach it."""
        with self._lock:
            self._subs.discard(sub)
            slot = self._buffers.get(sub.session_id)
        ref = slot.ref if slot is not None else None
        if ref is None or ref.actor_stopped.is_set():
            return
        # Stopped meanwhile: it pushes to nobody any more.
        with contextlib.suppress(ActorDeadError):
            ref.tell(Unsubscribe(sub))


class PendingSubscribe:
    """A `Subscribe` sent to a session's buffer and not answered yet.

    Made by `Replay.subscribe_pending` (and by `subscribe` and `follow`, which wait for
    it). The replay and the registration happen in one message of the buffer. A
    session with no buffer is answered here, making the buffer only for the cursor
    that needs one. A buffer that retired or stopped under the message is replaced,
    and the message sent again (to a new `future`).

    * On a thread: `wait(timeout)` gives the `Subscription` or the `Gap` (`Timeout`
      leaves it pending, for a later `wait`).
    * On an event loop: await `future` (`greenroom.aio.bridge.settled`), then `poll()`;
      `None` means it was sent again: await the new `future`.
    * `cancel()` gives it up: the subscription it would give is closed.
    """

    __slots__ = ("_api", "_cursor", "_future", "_parsed", "_result", "_slot", "_sub")

    def __init__(self, api: Replay, parsed: ParsedCursor, cursor: str) -> None:
        """Send the subscribe (see `Replay.subscribe_pending`, which makes these)."""
        self._api = api
        self._parsed = parsed
        self._cursor = cursor
        self._sub = Subscription(
            parsed.session_id, cursor, api._config.subscriber_queue_size, api._closed
        )
        with api._lock:
            api._check_open()
            api._subs.add(self._sub)
        self._future: GreenroomFuture[Any] = GreenroomFuture()
        self._slot: _Slot | None = None
        self._result: Subscription | Gap | None = None
        try:
            self._send()
        except BaseException:
            self.cancel()
            raise

    @property
    def session_id(self) -> str:
        """The session subscribed to (the cursor's)."""
        return self._parsed.session_id

    @property
    def future(self) -> GreenroomFuture[Any]:
        """The future of the buffer's answer that `poll` waits for (resolved already
        when the answer came without asking a buffer)."""
        return self._future

    def poll(self) -> Subscription | Gap | None:
        """The `Subscription` or `Gap` if the buffer has answered, else `None`: wait for
        `future` to resolve, then poll again (a retired or stopped buffer's answer sends
        the subscribe again, to a new `future`). Never waits."""
        while self._result is None and self._future.done:
            self._take()
        return self._result

    def wait(self, timeout: float | None) -> Subscription | Gap:
        """The `Subscription` or `Gap`; `Timeout` (still pending) after `timeout` s."""
        limit = check_timeout(timeout)
        deadline = None if limit is None else stopwatch() + limit
        while self._result is None:
            remaining = None if deadline is None else max(0.0, deadline - stopwatch())
            if not self._future.wait(remaining):
                # Still pending: a later wait picks it up.
                raise FutureTimeout(f"no reply within {remaining} seconds")
            self._take()
        return self._result

    def cancel(self) -> None:
        """Give it up; a `Subscribe` still queued finds the subscription closed."""
        self._sub.close()
        self._api._detached(self._sub)

    def __repr__(self) -> str:
        state = "pending" if self._result is None else type(self._result).__name__
        return f"<PendingSubscribe {self._cursor!r} {state}>"

    def _send(self) -> None:
        api, parsed, sid = self._api, self._parsed, self._parsed.session_id
        for _ in range(_RETRIES):
            slot = api._slot(sid, make=False)
            if slot is None:
                gap = api._unknown(parsed, self._cursor)
                if isinstance(gap, _Again):
                    continue
                if gap is not None:
                    self._done(gap)
                    return
                slot = api._slot(sid)  # the reserved epoch at 0: it needs one
            assert slot is not None
            self._slot = slot
            message = Subscribe(parsed, self._cursor, self._sub)
            self._future = slot.actor.ask(message, block=False)
            return
        raise InvalidTransition(  # pragma: no cover (a fresh buffer never retires at once)
            f"the replay buffer of session {sid!r} kept retiring; try again"
        )

    def _done(self, answer: Gap | None) -> None:
        if answer is None:
            self._result = self._sub
        else:
            self._api._detached(self._sub)
            self._result = answer
        if not self._future.done:
            self._future.set(None)  # answered here: nothing for a waiter to wait for

    def _take(self) -> None:
        """Act on the buffer's answer in the resolved `_future`."""
        api = self._api
        try:
            answer = self._future.get(timeout=0)
        except ActorDeadError:
            api._check_open()
            assert self._slot is not None
            api._forget(self._parsed.session_id, self._slot)
            self._send()
            return
        except BaseException:
            self.cancel()
            raise
        if answer is RETIRED:
            self._send()
            return
        self._done(answer)
