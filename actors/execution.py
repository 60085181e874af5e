"""`ExecutionActor`: one execution session, driving its strategy without a thread of its own.

**Async strategies** (`async def strategy(ctx, ...)`) are driven by the actor itself
with `coro.send(...)`, inside its handlers: no event loop and no thread. `ctx.llm`
returns an awaitable whose `__await__` yields a pause request to this driver; the
actor records the queries and returns `needs_response`. When the host has answered
every query of the round, the actor sends the answers into the coroutine, which runs
until its next pause or its end. A paused session costs a suspended coroutine and an
idle actor. The strategy's steps between pauses run on a dispatcher thread, so a
CPU-heavy async strategy holds that thread while it computes (the slow-handler
warning names it); put heavy computing in a plain `def` strategy instead.

Awaiting anything other than `ctx.llm` / `ctx.llm_batch` (such as `asyncio.sleep`)
ends the session in `error`: there is no event loop to wait on.

**Plain strategies** (`def strategy(ctx, ...)`) run on the runtime's bounded strategy
pool (`RuntimeConfig.strategy_threads`). There `ctx.llm` tells the actor the queries
and blocks on a future that the actor resolves once the round is answered (or fails
with `ExecutionCancelled` when the session is cancelled). While a plain strategy runs
it counts as work in progress for `Runtime.settle()` / `FakeClock.advance()`; while it
waits for the host, or for a free thread of the pool, it does not (the actor counts it
again just before it resolves the future, so a settle never misses the resumed work).

A finished session (completed, error, cancelled) hands its final `FeedResult` to the
`ExecutionRegistry`, which keeps it for `result_retention_s`, and the actor stops.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
from pykka import ActorDeadError

from actors.base import DEFERRED, ActorContext, GreenroomActor, Reply
from actors.futures import GreenroomFuture
from runtime.errors import (
    AlreadyResponded,
    ExecutionCancelled,
    InvalidInput,
    InvalidTransition,
    Stopped,
    UnknownQuery,
)
from runtime.execution_registry import ExecutionRegistry, LiveEntry, RetainedResult
from runtime.executions import (
    TERMINAL_STATES,
    ExecutionContext,
    FeedResult,
    LlmQuery,
    LlmRequest,
    SessionMetrics,
    describe_error,
    json_value,
)

if TYPE_CHECKING:
    from actors.blocking import BlockingPool
    from runtime.activity import ActivityTracker

__all__ = [
    "BEGIN",
    "STATUS",
    "Begin",
    "Cancel",
    "ExecutionActor",
    "Feed",
    "Reap",
    "Status",
]

log = logging.getLogger("greenroom.executions")

_NO_LOOP_HINT = (
    " (greenroom drives async strategies itself, without an event loop: await only "
    "ctx.llm and ctx.llm_batch, or write a plain def strategy to use blocking calls)"
)

FeedItem = tuple[str | None, str, dict[str, int] | None]


# -- messages -----------------------------------------------------------------------------


@attrs.frozen
class Begin:
    """Start the strategy; answered at its first pause or its end."""


BEGIN = Begin()


@attrs.frozen
class Feed:
    """Answers for the session: (query_id or None, response, usage or None) each."""

    items: tuple[FeedItem, ...]


@attrs.frozen
class Cancel:
    """Stop the strategy; answered with the `cancelled` result."""

    reason: str


@attrs.frozen
class Status:
    """Answered with the session's status dict."""


STATUS = Status()


@attrs.frozen
class Reap:
    """From the GC: cancel the session if it was last active at or before `cutoff`."""

    cutoff: float


@attrs.frozen
class _ThreadPause:
    requests: tuple[LlmRequest, ...]
    future: GreenroomFuture[Any]


@attrs.frozen
class _ThreadDone:
    value: Any
    error: BaseException | None


@attrs.frozen
class _ThreadCustom:
    name: str | None  # None: a log message
    value: Any


# -- the strategy side --------------------------------------------------------------------


class _Await:
    """What `ctx.llm` returns in an async strategy: awaiting it pauses the session."""

    __slots__ = ("requests", "single")

    def __init__(self, requests: tuple[LlmRequest, ...], single: bool) -> None:
        self.requests = requests
        self.single = single

    def __await__(self) -> Any:
        answers = yield self  # to ExecutionActor._drive, which sends the answers back
        return answers[0] if self.single else answers

    def __repr__(self) -> str:
        return f"<pending ctx.llm of {len(self.requests)} quer{'y' if self.single else 'ies'}>"


class _AsyncBackend:
    """The context's way to its actor in an async strategy (it runs inside the actor)."""

    __slots__ = ("_actor",)

    def __init__(self, actor: ExecutionActor) -> None:
        self._actor = actor

    def request(self, requests: tuple[LlmRequest, ...], single: bool) -> _Await:
        return _Await(requests, single)

    def log(self, message: str) -> None:
        self._actor._custom(None, message)

    def metric(self, name: str, value: Any) -> None:
        self._actor._custom(name, value)


