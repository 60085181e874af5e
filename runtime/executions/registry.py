"""`ExecutionRegistry`: where the runtime finds execution sessions, live or finished.

A live session is an actor (`greenroom.actors.execution.ExecutionActor`); the registry maps its
id to a `LiveEntry`: the actor's ref, the clock time it was last active (which the
actor updates and the GC supervisor reads), a `LiveSnapshot` of its state that the
actor replaces at every change (so `Runtime.executions.status` answers without asking
the actor, even while an async strategy holds it in a long CPU step), and whether the
host has asked to cancel it. A finished session's actor stops; its final `FeedResult`,
status and the digests of every answer it was fed are kept here for
`result_retention_s`, so a late status call still answers, a retried final answer is
an idempotent no-op and any other late feed is told the final state instead of a bare
not-found.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import attrs

from greenroom.errors import AlreadyResponded, InvalidTransition
from greenroom.executions.records import (
    ExecutionStats,
    FeedResult,
    MetricCounts,
    answer_digest,
    stats_of,
)
from greenroom.futures import GreenroomFuture
from greenroom.metrics import Metrics

__all__ = [
    "ENDED",
    "ExecutionRegistry",
    "LiveEntry",
    "LiveSnapshot",
    "RetainedResult",
    "SessionRef",
]

log = logging.getLogger("greenroom.executions")

ENDED = {"completed": "completed", "error": "failed (error)", "cancelled": "been cancelled"}
"""How an error message says a session ended: "has already <ENDED[state]>"."""


@attrs.frozen
class LiveSnapshot:
    """A live session's state as of its last change (written by its actor only)."""

    state: str
    round: int
    pending: tuple[str, ...]
    # The stats, or (while the session runs) only their counts: made into stats when
    # read, which is seldom, rather than at every feed. Read it through `stats_at`.
    stats: ExecutionStats | MetricCounts
    started_at: float  # clock seconds: `elapsed_ms` is computed when it is read

    def stats_at(self, now: float) -> ExecutionStats:
        """The stats with `elapsed_ms` as of `now` (and their own `custom` copy)."""
        elapsed_ms = max(0, round((now - self.started_at) * 1000))
        if isinstance(self.stats, tuple):
            return stats_of(self.stats, elapsed_ms).detached()
        return attrs.evolve(self.stats.detached(), elapsed_ms=elapsed_ms)

    def status(
        self,
        session_id: str,
        now: float,
        cancel_requested: str | None,
        durable: bool = False,
    ) -> dict[str, Any]:
        """The `execution_status` dict of this snapshot at `now` (a fresh dict)."""
        status: dict[str, Any] = {
            "session_id": session_id,
            "state": self.state,
            "round": self.round,
            "pending_queries": list(self.pending),
            "metrics": self.stats_at(now).to_json(),
            "durable": durable,
        }
        if cancel_requested is not None:
            status["cancel_requested"] = cancel_requested
        return status


class SessionRef(Protocol):
    """What the registry keeps of a session's actor: its ref (a `GreenroomActorRef`).

    A protocol, so the registry stays below the actors it lists.
    """

    def tell(self, message: Any) -> None:
        """Send without waiting; `ActorDeadError` if the actor has stopped."""
        ...

    def ask(self, message: Any, *, block: bool = True, timeout: float | None = None) -> Any:
        """Send and get the reply (a future with `block=False`)."""
        ...

    def ask_here(self, message: Any) -> GreenroomFuture[Any]:
        """Send an ask the caller is about to wait for; its turn may run on this thread."""
        ...


class LiveEntry:
    """A running or paused session: its actor, when it was last active, its snapshot.

    `last_active` (clock seconds) and `snapshot` are written by the session's actor
    only and read by the GC and the runtime's status calls; `cancel_requested` (the
    reason) is written by `Runtime.executions.cancel` and read by the actor when it next gets
    control. Each is one attribute, read and written whole, so none needs a lock.
    """

    __slots__ = (
        "cancel_requested",
        "durable",
        "last_active",
        "lock",
        "passivated",
        "ref",
        "snapshot",
    )

    def __init__(
        self,
        ref: SessionRef,
        last_active: float,
        snapshot: LiveSnapshot,
        *,
        durable: bool = False,
    ) -> None:
        self.ref = ref
        self.last_active = last_active
        self.snapshot = snapshot
        self.durable = durable
        self.cancel_requested: str | None = None
        # Taken by a send and by a passivation, so no message reaches an actor that
        # has left memory: once `passivated`, a send re-drives the session instead.
        self.lock = threading.Lock()
        self.passivated = False

    def status(self, session_id: str, now: float) -> dict[str, Any]:
        """The session's status as of its snapshot (a fresh dict)."""
        return self.snapshot.status(session_id, now, self.cancel_requested, self.durable)


