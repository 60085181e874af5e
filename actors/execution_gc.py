"""`ExecutionGC`: the supervisor that reaps idle execution sessions and expired results.

Every `gc_interval_s` of the runtime clock it tells each session last active more
than `execution_ttl_s` ago to reap itself (the session checks again, since a feed may
have arrived since; a reaped session is cancelled, its strategy stopped, and it is
counted as `executions_reaped` and logged), and removes the final results kept longer
than `result_retention_s` (counted as `execution_results_expired`, logged). It is
started with the first execution of a runtime.
"""

from __future__ import annotations

import logging
from typing import Any

from pykka import ActorDeadError

from greenroom.actors.base import ActorContext, GreenroomActor
from greenroom.executions.messages import COLLECT, Collect, GcPass, Reap
from greenroom.executions.registry import ExecutionRegistry

__all__ = ["ExecutionGC"]

log = logging.getLogger("greenroom.executions")


class ExecutionGC(GreenroomActor):
    """Reaps idle sessions and expired results on a clock timer; see the module docstring."""

    kind = "execution_gc"
    stop_order = -10  # first: no reaping while the sessions stop

    def __init__(self, ctx: ActorContext, registry: ExecutionRegistry) -> None:
        super().__init__(ctx)
        self._registry = registry

    def on_start(self) -> None:
        self.schedule_every(self.ctx.config.gc_interval_s, COLLECT)

    def on_receive(self, message: Any) -> Any:
        if type(message) is Collect:
            return self._collect()
        return super().on_receive(message)

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
        expired = self._registry.expire(now)
        if candidates or expired:
            log.info(
                "execution GC: %d idle sessions to reap, %d expired results removed",
                len(candidates),
                len(expired),
            )
        return GcPass(tuple(candidates), tuple(expired))