class _ThreadLink:
    """The context's way to its actor in a plain strategy, on a strategy-pool thread."""

    __slots__ = ("cancelled", "ref", "session_id", "tracker")

    def __init__(self, ref: Any, tracker: ActivityTracker, session_id: str) -> None:
        self.ref = ref
        self.tracker = tracker
        self.session_id = session_id
        # Set by the actor to why the session was cancelled; read here (one attribute).
        self.cancelled: str | None = None

    def _refuse_if_cancelled(self) -> None:
        if self.cancelled is not None:
            raise ExecutionCancelled(f"execution {self.session_id} was cancelled: {self.cancelled}")

    def request(self, requests: tuple[LlmRequest, ...], single: bool) -> Any:
        self._refuse_if_cancelled()
        future: GreenroomFuture[Any] = GreenroomFuture()
        try:
            self.ref.tell(_ThreadPause(requests, future))
        except ActorDeadError:
            raise ExecutionCancelled(f"execution {self.session_id} has ended") from None
        # Waiting for the host is not work in progress: a settle must not wait for it.
        # The actor enters the tracker again before it resolves the future.
        self.tracker.leave()
        answers = future.get()
        return answers[0] if single else answers

    def log(self, message: str) -> None:
        self._tell(_ThreadCustom(None, message))

    def metric(self, name: str, value: Any) -> None:
        self._tell(_ThreadCustom(name, value))

    def _tell(self, message: Any) -> None:
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
    settle must not wait for that. (`start_execution` returns only at the strategy's
    first pause or end, so sequential code never sees the job not started yet.)
    """
    if link.cancelled is not None:
        return  # cancelled (or reaped) while it waited for a free thread
    link.tracker.enter()
    try:
        try:
            value = strategy(context, *args, **kwargs)
            message = _ThreadDone(value, None)
        except BaseException as error:  # the session's error, whatever it is
            message = _ThreadDone(None, error)
        if link.cancelled is None:
            try:
                link.ref.tell(message)
            except ActorDeadError:
                log.debug("execution %s ended before its strategy thread did", link.session_id)
    finally:
        link.tracker.leave()  # after the tell: the actor is busy before we stop counting


# -- the actor ------------------------------------------------------------------------------


def _digest(response: str) -> bytes:
    return hashlib.blake2b(response.encode("utf-8", "surrogatepass"), digest_size=16).digest()


_END_COUNTERS = {
    "completed": "executions_completed",
    "error": "executions_failed",
    "cancelled": "executions_cancelled",
}
_ENDED = {"completed": "completed", "error": "failed (error)", "cancelled": "been cancelled"}


class ExecutionActor(GreenroomActor):
    """One execution session; see the module docstring. Spawned by `start_execution`."""

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
        self._coro: Any = None
        self._link: _ThreadLink | None = None
        self._thread_future: GreenroomFuture[Any] | None = None
        self._reason: str | None = None
        self._final: dict[str, Any] | None = None  # the status once finished
        now = ctx.clock.monotonic()
        self._metrics = SessionMetrics(now)
        self._entry = LiveEntry(self.actor_ref, now)
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
            context = ExecutionContext(self.session_id, self.ctx.clock, _AsyncBackend(self))
            try:
                coro = strategy(context, *args, **kwargs)
            except Exception as error:
                return self._end("error", error=describe_error(error))
            if not inspect.iscoroutine(coro):
                return self._end(
                    "error",
                    error=f"the async strategy returned {type(coro).__name__}, not a coroutine",
                )
            self._coro = coro
            return self._drive(None)
        link = _ThreadLink(self.actor_ref, self.ctx.tracker, self.session_id)
        self._link = link
        context = ExecutionContext(self.session_id, self.ctx.clock, link)
        self._waiters.append(self.reply_later())
        try:
            self._pool().submit(
                _run_plain_strategy, link, strategy, context, args, kwargs, track=False
            )
        except Exception as error:
            self._end("error", error=f"the strategy could not start: {describe_error(error)}")
        return DEFERRED

    # -- driving an async strategy ---------------------------------------------------------

    def _drive(self, answers: list[str] | None) -> FeedResult:
        """Run the coroutine with `answers` (`None` to start it) until it pauses or ends."""
        coro = self._coro
        try:
            yielded = coro.send(answers)
        except StopIteration as stop:
            self._coro = None
            return self._complete(stop.value)
        except Exception as error:
            self._coro = None
            text = describe_error(error)
            if isinstance(error, RuntimeError) and "event loop" in str(error):
                text += _NO_LOOP_HINT
            return self._end("error", error=text)
        if type(yielded) is not _Await:
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
        return FeedResult("needs_response", self.session_id, queries, metrics=self._stats())

    def _feed(self, message: Feed) -> Any:
        if self._state in TERMINAL_STATES:
            raise self._ended_error("feed")
        # Validate every item before changing anything: all or none.
        plan: list[tuple[LlmQuery, str, dict[str, int] | None]] = []
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
                if previous != _digest(response):
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
            self._answered[query.id] = _digest(response)
            self._metrics.answered(query, response, usage)
        self.ctx.metrics.incr("execution_feeds", len(plan))
        if pending:
            self._touch()  # (resuming touches it at the next pause)
            return FeedResult(
                "accepted",
                self.session_id,
                tuple(pending.values()),
                remaining=len(pending),
                metrics=self._stats(),
            )
        return self._resume()

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
            pending = tuple(self._pending.values())
            if self._answers:  # some of this round are answered
                return FeedResult(
                    "accepted",
                    self.session_id,
                    pending,
                    remaining=len(pending),
                    metrics=self._stats(),
                )
            return self._needs_response(pending)
        # Running (a plain strategy between pauses): answer with its next event.
        self._waiters.append(self.reply_later())
        return DEFERRED

    def _resume(self) -> Any:
        answers = [self._answers[query.id] for query in self._queries]
        self._metrics.rounds += 1
        self._queries = ()
        self._answers = {}
        self._state = "running"
        if self._async:
            return self._drive(answers)
        future, self._thread_future = self._thread_future, None
        assert future is not None
        self._waiters.append(self.reply_later())
        self._touch()
        self.ctx.tracker.enter()  # the strategy runs again: work in progress
        future.set(answers)
        return DEFERRED

    # -- a plain strategy's messages --------------------------------------------------------

    def _thread_pause(self, message: _ThreadPause) -> None:
        if self._state in TERMINAL_STATES:
            self._wake_cancelled(message.future)
            return
        if self._thread_future is not None:
            # ctx.llm from a second thread of the strategy while one call waits.
            self.ctx.tracker.enter()  # that thread runs on, to take the error
            error = InvalidTransition(
                f"execution {self.session_id}: ctx.llm was called while another ctx.llm "
                "call of the same strategy is waiting; call it from one thread at a time"
            )
            message.future.set_exception((InvalidTransition, error, None))
            return
        self._thread_future = message.future
        self._pause(message.requests)

    def _thread_done(self, message: _ThreadDone) -> None:
        if self._state in TERMINAL_STATES:
            return  # cancelled while it ran: its result is not wanted
        if message.error is not None:
            self._end("error", error=describe_error(message.error))
        else:
            self._complete(message.value)

    def _thread_custom(self, message: _ThreadCustom) -> None:
        if self._state not in TERMINAL_STATES:
            self._custom(message.name, message.value)

    def _wake_cancelled(self, future: GreenroomFuture[Any]) -> None:
        error = ExecutionCancelled(
            f"execution {self.session_id} was cancelled"
            + (f": {self._reason}" if self._reason else "")
        )
        self.ctx.tracker.enter()  # the strategy runs again, to unwind
        future.set_exception((ExecutionCancelled, error, None))

    # -- custom entries ------------------------------------------------------------------

    def _custom(self, name: str | None, value: Any) -> None:
        if name is not None:
            self._metrics.custom[name] = value
        elif self._metrics.log(value):
            self.ctx.metrics.incr("execution_logs_dropped")
            if self._metrics.logs_dropped == 1:  # the first drop; the rest are counted
                log.warning(
                    "execution %s: more than %d ctx.log entries; the oldest are dropped "
                    "(counted in stats logs_dropped and execution_logs_dropped)",
                    self.session_id,
                    len(self._metrics.logs),
                )
        self._touch()

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
        return self._end("completed", result=value)

    def _cancel(self, message: Cancel) -> FeedResult:
        if self._state in TERMINAL_STATES:
            raise self._ended_error("cancel")
        self._reason = message.reason
        self._stop_strategy(message.reason)
        return self._end("cancelled")

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
        now = self.ctx.clock.monotonic()
        self._state = status
        self._metrics.ended_at = now
        self._pending = {}
        self._queries = ()
        final = FeedResult(
            status, self.session_id, result=result, error=error, metrics=self._stats()
        )
        self._final = self._status(final)
        self._registry.finish(self.session_id, RetainedResult(final, self._final, now))
        self._answers = {}
        self._answered = {}
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
            f"execution {self.session_id} has already {_ENDED[self._state]}; cannot {action} it"
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

    def _stats(self) -> Any:
        return self._metrics.snapshot(self.ctx.clock.monotonic())

    def _status(self, final: FeedResult | None = None) -> dict[str, Any]:
        stats = final.metrics if final is not None else self._stats()
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
    _ThreadPause: ExecutionActor._thread_pause,
    _ThreadDone: ExecutionActor._thread_done,
    _ThreadCustom: ExecutionActor._thread_custom,
}
