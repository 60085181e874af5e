"""`ExecutionActor`: one execution session, driving its strategy without a thread of its own.

**Async strategies** (`async def strategy(ctx, ...)`) are driven by the actor itself
with `coro.send(...)`, inside its handlers: no event loop and no thread. `ctx.llm`
returns an `LlmCall` whose `__await__` yields itself (a pause request) to this driver; the
actor records the queries and returns `needs_response`. When the host has answered
every query of the round, the actor sends the answers into the coroutine, which runs
until its next pause or its end. A paused session costs a suspended coroutine and an
idle actor. The strategy's steps between pauses run in the actor's turns, on a
dispatcher thread or on the host thread waiting in `rt.executions.feed` (see
`greenroom.actors.caller_runs`), so a CPU-heavy async strategy holds that thread while it
computes (the slow-handler warning names it); put heavy computing in a plain `def` strategy instead.

Awaiting anything other than `ctx.llm` / `ctx.llm_batch` (such as `asyncio.sleep`)
ends the session in `error`: there is no event loop to wait on.

A strategy step cannot be interrupted: `Runtime.executions.cancel` of a session whose async
strategy is in a long step records the cancel (`LiveEntry.cancel_requested`) and
returns; the actor ends the session `cancelled` as soon as the step gives control back
(its pause, its end or its error), discarding whatever the step produced. The actor
keeps a `LiveSnapshot` of its state in the registry, replaced at every change, so the
status calls never wait for a busy session.

Any exception from an async strategy, `BaseException`s such as `SystemExit` or
`KeyboardInterrupt` included (no Python signal handler runs inside a turn, except a
second Ctrl-C during one long turn on the main thread: see `greenroom.actors.caller_runs`; so
one there was raised by the strategy itself), ends the session in `error`, as on the
thread path; so does any failure while turning the strategy's outcome into a result
(a return value whose serialisation raises, an exception whose `__str__` raises).

**Plain strategies** (`def strategy(ctx, ...)`) run on the runtime's bounded strategy
pool (`RuntimeConfig.strategy_threads`). There `ctx.llm` asks the actor with the
queries and blocks on the reply, which the actor gives once the round is answered (or
fails with `ExecutionCancelled` when the session is cancelled, reaped or closed, or
has ended while a helper thread of the strategy still waited). A pause that arrives
after the actor stopped is answered `ActorDeadError` by the mailbox, which `ctx.llm`
turns into `ExecutionCancelled`: no cancel, reap or close can leave it waiting forever.
A job that must wait because every strategy thread is held (paused plain sessions hold
one each) is logged and counted (`strategy_starts_queued`, gauge `strategy_queued`).
While a plain strategy runs
it counts as work in progress for `Runtime.settle()` / `FakeClock.advance()`; while it
waits for the host, or for a free thread of the pool, it does not (the actor counts it
again just before it resolves the future, so a settle never misses the resumed work).

A finished session (completed, error, cancelled) hands its final `FeedResult` to the
`ExecutionRegistry`, which keeps it for `result_retention_s`, and the actor stops.
"""

from __future__ import annotations

import copy
import inspect
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from pykka import ActorDeadError

from greenroom.activity import ActivityTracker
from greenroom.actors.base import DEFERRED, ActorContext, GreenroomActor, GreenroomActorRef, Reply
from greenroom.actors.blocking import BlockingPool
from greenroom.errors import (
    AlreadyResponded,
    ExecutionCancelled,
    InvalidInput,
    InvalidTransition,
    Stopped,
    UnknownQuery,
)
from greenroom.executions.messages import (
    Begin,
    Cancel,
    Feed,
    Reap,
    Status,
    ThreadCustom,
    ThreadDone,
    ThreadPause,
)
from greenroom.executions.records import (
    MAX_LOG_CHARS,
    TERMINAL_STATES,
    AsyncExecutionContext,
    ExecutionContext,
    ExecutionStats,
    FeedResult,
    LlmCall,
    LlmQuery,
    LlmRequest,
    SessionMetrics,
    answer_digest,
    describe_error,
    json_value,
)
from greenroom.executions.registry import (
    ENDED,
    ExecutionRegistry,
    LiveEntry,
    LiveSnapshot,
    RetainedResult,
)
from greenroom.usage import Usage

