"""The `Runtime` facade's replay methods (a mixin of `Runtime`).

    start = rt.current_cursor("s1")
    event = rt.replay_append("s1", {"type": "commit"}, revision=3)
    rt.replay_after(start)          # Replayed(events=(event,), ...) or a Gap
    sub = rt.subscribe_after(start) # replayed events, then live ones (or a Gap)
    for item in rt.follow(start):   # events and gaps; recovers from lags by itself
        ...

Each session's buffer is a `ReplayBuffer` actor (`actors.replay`), made on first use
by any of these calls (`current_cursor` and `replay_after` included: a cursor names a
buffer incarnation, so there must be one to name). An empty buffer nobody subscribes
to is dropped again once idle for `max_event_age_s`. See `runtime.replay` for the gap
rules and `runtime.cursor` for the cursor format.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import weakref
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pykka import ActorDeadError

from actors.base import current_actor
from actors.replay import (
    RETIRED,
    Append,
    CurrentCursor,
    ReplayAfter,
    ReplayBuffer,
    ReplayTrimmer,
    Subscribe,
    Unsubscribe,
)
from runtime.cursor import parse_cursor
from runtime.errors import InvalidInput, InvalidTransition
from runtime.replay import Follower, Gap, ObservationEvent, Replayed, Subscription

if TYPE_CHECKING:
    from actors.base import GreenroomActorRef
    from runtime.clock import Clock
    from runtime.config import RuntimeConfig
    from runtime.metrics import Metrics

__all__ = ["ReplayAPI"]

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
    if revision >= 2**63:
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


class ReplayAPI:
    """`Runtime` methods for replay; `Runtime` inherits them."""

    if TYPE_CHECKING:
        _clock: Clock
        _config: RuntimeConfig
        _metrics: Metrics

        def spawn(self, actor_class: Any, *args: Any, **kwargs: Any) -> GreenroomActorRef: ...
        def _check_open(self) -> None: ...

    # -- hooks ----------------------------------------------------------------------------

    def _init_replay(self) -> None:
        """Set up this part's state; called once from `Runtime.__init__`."""
        self._replay_lock = threading.Lock()
        self._replay_buffers: dict[str, GreenroomActorRef] = {}
        # Weak, as the buffers' lists are: a subscription dropped without a close goes.
        self._replay_subs: weakref.WeakSet[Subscription] = weakref.WeakSet()
        self._replay_trimmer: GreenroomActorRef | None = None

    def _replay_metrics(self) -> dict[str, int]:
        """This part's counters (at zero until bumped) and gauges for `metrics()`.

        Counters: `replay_events_appended`, `replay_events_trimmed` (by count or age),
        `replay_subscriber_lags`, `replay_events_missed` (dropped from lagging
        subscribers' queues), `replay_buffers_dropped` (idle buffers retired). Gauges:
        `replay_buffers` (live buffers), `replay_subscribers` (open subscriptions).
        """
        with self._replay_lock:
            buffers = len(self._replay_buffers)
            subscribers = len(self._replay_subs)
        return {
            "replay_events_appended": 0,
            "replay_events_trimmed": 0,
            "replay_subscriber_lags": 0,
            "replay_events_missed": 0,
            "replay_buffers_dropped": 0,
            "replay_buffers": buffers,
            "replay_subscribers": subscribers,
        }

    def _close_replay(self) -> None:
        """Release this part's resources; `close()` calls it after every actor stopped.

        Ends every subscription still open, so a `next_event` waiting on a host thread
        wakes (with the events already queued, then `Stopped`).
        """
        with self._replay_lock:
            subs = list(self._replay_subs)
            self._replay_subs.clear()
            self._replay_buffers.clear()
            self._replay_trimmer = None
        for sub in subs:
            sub._stop(f"the runtime closed; subscription to session {sub.session_id!r} is over")

    # -- buffers ------------------------------------------------------------------------

    def _replay_ref(self, session_id: str) -> GreenroomActorRef:
        ref = self._replay_buffers.get(session_id)
        if ref is not None:
            return ref
        with self._replay_lock:
            self._check_open()
            ref = self._replay_buffers.get(session_id)
            if ref is None:
                if self._replay_trimmer is None:
                    self._replay_trimmer = self.spawn(
                        ReplayTrimmer, self._replay_list, actor_id="replay_trimmer"
                    )
                epoch = secrets.token_hex(8)
                ref = self.spawn(
                    ReplayBuffer,
                    session_id,
                    epoch,
                    self._replay_retired,
                    self._replay_detached,
                    actor_id=f"{session_id}#{epoch}",
                )
                self._replay_buffers[session_id] = ref
        return ref

    def _replay_list(self) -> list[GreenroomActorRef]:
        with self._replay_lock:
            return list(self._replay_buffers.values())

    def _replay_retired(self, session_id: str, ref: GreenroomActorRef) -> None:
        # On the retiring buffer's thread: a dict operation under a lock held for that.
        with self._replay_lock:
            if self._replay_buffers.get(session_id) is ref:
                del self._replay_buffers[session_id]

    def _replay_detached(self, sub: Subscription) -> None:
        with self._replay_lock:
            self._replay_subs.discard(sub)

    def _replay_ask(self, session_id: str, message: Any) -> Any:
        actor = current_actor()
        if actor is not None:
            raise InvalidTransition(
                f"replay calls wait for the session's buffer actor, and this one was made "
                f"inside a handler of actor {actor.name}; handlers must not block a shared "
                "dispatcher thread. Call it from a host thread or a run_blocking job"
            )
        for _ in range(_RETRIES):
            ref = self._replay_ref(session_id)
            try:
                answer = ref.ask(message)
            except ActorDeadError:
                self._check_open()
                self._replay_retired(session_id, ref)
                continue
            if answer is not RETIRED:
                return answer
        raise InvalidTransition(  # pragma: no cover (a fresh buffer never retires at once)
            f"the replay buffer of session {session_id!r} kept retiring; try again"
        )

    def _replay_closed(self, sub: Subscription) -> None:
        """A subscription was closed by its holder: forget it and detach it."""
        with self._replay_lock:
            self._replay_subs.discard(sub)
            ref = self._replay_buffers.get(sub.session_id)
        if ref is None or ref.actor_stopped.is_set():
            return
        # Stopped meanwhile: it pushes to nobody any more.
        with contextlib.suppress(ActorDeadError):
            ref.tell(Unsubscribe(sub))

    # -- the public surface -------------------------------------------------------------

    def replay_append(
        self, session_id: str, payload: Any, *, revision: int = 0
    ) -> ObservationEvent:
        """Append one event to the session's buffer; the event, with its cursor.

        `payload` is any JSON-serialisable value, stored as given (not copied; do not
        change it afterwards). `revision` is the session revision the event belongs
        to (an int >= 0). Bad input raises `InvalidInput` and appends nothing.
        """
        self._check_open()
        _check_session_id(session_id)
        _check_revision(revision)
        payloads = (payload,)
        _check_payloads(payloads)
        return self._replay_ask(session_id, Append(payloads, revision, True))

    def replay_append_many(
        self, session_id: str, payloads: Iterable[Any], *, revision: int = 0
    ) -> list[ObservationEvent]:
        """Append several events in one message; the events, in order.

        All or none: one bad payload raises `InvalidInput` and appends nothing. A
        batch reaches subscribers at once, so a batch larger than
        `subscriber_queue_size` lags every live subscriber.
        """
        self._check_open()
        _check_session_id(session_id)
        _check_revision(revision)
        if isinstance(payloads, str | bytes | bytearray | Mapping) or not isinstance(
            payloads, Iterable
        ):
            raise InvalidInput(
                "payloads must be a list (or another iterable) of payloads, got "
                f"{type(payloads).__name__}"
            )
        batch = tuple(payloads)
        if not batch:
            return []
        _check_payloads(batch)
        return self._replay_ask(session_id, Append(batch, revision, False))

    def current_cursor(self, session_id: str, revision: int = 0) -> str:
        """The cursor at the session's tail now, made at `revision`.

        `replay_after` of it replays what is appended from now on. Makes the session's
        buffer if it has none.
        """
        self._check_open()
        _check_session_id(session_id)
        _check_revision(revision)
        return self._replay_ask(session_id, CurrentCursor(revision))

    def replay_after(self, cursor: str, *, session_id: str | None = None) -> Replayed | Gap:
        """The events after `cursor`, in order (`Replayed`), or a `Gap` saying why not.

        A malformed cursor raises `MalformedCursor` (naming the bad part); with
        `session_id`, a cursor of another session raises `WrongSession`.
        """
        self._check_open()
        if session_id is not None:
            _check_session_id(session_id)
        parsed = parse_cursor(cursor, session_id=session_id)
        return self._replay_ask(parsed.session_id, ReplayAfter(parsed, cursor))

    def subscribe_after(self, cursor: str, *, session_id: str | None = None) -> Subscription | Gap:
        """A `Subscription` giving the events after `cursor`, then live ones; or a `Gap`.

        The replay and the registration happen in one message of the session's
        buffer, so there is no gap and no duplicate between them. Errors as for
        `replay_after`.
        """
        self._check_open()
        if session_id is not None:
            _check_session_id(session_id)
        parsed = parse_cursor(cursor, session_id=session_id)
        sub = Subscription(
            parsed.session_id, cursor, self._config.subscriber_queue_size, self._replay_closed
        )
        with self._replay_lock:
            self._check_open()
            self._replay_subs.add(sub)
        try:
            gap = self._replay_ask(parsed.session_id, Subscribe(parsed, cursor, sub))
        except BaseException:
            self._replay_detached(sub)
            raise
        if gap is not None:
            self._replay_detached(sub)
            return gap
        return sub

    def follow(self, cursor: str, *, session_id: str | None = None) -> Follower:
        """An iterator of the session's events after `cursor` that recovers by itself.

        Yields `ObservationEvent`s; on a gap it yields the `Gap` once and goes on from
        the gap's `latest_cursor`; when its subscription lags it subscribes again from
        the last cursor it yielded. It subscribes at once (events appended after this
        call returns are never missed). Iteration ends on `close()` (from any thread)
        or when the runtime closes; `next_item(timeout)` waits for at most `timeout`.
        """
        self._check_open()
        if session_id is not None:
            _check_session_id(session_id)
        parsed = parse_cursor(cursor, session_id=session_id)

        def subscribe(at: str) -> Subscription | Gap:
            return self.subscribe_after(at, session_id=parsed.session_id)

        return Follower(subscribe, cursor)
