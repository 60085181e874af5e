"""`ExecutionRegistry`: where the runtime finds execution sessions, live or finished.

A live session is an actor (`actors.execution.ExecutionActor`); the registry maps its
id to the actor's ref and to the clock time it was last active, which the actor
updates and the GC supervisor reads. A finished session's actor stops; its final
`FeedResult` and status are kept here for `result_retention_s`, so a late status call
still answers and a late feed is told the final state instead of a bare not-found.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from actors.base import GreenroomActorRef
    from runtime.executions import FeedResult
    from runtime.metrics import Metrics

__all__ = ["ExecutionRegistry", "LiveEntry", "RetainedResult"]

log = logging.getLogger("greenroom.executions")


class LiveEntry:
    """A running or paused session: its actor and when it was last active.

    `last_active` (clock seconds) is written by the session's actor only and read by
    the GC; a float attribute is read and written whole, so it needs no lock.
    """

    __slots__ = ("last_active", "ref")

    def __init__(self, ref: GreenroomActorRef, last_active: float) -> None:
        self.ref = ref
        self.last_active = last_active


@attrs.frozen
class RetainedResult:
    """A finished session: its final result and status, and when it finished."""

    final: FeedResult
    status: dict[str, Any]
    finished_at: float


class ExecutionRegistry:
    """Live sessions by id, and the final results of finished ones (thread-safe)."""

    def __init__(self, metrics: Metrics, retention_s: float) -> None:
        self._lock = threading.Lock()
        self._metrics = metrics
        self._retention_s = retention_s
        self._live: dict[str, LiveEntry] = {}
        self._retained: dict[str, RetainedResult] = {}

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

    def expire(self, now: float) -> list[str]:
        """Remove the results kept for `result_retention_s` or longer; their ids."""
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
        return [sid for sid, _kept in gone]

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
