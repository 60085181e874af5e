"""`rt.executions`: run strategies that pause to ask the host's LLM, and feed them.

    first = rt.executions.start(strategy, "topic")          # FeedResult at the first pause
    step = rt.executions.feed(first.session_id, "an answer")  # the sole pending query
    step = rt.executions.feed_many(sid, [("q-2-0", "a", None), ("q-2-1", "b", usage)])
    rt.executions.status(sid)                               # {"state": "paused", ...}
    rt.executions.cancel(sid)                               # FeedResult "cancelled"

Durable executions: a strategy registered by name (`rt.executions.register("essay",
essay)`, or `@greenroom.strategy("essay")` and `rt.executions.register_all(module)`)
is journaled in the store (`greenroom.executions.journal`). Once it is not in memory
(passivated after `execution_passivate_after_s` idle, or its process stopped), its
next `feed`, `feed_many` or `cancel` re-drives it from its journal to the exact round
it had reached; `status` and `snapshots` answer from the journal without re-driving.

`usage` is a `greenroom.usage.Usage` or a provider's usage mapping (OpenAI's
`prompt_tokens` / `completion_tokens`, Anthropic's `input_tokens` / `output_tokens` /
`cache_*`), read with `greenroom.usage.as_usage`.

See `greenroom.executions.records` for the records and `greenroom.actors.execution` for
how a session drives its strategy.

Where these may be called: `start`, `feed`, `feed_many` and `cancel` wait for
a session's actor (and a plain strategy for a strategy-pool thread), so they are
refused (`InvalidTransition`) inside an actor's handler, a `run_blocking` job and a
plain strategy's own thread (where a full pool, or the caller's own session, would
deadlock; this includes starting an async strategy from a plain one, refused for one
simple rule). `status` and `snapshots` never wait (they read the
snapshot each session keeps in the registry), so they may be called from anywhere.

The seam shared with `greenroom.aio.executions`: each waiting call is a `send_*` method
that checks, sends and returns a `PendingStep` without waiting, and `outcome`, which
turns the step into the `FeedResult` (or the error) once its future has resolved or
its `timeout` has run out. The sync methods wait on the future on their thread; the
async ones await it on the event loop. Both share every check and every result rule.

    pending = rt.executions.send_feed(sid, "an answer", timeout=5)
    pending.future.wait(pending.timeout)        # or: await settled(pending.future, ...)
    result = rt.executions.outcome(pending)     # ExecutionTimeout if it did not resolve
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import logging
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any, Literal

import attrs
from pykka import ActorDeadError

from greenroom.actors.base import GreenroomActorRef
from greenroom.actors.blocking import BlockingPool
from greenroom.actors.execution import ExecutionActor
from greenroom.actors.execution_gc import ExecutionGC
from greenroom.checks import check_text, check_timeout, validator
from greenroom.errors import (
    ExecutionTimeout,
    GreenroomError,
    InvalidInput,
    InvalidTransition,
    Stopped,
    StorageError,
    StrategyNotRegistered,
)
from greenroom.executions.journal import KIND
from greenroom.executions.messages import BEGIN, Cancel, Feed, FeedItem
from greenroom.executions.records import FeedResult, json_value
from greenroom.executions.registry import ENDED, ExecutionRegistry, LiveEntry
from greenroom.executions.stored import Stored, StoredSessions
from greenroom.executions.strategies import StrategyInfo, StrategyTable, check_name
from greenroom.futures import GreenroomFuture
from greenroom.ids import next_hex_id
from greenroom.kernel import Kernel
from greenroom.leases import Leases
from greenroom.usage import Usage, as_usage

__all__ = ["CANCEL_WAIT_S", "Executions", "FeedItemInput", "PendingStep", "UsageInput"]

log = logging.getLogger("greenroom.executions")

CANCEL_WAIT_S = 0.5
"""Real seconds `cancel` waits for a session busy in a strategy step before it returns
`cancelled` with the cancel recorded (the session ends `cancelled` once the step gives
control back)."""

UsageInput = Usage | Mapping[str, int] | None
"""What `usage` may be: a `Usage`, a provider's usage mapping, or None (estimated)."""