@attrs.frozen
class RetainedResult:
    """A finished session: its final result and status, when it finished, and the
    digests of every answer it was fed (by query id)."""

    final: FeedResult
    status: dict[str, Any]
    finished_at: float
    answered: Mapping[str, bytes] = attrs.field(factory=dict)
    durable: bool = False
    """Whether a journal in the store goes with it (removed when the result expires)."""
    ended_on_redrive: bool = False
    """Whether it ended while re-driven from its journal (a changed strategy): a feed
    for the round it had left open gets this final result, not an error."""

    def refeed(self, items: Iterable[tuple[str | None, str, object]]) -> FeedResult:
        """A feed after the end: the final result if every item repeats an answer given.

        A repeated answer is an idempotent no-op (a host retrying the feed that
        finished the session gets the final result again); a changed one is
        `AlreadyResponded`; anything else (no query id, an id never answered) is
        `InvalidTransition` naming the final state. The caller copies the result.
        """
        final = self.final
        session_id = final.session_id
        ended = f"execution {session_id} has already {ENDED[final.status]}; cannot feed it"
        for query_id, response, _usage in items:
            digest = self.answered.get(query_id) if query_id is not None else None
            if digest is None:
                if self.ended_on_redrive:
                    return final
                what = "" if query_id is None else f" (query {query_id!r} was never answered)"
                raise InvalidTransition(
                    f"{ended}{what}; rt.executions.status({session_id!r}) shows its final result"
                )
            if digest != answer_digest(response):
                raise AlreadyResponded(
                    f"query {query_id!r} of execution {session_id} was already answered with "
                    f"a different response; an answer cannot be changed (the session has "
                    f"already {ENDED[final.status]})"
                )
        return final


class ExecutionRegistry:
    """Live sessions by id, and the final results of finished ones (thread-safe)."""

    def __init__(self, metrics: Metrics, retention_s: float) -> None:
        self._lock = threading.Lock()
        self._metrics = metrics
        self._retention_s = retention_s
        self._live: dict[str, LiveEntry] = {}
        self._retained: dict[str, RetainedResult] = {}
        self._strategies_running = 0  # plain strategies on a strategy-pool thread

    # -- plain strategies holding pool threads ---------------------------------------------

    def strategy_started(self) -> None:
        """A plain strategy got a strategy-pool thread."""
        with self._lock:
            self._strategies_running += 1

    def strategy_finished(self) -> None:
        """A plain strategy gave its strategy-pool thread back."""
        with self._lock:
            self._strategies_running -= 1

    @property
    def strategies_running(self) -> int:
        """Plain strategies holding a strategy-pool thread (running or waiting in ctx.llm)."""
        return self._strategies_running

    # -- writers -----------------------------------------------------------------------

    def add(self, session_id: str, entry: LiveEntry) -> None:
        """Record a session that has just started."""
        with self._lock:
            self._live[session_id] = entry

    def finish(self, session_id: str, retained: RetainedResult) -> None:
        """Move a session from live to retained (its actor stops next)."""
        with self._lock:
            self._live.pop(session_id, None)
            self._retained[session_id] = retained

    def unfinish(self, session_id: str, retained: RetainedResult) -> None:
        """Forget `retained` (if still kept): its end could not be journaled, as another
        runtime drove the session meanwhile; the next call goes on from the journal."""
        with self._lock:
            if self._retained.get(session_id) is retained:
                del self._retained[session_id]

    def drop(self, session_id: str) -> None:
        """Forget a live session that ended without a final result (runtime closing)."""
        with self._lock:
            self._live.pop(session_id, None)

    # -- readers -----------------------------------------------------------------------

    def live(self, session_id: str) -> LiveEntry | None:
        """The live entry of `session_id`, or `None`."""
        return self._live.get(session_id)

    def retained(self, session_id: str, now: float) -> RetainedResult | None:
        """The final result of `session_id` if kept and not expired at `now`."""
        with self._lock:
            kept = self._retained.get(session_id)
            if kept is None:
                return None
            if now - kept.finished_at < self._retention_s:
                return kept
            del self._retained[session_id]
        self._expired(session_id, kept)  # found expired before the GC got to it
        return None

    def live_entries(self) -> list[tuple[str, LiveEntry]]:
        """Every live session, as (id, entry) pairs."""
        with self._lock:
            return list(self._live.items())

    def retained_items(self, now: float) -> list[tuple[str, RetainedResult]]:
        """Every finished session still kept at `now`."""
        with self._lock:
            return [
                (session_id, kept)
                for session_id, kept in self._retained.items()
                if now - kept.finished_at < self._retention_s
            ]

    def idle(self, cutoff: float) -> list[tuple[str, LiveEntry]]:
        """Live sessions last active at or before `cutoff`."""
        with self._lock:
            return [
                (sid, entry) for sid, entry in self._live.items() if entry.last_active <= cutoff
            ]

    def expire(self, now: float) -> list[tuple[str, RetainedResult]]:
        """Remove the results kept for `result_retention_s` or longer; their ids and results."""
        with self._lock:
            gone = [
                (sid, kept)
                for sid, kept in self._retained.items()
                if now - kept.finished_at >= self._retention_s
            ]
            for sid, _kept in gone:
                del self._retained[sid]
        for sid, kept in gone:
            self._expired(sid, kept)
        return gone

    def _expired(self, session_id: str, kept: RetainedResult) -> None:
        self._metrics.incr("execution_results_expired")
        log.info(
            "execution %s: final result (%s) removed after result_retention_s (%g s)",
            session_id,
            kept.final.status,
            self._retention_s,
        )

    def counts(self) -> tuple[int, int]:
        """(live sessions, retained results)."""
        return len(self._live), len(self._retained)

    def clear(self) -> None:
        """Forget everything (the runtime has closed)."""
        with self._lock:
            self._live.clear()
            self._retained.clear()
