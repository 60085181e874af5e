"""`ExecutionGC`: the supervisor that reaps idle execution sessions and expired results.

Every `gc_interval_s` of the runtime clock it tells each session last active more
than `execution_ttl_s` ago to reap itself (the session checks again, since a feed may
have arrived since; a reaped session is cancelled, its strategy stopped, and it is
counted as `executions_reaped` and logged), and removes the final results kept longer
than `result_retention_s` (counted as `execution_results_expired`, logged). It is
started with the first execution of a runtime.

It also passivates: a durable session paused and idle for
`execution_passivate_after_s` is told to leave memory (it checks again, and stays if a
message waits). And it sweeps the store for durable sessions not in memory: those idle
past `execution_ttl_s` are reaped (cancelled in their journal), and ended ones past
`result_retention_s` are removed with their journal (`greenroom.executions.stored`).
"""

from __future__ import annotations

import logging
from typing import Any

from pykka import ActorDeadError

from greenroom.actors.base import ActorContext, GreenroomActor
from greenroom.errors import GreenroomError
from greenroom.executions.messages import (
    COLLECT,
    RENEW,
    Collect,
    GcPass,
    LeaseLost,
    Passivate,
    Reap,
    Renew,
)
from greenroom.executions.registry import ExecutionRegistry
from greenroom.executions.stored import StoredSessions
from greenroom.leases import Leases

__all__ = ["ExecutionGC"]

log = logging.getLogger("greenroom.executions")


class ExecutionGC(GreenroomActor):
    """Reaps idle sessions and expired results on a clock timer; see the module docstring."""

    kind = "execution_gc"
    stop_order = -10  # first: no reaping while the sessions stop

    def __init__(
        self,
        ctx: ActorContext,
        registry: ExecutionRegistry,
        stored: StoredSessions,
        leases: Leases | None = None,
    ) -> None:
        super().__init__(ctx)
        self._registry = registry
        self._stored = stored
        self._leases = leases

    def on_start(self) -> None:
        self.schedule_every(self.ctx.config.gc_interval_s, COLLECT)
        if self._leases is not None and self._leases.enabled:
            self.schedule_every(self._leases.renew_every_s, RENEW)

    def on_stop(self) -> None:
        # The runtime closes: give up this host's leases, so another host may take
        # the executions over at once rather than when the leases run out.
        if self._leases is not None:
            self._leases.give_up(self._durable_in_memory())
        super().on_stop()

    def on_receive(self, message: Any) -> Any:
        if type(message) is Collect:
            return self._collect()
        if type(message) is Renew:
            return self._renew()
        return super().on_receive(message)

    def _durable_in_memory(self) -> list[str]:
        return [sid for sid, entry in self._registry.live_entries() if entry.durable]

    def _renew(self) -> list[str]:
        """Renew this host's leases on the durable executions it has in memory; those
        another host took over leave memory here (their next call names the owner)."""
        assert self._leases is not None
        lost = self._leases.renew(self._durable_in_memory())
        for session_id in lost:
            entry = self._registry.live(session_id)
            if entry is not None:
                entry.ref.tell(LeaseLost())
        return lost

    def _collect(self) -> GcPass:
        now = self.ctx.clock.monotonic()
        cutoff = now - self.ctx.config.execution_ttl_s
        candidates: list[str] = []
        for session_id, entry in self._registry.idle(cutoff):
            try:
                entry.ref.tell(Reap(cutoff))
            except ActorDeadError:
                continue  # it ended meanwhile; its result is in the registry
            candidates.append(session_id)
        passivating = self._passivate(now)
        expired = self._registry.expire(now)
        for session_id, kept in expired:
            if kept.durable:
                self._stored.remove(session_id)
        in_memory = {sid for sid, _entry in self._registry.live_entries()}
        in_memory.update(sid for sid, _kept in self._registry.retained_items(now))
        try:
            reaped, removed = self._stored.sweep(in_memory)
        except GreenroomError as error:
            log.warning("execution GC: could not sweep the stored sessions: %s", error)
            reaped, removed = [], []
        if candidates or expired or reaped or removed:
            log.info(
                "execution GC: %d idle sessions to reap, %d expired results removed, "
                "%d sessions not in memory reaped, %d of their results removed",
                len(candidates) + len(reaped),
                len(expired),
                len(reaped),
                len(removed),
            )
        return GcPass(
            tuple(candidates) + tuple(reaped),
            tuple(sid for sid, _kept in expired) + tuple(removed),
            tuple(passivating),
        )

    def _passivate(self, now: float) -> list[str]:
        after = self.ctx.config.execution_passivate_after_s
        if after is None:
            return []
        cutoff = now - after
        told: list[str] = []
        for session_id, entry in self._registry.idle(cutoff):
            if not entry.durable or entry.snapshot.state != "paused":
                continue
            try:
                entry.ref.tell(Passivate(cutoff))
            except ActorDeadError:
                continue
            told.append(session_id)
        return told
