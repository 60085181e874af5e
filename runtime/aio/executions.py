"""`AsyncExecutions`: `rt.executions` for asyncio and trio hosts, never blocking the loop.

    executions = AsyncExecutions(rt.executions)          # art.executions in AsyncRuntime
    step = await executions.start(strategy, "topic")
    step = await executions.feed(step.session_id, "an answer", timeout=30)
    executions.status(step.session_id)                   # plain: it never waits

The same names, arguments, results and errors as `greenroom.executions.namespace.
Executions`, built on its public seam: each call sends with `send_start` /
`send_feed` / `send_feed_many` / `send_cancel` (which check and send without waiting),
awaits the step's future through `greenroom.aio.bridge.settling` (what `settled`
awaits; its timeout kept by the loop), then reads `Executions.outcome`, which raises
the same `ExecutionTimeout` for a strategy that did not pause in time. Cancelling the
awaiting task stops the wait, not the step.

Where a step runs. On asyncio, a call with no `timeout` runs an idle session's turn on
the loop's thread ("caller runs", as the sync calls do on theirs): an async strategy's
step between two pauses runs there, the way any coroutine of the host would, with no
hand-off to a worker and back; calls in flight take turns in the loop's fair share
(`fair_turn`), so the host's timers and I/O run between them. A lone call commits a
durable session's journal on the loop too (what the caller waits for anyway); with
other calls in flight it leaves the commit to the store's committer, which commits
them together. A call with a `timeout`, a session busy on a worker, trio, and
`RuntimeConfig(caller_runs=False)` keep every turn on the workers (a strategy whose
steps compute for long should use a `timeout` or a plain `def`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

import anyio

from greenroom.actors.caller_runs import set_crowded
from greenroom.aio.bridge import fair_turn, loop_share, settling
from greenroom.errors import GreenroomError, InvalidInput
from greenroom.executions.namespace import Executions, FeedItemInput, PendingStep, UsageInput
from greenroom.executions.records import FeedResult

__all__ = ["AsyncExecutions"]

_NO_KWARGS: Mapping[str, Any] = {}
_NOT_DURABLE: Mapping[str, Any] = {"durable": False}


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

        `timeout` (real seconds) raises `ExecutionTimeout` as the sync call does. An
        async strategy's first step runs on the loop's thread (asyncio, no `timeout`)
        or on a dispatcher worker; a plain strategy's on a strategy thread.
        """
        send = self._executions.send_start
        return await self._run(send, (strategy, args, kwargs), _NO_KWARGS, timeout)

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
        options = {"query_id": query_id, "usage": usage}
        return await self._run(self._executions.send_feed, (session_id, response), options, timeout)

    async def feed_many(
        self,
        session_id: str,
        items: Sequence[FeedItemInput],
        *,
        timeout: float | None = None,
        durable: bool = True,
    ) -> FeedResult:
        """`Executions.feed_many`, awaited: answer several queries at once, all or none
        (`durable` as there)."""
        send = self._executions.send_feed_many
        options = _NO_KWARGS if durable else _NOT_DURABLE
        return await self._run(send, (session_id, items), options, timeout)

    async def resume(self, session_id: str, *, timeout: float | None = None) -> FeedResult:
        """`Executions.resume`, awaited: where the session is (re-driven from its
        journal first if it is durable and not in memory)."""
        send = self._executions.send_resume
        return await self._run(send, (session_id,), _NO_KWARGS, timeout)

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

    async def _run(
        self,
        send: Callable[..., PendingStep],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        timeout: float | None,
    ) -> FeedResult:
        """Send a step (`send(*args, timeout=, caller_runs=, **kwargs)`) in the loop's
        fair share and await its outcome.

        On asyncio, a step with no timeout runs the session's turn on the loop's thread
        when the session is idle (`caller_runs`: no hand-off to a worker and back); the
        loop counts such calls in flight, and with others waiting the turn leaves its
        commit to the store's committer. (Arguments, not a closure: with thousands of
        calls in flight, each object a call keeps is one more for the cyclic GC to walk.)
        """
        share = loop_share() if timeout is None else None
        if share is not None:
            share.calls += 1
        try:
            await fair_turn()
            if share is None:
                pending = send(*args, timeout=timeout, caller_runs=False, **kwargs)
            else:
                previous = set_crowded(share.calls > 1)
                try:
                    pending = send(*args, timeout=None, caller_runs=True, **kwargs)
                finally:
                    set_crowded(previous)
            # (Awaited here, not through `_outcome`: one coroutine fewer in flight.)
            try:
                await settling(pending.future, pending.timeout)
            except anyio.get_cancelled_exc_class():
                await self._given_up(pending)
                raise
            return self._executions.outcome(pending)
        finally:
            if share is not None:
                share.calls -= 1

    async def _outcome(self, pending: PendingStep) -> FeedResult:
        try:
            await settling(pending.future, pending.timeout)
        except anyio.get_cancelled_exc_class():
            await self._given_up(pending)
            raise
        return self._executions.outcome(pending)

    async def _given_up(self, pending: PendingStep) -> None:
        """The wait for `pending` was cancelled: a start's session, whose id the host
        never learns, is cancelled rather than left paused (holding a strategy thread)
        until the GC's TTL. Shielded and bounded by the cancel's own wait
        (CANCEL_WAIT_S), then deferred."""
        if pending.action != "start":
            return
        with anyio.CancelScope(shield=True), contextlib.suppress(GreenroomError):
            cancel = self._executions.send_cancel(pending.session_id)
            await settling(cancel.future, cancel.timeout)
            self._executions.outcome(cancel)

    def __repr__(self) -> str:
        return f"<AsyncExecutions of {self._executions!r}>"
