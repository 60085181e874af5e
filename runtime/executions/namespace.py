"""`rt.executions`: run strategies that pause to ask the host's LLM, and feed them.

    first = rt.executions.start(strategy, "topic")          # FeedResult at the first pause
    step = rt.executions.feed(first.session_id, "an answer")  # the sole pending query
    step = rt.executions.feed_many(sid, [("q-2-0", "a", None), ("q-2-1", "b", usage)])
    rt.executions.status(sid)                               # {"state": "paused", ...}
    rt.executions.cancel(sid)                               # FeedResult "cancelled"

See `greenroom.executions.records` for the records and `greenroom.actors.execution` for
how a session drives its strategy.

Where these may be called: `start`, `feed`, `feed_many` and `cancel` wait for
a session's actor (and a plain strategy for a strategy-pool thread), so they are
refused (`InvalidTransition`) inside an actor's handler, a `run_blocking` job and a
plain strategy's own thread (where a full pool, or the caller's own session, would
deadlock; this includes starting an async strategy from a plain one, refused for one
simple rule). `status` and `snapshots` never wait (they read the
snapshot each session keeps in the registry), so they may be called from anywhere.
"""

from __future__ import annotations

import copy
import inspect
import logging
import math
import secrets
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pykka import ActorDeadError

from greenroom.actors.execution import BEGIN, Cancel, ExecutionActor, Feed
from greenroom.errors import (
    ExecutionTimeout,
    FutureTimeout,
    GreenroomError,
    InvalidInput,
    InvalidTransition,
    NotFound,
    Stopped,
)
from greenroom.executions.records import FeedResult, check_usage
from greenroom.executions.registry import ENDED, ExecutionRegistry
from greenroom.kernel import Kernel

if TYPE_CHECKING:
    from greenroom.actors.base import GreenroomActorRef
    from greenroom.actors.blocking import BlockingPool
    from greenroom.executions.registry import LiveEntry
    from greenroom.futures import GreenroomFuture

__all__ = ["CANCEL_WAIT_S", "Executions"]

log = logging.getLogger("greenroom.executions")

CANCEL_WAIT_S = 0.5
"""Real seconds `cancel` waits for a session busy in a strategy step before it returns
`cancelled` with the cancel recorded (the session ends `cancelled` once the step gives
control back)."""

_CANCELLED_BY_HOST = "cancelled by the host"

_COUNTERS = (
    "executions_started",
    "executions_completed",
    "executions_failed",
    "executions_cancelled",
    "executions_reaped",
    "execution_results_expired",
    "execution_feeds",
    "execution_logs_dropped",
    "execution_logs_truncated",
    "execution_cancels_deferred",
    "strategy_starts_queued",
)


def _check_session_id(session_id: Any) -> None:
    if not isinstance(session_id, str) or not session_id:
        raise InvalidInput(f"session_id must be a non-empty str, got {session_id!r}")


def _check_timeout(timeout: Any) -> None:
    if timeout is None:
        return
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise InvalidInput(f"timeout must be None or a positive number of seconds, got {timeout!r}")


def _is_async_strategy(strategy: Any) -> bool:
    """Whether `strategy` is an `async def` (True) or a plain callable (False)."""
    if not callable(strategy) or inspect.isclass(strategy):
        raise InvalidInput(
            f"a strategy must be an async def or a plain def function, got {strategy!r}"
        )
    if inspect.isasyncgenfunction(strategy) or inspect.isgeneratorfunction(strategy):
        raise InvalidInput(
            f"strategy {strategy!r} is a generator function; a strategy is an async def "
            "(await ctx.llm) or a plain def (ctx.llm blocks)"
        )
    if inspect.iscoroutinefunction(strategy):
        return True
    call = getattr(strategy, "__call__", None)  # noqa: B004 (an object with async __call__)
    return not inspect.isfunction(strategy) and inspect.iscoroutinefunction(call)