FeedItemInput = tuple[str, str, UsageInput]
"""One `feed_many` item: (query_id, response, usage or None)."""

_CANCELLED_BY_HOST = "cancelled by the host"

_SEND_ATTEMPTS = 3  # a session that leaves memory while a call sends: re-drive, again

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
    "executions_passivated",
    "executions_redriven",
    "execution_journal_failures",
    "execution_conflicts",
)


_ASYNC_STRATEGIES: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def _is_async_strategy(strategy: Any) -> bool:
    """Whether `strategy` is an `async def` (True) or a plain callable (False)."""
    try:
        return _ASYNC_STRATEGIES[strategy]  # (inspect's checks cost ~15 us a start)
    except (KeyError, TypeError):
        pass
    is_async = _check_strategy(strategy)
    with contextlib.suppress(TypeError):  # (not weakly referenceable: not kept)
        _ASYNC_STRATEGIES[strategy] = is_async
    return is_async


def _check_strategy(strategy: Any) -> bool:
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


def _check_feed_items(items: object) -> tuple[FeedItem, ...]:
    """`feed_many`'s items, checked (usage read as a `Usage`)."""
    if isinstance(items, str | bytes) or not isinstance(items, list | tuple):
        raise InvalidInput(
            f"feed_many takes a list of (query_id, response, usage) tuples, got "
            f"{type(items).__name__}"
        )
    if not items:
        raise InvalidInput("feed_many needs at least one (query_id, response, usage) item")
    checked: list[FeedItem] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        if not isinstance(item, list | tuple) or len(item) != 3:
            raise InvalidInput(
                f"feed_many item {index} must be a (query_id, response, usage) tuple, got {item!r}"
            )
        query_id, response, usage = item
        what = f"feed_many item {index}"
        check_text(query_id, f"{what}: query_id", nonempty=True)
        if query_id in seen:
            raise InvalidInput(
                f"{what}: query {query_id!r} appears more than once in the batch; answer "
                "each query once"
            )
        seen.add(query_id)
        check_text(response, f"{what}: response")
        checked.append((query_id, response, as_usage(usage, f"{what}: usage")))
    return tuple(checked)


def _dead_future(session_id: str) -> GreenroomFuture[FeedResult]:
    """A future already failed with `ActorDeadError`: the session has no live actor."""
    future: GreenroomFuture[FeedResult] = GreenroomFuture()
    error = ActorDeadError(f"execution {session_id} has no live actor")
    future.set_exception((ActorDeadError, error, None))
    return future


@attrs.frozen(eq=False)
class PendingStep:
    """A start, feed or cancel sent to a session, its answer not waited for yet.

    Wait for `future` for at most `timeout` seconds (`None`: as long as it takes) on a
    thread (`future.wait(timeout)`) or on an event loop (`greenroom.aio.bridge.settled`),
    then `Executions.outcome(pending)` gives the `FeedResult` or raises the error, the
    same whether the future resolved or the time ran out. Cancelling a wait leaves the
    step sent: the session does what it asked.
    """

    action: Literal["start", "feed", "cancel"]
    """What was sent."""
    session_id: str
    """The session it was sent to (a new one for a start)."""
    future: GreenroomFuture[FeedResult]
    """Resolves with the session's answer (read it through `Executions.outcome`)."""
    timeout: float | None = attrs.field(validator=validator(check_timeout))
    """Real seconds to wait for `future` at most (a cancel's is `CANCEL_WAIT_S`); at
    most `MAX_TIMEOUT_S`, so a wait on it never overflows the OS's."""
    items: tuple[FeedItem, ...] = ()
    """A feed's answers, checked (a finished session compares a retried one with them)."""
    _entry: LiveEntry | None = attrs.field(default=None, repr=False)


