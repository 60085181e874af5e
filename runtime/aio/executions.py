"""`AsyncExecutions`: `rt.executions` for asyncio and trio hosts, never blocking the loop.

    executions = AsyncExecutions(rt.executions)          # art.executions in AsyncRuntime
    step = await executions.start(strategy, "topic")
    step = await executions.feed(step.session_id, "an answer", timeout=30)
    executions.status(step.session_id)                   # plain: it never waits

The same names, arguments, results and errors as `greenroom.executions.namespace.
Executions`, built on its public seam: each call sends with `send_start` /
`send_feed` / `send_feed_many` / `send_cancel` (which check and send without waiting),
awaits the step's future through `greenroom.aio.bridge.settled` (its timeout kept by
the loop, with anyio's `move_on_after`), then reads `Executions.outcome`, which raises
the same `ExecutionTimeout` for a strategy that did not pause in time. No session's
turn runs on the loop's thread: a step is always sent to the session's actor, never
run by the caller. Cancelling the awaiting task stops the wait, not the step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

import anyio

from greenroom.aio.bridge import fair_turn, settled
from greenroom.errors import GreenroomError, InvalidInput
from greenroom.executions.namespace import Executions, FeedItemInput, PendingStep, UsageInput
from greenroom.executions.records import FeedResult

__all__ = ["AsyncExecutions"]


class AsyncExecutions:
    """`rt.executions`, awaited: start, feed, feed_many, cancel; status never waits."""

    __slots__ = ("_executions",)

    def __init__(self, executions: Executions) -> None:
        """Wrap a runtime's `Executions` (`rt.executions`); `InvalidInput` otherwise."""
        if not isinstance(executions, Executions):
            raise InvalidInput(
                f"AsyncExecutions wraps an Executions (rt.executions), got "
                f"{type(executions).__name__}"
            )
        self._executions = executions

    @property
    def executions(self) -> Executions:
        """The wrapped sync namespace (for what never waits)."""
        return self._executions

    def register(
        self,
        name: str,
        strategy: Callable[..., Any],
        *,
        input_schema: Mapping[str, Any] | None = None,
        description: str | None = None,
    ) -> None:
        """`Executions.register`: run `strategy` durable under `name` (never waits)."""
        self._executions.register(
            name, strategy, input_schema=input_schema, description=description
        )

    def register_all(self, module: ModuleType) -> list[str]:
        """`Executions.register_all`: every `@greenroom.strategy` of `module`."""
        return self._executions.register_all(module)

    async def start(
        self,
        strategy: str | Callable[..., Any],
        /,
        *args: Any,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> FeedResult:
        """`Executions.start`, awaited: the session's first pause or its end.

        `timeout` (real seconds) raises `ExecutionTimeout` as the sync call does; the
        strategy's first step runs on a dispatcher worker (async strategies) or a
        strategy thread (plain ones), never on the loop.
        """
        await fair_turn()
        return await self._outcome(
            self._executions.send_start(strategy, args, kwargs, timeout=timeout)
        )

    async def feed(
        self,
        session_id: str,
        response: str,
        *,
        query_id: str | None = None,
        usage: UsageInput = None,
        timeout: float | None = None,
    ) -> FeedResult:
        """`Executions.feed`, awaited: answer one query; the session's next `FeedResult`."""
        await fair_turn()
        pending = self._executions.send_feed(
            session_id, response, query_id=query_id, usage=usage, timeout=timeout
        )
        return await self._outcome(pending)

    async def feed_many(
        self,
        session_id: str,
        items: Sequence[FeedItemInput],
        *,
        timeout: float | None = None,
    ) -> FeedResult:
        """`Executions.feed_many`, awaited: answer several queries at once, all or none."""
        await fair_turn()
        pending = self._executions.send_feed_many(session_id, items, timeout=timeout)
        return await self._outcome(pending)

    async def resume(self, session_id: str, *, timeout: float | None = None) -> FeedResult:
        """`Executions.resume`, awaited: where the session is (re-driven from its
        journal first if it is durable and not in memory)."""
        await fair_turn()
        return await self._outcome(self._executions.send_resume(session_id, timeout=timeout))

    async def cancel(self, session_id: str) -> FeedResult:
        """`Executions.cancel`, awaited: `cancelled` (deferred after `CANCEL_WAIT_S` when
        the session is busy in a strategy step, as the sync call)."""
        return await self._outcome(self._executions.send_cancel(session_id))

    def status(self, session_id: str) -> dict[str, Any]:
        """`Executions.status` (never waits, so not a coroutine)."""
        return self._executions.status(session_id)

    def snapshots(self) -> dict[str, dict[str, Any]]:
        """`Executions.snapshots` (never waits, so not a coroutine)."""
        return self._executions.snapshots()

    async def _outcome(self, pending: PendingStep) -> FeedResult:
        try:
            await settled(pending.future, pending.timeout)
        except anyio.get_cancelled_exc_class():
            if pending.action == "start":
                # The host never learns this session's id: cancel it rather than leave
                # it paused (holding a strategy thread) until the GC's TTL. Shielded and
                # bounded by the cancel's own wait (CANCEL_WAIT_S), then deferred.
                with anyio.CancelScope(shield=True), contextlib.suppress(GreenroomError):
                    cancel = self._executions.send_cancel(pending.session_id)
                    await settled(cancel.future, cancel.timeout)
                    self._executions.outcome(cancel)
            raise
        return self._executions.outcome(pending)

    def __repr__(self) -> str:
        return f"<AsyncExecutions of {self._executions!r}>"