def _check_feed_items(items: Any) -> tuple[tuple[str, str, dict[str, int] | None], ...]:
    if isinstance(items, str | bytes) or not isinstance(items, list | tuple):
        raise InvalidInput(
            f"feed_many takes a list of (query_id, response, usage) tuples, got "
            f"{type(items).__name__}"
        )
    if not items:
        raise InvalidInput("feed_many needs at least one (query_id, response, usage) item")
    checked = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        if not isinstance(item, list | tuple) or len(item) != 3:
            raise InvalidInput(
                f"feed_many item {index} must be a (query_id, response, usage) tuple, got {item!r}"
            )
        query_id, response, usage = item
        if not isinstance(query_id, str) or not query_id:
            raise InvalidInput(
                f"feed_many item {index}: query_id must be a non-empty str, got {query_id!r}"
            )
        if query_id in seen:
            raise InvalidInput(
                f"feed_many item {index}: query {query_id!r} appears more than once in the "
                "batch; answer each query once"
            )
        seen.add(query_id)
        if not isinstance(response, str):
            raise InvalidInput(
                f"feed_many item {index}: response must be a str, got {type(response).__name__}"
            )
        checked.append((query_id, response, check_usage(usage)))
    return tuple(checked)


class Executions:
    """The executions of one runtime (`rt.executions`): start, feed, cancel, status."""

    def __init__(self, kernel: Kernel) -> None:
        """Build the namespace on `kernel`; `Runtime` makes one."""
        self._kernel = kernel
        self._clock = kernel.clock
        self._config = kernel.config
        self._metrics = kernel.metrics
        self._tracker = kernel.tracker
        self._check_open = kernel.check_open
        self._refuse_inside_actor = kernel.refuse_inside_actor
        self.spawn = kernel.spawn
        self._exec_registry = ExecutionRegistry(self._metrics, self._config.result_retention_s)
        self._exec_lock = threading.Lock()
        self._exec_gc: GreenroomActorRef | None = None
        self._strategy_pool: BlockingPool | None = None

    def counters(self) -> dict[str, int]:
        """This part's counters (at zero until bumped) and gauges (`Runtime.metrics`)."""
        counters = dict.fromkeys(_COUNTERS, 0)
        live, retained = self._exec_registry.counts()
        counters["executions_active"] = live
        counters["executions_retained"] = retained
        pool = self._strategy_pool
        counters["strategy_threads"] = pool.threads if pool is not None else 0
        # Plain strategies waiting for a free strategy thread (every one is held).
        counters["strategy_queued"] = pool.queued if pool is not None else 0
        return counters

    def close(self) -> None:
        """Release this part's resources; `close()` calls it after every actor stopped."""
        with self._exec_lock:
            pool, self._strategy_pool = self._strategy_pool, None
        try:
            if pool is not None:
                # The session actors' on_stop woke every strategy waiting in ctx.llm
                # with ExecutionCancelled; one that never returns is logged and left.
                pool.shutdown(self._config.stop_timeout_s)
        finally:
            self._exec_registry.clear()

    # -- services ----------------------------------------------------------------------

    def _execution_gc(self) -> GreenroomActorRef:
        """Start the execution GC supervisor once; its ref."""
        with self._exec_lock:
            if self._exec_gc is None:
                from greenroom.actors.execution_gc import ExecutionGC

                self._exec_gc = self.spawn(
                    ExecutionGC, self._exec_registry, actor_id="execution-gc"
                )
            return self._exec_gc

    def _get_strategy_pool(self) -> BlockingPool:
        """The bounded pool plain strategies run on, made on first use."""
        with self._exec_lock:
            if self._strategy_pool is None:
                if self._kernel.closed:
                    raise Stopped("the runtime is closed; no strategy starts")
                from greenroom.actors.blocking import BlockingPool

                # Jobs are submitted untracked: a strategy counts as work in progress
                # only while it runs, not while it waits for the host's answers.
                self._strategy_pool = BlockingPool(
                    self._config.strategy_threads, self._tracker, name="greenroom-strategy"
                )
                self._kernel.guard_pool(
                    self._strategy_pool, "a strategy running on the strategy pool"
                )
            return self._strategy_pool

    # -- the public surface ----------------------------------------------------------------

    def start(
        self,
        strategy: Callable[..., Any],
        /,
        *args: Any,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> FeedResult:
        """Start `strategy(ctx, *args, **kwargs)` in a new session; its first pause or end.

        `strategy` is an `async def` (driven by the session's actor, no thread) or a
        plain `def` (run on the bounded strategy pool). Returns `needs_response` with
        the queries to answer, or the final `completed` / `error` result. With
        `timeout` (real seconds), raises `ExecutionTimeout` (a `Timeout`; its
        `session_id` names the session, which goes on and can be cancelled) if the
        strategy neither pauses nor finishes in time. A plain strategy needs a free
        strategy thread: while every one is held (paused plain sessions hold one each)
        it waits, logged and counted (`strategy_queued`). Refused inside an actor's
        handler and on a strategy thread (see the module docstring).
        """
        # With no timeout the session's first turn may run right here (caller runs).
        session_id, future = self._exec_start(strategy, args, kwargs, timeout, here=timeout is None)
        return self._exec_wait(session_id, future, timeout, "start")

    def feed(
        self,
        session_id: str,
        response: str,
        *,
        query_id: str | None = None,
        usage: dict[str, int] | None = None,
        timeout: float | None = None,
    ) -> FeedResult:
        """Answer one query of a paused session; the session's next `FeedResult`.

        `query_id=None` means the sole pending query (`InvalidTransition` saying how
        many are pending otherwise). `usage` is `{"prompt_tokens": int,
        "completion_tokens": int}` from the host's LLM; without it tokens are
        estimated. Returns `accepted` (with `remaining`) while other queries of the
        round wait, else the result of resuming the strategy until its next pause or
        end. The same answer again is a no-op returning the current state; a
        different one for an answered query is `AlreadyResponded`; an id the session
        never asked is `UnknownQuery`. A finished session (kept `result_retention_s`)
        takes the same answer again to a query it was fed (a retried final feed) as a
        no-op returning its final result; a different answer is `AlreadyResponded`,
        anything else `InvalidTransition` naming its final state. `usage` counts only
        with the first feed of an answer: a repeated feed with a different `usage` is
        a no-op too. `timeout` as in `start` (the answer stays applied).
        """
        items = self._exec_feed_items(session_id, response, query_id, usage, timeout)
        return self._exec_feed(session_id, items, timeout)

    def feed_many(
        self,
        session_id: str,
        items: list[tuple[str, str, dict[str, int] | None]],
        *,
        timeout: float | None = None,
    ) -> FeedResult:
        """Answer several queries at once: `[(query_id, response, usage_or_None), ...]`.

        Every item is validated first (malformed items, ids repeated in the batch,
        unknown ids, changed answers); if any fails, none is applied. Returns as
        `feed` does.
        """
        checked = self._exec_feed_many_items(session_id, items, timeout)
        return self._exec_feed(session_id, checked, timeout)

    def cancel(self, session_id: str) -> FeedResult:
        """Cancel a running or paused session: its strategy is stopped; `cancelled`.

        An async strategy's coroutine is closed; a plain strategy waiting in
        `ctx.llm` gets `ExecutionCancelled` there (one busy computing gets it at its
        next `ctx` call; its thread is freed when it returns). A finished session is
        `InvalidTransition` naming its final state.

        A running step of a strategy cannot be interrupted. If the session's actor
        does not answer within `CANCEL_WAIT_S` (0.5 s; an async strategy in a long CPU
        step holds it), the cancel is recorded and `cancelled` is returned at once,
        with the metrics of the session's last change (counted as
        `execution_cancels_deferred`, logged): the session ends `cancelled` as soon
        as the step gives control back, whatever the step produced; until then
        `status` shows it `running` with `cancel_requested`.
        """
        entry, future = self._exec_cancel_send(session_id)
        return self._exec_cancel_result(session_id, entry, future, CANCEL_WAIT_S)

    def status(self, session_id: str) -> dict[str, Any]:
        """A session's state, pending query ids and metrics, live or finished.

        `{"session_id", "state", "round", "pending_queries", "metrics"}`, plus
        `result` (completed), `error` (error) or `reason` (cancelled) once finished,
        and `cancel_requested` (the reason) while a deferred cancel waits for a busy
        strategy step; finished sessions answer for `result_retention_s`. `NotFound`
        otherwise. Never waits: a live session's status is the snapshot its actor
        published at its last change (`elapsed_ms` as of now), so a session busy in
        a long step answers at once (`running`). Allowed anywhere, handlers and
        strategy threads included.
        """
        self._check_open()
        _check_session_id(session_id)
        entry = self._exec_registry.live(session_id)
        now = self._clock.monotonic()
        if entry is not None:
            return entry.snapshot.status(session_id, now, entry.cancel_requested)
        kept = self._exec_registry.retained(session_id, now)
        if kept is None:
            raise self._exec_gone(session_id, "query")
        return copy.deepcopy(kept.status)

    def snapshots(self) -> dict[str, dict[str, Any]]:
        """`status` of every session, running, paused and retained, by id.

        Never waits for any session (see `status`).
        """
        self._check_open()
        now = self._clock.monotonic()
        out: dict[str, dict[str, Any]] = {}
        for session_id, entry in self._exec_registry.live_entries():
            out[session_id] = entry.snapshot.status(session_id, now, entry.cancel_requested)
        # A session that finished since it was listed above: its final status wins.
        for session_id, kept in self._exec_registry.retained_items(now):
            out[session_id] = copy.deepcopy(kept.status)
        return out

    # -- helpers -------------------------------------------------------------------------
    #
    # Each call is split into a part that checks and sends without waiting (returning
    # the future of the session's answer) and a part that turns the resolved answer
    # into the result or the error. The methods above wait in between on this thread;
    # `greenroom.aio` awaits the same futures on an event loop, so both faces share every
    # check and every result rule.

    def _exec_start(
        self,
        strategy: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
        *,
        here: bool,
    ) -> tuple[str, GreenroomFuture[Any]]:
        """Check, start the session and send it `BEGIN`; its id and the answer's future.

        Never waits, except that with `here` the session's first turn may run on this
        thread (caller runs: only for a caller about to wait with no timeout).
        """
        self._check_open()
        self._refuse_inside_actor("executions.start()")
        is_async = _is_async_strategy(strategy)
        _check_timeout(timeout)
        self._execution_gc()
        session_id = "s-" + secrets.token_hex(16)
        ref = self.spawn(
            ExecutionActor,
            session_id,
            strategy,
            args,
            kwargs,
            is_async=is_async,
            registry=self._exec_registry,
            pool=self._get_strategy_pool,
            actor_id=session_id,
        )
        self._metrics.incr("executions_started")
        future = ref.ask_here(BEGIN) if here else ref.ask(BEGIN, block=False)
        return session_id, future

    def _exec_feed_items(
        self,
        session_id: str,
        response: str,
        query_id: str | None,
        usage: dict[str, int] | None,
        timeout: float | None,
    ) -> tuple[tuple[str | None, str, dict[str, int] | None], ...]:
        """`feed`'s checks; its one item."""
        self._check_open()
        self._refuse_inside_actor("feed()")
        _check_session_id(session_id)
        if not isinstance(response, str):
            raise InvalidInput(f"response must be a str, got {type(response).__name__}")
        if query_id is not None and (not isinstance(query_id, str) or not query_id):
            raise InvalidInput(f"query_id must be None or a non-empty str, got {query_id!r}")
        usage = check_usage(usage)
        _check_timeout(timeout)
        return ((query_id, response, usage),)

    def _exec_feed_many_items(
        self, session_id: str, items: Any, timeout: float | None
    ) -> tuple[tuple[str, str, dict[str, int] | None], ...]:
        """`feed_many`'s checks; the items, checked."""
        self._check_open()
        self._refuse_inside_actor("feed_many()")
        _check_session_id(session_id)
        checked = _check_feed_items(items)
        _check_timeout(timeout)
        return checked

    def _exec_feed(
        self, session_id: str, items: tuple[Any, ...], timeout: float | None
    ) -> FeedResult:
        # With no timeout the session's turn may run right here (caller runs).
        future = self._exec_feed_send(session_id, items, here=timeout is None)
        return self._exec_feed_result(session_id, items, future, timeout)

    def _exec_feed_send(
        self, session_id: str, items: tuple[Any, ...], *, here: bool
    ) -> GreenroomFuture[Any] | None:
        """Send checked `items` to the session; the answer's future, or `None` when the
        session has no live actor (`_exec_feed_result` answers that). Never waits
        (with `here`, the session's turn may run on this thread: see `_exec_start`)."""
        entry = self._exec_registry.live(session_id)
        if entry is None:
            return None
        message = Feed(items)
        return entry.ref.ask_here(message) if here else entry.ref.ask(message, block=False)

    def _exec_feed_result(
        self,
        session_id: str,
        items: tuple[Any, ...],
        future: GreenroomFuture[Any] | None,
        timeout: float | None,
    ) -> FeedResult:
        """The feed's result from the future `_exec_feed_send` gave (waiting up to
        `timeout` for it; none once it is resolved)."""
        if future is None:
            return self._exec_finished_feed(session_id, items)
        try:
            return self._exec_wait(session_id, future, timeout, "feed")
        except _Gone:
            return self._exec_finished_feed(session_id, items)

    def _exec_cancel_send(self, session_id: str) -> tuple[LiveEntry, GreenroomFuture[Any]]:
        """`cancel`'s checks; record the cancel and send it. Never waits."""
        self._check_open()
        self._refuse_inside_actor("cancel()")
        _check_session_id(session_id)
        entry = self._exec_registry.live(session_id)
        if entry is None:
            raise self._exec_gone(session_id, "cancel")
        if entry.cancel_requested is None:
            entry.cancel_requested = _CANCELLED_BY_HOST
        return entry, entry.ref.ask(Cancel(_CANCELLED_BY_HOST), block=False)

    def _exec_cancel_result(
        self, session_id: str, entry: LiveEntry, future: GreenroomFuture[Any], wait: float
    ) -> FeedResult:
        """The cancel's result, waiting up to `wait` s for the session's answer (0: it
        was awaited elsewhere; a session that has not answered is deferred)."""
        try:
            return future.get(timeout=wait).detached()
        except FutureTimeout:
            self._metrics.incr("execution_cancels_deferred")
            log.warning(
                "execution %s: busy in a strategy step for more than %g s; the cancel is "
                "recorded and the session ends cancelled when the step gives control back "
                "(a running step cannot be interrupted)",
                session_id,
                CANCEL_WAIT_S,
            )
            stats = entry.snapshot.stats_at(self._clock.monotonic())
            return FeedResult("cancelled", session_id, metrics=stats)
        except ActorDeadError:
            # It ended meanwhile; if it ended cancelled, this cancel may be why.
            kept = self._exec_registry.retained(session_id, self._clock.monotonic())
            if kept is not None and kept.final.status == "cancelled":
                return kept.final.detached()
            raise self._exec_gone(session_id, "cancel") from None

    def _exec_finished_feed(self, session_id: str, items: tuple[Any, ...]) -> FeedResult:
        """A feed to a session with no live actor: a retried answer, or an error."""
        kept = self._exec_registry.retained(session_id, self._clock.monotonic())
        if kept is None:
            raise self._exec_gone(session_id, "feed")
        return kept.refeed(items).detached()

    def _exec_wait(
        self, session_id: str, future: Any, timeout: float | None, action: str
    ) -> FeedResult:
        """The result of a start (`action` "start") or feed ("feed": raises `_Gone` when
        the session stopped first) from its future, waiting up to `timeout` for it."""
        try:
            return future.get(timeout=timeout).detached()
        except FutureTimeout:
            raise self._exec_timeout(session_id, timeout, action) from None
        except ActorDeadError:
            if action == "feed":
                raise _Gone from None
            raise self._exec_gone(session_id, action) from None

    def _exec_timeout(self, session_id: str, timeout: Any, action: str) -> ExecutionTimeout:
        """The error for a start or feed whose strategy did not pause in `timeout` s."""
        return ExecutionTimeout(
            f"execution {session_id}: the strategy neither paused nor finished within "
            f"{timeout:g} s of this {action}; it goes on running: "
            f"rt.executions.status({session_id!r}) shows it, rt.executions.cancel({session_id!r}) "
            "stops it",
            session_id,
        )

    def _exec_gone(self, session_id: str, action: str) -> GreenroomError:
        """The error for a session that has no live actor (finished, unknown, closed)."""
        kept = self._exec_registry.retained(session_id, self._clock.monotonic())
        if kept is not None:
            ended = ENDED[kept.final.status]
            return InvalidTransition(
                f"execution {session_id} has already {ended}; cannot {action} it "
                f"(rt.executions.status({session_id!r}) shows its final result)"
            )
        if self._kernel.closed:
            return Stopped(f"the runtime is closed; execution {session_id} is gone")
        return NotFound(
            f"no execution session {session_id!r}: never started here, or finished more "
            f"than result_retention_s ({self._config.result_retention_s:g} s) ago"
        )


class _Gone(Exception):
    """A feed's session stopped before it handled the feed (internal)."""