class Executions:
    """The executions of one runtime (`rt.executions`): start, feed, cancel, status."""

    def __init__(self, kernel: Kernel) -> None:
        """Build the namespace on `kernel`; `Runtime` makes one."""
        self._kernel = kernel
        self._clock = kernel.clock
        self._config = kernel.config
        self._metrics = kernel.metrics
        self._registry = ExecutionRegistry(self._metrics, self._config.result_retention_s)
        self._lock = threading.Lock()
        self._gc: GreenroomActorRef | None = None
        self._strategy_pool: BlockingPool | None = None
        # Bound once: every session holds this one method object, not its own.
        self._pool_getter = self._get_strategy_pool
        self._strategies = StrategyTable()
        self._stored = StoredSessions(kernel.store, self._clock, self._config, self._metrics)
        self._leases = Leases(kernel.store, self._clock, self._config, KIND)
        self._stored.leases = self._leases
        self._revive_lock = threading.Lock()  # one re-drive of a session at a time

    def counters(self) -> dict[str, int]:
        """This part's counters (at zero until bumped) and gauges (`Runtime.metrics`)."""
        counters = dict.fromkeys(_COUNTERS, 0)
        live, retained = self._registry.counts()
        counters["executions_active"] = live
        counters["executions_retained"] = retained
        pool = self._strategy_pool
        counters["strategy_threads"] = pool.threads if pool is not None else 0
        # Plain strategies waiting for a free strategy thread (every one is held).
        counters["strategy_queued"] = pool.queued if pool is not None else 0
        return counters

    def close(self) -> None:
        """Release this part's resources; `close()` calls it after every actor stopped."""
        if not self._kernel.closed:
            raise InvalidTransition(
                "rt.executions.close() runs as part of Runtime.close(), once every actor has "
                "stopped; close the runtime instead"
            )
        with self._lock:
            pool, self._strategy_pool = self._strategy_pool, None
        try:
            if pool is not None:
                # The session actors' on_stop woke every strategy waiting in ctx.llm
                # with ExecutionCancelled; one that never returns is logged and left.
                pool.shutdown(self._config.stop_timeout_s)
        finally:
            self._registry.clear()

    # -- services ----------------------------------------------------------------------

    def _execution_gc(self) -> GreenroomActorRef:
        """Start the execution GC supervisor once; its ref."""
        with self._lock:
            if self._gc is None:
                self._gc = self._kernel.spawn(
                    ExecutionGC,
                    self._registry,
                    self._stored,
                    self._leases,
                    actor_id="execution-gc",
                )
            return self._gc

    def _get_strategy_pool(self) -> BlockingPool:
        """The bounded pool plain strategies run on, made on first use."""
        with self._lock:
            if self._strategy_pool is None:
                if self._kernel.closed:
                    raise Stopped("the runtime is closed; no strategy starts")
                # Jobs are submitted untracked: a strategy counts as work in progress
                # only while it runs, not while it waits for the host's answers.
                self._strategy_pool = BlockingPool(
                    self._config.strategy_threads, self._kernel.tracker, name="greenroom-strategy"
                )
                self._kernel.guard_pool(
                    self._strategy_pool, "a strategy running on the strategy pool"
                )
            return self._strategy_pool

    # -- named strategies --------------------------------------------------------------

    def register(
        self,
        name: str,
        strategy: Callable[..., Any],
        *,
        input_schema: Mapping[str, Any] | None = None,
        description: str | None = None,
    ) -> None:
        """Register `strategy` under `name`: its executions are durable from now on.

        A durable execution is journaled in the store; after a restart (or once it
        left memory, idle) its next call re-drives it in any runtime that registers
        the same name. Its arguments and result must be JSON. Registering the same
        pair again is a no-op; a name taken by another function is `InvalidTransition`.

        `input_schema` (a JSON schema of an object: the keyword arguments) and
        `description` say how tools present it (`greenroom.mcp`); by default they come
        from the function's signature and docstring.
        """
        _is_async_strategy(strategy)
        self._strategies.register(
            name, strategy, input_schema=input_schema, description=description
        )

    def strategy_info(self, name: str) -> StrategyInfo:
        """What is registered as `name`; `StrategyNotRegistered` if nothing is."""
        info = self._strategies.info(check_name(name))
        if info is None:
            raise StrategyNotRegistered(
                f"no strategy is registered as {name!r} in this runtime (registered: "
                f"{', '.join(self._strategies.names()) or 'none'})"
            )
        return info

    def register_all(self, module: ModuleType) -> list[str]:
        """Register every function of `module` marked `@greenroom.strategy(name)`;
        the names registered, sorted."""
        names = self._strategies.collect(module)
        for name in names:
            found = self._strategies.get(name)
            assert found is not None
            _is_async_strategy(found)
        return names

    def strategies(self) -> list[str]:
        """The names registered in this runtime, sorted."""
        return self._strategies.names()

    # -- the public surface ----------------------------------------------------------------

    def start(
        self,
        strategy: str | Callable[..., Any],
        /,
        *args: Any,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> FeedResult:
        """Start `strategy(ctx, *args, **kwargs)` in a new session; its first pause or end.

        `strategy` is a registered name, or a function: one registered (under any
        name) runs durable, any other in memory only (`"durable": false` in its
        status). A durable execution's arguments must be JSON (`InvalidInput`
        otherwise); the strategy gets them as JSON gives them back (tuples as lists).
        An unknown name is `StrategyNotRegistered`.

        The function is an `async def` (driven by the session's actor, no thread; its
        `ctx` is an `AsyncExecutionContext`) or a plain `def` (run on the bounded
        strategy pool; its `ctx` is an `ExecutionContext`). Returns `needs_response`
        with the queries to answer, or the final `completed` / `error` result. With
        `timeout` (real seconds, at most ten years), raises `ExecutionTimeout` (a
        `Timeout`; its `session_id` names the session, which goes on and can be
        cancelled) if the strategy neither pauses nor finishes in time. A plain
        strategy needs a free strategy thread: while every one is held (paused plain
        sessions hold one each) it waits, logged and counted (`strategy_queued`).
        Refused inside an actor's handler and on a strategy thread (see the module
        docstring).
        """
        # With no timeout the session's first turn may run right here (caller runs).
        pending = self.send_start(
            strategy, args, kwargs, timeout=timeout, caller_runs=timeout is None
        )
        return self._wait(pending)

    def feed(
        self,
        session_id: str,
        response: str,
        *,
        query_id: str | None = None,
        usage: UsageInput = None,
        timeout: float | None = None,
    ) -> FeedResult:
        """Answer one query of a paused session; the session's next `FeedResult`.

        `query_id=None` means the sole pending query (`InvalidTransition` saying how
        many are pending otherwise). `usage` is what the host's LLM billed for the
        answer: a `greenroom.usage.Usage` or the provider's mapping (`{"prompt_tokens",
        "completion_tokens"}`, or `{"input_tokens", "output_tokens", "cache_..."}`);
        without it tokens are estimated. Returns `accepted` (with `remaining`) while
        other queries of the round wait, else the result of resuming the strategy
        until its next pause or end. The same answer again is a no-op returning the
        current state; a different one for an answered query is `AlreadyResponded`;
        an id the session never asked is `UnknownQuery`. A finished session (kept
        `result_retention_s`) takes the same answer again to a query it was fed (a
        retried final feed) as a no-op returning its final result; a different answer
        is `AlreadyResponded`, anything else `InvalidTransition` naming its final
        state. `usage` counts only with the first feed of an answer: a repeated feed
        with a different `usage` is a no-op too. `timeout` as in `start` (the answer
        stays applied).
        """
        pending = self.send_feed(
            session_id,
            response,
            query_id=query_id,
            usage=usage,
            timeout=timeout,
            caller_runs=timeout is None,
        )
        return self._wait(pending)

    def feed_many(
        self,
        session_id: str,
        items: Sequence[FeedItemInput],
        *,
        timeout: float | None = None,
        durable: bool = True,
    ) -> FeedResult:
        """Answer several queries at once: `[(query_id, response, usage_or_None), ...]`.

        Every item is validated first (malformed items, ids repeated in the batch,
        unknown ids, changed answers); if any fails, none is applied. `usage` as in
        `feed`. Returns as `feed` does.

        `durable=False` (durable sessions) answers a pause once the session's earlier
        journal writes are committed, without waiting for this feed's own: the commit
        runs while the answer goes out (async strategies; the session's next `feed`,
        `feed_many`, `resume` or `cancel` waits for it). Until then a crash may lose
        these answers from the journal, so the caller keeps them and feeds them again
        after a crash (`greenroom.mcp` carries them in the `requestState`): feeding
        an answer again is a no-op, and a re-driven session takes it.
        """
        pending = self.send_feed_many(
            session_id, items, timeout=timeout, caller_runs=timeout is None, durable=durable
        )
        return self._wait(pending)

    def resume(self, session_id: str, *, timeout: float | None = None) -> FeedResult:
        """Where a session is, answering nothing: its pending queries, or its end.

        A durable session not in memory is re-driven from its journal first, up to
        the round it had reached; this is how a session whose process died while it
        was running (in a `ctx.step`, or computing between pauses: `status` shows it
        `running`, `"in_memory": false`) goes on. A running session is waited for
        until it pauses or ends (`timeout` as in `feed`). A finished one answers its
        final result while it is retained. Errors as `feed`'s.
        """
        self._kernel.check_open()
        self._kernel.refuse_inside_actor("resume()")
        check_text(session_id, "session_id", nonempty=True)
        return self._wait(
            self.send_resume(session_id, timeout=timeout, caller_runs=timeout is None)
        )

    def send_resume(
        self, session_id: str, *, timeout: float | None = None, caller_runs: bool = False
    ) -> PendingStep:
        """`resume`'s checks; re-drive the session if needed and ask where it is.
        Never waits (`caller_runs` as in `send_start`)."""
        self._kernel.check_open()
        self._kernel.refuse_inside_actor("resume()")
        check_text(session_id, "session_id", nonempty=True)
        return self._send_feed(session_id, (), check_timeout(timeout), caller_runs)

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
        return self._wait(self.send_cancel(session_id))

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
        self._kernel.check_open()
        check_text(session_id, "session_id", nonempty=True)
        entry = self._registry.live(session_id)
        now = self._clock.monotonic()
        if entry is not None and not entry.passivated:
            return entry.status(session_id, now)
        kept = self._registry.retained(session_id, now)
        if kept is not None:
            return copy.deepcopy(kept.status)
        stored = self._stored.load(session_id)
        if stored is not None:
            if not stored.ended:
                return self._stored.status(stored)
            kept = self._stored.retained(stored)
            if kept is not None:
                return copy.deepcopy(kept.status)
        raise self._gone(session_id, "query")

    def snapshots(self) -> dict[str, dict[str, Any]]:
        """`status` of every session, running, paused and retained, by id.

        Never waits for any session (see `status`).
        """
        self._kernel.check_open()
        now = self._clock.monotonic()
        out: dict[str, dict[str, Any]] = {}
        for session_id, entry in self._registry.live_entries():
            if not entry.passivated:
                out[session_id] = entry.status(session_id, now)
        # A session that finished since it was listed above: its final status wins.
        for session_id, kept in self._registry.retained_items(now):
            out[session_id] = copy.deepcopy(kept.status)
        for session_id in self._stored.list_stored():
            if session_id in out:
                continue
            stored = self._stored.load(session_id)
            if stored is None:
                continue
            if not stored.ended:
                out[session_id] = self._stored.status(stored)
            else:
                final = self._stored.retained(stored)
                if final is not None:
                    out[session_id] = copy.deepcopy(final.status)
        return out

    # -- the seam: send without waiting, then read the outcome --------------------------------

    def send_start(
        self,
        strategy: str | Callable[..., Any],
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
        caller_runs: bool = False,
    ) -> PendingStep:
        """`start`'s checks; start the session and send it `BEGIN`. Never waits.

        With `caller_runs`, the session's first turn may run on this thread before
        this returns (only for a thread about to wait for the future with no
        timeout; never on an event loop). Errors as `start`'s.
        """
        self._kernel.check_open()
        self._kernel.refuse_inside_actor("executions.start()")
        fn, name = self._resolve(strategy)
        is_async = _is_async_strategy(fn)
        timeout = check_timeout(timeout)
        call_args, call_kwargs = tuple(args), dict(kwargs or {})
        if name is not None:
            call_args = tuple(json_value(list(call_args), f"the arguments of strategy {name!r}"))
            for key in call_kwargs:
                check_text(key, f"a keyword argument of strategy {name!r}", nonempty=True)
            call_kwargs = json_value(call_kwargs, f"the keyword arguments of strategy {name!r}")
        self._execution_gc()
        session_id = self._stored.new_session_id()
        ref = self._kernel.spawn(
            ExecutionActor,
            session_id,
            fn,
            call_args,
            call_kwargs,
            is_async=is_async,
            registry=self._registry,
            pool=self._pool_getter,
            leases=self._leases,
            name=name,
            actor_id=session_id,
        )
        self._metrics.incr("executions_started")
        future: GreenroomFuture[FeedResult] = (
            ref.ask_here(BEGIN) if caller_runs else ref.ask(BEGIN, block=False)
        )
        return PendingStep("start", session_id, future, timeout)

    def send_feed(
        self,
        session_id: str,
        response: str,
        *,
        query_id: str | None = None,
        usage: UsageInput = None,
        timeout: float | None = None,
        caller_runs: bool = False,
    ) -> PendingStep:
        """`feed`'s checks; send the answer to the session. Never waits (`caller_runs`
        as in `send_start`). Errors as `feed`'s."""
        self._kernel.check_open()
        self._kernel.refuse_inside_actor("feed()")
        check_text(session_id, "session_id", nonempty=True)
        check_text(response, "response")
        if query_id is not None:
            check_text(query_id, "query_id", nonempty=True)
        item: FeedItem = (query_id, response, as_usage(usage, "usage"))
        return self._send_feed(session_id, (item,), check_timeout(timeout), caller_runs)

    def send_feed_many(
        self,
        session_id: str,
        items: Sequence[FeedItemInput],
        *,
        timeout: float | None = None,
        caller_runs: bool = False,
        durable: bool = True,
    ) -> PendingStep:
        """`feed_many`'s checks; send the answers to the session. Never waits
        (`caller_runs` as in `send_start`, `durable` as in `feed_many`). Errors as
        `feed_many`'s."""
        self._kernel.check_open()
        self._kernel.refuse_inside_actor("feed_many()")
        check_text(session_id, "session_id", nonempty=True)
        checked = _check_feed_items(items)
        return self._send_feed(
            session_id, checked, check_timeout(timeout), caller_runs, durable=durable
        )

    def _resolve(self, strategy: object) -> tuple[Callable[..., Any], str | None]:
        """The function to run and its registered name (None: in memory only)."""
        if isinstance(strategy, str):
            found = self._strategies.get(strategy)
            if found is None:
                raise StrategyNotRegistered(
                    f"no strategy is registered as {strategy!r} in this runtime (registered: "
                    f"{', '.join(self._strategies.names()) or 'none'}); "
                    "rt.executions.register(name, strategy) first"
                )
            return found, strategy
        _is_async_strategy(strategy)
        assert callable(strategy)
        return strategy, self._strategies.name_of(strategy)

    def send_cancel(self, session_id: str) -> PendingStep:
        """`cancel`'s checks; record the cancel and send it. Never waits.

        The step's `timeout` is `CANCEL_WAIT_S`: a session that has not answered by
        then is cancelled deferred (see `cancel`). Errors as `cancel`'s.
        """
        self._kernel.check_open()
        self._kernel.refuse_inside_actor("cancel()")
        check_text(session_id, "session_id", nonempty=True)
        for _attempt in range(_SEND_ATTEMPTS):
            entry = self._entry_for(session_id, "cancel")
            if isinstance(entry, FeedResult):  # cancelled in the store, not re-driven
                future = GreenroomFuture[FeedResult]()
                future.set(entry)
                return PendingStep("cancel", session_id, future, CANCEL_WAIT_S)
            if entry is None:
                raise self._gone(session_id, "cancel")
            with entry.lock:
                if entry.passivated:
                    continue  # it left memory meanwhile: re-drive it
                if entry.cancel_requested is None:
                    entry.cancel_requested = _CANCELLED_BY_HOST
                future = entry.ref.ask(Cancel(_CANCELLED_BY_HOST), block=False)
                return PendingStep("cancel", session_id, future, CANCEL_WAIT_S, entry=entry)
        raise self._busy_moving(session_id)

    def outcome(self, pending: PendingStep) -> FeedResult:
        """The `FeedResult` of a sent step (the caller's own copy), or its error. Never waits.

        Call it once the step's future has resolved or its `timeout` has run out: a
        start or feed not answered by then raises `ExecutionTimeout` (the session goes
        on; a feed's answer stays applied), a cancel not answered is recorded and
        returns `cancelled` (deferred, see `cancel`).
        """
        future = pending.future
        session_id = pending.session_id
        if not future.done:
            if pending.action == "cancel":
                return self._deferred_cancel(pending)
            if pending.timeout is None:
                raise InvalidTransition(
                    f"the {pending.action} of execution {session_id} is not answered yet "
                    "and has no timeout: wait for pending.future first (outcome never "
                    "waits)"
                )
            raise self._timeout(pending)
        try:
            return future.get(timeout=0).detached()
        except ActorDeadError:
            pass  # the session has no live actor (any more): finished, unknown or closed
        now = self._clock.monotonic()
        if pending.action == "feed":
            kept = self._registry.retained(session_id, now)
            if kept is None:
                raise self._gone(session_id, "feed") from None
            return kept.refeed(pending.items).detached()
        if pending.action == "cancel":
            # It ended meanwhile; if it ended cancelled, this cancel may be why.
            kept = self._registry.retained(session_id, now)
            if kept is not None and kept.final.status == "cancelled":
                return kept.final.detached()
        raise self._gone(session_id, pending.action) from None

    # -- helpers -------------------------------------------------------------------------

    def _wait(self, pending: PendingStep) -> FeedResult:
        """Wait on this thread for the step's answer, up to its timeout; its outcome."""
        pending.future.wait(pending.timeout)
        return self.outcome(pending)

    def _send_feed(
        self,
        session_id: str,
        items: tuple[FeedItem, ...],
        timeout: float | None,
        caller_runs: bool,
        *,
        durable: bool = True,
    ) -> PendingStep:
        message = Feed(items, durable)
        for _attempt in range(_SEND_ATTEMPTS):
            entry = self._entry_for(session_id, "feed")
            if not isinstance(entry, LiveEntry):
                # No live actor: `outcome` answers from the retained result, or the error.
                return PendingStep("feed", session_id, _dead_future(session_id), timeout, items)
            with entry.lock:
                if entry.passivated:
                    continue  # it left memory meanwhile: re-drive it
                future: GreenroomFuture[FeedResult] = (
                    entry.ref.ask_here(message)
                    if caller_runs
                    else entry.ref.ask(message, block=False)
                )
                return PendingStep("feed", session_id, future, timeout, items)
        raise self._busy_moving(session_id)

    def _busy_moving(self, session_id: str) -> GreenroomError:
        return InvalidTransition(
            f"execution {session_id} left memory and came back {_SEND_ATTEMPTS} times during "
            "this call; call again"
        )

    def _entry_for(self, session_id: str, action: str) -> LiveEntry | FeedResult | None:
        """The live entry of `session_id`, re-driving it from its journal when it is
        durable and not in memory; None when it is not live (ended, unknown, lost); the
        final result of a cancel done in the store (its strategy is not registered)."""
        entry = self._registry.live(session_id)
        if entry is not None and not entry.passivated:
            return entry
        if self._registry.retained(session_id, self._clock.monotonic()) is not None:
            return None
        return self._revive(session_id, action)

    def _revive(self, session_id: str, action: str) -> LiveEntry | FeedResult | None:
        with self._revive_lock:
            entry = self._registry.live(session_id)
            if entry is not None and not entry.passivated:
                return entry  # another caller brought it back first
            stored = self._stored.load(session_id)
            if stored is None:
                return None
            if stored.ended:
                kept = self._stored.retained(stored)
                if kept is not None:
                    self._registry.finish(session_id, kept)
                return None
            strategy = self._strategies.get(stored.strategy)
            if action == "cancel" and (strategy is None or stored.journal.start is None):
                # Ended in the store, without re-driving (nothing to run it with).
                return self._cancel_stored(stored)
            if strategy is None:
                error = StrategyNotRegistered(
                    f"execution {session_id} runs strategy {stored.strategy!r}, which is not "
                    "registered in this runtime, so it cannot be re-driven here; register it "
                    f"(rt.executions.register({stored.strategy!r}, ...)) and call again (the "
                    "execution and its journal are kept)"
                )
                log.warning("%s", error)
                raise error
            start = stored.journal.start
            if start is None:
                raise StorageError(
                    f"execution {session_id}: its journal has no readable start record, so "
                    f"it cannot be re-driven; rt.executions.cancel({session_id!r}) ends it"
                )
            # On a shared store, only the host holding its lease drives it.
            self._leases.take(session_id, stored.meta)
            is_async = _is_async_strategy(strategy)
            self._execution_gc()
            spawn = functools.partial(
                self._kernel.spawn,
                ExecutionActor,
                session_id,
                strategy,
                tuple(start["args"]),
                dict(start["kwargs"]),
                is_async=is_async,
                registry=self._registry,
                pool=self._pool_getter,
                leases=self._leases,
                name=stored.strategy,
                journal=stored.journal,
                started_ms=stored.started_ms,
            )
            try:
                ref = spawn(actor_id=session_id)
            except InvalidTransition:  # its passivated actor is still stopping
                ref = spawn(actor_id=f"{session_id}-{next_hex_id()}")
            ref.tell(BEGIN)
            self._metrics.incr("executions_redriven")
            log.info("execution %s re-driven from its journal (%s)", session_id, action)
            return self._registry.live(session_id)

    def _cancel_stored(self, stored: Stored) -> FeedResult | None:
        """Cancel a session not in memory without re-driving it (its strategy is not
        registered here): its journal ends `cancelled`; its final result."""
        kept = self._stored.cancel(stored, _CANCELLED_BY_HOST)
        if kept is None:
            return None
        self._metrics.incr("executions_cancelled")
        self._registry.finish(stored.session_id, kept)
        return kept.final.detached()

    def _deferred_cancel(self, pending: PendingStep) -> FeedResult:
        """A cancel the session did not answer in time: recorded, `cancelled` now."""
        self._metrics.incr("execution_cancels_deferred")
        log.warning(
            "execution %s: busy in a strategy step for more than %g s; the cancel is "
            "recorded and the session ends cancelled when the step gives control back "
            "(a running step cannot be interrupted)",
            pending.session_id,
            pending.timeout,
        )
        entry = pending._entry
        assert entry is not None  # (send_cancel always keeps it)
        stats = entry.snapshot.stats_at(self._clock.monotonic())
        return FeedResult("cancelled", pending.session_id, metrics=stats)

    def _timeout(self, pending: PendingStep) -> ExecutionTimeout:
        """The error for a start or feed whose strategy did not pause in time."""
        session_id = pending.session_id
        return ExecutionTimeout(
            f"execution {session_id}: the strategy neither paused nor finished within "
            f"{pending.timeout:g} s of this {pending.action}; it goes on running: "
            f"rt.executions.status({session_id!r}) shows it, "
            f"rt.executions.cancel({session_id!r}) stops it",
            session_id,
        )

    def _gone(self, session_id: str, action: str) -> GreenroomError:
        """The error for a session that has no live actor (finished, unknown, closed)."""
        kept = self._registry.retained(session_id, self._clock.monotonic())
        if kept is not None:
            ended = ENDED[kept.final.status]
            return InvalidTransition(
                f"execution {session_id} has already {ended}; cannot {action} it "
                f"(rt.executions.status({session_id!r}) shows its final result)"
            )
        if self._kernel.closed:
            return Stopped(f"the runtime is closed; execution {session_id} is gone")
        return self._stored.lost_or_unknown(session_id, self._config.result_retention_s)