__all__ = ["ExecutionActor"]

log = logging.getLogger("greenroom.executions")

_NO_LOOP_HINT = (
    " (greenroom drives async strategies itself, without an event loop: await only "
    "ctx.llm and ctx.llm_batch, or write a plain def strategy to use blocking calls)"
)


# -- the strategy side --------------------------------------------------------------------


class _AsyncBackend:
    """The context's way to its actor in an async strategy (it runs inside the actor)."""

    __slots__ = ("_actor",)

    def __init__(self, actor: ExecutionActor) -> None:
        self._actor = actor

    def log(self, message: str) -> None:
        self._actor._custom(None, message)

    def metric(self, name: str, value: Any) -> None:
        self._actor._custom(name, value)


class _ThreadLink:
    """The context's way to its actor in a plain strategy, on a strategy-pool thread."""

    __slots__ = ("cancelled", "ref", "registry", "session_id", "tracker")

    def __init__(
        self,
        ref: GreenroomActorRef,
        tracker: ActivityTracker,
        session_id: str,
        registry: ExecutionRegistry,
    ) -> None:
        self.ref = ref
        self.tracker = tracker
        self.session_id = session_id
        self.registry = registry
        # Set by the actor to why the session was cancelled; read here (one attribute).
        self.cancelled: str | None = None

    def _refuse_if_cancelled(self) -> None:
        if self.cancelled is not None:
            raise ExecutionCancelled(f"execution {self.session_id} was cancelled: {self.cancelled}")

    def request(self, requests: tuple[LlmRequest, ...]) -> list[str]:
        self._refuse_if_cancelled()
        # An ask, not a tell: if the session stops before it handles the pause (a
        # cancel, a reap or a close landing just after the check above), the mailbox
        # answers the envelope ActorDeadError, so this wait always ends.
        future = self.ref.ask(ThreadPause(requests), block=False)
        # Waiting for the host is not work in progress: a settle must not wait for it.
        # The actor enters the tracker again before it answers.
        self.tracker.leave()
        try:
            answers: list[str] = future.get()
        except ActorDeadError:
            self.tracker.enter()  # running again, to unwind (nobody else counts it)
            why = f" (cancelled: {self.cancelled})" if self.cancelled is not None else ""
            raise ExecutionCancelled(
                f"execution {self.session_id} has ended{why}; its ctx.llm call cannot be answered"
            ) from None
        return answers

    def log(self, message: str) -> None:
        self._tell(ThreadCustom(None, message))

    def metric(self, name: str, value: Any) -> None:
        self._tell(ThreadCustom(name, value))

    def _tell(self, message: ThreadCustom) -> None:
        self._refuse_if_cancelled()
        try:
            self.ref.tell(message)
        except ActorDeadError:
            raise ExecutionCancelled(f"execution {self.session_id} has ended") from None


