"""`rt.replay`: per-session event buffers with cursors, gaps and live subscriptions.

    start = rt.replay.current_cursor("s1")
    event = rt.replay.append("s1", {"type": "commit"}, revision=3)
    rt.replay.publish("s1", {"type": "turn_activity"})  # fire and forget
    rt.replay.after(start)          # Replayed(events=(event, ...), ...) or a Gap
    sub = rt.replay.subscribe(start) # replayed events, then live ones (or a Gap)
    for item in rt.replay.follow(start):   # events and gaps; recovers from lags by itself
        ...

Each session's buffer is a `ReplayBuffer` actor (`greenroom.actors.replay`), made on first use
by a call that needs one: `append`, `publish`, `current_cursor` (a
cursor names a buffer incarnation, so there must be one to name) and a
`subscribe` that registers a subscriber. Reads never make one: `after`
(or `subscribe`, `follow`) of a cursor of a session that has no buffer is
answered here, as by an empty buffer at the epoch reserved for the session's next
buffer: `Gap(unavailable)` for any cursor but that reserved epoch's own at position 0
(which replays nothing), and the gap's `latest_cursor` names that reserved epoch, so
resuming from it replays everything appended from then on. Reservations are held for
the last `_MAX_RESERVED` sessions asked about; a client resuming from an older one
gets another `Gap(unavailable)`, never a wrong replay. An empty buffer nobody
subscribes to is dropped again once idle for `max_event_age_s`. See `greenroom.replay.records`
for the gap rules and `greenroom.cursor` for the cursor format.

Publishing: `publish` / `publish_many` tell the buffer instead of
asking it, so they never wait (usable inside actor handlers) and the buffer handles
many appends per turn. Backpressure: there is none beyond the buffer's mailbox, which
is unbounded. A host that publishes faster than the buffer appends and fans out grows
that mailbox; `rt.metrics()["replay_publishes_pending"]` shows how many publishes
are on their way, and `append` (which waits for its event) paces a producer
that needs it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, MappingView, Set
from typing import TYPE_CHECKING, Any

import attrs
from pykka import ActorDeadError

from greenroom.actors.base import current_actor
from greenroom.actors.replay import (
    RETIRED,
    Append,
    BufferSlot,
    CurrentCursor,
    ReplayAfter,
    ReplayBuffer,
    ReplayTrimmer,
    Subscribe,
    Unsubscribe,
    gap_after,
)
from greenroom.clock import stopwatch
from greenroom.cursor import MAX_CURSOR_INT, ParsedCursor, parse_cursor
from greenroom.errors import FutureTimeout, InvalidInput, InvalidTransition
from greenroom.futures import GreenroomFuture, Steps, drive
from greenroom.kernel import Kernel
from greenroom.replay.follower import Follower
from greenroom.replay.records import Gap, ObservationEvent, Replayed
from greenroom.replay.subscription import Subscription, wait_limit

if TYPE_CHECKING:
    from greenroom.actors.base import GreenroomActorRef

__all__ = ["Replay"]

log = logging.getLogger("greenroom.replay")

_MAX_RESERVED = 4096  # sessions without a buffer whose next epoch is kept (see above)
_NO_BUFFER: Any = object()  # what _replay_ask answers when it may not make a buffer
_AGAIN: Any = object()  # the session got a buffer meanwhile: ask it
_RETRIES = 16  # a buffer retiring under a call is replaced; more than once is a bug
_SCALARS = (str, int, bool, type(None))
_encode = json.JSONEncoder(allow_nan=False).encode  # made once: json.dumps(**kw) makes one per call


def _check_session_id(session_id: object) -> str:
    if not isinstance(session_id, str) or not session_id:
        raise InvalidInput(f"session_id must be a non-empty str, got {session_id!r}")
    return session_id


def _check_revision(revision: object) -> int:
    if isinstance(revision, bool) or not isinstance(revision, int) or revision < 0:
        raise InvalidInput(f"revision must be an int >= 0, got {revision!r}")
    if revision >= MAX_CURSOR_INT:
        raise InvalidInput(f"revision must be below 2**63, got {revision}")
    return revision


def _check_payloads(payloads: tuple[Any, ...]) -> None:
    """`InvalidInput` unless every payload is JSON-serialisable (checked, not copied)."""
    if all(type(payload) in _SCALARS for payload in payloads):
        return
    try:
        _encode(payloads)
    except (TypeError, ValueError, RecursionError):
        for index, payload in enumerate(payloads):
            try:
                _encode(payload)
            except (TypeError, ValueError, RecursionError) as error:
                where = "payload" if len(payloads) == 1 else f"payloads[{index}]"
                raise InvalidInput(
                    f"{where} must be JSON-serialisable (dicts with str keys, lists, str, "
                    f"numbers, bools, None): {error}"
                ) from None
        raise  # pragma: no cover (each passed alone: cannot happen)


def _check_batch(payloads: object) -> tuple[Any, ...]:
    """The payloads of a batch as a tuple, in order; `InvalidInput` for a non-sequence."""
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
    batch = tuple(payloads)
    _check_payloads(batch)
    return batch


class Replay:
    """The replay buffers of one runtime (`rt.replay`): append, read after, subscribe."""

    def __init__(self, kernel: Kernel) -> None:
        """Build the namespace on `kernel`; `Runtime` makes one."""
        self._kernel = kernel
        self._clock = kernel.clock
        self._config = kernel.config
        self._metrics = kernel.metrics
        self._check_open = kernel.check_open
        self.spawn = kernel.spawn
        self._replay_lock = threading.Lock()
        self._replay_buffers: dict[str, BufferSlot] = {}
        # The epoch the next buffer of a session without one will take (see the
        # module docstring); oldest first, at most _MAX_RESERVED.
        self._replay_reserved: OrderedDict[str, str] = OrderedDict()
        # Weak, as the buffers' lists are: a subscription dropped without a close goes.
        self._replay_subs: weakref.WeakSet[Subscription] = weakref.WeakSet()
        self._replay_trimmer: GreenroomActorRef | None = None

    def counters(self) -> dict[str, int]:
        """This part's counters (at zero until bumped) and gauges (`Runtime.metrics`).

        Counters: `replay_events_appended` (asked or published), `replay_events_trimmed`
        (by count or age), `replay_subscriber_lags`, `replay_events_missed` (dropped
        from lagging subscribers' queues at the overflow), `replay_buffers_dropped`
        (idle buffers retired). Gauges: `replay_buffers` (live buffers),
        `replay_subscribers` (open subscriptions), `replay_publishes_pending`
        (`publish` messages sent and not yet appended, over every buffer).
        """
        with self._replay_lock:
            buffers = len(self._replay_buffers)
            subscribers = len(self._replay_subs)
            pending = sum(slot.pending for slot in self._replay_buffers.values())
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
        with self._replay_lock:
            subs = list(self._replay_subs)
            self._replay_subs.clear()
            self._replay_buffers.clear()
            self._replay_reserved.clear()
            self._replay_trimmer = None
        for sub in subs:
            sub._stop(f"the runtime closed; subscription to session {sub.session_id!r} is over")

    # -- buffers ------------------------------------------------------------------------

    def _replay_slot_locked(self, session_id: str) -> BufferSlot:
        """The session's buffer, made if it has none; call with the replay lock held."""
        slot = self._replay_buffers.get(session_id)
        if slot is not None:
            return slot
        self._check_open()
        if self._replay_trimmer is None:
            self._replay_trimmer = self.spawn(
                ReplayTrimmer, self._replay_list, actor_id="replay_trimmer"
            )
        epoch = self._replay_reserved.pop(session_id, None) or secrets.token_hex(8)
        slot = BufferSlot(epoch)
        slot.ref = self.spawn(
            ReplayBuffer,
            session_id,
            slot,
            self._replay_retire,
            self._replay_detached,
            actor_id=f"{session_id}#{epoch}",
        )
        self._replay_buffers[session_id] = slot
        return slot

    def _replay_slot(self, session_id: str, *, make: bool = True) -> BufferSlot | None:
        slot = self._replay_buffers.get(session_id)
        if slot is not None or not make:
            return slot
        with self._replay_lock:
            return self._replay_slot_locked(session_id)

    def _replay_list(self) -> list[GreenroomActorRef]:
        with self._replay_lock:
            return [slot.ref for slot in self._replay_buffers.values() if slot.ref is not None]

    def _replay_retire(self, session_id: str, slot: BufferSlot) -> bool:
        """Whether the idle buffer of `slot` may retire (then it leaves the lookup).

        On the retiring buffer's thread, under the lock publishers take: not while a
        told append is on its way to it (`slot.handled` is only moved by that thread).
        """
        with self._replay_lock:
            if slot.sent != slot.handled:
                return False
            if self._replay_buffers.get(session_id) is slot:
                del self._replay_buffers[session_id]
            return True

    def _replay_forget(self, session_id: str, slot: BufferSlot) -> None:
        """`slot`'s actor is stopped: take it out of the lookup."""
        with self._replay_lock:
            if self._replay_buffers.get(session_id) is slot:
                del self._replay_buffers[session_id]

    def _replay_detached(self, sub: Subscription) -> None:
        with self._replay_lock:
            self._replay_subs.discard(sub)

    def _replay_ask(
        self, session_id: str, message: Any, *, make: bool = True, timeout: float | None = None
    ) -> Any:
        """The session's buffer's answer to `message` (`_NO_BUFFER`: none, and not `make`)."""
        # With no timeout the buffer's turn may run right here (caller runs).
        steps = self._replay_ask_steps(session_id, message, make=make, here=timeout is None)
        return drive(steps, timeout)

    def _replay_ask_steps(
        self, session_id: str, message: Any, *, make: bool = True, here: bool = False
    ) -> Steps[Any]:
        """`_replay_ask` as steps (`greenroom.futures.drive`): yields the ask's future, so
        the asyncio facade (`greenroom.aio`) can await it. With `here`, the buffer's turn
        may run on this thread when the future is sent (only for a caller that is about
        to wait with no timeout)."""
        self._refuse_in_handler()
        for _ in range(_RETRIES):
            slot = self._replay_slot(session_id, make=make)
            if slot is None:
                return _NO_BUFFER
            assert slot.ref is not None
            future = slot.ref.ask_here(message) if here else slot.ref.ask(message, block=False)
            yield future
            try:
                answer = future.get(timeout=0)  # resolved: the driver waited for it
            except ActorDeadError:
                self._check_open()
                self._replay_forget(session_id, slot)
                continue
            if answer is not RETIRED:
                return answer
        raise InvalidTransition(  # pragma: no cover (a fresh buffer never retires at once)
            f"the replay buffer of session {session_id!r} kept retiring; try again"
        )

    def _replay_tell(self, session_id: str, message: Append) -> None:
        """Tell the session's buffer `message`, never waiting; see `publish`."""
        for _ in range(_RETRIES):
            with self._replay_lock:
                slot = self._replay_slot_locked(session_id)
                # Counted before the tell, under the lock the buffer retires under: it
                # cannot retire between here and the tell landing in its mailbox.
                slot.sent += 1
            assert slot.ref is not None
            try:
                slot.ref.tell(message)
                return
            except ActorDeadError:
                # Stopped (the runtime is closing, or the actor died): not delivered.
                with self._replay_lock:
                    slot.sent -= 1
                self._check_open()
                self._replay_forget(session_id, slot)
        raise InvalidTransition(  # pragma: no cover (a fresh buffer never stops at once)
            f"the replay buffer of session {session_id!r} kept stopping; try again"
        )

    def _replay_unknown(self, parsed: ParsedCursor, cursor: str) -> Any:
        """For a session with no buffer: the `Gap` for `cursor`, or `None` (it is the
        reserved epoch's cursor at position 0: nothing to replay); `_AGAIN` when the
        session got a buffer meanwhile (ask that)."""
        sid = parsed.session_id
        with self._replay_lock:
            self._check_open()
            if sid in self._replay_buffers:
                return _AGAIN
            reserved = self._replay_reserved
            epoch = reserved.get(sid)
            if epoch is None:
                epoch = reserved[sid] = secrets.token_hex(8)
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

    def _refuse_in_handler(self) -> None:
        actor = current_actor()
        if actor is not None:
            raise InvalidTransition(
                f"replay calls wait for the session's buffer actor, and this one was made "
                f"inside a handler of actor {actor.name}; handlers must not block a shared "
                "dispatcher thread. Call it from a host thread or a run_blocking job "
                "(or use replay.publish, which never waits)"
            )

    def _replay_closed(self, sub: Subscription) -> None:
        """A subscription was closed by its holder: forget it and detach it."""
        with self._replay_lock:
            self._replay_subs.discard(sub)
            slot = self._replay_buffers.get(sub.session_id)
        ref = slot.ref if slot is not None else None
        if ref is None or ref.actor_stopped.is_set():
            return
        # Stopped meanwhile: it pushes to nobody any more.
        with contextlib.suppress(ActorDeadError):
            ref.tell(Unsubscribe(sub))

    # -- checks and steps shared with the asyncio facade (runtime.aio) -------------------

    def _replay_append_message(self, session_id: str, payload: Any, revision: int) -> Append:
        """`append`'s checks; the message to ask the buffer."""
        self._check_open()
        _check_session_id(session_id)
        _check_revision(revision)
        payloads = (payload,)
        _check_payloads(payloads)
        return Append(payloads, revision, True)

    def _replay_batch_message(
        self, session_id: str, payloads: Iterable[Any], revision: int
    ) -> Append | None:
        """`append_many`'s checks; the message (`None`: an empty batch)."""
        self._check_open()
        _check_session_id(session_id)
        _check_revision(revision)
        batch = _check_batch(payloads)
        if not batch:
            return None
        return Append(batch, revision, False)

    def _replay_cursor_message(self, session_id: str, revision: int) -> CurrentCursor:
        """`current_cursor`'s checks; the message."""
        self._check_open()
        _check_session_id(session_id)
        _check_revision(revision)
        return CurrentCursor(revision)

    def _replay_after_steps(
        self, cursor: str, session_id: str | None, *, here: bool
    ) -> Steps[Replayed | Gap]:
        """`after` as steps (see `_replay_ask_steps`)."""
        self._check_open()
        if session_id is not None:
            _check_session_id(session_id)
        parsed = parse_cursor(cursor, session_id=session_id)
        sid = parsed.session_id
        for _ in range(_RETRIES):
            answer = yield from self._replay_ask_steps(
                sid, ReplayAfter(parsed, cursor), make=False, here=here
            )
            if answer is not _NO_BUFFER:
                return answer
            answer = self._replay_unknown(parsed, cursor)
            if answer is not _AGAIN:
                return Replayed(sid, (), cursor) if answer is None else answer
        raise InvalidTransition(  # pragma: no cover (a fresh buffer never retires at once)
            f"the replay buffer of session {sid!r} kept retiring; try again"
        )

    # -- the public surface -------------------------------------------------------------

    def append(self, session_id: str, payload: Any, *, revision: int = 0) -> ObservationEvent:
        """Append one event to the session's buffer; the event, with its cursor.

        `payload` is any JSON-serialisable value, stored as given (not copied; do not
        change it afterwards). `revision` is the session revision the event belongs
        to (an int >= 0). Bad input raises `InvalidInput` and appends nothing. Waits
        for the buffer (not from inside an actor handler: use `publish`).
        """
        return self._replay_ask(
            session_id, self._replay_append_message(session_id, payload, revision)
        )

    def append_many(
        self, session_id: str, payloads: Iterable[Any], *, revision: int = 0
    ) -> list[ObservationEvent]:
        """Append several events in one message; the events, in order.

        All or none: one bad payload raises `InvalidInput` and appends nothing, as
        does a batch with no defined order (a set, a dict or a dict view). A batch
        reaches subscribers at once, so a batch larger than `subscriber_queue_size`
        lags every live subscriber.
        """
        message = self._replay_batch_message(session_id, payloads, revision)
        if message is None:
            return []
        return self._replay_ask(session_id, message)

    def publish(self, session_id: str, payload: Any, *, revision: int = 0) -> None:
        """Append one event without waiting for it (fire and forget).

        The payload, session id and revision are checked on the caller's thread
        (`InvalidInput`, nothing appended), then the buffer is told. Never waits, so
        it may be called from inside actor handlers. Events published from one thread
        are appended in the order sent (also relative to that thread's
        `append` calls); the buffer never retires while publishes are on their
        way to it, so none is lost. There is no backpressure: see the module docstring
        (`replay_publishes_pending` in `metrics()`). The event's position and cursor
        are not returned: subscribers get it, and `current_cursor` names the tail.
        """
        self._check_open()
        _check_session_id(session_id)
        _check_revision(revision)
        payloads = (payload,)
        _check_payloads(payloads)
        self._replay_tell(session_id, Append(payloads, revision, True))

    def publish_many(self, session_id: str, payloads: Iterable[Any], *, revision: int = 0) -> None:
        """`publish` of a batch, in one message, all or none (as `append_many`)."""
        self._check_open()
        _check_session_id(session_id)
        _check_revision(revision)
        batch = _check_batch(payloads)
        if batch:
            self._replay_tell(session_id, Append(batch, revision, False))

    def current_cursor(self, session_id: str, revision: int = 0) -> str:
        """The cursor at the session's tail now, made at `revision`.

        `after` of it replays what is appended from now on. Makes the session's
        buffer if it has none, and restarts the buffer's idle time (the cursor stays
        resumable for at least `max_event_age_s` if nothing is appended).
        """
        return self._replay_ask(session_id, self._replay_cursor_message(session_id, revision))

    def after(self, cursor: str, *, session_id: str | None = None) -> Replayed | Gap:
        """The events after `cursor`, in order (`Replayed`), or a `Gap` saying why not.

        A malformed cursor raises `MalformedCursor` (naming the bad part); with
        `session_id`, a cursor of another session raises `WrongSession`. A read: it
        makes no buffer and does not extend a buffer's idle time.
        """
        # With no timeout the buffer's turn may run right here (caller runs).
        return drive(self._replay_after_steps(cursor, session_id, here=True))

    def subscribe(self, cursor: str, *, session_id: str | None = None) -> Subscription | Gap:
        """A `Subscription` giving the events after `cursor`, then live ones; or a `Gap`.

        The replay and the registration happen in one message of the session's
        buffer, so there is no gap and no duplicate between them. Errors as for
        `after`. A subscription is what makes a buffer for a session that has
        none (a `Gap` answer makes none).
        """
        self._check_open()
        if session_id is not None:
            _check_session_id(session_id)
        parsed = parse_cursor(cursor, session_id=session_id)
        self._refuse_in_handler()
        return _PendingSubscribe(self, parsed, cursor).wait(None)

    def follow(self, cursor: str, *, session_id: str | None = None) -> Follower:
        """An iterator of the session's events after `cursor` that recovers by itself.

        Yields `ObservationEvent`s; on a gap it yields the `Gap` once and goes on from
        the gap's `latest_cursor`; when its subscription lags it subscribes again from
        the last cursor it yielded. It subscribes at once (events appended after this
        call returns are never missed). Iteration ends on `close()` (from any thread)
        or when the runtime closes; `next_item(timeout)` waits for at most `timeout`
        in all, re-subscribing included.
        """
        return Follower(self._replay_follow_subscriber(cursor, session_id), cursor)

    def _replay_follow_subscriber(
        self, cursor: str, session_id: str | None
    ) -> Callable[[str], _PendingSubscribe]:
        """`follow`'s checks; what subscribes the follower (again) from a cursor."""
        self._check_open()
        if session_id is not None:
            _check_session_id(session_id)
        parsed = parse_cursor(cursor, session_id=session_id)
        sid = parsed.session_id
        self._refuse_in_handler()

        def subscribe(at: str) -> _PendingSubscribe:
            return _PendingSubscribe(self, parse_cursor(at, session_id=sid), at)

        return subscribe


class _PendingSubscribe:
    """A `Subscribe` sent to a session's buffer, answered by `wait` (a
    `PendingSubscription`: `Follower` keeps one whose wait timed out for its next call).

    The replay and the registration happen in one message of the buffer. A session
    with no buffer is answered here (`Replay._replay_unknown`), making the buffer
    only for the cursor that needs one. A buffer that retired or stopped under the
    message is replaced, and the message sent again.
    """

    __slots__ = ("_api", "_cursor", "_future", "_parsed", "_result", "_slot", "_sub")

    def __init__(self, api: Replay, parsed: ParsedCursor, cursor: str) -> None:
        self._api = api
        self._parsed = parsed
        self._cursor = cursor
        self._sub = Subscription(
            parsed.session_id, cursor, api._config.subscriber_queue_size, api._replay_closed
        )
        with api._replay_lock:
            api._check_open()
            api._replay_subs.add(self._sub)
        self._future: Any = None
        self._slot: BufferSlot | None = None
        self._result: Subscription | Gap | None = None
        try:
            self._send()
        except BaseException:
            self.cancel()
            raise

    def _send(self) -> None:
        api, parsed, sid = self._api, self._parsed, self._parsed.session_id
        for _ in range(_RETRIES):
            slot = api._replay_slot(sid, make=False)
            if slot is None:
                gap = api._replay_unknown(parsed, self._cursor)
                if gap is _AGAIN:
                    continue
                if gap is not None:
                    self._done(gap)
                    return
                slot = api._replay_slot(sid)  # the reserved epoch at 0: it needs one
            assert slot is not None
            assert slot.ref is not None
            self._slot = slot
            self._future = slot.ref.ask(Subscribe(parsed, self._cursor, self._sub), block=False)
            return
        raise InvalidTransition(  # pragma: no cover (a fresh buffer never retires at once)
            f"the replay buffer of session {sid!r} kept retiring; try again"
        )

    def _done(self, answer: Gap | None) -> None:
        if answer is None:
            self._result = self._sub
        else:
            self._api._replay_detached(self._sub)
            self._result = answer

    def wait(self, timeout: float | None) -> Subscription | Gap:
        """The `Subscription` or `Gap`; `Timeout` (still pending) after `timeout` s."""
        limit = wait_limit(timeout)
        deadline = None if limit is None else stopwatch() + limit
        while self._result is None:
            remaining = None if deadline is None else max(0.0, deadline - stopwatch())
            if not self._future.wait(remaining):
                # Still pending: a later wait picks it up.
                raise FutureTimeout(f"no reply within {remaining} seconds")
            self._take()
        return self._result

    @property
    def future(self) -> GreenroomFuture[Any]:
        """The future of the buffer's answer `poll` waits for (for an asyncio waiter)."""
        return self._future

    def poll(self) -> Subscription | Gap | None:
        """The `Subscription` or `Gap` if the buffer has answered, else `None`: wait for
        `future` to resolve, then poll again (a retired or stopped buffer's answer sends
        the subscribe again, to a new `future`). Never waits."""
        while self._result is None and self._future.done:
            self._take()
        return self._result

    def _take(self) -> None:
        """Act on the buffer's answer in the resolved `_future`."""
        api = self._api
        try:
            answer = self._future.get(timeout=0)
        except ActorDeadError:
            api._check_open()
            assert self._slot is not None
            api._replay_forget(self._parsed.session_id, self._slot)
            self._send()
            return
        except BaseException:
            self.cancel()
            raise
        if answer is RETIRED:
            self._send()
            return
        self._done(answer)

    def cancel(self) -> None:
        """Give it up; a `Subscribe` still queued finds the subscription closed."""
        self._sub.close()
        self._api._replay_detached(self._sub)