def _run_plain_strategy(
    link: _ThreadLink,
    strategy: Callable[..., Any],
    context: ExecutionContext,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    """The job a plain strategy runs as, on the strategy pool.

    It counts as work in progress from here, not from its submission: a job queued
    behind threads that all wait for the host's answers waits for the host too, and a
    settle must not wait for that. (`rt.executions.start` returns only at the strategy's
    first pause or end, so sequential code never sees the job not started yet.)
    """
    if link.cancelled is not None:
        return  # cancelled (or reaped) while it waited for a free thread
    link.registry.strategy_started()
    link.tracker.enter()
    try:
        try:
            value = strategy(context, *args, **kwargs)
            message = ThreadDone(value, None)
        except BaseException as error:  # the session's error, whatever it is
            message = ThreadDone(None, error)
        if link.cancelled is None:
            try:
                link.ref.tell(message)
            except ActorDeadError:
                log.debug("execution %s ended before its strategy thread did", link.session_id)
    finally:
        link.registry.strategy_finished()
        link.tracker.leave()  # after the tell: the actor is busy before we stop counting


# -- the actor ------------------------------------------------------------------------------


_END_COUNTERS = {
    "completed": "executions_completed",
    "error": "executions_failed",
    "cancelled": "executions_cancelled",
}


class ExecutionActor(GreenroomActor):
    """One execution session; see the module docstring. Spawned by `rt.executions.start`."""

    kind = "execution"

    # Slots: a host keeps thousands of paused sessions, and the base's instance dict
    # would double in size once this class's fields joined it.
    __slots__ = (
        "_answered",
        "_answers",
        "_async",
        "_coro",
        "_entry",
        "_final",
        "_link",
        "_metrics",
        "_pending",
        "_pool",
        "_queries",
        "_reason",
        "_registry",
        "_retained",
        "_round",
        "_start",
        "_state",
        "_thread_future",
        "_waiters",
        "session_id",
    )

    def __init__(
        self,
        ctx: ActorContext,
        session_id: str,
        strategy: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        is_async: bool,
        registry: ExecutionRegistry,
        pool: Callable[[], BlockingPool],
    ) -> None:
        super().__init__(ctx)
        self.session_id = session_id
        self._start: tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]] | None = (
            strategy,
            args,
            kwargs,
        )
        self._async = is_async
        self._registry = registry
        self._pool = pool
        self._state = "running"
        self._round = 0
        self._queries: tuple[LlmQuery, ...] = ()  # this round's, in order
        self._pending: dict[str, LlmQuery] = {}  # this round's, not answered yet
        self._answers: dict[str, str] = {}  # this round's answers, by query id
        # A digest of every answer of every round, by query id: enough to tell a
        # repeated answer from a changed one, without keeping old rounds' texts.
        self._answered: dict[str, bytes] = {}
        self._waiters: list[Reply] = []  # asks answered at the next pause or end
        self._coro: Coroutine[Any, Any, Any] | None = None
        self._link: _ThreadLink | None = None
        self._thread_future: Reply | None = None  # a plain strategy's waiting ctx.llm
        self._reason: str | None = None
        self._final: dict[str, Any] | None = None  # the status once finished
        self._retained: RetainedResult | None = None  # what the registry keeps, once finished
        now = ctx.clock.monotonic()
        self._metrics = SessionMetrics(now)
        self._entry = LiveEntry(self.actor_ref, now, self._snapshot_of(self._stats()))
        registry.add(session_id, self._entry)

    def on_receive(self, message: Any) -> Any:
        handler = _HANDLERS.get(type(message))
        if handler is None:
            return super().on_receive(message)
        return handler(self, message)

    def on_stop(self) -> None:
        if self._state in TERMINAL_STATES:
            return
        # The runtime is closing (or the actor was stopped some other way) while the
        # strategy runs or waits: stop it, and tell whoever waits for its next event.
        state = self._state
        self._stop_strategy("the runtime was closed")
        self._registry.drop(self.session_id)
        log.info("execution %s stopped while %s (the runtime is closing)", self.session_id, state)
        waiters, self._waiters = self._waiters, []
        for reply in waiters:
            reply.fail(Stopped(f"execution {self.session_id}: the runtime was closed"))

    # -- starting ------------------------------------------------------------------------

    def _begin(self, _message: Begin) -> Any:
        if self._start is None:
            raise InvalidTransition(f"execution {self.session_id} has already started")
        strategy, args, kwargs = self._start
        self._start = None  # the arguments are the strategy's from now on
        if self._async:
            backend = _AsyncBackend(self)
            try:
                coro = strategy(
                    AsyncExecutionContext(self.session_id, self.ctx.clock, backend),
                    *args,
                    **kwargs,
                )
            except BaseException as error:  # as in _drive: the session's error
                return self._end("error", error=describe_error(error))
            if not inspect.iscoroutine(coro):
                return self._end(
                    "error",
                    error=f"the async strategy returned {type(coro).__name__}, not a coroutine",
                )
            self._coro = coro
            return self._drive(None)
        link = _ThreadLink(self.actor_ref, self.ctx.tracker, self.session_id, self._registry)
        self._link = link
        context = ExecutionContext(self.session_id, self.ctx.clock, link)
        self._waiters.append(self.reply_later())
        try:
            pool = self._pool()
            self._warn_if_queued(pool)
            pool.submit(_run_plain_strategy, link, strategy, context, args, kwargs, track=False)
        except Exception as error:
            self._end("error", error=f"the strategy could not start: {describe_error(error)}")
        return DEFERRED

    def _warn_if_queued(self, pool: BlockingPool) -> None:
        held = self._registry.strategies_running + pool.queued
        if held < pool.max_threads:
            return
        self.ctx.metrics.incr("strategy_starts_queued")
        log.warning(
            "execution %s: all %d strategy threads are held (plain strategies running or "
            "waiting in ctx.llm for the host's answers), so this plain strategy waits for a "
            "free thread (strategy_queued in rt.metrics()); answer or cancel paused plain "
            "sessions, write the strategy as async def, or raise strategy_threads",
            self.session_id,
            pool.max_threads,
        )

    # -- driving an async strategy ---------------------------------------------------------

    def _drive(self, answers: list[str] | None) -> FeedResult:
        """Run the coroutine with `answers` (`None` to start it) until it pauses or ends."""
        try:
            return self._step(answers)
        except Exception as error:
            return self._internal_failure(error)

    def _step(self, answers: list[str] | None) -> FeedResult:
        coro = self._coro
        assert coro is not None  # (driven only while it runs)
        try:
            yielded = coro.send(answers)
        except StopIteration as stop:
            self._coro = None
            return self._complete(stop.value)
        except BaseException as error:
            # Whatever the strategy raised (SystemExit, KeyboardInterrupt and even a
            # GeneratorExit of its own included) is the session's error, as on the
            # thread path; it must not stop the actor and lose the session.
            self._coro = None
            text = describe_error(error)
            if isinstance(error, RuntimeError) and "event loop" in text:
                text += _NO_LOOP_HINT
            if not isinstance(error, Exception):
                log.warning(
                    "execution %s: the strategy raised %s; the session ends in error",
                    self.session_id,
                    type(error).__name__,
                )
            return self._end("error", error=text)
        if type(yielded) is not LlmCall:
            self._close_coro()
            return self._end(
                "error",
                error=f"the strategy awaited {yielded!r}, which is not ctx.llm or ctx.llm_batch"
                + _NO_LOOP_HINT,
            )
        return self._pause(yielded.requests)

    def _close_coro(self) -> None:
        coro, self._coro = self._coro, None
        if coro is None:
            return
        try:
            coro.close()
        except Exception as error:
            # (e.g. it awaited again in a finally block: "coroutine ignored GeneratorExit")
            log.warning(
                "execution %s: the strategy did not stop cleanly when closed: %s",
                self.session_id,
                describe_error(error),
            )

    # -- pauses, feeds and resuming -------------------------------------------------------

    def _pause(self, requests: tuple[LlmRequest, ...]) -> FeedResult:
        if self._entry.cancel_requested is not None:
            # The host cancelled while the strategy computed: it stops here.
            return self._cancel_now(self._entry.cancel_requested)
        self._round += 1
        prefix = f"q-{self._round}-"
        queries = tuple(LlmQuery.of(prefix + str(i), req) for i, req in enumerate(requests))
        self._queries = queries
        self._pending = {query.id: query for query in queries}
        self._answers = {}
        self._state = "paused"
        self._metrics.asked(queries)
        self._touch()
        return self._notify(self._needs_response(queries))

    def _needs_response(self, queries: tuple[LlmQuery, ...]) -> FeedResult:
        stats = self._stats()
        self._snap(stats)
        return FeedResult("needs_response", self.session_id, queries, metrics=stats)

    def _feed(self, message: Feed) -> Any:
        if self._retained is not None:  # ended, its stop not handled yet
            return self._retained.refeed(message.items)
        # Validate every item before changing anything: all or none.
        plan: list[tuple[LlmQuery, str, Usage | None]] = []
        seen: set[str] = set()
        for query_id, response, usage in message.items:
            if query_id is None:
                query_id = self._sole_pending()
            if query_id in seen:
                raise InvalidInput(
                    f"query {query_id!r} appears more than once in the batch; answer each "
                    "query once"
                )
            seen.add(query_id)
            previous = self._answered.get(query_id)
            if previous is not None:
                if previous != answer_digest(response):
                    raise AlreadyResponded(
                        f"query {query_id!r} of execution {self.session_id} was already "
                        "answered with a different response; an answer cannot be changed"
                    )
                continue  # the same answer again: an idempotent no-op
            query = self._pending.get(query_id)
            if query is None:
                raise UnknownQuery(
                    f"execution {self.session_id} never asked a query {query_id!r}; "
                    f"{self._pending_text()}"
                )
            plan.append((query, response, usage))
        if not plan:
            return self._current()
        pending = self._pending
        for query, response, usage in plan:
            del pending[query.id]
            self._answers[query.id] = response
            self._answered[query.id] = answer_digest(response)
            self._metrics.answered(query, response, usage)
        self.ctx.metrics.incr("execution_feeds", len(plan))
        if pending:
            self._touch()  # (resuming touches it at the next pause)
            return self._accepted()
        return self._resume()

    def _accepted(self) -> FeedResult:
        pending = tuple(self._pending.values())
        stats = self._stats()
        self._snap(stats)
        return FeedResult(
            "accepted", self.session_id, pending, remaining=len(pending), metrics=stats
        )

    def _sole_pending(self) -> str:
        count = len(self._pending)
        if count == 1:
            return next(iter(self._pending))
        if count == 0:
            raise InvalidTransition(
                f"execution {self.session_id} has no query pending (it is {self._state}); "
                "nothing to answer"
            )
        raise InvalidTransition(
            f"execution {self.session_id} has {count} queries pending "
            f"({', '.join(self._pending)}); pass query_id to say which one this answers"
        )

    def _pending_text(self) -> str:
        if not self._pending:
            return f"no query is pending (it is {self._state})"
        return f"pending: {', '.join(self._pending)}"

    def _current(self) -> Any:
        """The session's state as a feed result (for a feed that changed nothing)."""
        if self._state == "paused":
            if self._answers:  # some of this round are answered
                return self._accepted()
            return self._needs_response(tuple(self._pending.values()))
        # Running (a plain strategy between pauses): answer with its next event.
        self._waiters.append(self.reply_later())
        return DEFERRED

    def _resume(self) -> Any:
        answers = [self._answers[query.id] for query in self._queries]
        self._metrics.rounds += 1
        self._queries = ()
        self._answers = {}
        self._state = "running"
        self._snap()  # visible as running while the strategy computes
        if self._async:
            return self._drive(answers)
        reply, self._thread_future = self._thread_future, None
        assert reply is not None
        self._waiters.append(self.reply_later())
        self._touch()
        self.ctx.tracker.enter()  # the strategy runs again: work in progress
        reply.set(answers)
        return DEFERRED

    # -- a plain strategy's messages --------------------------------------------------------

    def _thread_pause(self, message: ThreadPause) -> Any:
        reply = self.reply_later()
        if self._state in TERMINAL_STATES:
            self._wake_cancelled(reply)
            return DEFERRED
        if self._thread_future is not None:
            # ctx.llm from a second thread of the strategy while one call waits.
            self.ctx.tracker.enter()  # that thread runs on, to take the error
            reply.fail(
                InvalidTransition(
                    f"execution {self.session_id}: ctx.llm was called while another ctx.llm "
                    "call of the same strategy is waiting; call it from one thread at a time"
                )
            )
            return DEFERRED
        self._thread_future = reply
        try:
            self._pause(message.requests)
        except Exception as error:
            self._internal_failure(error)
        return DEFERRED

    def _thread_done(self, message: ThreadDone) -> None:
        if self._state in TERMINAL_STATES:
            return  # cancelled while it ran: its result is not wanted
        try:
            if message.error is not None:
                self._end("error", error=describe_error(message.error))
            else:
                self._complete(message.value)
        except Exception as error:
            self._internal_failure(error)

    def _thread_custom(self, message: ThreadCustom) -> None:
        if self._state not in TERMINAL_STATES:
            self._custom(message.name, message.value)

    def _wake_cancelled(self, reply: Reply) -> None:
        if self._state in ("running", "paused", "cancelled"):
            text = f"execution {self.session_id} was cancelled" + (
                f": {self._reason}" if self._reason else ""
            )
        else:  # completed or error: the strategy returned while a helper thread waited
            text = (
                f"execution {self.session_id} has ended ({self._state}); its ctx.llm call "
                "cannot be answered"
            )
        self.ctx.tracker.enter()  # the strategy runs again, to unwind
        reply.fail(ExecutionCancelled(text))

    # -- custom entries ------------------------------------------------------------------

    def _custom(self, name: str | None, value: Any) -> None:
        if name is not None:
            self._metrics.custom[name] = value
        else:
            self._log_entry(value)
        self._touch()
        self._snap()

    def _log_entry(self, value: str) -> None:
        if len(value) > MAX_LOG_CHARS:
            self.ctx.metrics.incr("execution_logs_truncated")
            log.info(
                "execution %s: a ctx.log message of %d chars was cut to %d (counted in "
                "execution_logs_truncated)",
                self.session_id,
                len(value),
                MAX_LOG_CHARS,
            )
        if self._metrics.log(value):
            self.ctx.metrics.incr("execution_logs_dropped")
            if self._metrics.logs_dropped == 1:  # the first drop; the rest are counted
                log.warning(
                    "execution %s: more than %d ctx.log entries; the oldest are dropped "
                    "(counted in stats logs_dropped and execution_logs_dropped)",
                    self.session_id,
                    len(self._metrics.logs),
                )

    # -- ending --------------------------------------------------------------------------

    def _complete(self, value: Any) -> FeedResult:
        if inspect.iscoroutine(value):
            value.close()
            return self._end(
                "error",
                error="the strategy returned a coroutine: declare it `async def` so the "
                "session drives it",
            )
        try:
            value = json_value(value, "the strategy's return value")
        except InvalidInput as error:
            return self._end("error", error=str(error))
        except Exception as error:  # (json_value converts any failure; belt and braces)
            return self._end(
                "error",
                error=f"the strategy's return value could not be stored: {describe_error(error)}",
            )
        return self._end("completed", result=value)

    def _cancel(self, message: Cancel) -> FeedResult:
        if self._retained is not None:
            if self._state == "cancelled":
                # A cancel that arrives after the session ended cancelled (another
                # cancel, or this one deferred while the strategy computed): the same.
                return self._retained.final
            raise self._ended_error("cancel")
        return self._cancel_now(message.reason)

    def _cancel_now(self, reason: str) -> FeedResult:
        self._reason = self._reason or reason
        self._stop_strategy(reason)
        return self._end("cancelled")

    def _internal_failure(self, error: Exception) -> FeedResult:
        """Something failed while handling the strategy's outcome: end in error."""
        log.error(
            "execution %s: failed while handling its strategy's outcome; the session ends in error",
            self.session_id,
            exc_info=(type(error), error, error.__traceback__),
        )
        if self._retained is not None:
            return self._retained.final
        self._stop_strategy("the session failed")
        return self._end(
            "error", error=f"the session failed handling its strategy: {describe_error(error)}"
        )

    def _reap(self, message: Reap) -> bool:
        if self._state in TERMINAL_STATES or self._entry.last_active > message.cutoff:
            return False  # ended, or active again since the GC looked
        ttl = self.ctx.config.execution_ttl_s
        self.ctx.metrics.incr("executions_reaped")
        log.warning(
            "execution %s reaped by the GC: %s and idle for more than execution_ttl_s "
            "(%g s); cancelled",
            self.session_id,
            self._state,
            ttl,
        )
        self._reason = f"reaped by the GC: idle for more than execution_ttl_s ({ttl:g} s)"
        self._stop_strategy(self._reason)
        self._end("cancelled")
        return True

    def _stop_strategy(self, reason: str) -> None:
        self._reason = self._reason or reason
        self._close_coro()
        if self._link is not None:
            self._link.cancelled = self._reason
            future, self._thread_future = self._thread_future, None
            if future is not None:
                self._wake_cancelled(future)

    def _end(self, status: str, *, result: Any = None, error: str | None = None) -> FeedResult:
        requested = self._entry.cancel_requested
        if status != "cancelled" and requested is not None:
            # `Runtime.executions.cancel` already told the host "cancelled" (the strategy was busy
            # computing): that stays true, and what the strategy produced is dropped.
            log.info(
                "execution %s: the strategy %s after the host cancelled it; the session "
                "ends cancelled",
                self.session_id,
                "failed" if status == "error" else "finished",
            )
            status, result, error = "cancelled", None, None
            self._reason = self._reason or requested
            self._stop_strategy(requested)
        now = self.ctx.clock.monotonic()
        self._state = status
        self._metrics.ended_at = now
        self._pending = {}
        self._queries = ()
        final = FeedResult(
            status, self.session_id, result=result, error=error, metrics=self._stats()
        )
        self._final = self._status(final)
        # The answers' digests stay with the result: a retried answer stays a no-op.
        self._retained = RetainedResult(final, self._final, now, self._answered)
        self._registry.finish(self.session_id, self._retained)
        self._answers = {}
        # A helper thread of a plain strategy still waiting in ctx.llm (its main
        # function has returned): wake it, once the final state is visible.
        reply, self._thread_future = self._thread_future, None
        if reply is not None:
            self._wake_cancelled(reply)
        self.ctx.metrics.incr(_END_COUNTERS[status])
        if status == "completed":
            log.debug("execution %s completed", self.session_id)
        elif status == "error":
            log.info("execution %s failed: %s", self.session_id, error)
        else:
            log.info("execution %s cancelled: %s", self.session_id, self._reason)
        self._notify(final)
        self.actor_ref.stop(block=False)  # the registry keeps the result from now on
        return final

    def _ended_error(self, action: str) -> InvalidTransition:
        return InvalidTransition(
            f"execution {self.session_id} has already {ENDED[self._state]}; cannot {action} it"
        )

    # -- helpers ---------------------------------------------------------------------------

    def _notify(self, result: FeedResult) -> FeedResult:
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for reply in waiters:
                reply.set(result)
        return result

    def _touch(self) -> None:
        self._entry.last_active = self.ctx.clock.monotonic()

    def _stats(self) -> ExecutionStats:
        return self._metrics.snapshot(self.ctx.clock.monotonic())

    def _snapshot_of(self, stats: ExecutionStats) -> LiveSnapshot:
        return LiveSnapshot(
            self._state, self._round, tuple(self._pending), stats, self._metrics.started_at
        )

    def _snap(self, stats: ExecutionStats | None = None) -> None:
        """Publish the session's state to the registry (read by the status calls)."""
        if self._retained is None:
            self._entry.snapshot = self._snapshot_of(stats if stats is not None else self._stats())

    def _status(self, final: FeedResult | None = None) -> dict[str, Any]:
        stats = final.metrics if final is not None and final.metrics is not None else None
        if stats is None:
            stats = self._stats()
        status: dict[str, Any] = {
            "session_id": self.session_id,
            "state": self._state,
            "round": self._round,
            "pending_queries": list(self._pending),
            "metrics": stats.to_json(),
        }
        if final is not None:
            if final.status == "completed":
                # A copy: the caller holding the FeedResult may change its result.
                status["result"] = copy.deepcopy(final.result)
            elif final.status == "error":
                status["error"] = final.error
            else:
                status["reason"] = self._reason
        return status

    def _get_status(self, _message: Status) -> dict[str, Any]:
        if self._final is not None:  # finished, its stop not handled yet
            return copy.deepcopy(self._final)
        return self._status()

    def __repr__(self) -> str:
        return f"<ExecutionActor {self.session_id} {self._state}>"


_HANDLERS: dict[type, Callable[[ExecutionActor, Any], Any]] = {
    Begin: ExecutionActor._begin,
    Feed: ExecutionActor._feed,
    Cancel: ExecutionActor._cancel,
    Status: ExecutionActor._get_status,
    Reap: ExecutionActor._reap,
    ThreadPause: ExecutionActor._thread_pause,
    ThreadDone: ExecutionActor._thread_done,
    ThreadCustom: ExecutionActor._thread_custom,
}
