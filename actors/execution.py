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

import attrs
import pykka
from pykka import ActorDeadError

from greenroom.activity import ActivityTracker
from greenroom.actors.base import DEFERRED, ActorContext, GreenroomActor, GreenroomActorRef, Reply
from greenroom.actors.blocking import BlockingPool
from greenroom.actors.caller_runs import caller_crowded
from greenroom.actors.commit_gate import CommitGate
from greenroom.errors import (
    AlreadyResponded,
    Conflict,
    ExecutionCancelled,
    InvalidInput,
    InvalidTransition,
    NonDeterministicStrategy,
    Stopped,
    StorageError,
    UnknownQuery,
)
from greenroom.executions.journal import (
    JOURNAL,
    KIND,
    Journal,
    answer_record,
    ask_record,
    encode,
    end_record,
    passivated_record,
    query_fields,
    start_record,
    step_record,
)
from greenroom.executions.messages import (
    Begin,
    Cancel,
    Feed,
    LeaseLost,
    Passivate,
    Reap,
    Status,
    ThreadCustom,
    ThreadDone,
    ThreadPause,
    ThreadStep,
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
    MetricCounts,
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
from greenroom.leases import Leases
from greenroom.store import AppendFile, CreateObject, UpdateMeta
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

    def step(self, name: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        found, value = self._actor._replayed_step(name)
        if found:
            return value
        value = _run_step(name, fn, args)
        self._actor._journal_step(name, value)
        return value


def _run_step(name: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """`fn(*args)` for `ctx.step`, its result checked to be JSON."""
    value = fn(*args)
    if inspect.isawaitable(value):
        if inspect.iscoroutine(value):
            value.close()
        raise InvalidInput(
            f"ctx.step({name!r}, ...) ran a function that returned an awaitable; a step "
            "runs a plain function (greenroom drives strategies without an event loop)"
        )
    return json_value(value, f"the result of step {name!r}")


class _ThreadLink:
    """The context's way to its actor in a plain strategy, on a strategy-pool thread."""

    __slots__ = ("cancelled", "durable", "ref", "registry", "session_id", "tracker")

    def __init__(
        self,
        ref: GreenroomActorRef,
        tracker: ActivityTracker,
        session_id: str,
        registry: ExecutionRegistry,
        *,
        durable: bool = False,
    ) -> None:
        self.ref = ref
        self.tracker = tracker
        self.session_id = session_id
        self.registry = registry
        self.durable = durable
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

    def step(self, name: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        if not self.durable:
            return _run_step(name, fn, args)
        found, value = self._ask(ThreadStep(name))
        if found:
            return value
        value = _run_step(name, fn, args)
        _found, value = self._ask(ThreadStep(name, ran=True, value=value))
        return value

    def _ask(self, message: ThreadStep) -> tuple[bool, Any]:
        self._refuse_if_cancelled()
        try:
            answer: tuple[bool, Any] = self.ref.ask(message, block=False).get()
        except ActorDeadError:
            raise ExecutionCancelled(f"execution {self.session_id} has ended") from None
        return answer

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


class _Committed:
    """A submitted journal write's callback: `ExecutionActor._committed(token, ending,
    results, error)`, kept as one object while the write waits for its commit."""

    __slots__ = ("actor", "ending", "token")

    def __init__(self, actor: ExecutionActor, token: int, ending: str | None) -> None:
        self.actor = actor
        self.token = token
        self.ending = ending  # the status whose end the write journals, if it does

    def __call__(self, results: Any, error: BaseException | None) -> None:
        self.actor._committed(self.token, self.ending, results, error)


class _EndStored:
    """What `_end` holds at the commit gate until the session's end is stored."""

    __slots__ = ("actor",)

    def __init__(self, actor: ExecutionActor) -> None:
        self.actor = actor

    def set(self, retained: RetainedResult) -> None:
        self.actor._finished(retained)

    def fail(self, error: BaseException) -> None:
        """Nothing here: `_commit_failed` handles a failed write."""


class ExecutionActor(GreenroomActor):
    """One execution session; see the module docstring. Spawned by `rt.executions.start`."""

    kind = "execution"
    # One message per turn: a passivation reads the mailbox's length to know that no
    # message waits (see _passivate).
    turn_throughput = 1

    # Slots: a host keeps thousands of paused sessions, and the base's instance dict
    # would double in size once this class's fields joined it.
    __slots__ = (
        "_answered",
        "_answers",
        "_async",
        "_buffer",
        "_coro",
        "_early",
        "_entry",
        "_fenced",
        "_final",
        "_held",
        "_journal_size",
        "_link",
        "_metrics",
        "_name",
        "_nondeterminism",
        "_passivated",
        "_pending",
        "_pool",
        "_queries",
        "_reason",
        "_registry",
        "_replay",
        "_retained",
        "_round",
        "_start",
        "_started_ms",
        "_state",
        "_step_index",
        "_steps",
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
        leases: Leases | None = None,
        name: str | None = None,
        journal: Journal | None = None,
        started_ms: int | None = None,
    ) -> None:
        super().__init__(ctx)
        # Durable (journaled) when the strategy is registered under `name`; `journal`
        # is given to re-drive a session that left memory (see _replay_round).
        self._name = name
        self._replay = journal
        self._steps = journal.steps if journal is not None else ()
        self._step_index = 0
        # Journal records not committed yet, encoded (JSON lines): bytes, which the
        # cyclic GC does not track, where the records' dicts and lists would be.
        self._buffer = b""
        # The journal's size as this actor last wrote or read it (None: not created
        # yet); every append expects it, so two runtimes never both drive one session.
        self._journal_size: int | None = journal.size if journal is not None else None
        self._fenced: Conflict | None = None
        self._held: list[tuple[Any, pykka.Future[Any] | None]] | None = None
        self._nondeterminism: str | None = None
        self._passivated = False
        self.session_id = session_id
        self._start: tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]] | None = (
            strategy,
            args,
            kwargs,
        )
        self._async = is_async
        self._registry = registry
        self._pool = pool
        self._leases = leases
        self._state = "running"
        self._round = 0
        self._queries: tuple[LlmQuery, ...] = ()  # this round's, in order
        self._pending: dict[str, LlmQuery] = {}  # this round's, not answered yet
        self._answers: dict[str, str] = {}  # this round's answers, by query id
        # A digest of every answer of every round, by query id: enough to tell a
        # repeated answer from a changed one, without keeping old rounds' texts.
        self._answered: dict[str, bytes] = {}
        # Asks answered at the next pause or end; the list is made for the first one.
        self._waiters: list[Reply] | tuple[()] = ()
        # Journal writes are submitted, not waited for: answers wait here for them.
        self._gate = CommitGate()
        self._early = False  # handling a feed answered before its own commit
        self._coro: Coroutine[Any, Any, Any] | None = None
        self._link: _ThreadLink | None = None
        self._thread_future: Reply | None = None  # a plain strategy's waiting ctx.llm
        self._reason: str | None = None
        self._final: dict[str, Any] | None = None  # the status once finished
        self._retained: RetainedResult | None = None  # what the registry keeps, once finished
        now = ctx.clock.monotonic()
        now_ms = ctx.clock.now_ms()
        self._started_ms = now_ms if started_ms is None else started_ms
        started_at = now - max(0, now_ms - self._started_ms) / 1000
        self._metrics = SessionMetrics(started_at)
        self._entry = LiveEntry(
            self.actor_ref, now, self._snapshot_of(self._metrics.counts()), durable=name is not None
        )
        registry.add(session_id, self._entry)

    def on_receive(self, message: Any) -> Any:
        handler = _HANDLERS.get(type(message))
        if handler is None:
            if type(message) is _CommitFailed:
                self._commit_failed(message)
                return None
            return super().on_receive(message)
        if self._fenced is not None:
            raise self._fenced  # another runtime drives it: call again (see _detach)
        if self._held is not None and type(message) in (Feed, Cancel):
            # A plain strategy is being re-driven: its feeds and cancels wait until it
            # reaches the round the journal leaves open (see _release_held).
            self._held.append((message, self._reply_to))
            return DEFERRED
        upto = None
        if type(message) is Feed and not message.durable:
            upto = self._gate.mark()
            self._early = True
        try:
            result = handler(self, message)
        finally:
            self._early = False
            self._detach()  # if the handler found the session fenced
        if result is DEFERRED or self._reply_to is None:
            return result
        # The answer tells what the journal holds: it waits for the writes before it
        # (a feed that is not durable, for those before the feed, when it pauses).
        if upto is not None and not (
            type(result) is FeedResult and result.status in ("needs_response", "accepted")
        ):
            upto = None
        reply = Reply(self._reply_to)
        if self._gate.hold(reply, result, upto=upto):
            return DEFERRED
        return result

    def on_stop(self) -> None:
        if self._state in TERMINAL_STATES or self._passivated:
            return
        # The runtime is closing (or the actor was stopped some other way) while the
        # strategy runs or waits: stop it, and tell whoever waits for its next event.
        state = self._state
        self._stop_strategy("the runtime was closed")
        self._registry.drop(self.session_id)
        if self._name is not None:
            log.info(
                "execution %s (durable, strategy %r) left memory while %s with the runtime's "
                "close; it comes back on its next call in a runtime that registers %r",
                self.session_id,
                self._name,
                state,
                self._name,
            )
        else:
            log.warning(
                "execution %s (not durable) is lost with the runtime's close while %s; "
                "register its strategy by name (rt.executions.register) to keep sessions "
                "across restarts",
                self.session_id,
                state,
            )
        held, self._held = self._held or [], None
        for _message, future in held:
            if future is not None:
                Reply(future).fail(Stopped(f"execution {self.session_id}: the runtime was closed"))
        waiters, self._waiters = self._waiters, ()
        for reply in waiters:
            reply.fail(Stopped(f"execution {self.session_id}: the runtime was closed"))

    # -- starting ------------------------------------------------------------------------

    def _begin(self, _message: Begin) -> Any:
        if self._start is None:
            raise InvalidTransition(f"execution {self.session_id} has already started")
        strategy, args, kwargs = self._start
        self._start = None  # the arguments are the strategy's from now on
        if self._name is not None and self._replay is None:
            try:
                self._create_journal(self._name, args, kwargs)
            except StorageError as error:
                return self._end("error", error=f"the journal could not be written: {error}")
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
        link = _ThreadLink(
            self.actor_ref,
            self.ctx.tracker,
            self.session_id,
            self._registry,
            durable=self._name is not None,
        )
        self._link = link
        context = ExecutionContext(self.session_id, self.ctx.clock, link)
        if self._replay is not None:
            self._held = []  # re-driving: feeds wait for the open round
        if self._reply_to is not None:
            self._add_waiter()
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
        while True:
            outcome = self._step_once(answers)
            if isinstance(outcome, FeedResult):
                return outcome
            answers = outcome  # a round the journal answered: on, without pausing

    def _step_once(self, answers: list[str] | None) -> FeedResult | list[str]:
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

    def _pause(self, requests: tuple[LlmRequest, ...]) -> FeedResult | list[str]:
        """The strategy asks `requests`: pause (a `FeedResult`), or, re-driving a round
        its journal answered, the answers to go on with at once."""
        if self._entry.cancel_requested is not None and self._replay is None:
            # The host cancelled while the strategy computed: it stops here (a re-drive
            # goes on to the round it had reached first).
            return self._cancel_now(self._entry.cancel_requested)
        if self._nondeterminism is not None:
            return self._nondeterministic(self._nondeterminism)
        self._round += 1
        prefix = f"q-{self._round}-"
        queries = tuple(LlmQuery.of(prefix + str(i), req) for i, req in enumerate(requests))
        if self._replay is not None:
            replayed = self._replay_round(queries)
            if replayed is not None:
                return replayed
        self._queries = queries
        self._pending = {query.id: query for query in queries}
        self._answers = {}
        self._state = "paused"
        self._metrics.asked(queries)
        self._touch()
        if self._name is not None:
            self._write([ask_record(self._round, queries)])
        result = self._notify(self._needs_response(queries))
        self._release_held()
        return result

    # -- the journal ------------------------------------------------------------------

    def _create_journal(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        # Encoded now (bad arguments fail the start), committed with the first pause,
        # step or end: one commit, and a start that never got that far leaves nothing.
        self._buffer = encode([start_record(name, args, kwargs)])

    def _write(
        self,
        records: list[dict[str, Any]],
        meta: dict[str, Any] | None = None,
        *,
        wait: bool = False,
        ending: str | None = None,
    ) -> None:
        """Write `records` (after those buffered) to the journal, in one transaction.

        Submitted, not waited for: every answer of this actor waits for it (`_gate`);
        if it fails, they fail, and the session leaves this runtime (`_commit_failed`)
        to be re-driven from its journal; a write that journals the session's end
        (`ending`, its status) has the failure counted and logged first. With
        `wait`, committed before this returns: `StorageError` if the store fails,
        `Conflict` (and the session leaves this runtime, see `_detach`) if another
        runtime appended to the journal since.
        """
        if self._fenced is not None:
            raise self._fenced
        data = self._buffer + encode(records)
        sid = self.session_id
        writes: list[CreateObject | AppendFile | UpdateMeta] = []
        size = self._journal_size
        if size is None:
            created = {"durable": True, "strategy": self._name, "started_ms": self._started_ms}
            if self._leases is not None:
                created.update(self._leases.initial())
            writes.append(CreateObject(KIND, sid, {**created, "state": "running"}))
        writes.append(AppendFile(KIND, sid, JOURNAL, data, create=True, expect_size=size or 0))
        if meta is not None:
            writes.append(UpdateMeta(KIND, sid, meta))
        # On a shared store, every write after the first also expects this host to
        # hold the lease: a host that lost it (it hung past lease_s) lets go at once.
        expect = [] if size is None or self._leases is None else self._leases.expect(sid)
        if wait:
            try:
                self.ctx.store.write_atomic(writes, expect=expect)
            except (Conflict, InvalidTransition) as error:
                self._fenced = self._conflict(error)
                raise self._fenced from None
        else:
            # Submitted: this actor goes on, and its answers wait for the commit (the
            # gate), so many sessions' writes share one commit.
            token = self._gate.submitted()
            done = _Committed(self, token, ending)
            # Committed on this thread when nothing else waits for it (a lone caller
            # pays no hand-off); else by the store's committer, and this thread goes on.
            # A feed answered before its commit leaves the commit to the committer
            # (it runs while the answer goes out).
            inline = not self._early and self.ctx.dispatcher.waiting == 0 and not caller_crowded()
            try:
                # (Results unread: its metadata update may be written without a read.)
                self.ctx.store.submit_atomic(
                    writes, done, expect=expect, inline=inline, results=False
                )
            except Exception as error:
                done(None, error)  # (as a write that failed: this actor lets its copy go)
                raise
        self._buffer = b""
        self._journal_size = (size or 0) + len(data)

    def _conflict(self, error: BaseException) -> Conflict:
        return Conflict(
            f"execution {self.session_id} was driven by another runtime on this store since "
            f"this one loaded it (its journal changed: {error}); this runtime let its copy "
            "go: call again to go on from the journal"
        )

    def _committed(
        self,
        token: int,
        ending: str | None,
        _results: Any,
        error: BaseException | None,
    ) -> None:
        """A submitted write's outcome (on the committing thread). A failure is handled
        on this actor's thread (`_commit_failed`) before any caller hears of it."""
        if error is None:
            self._gate.done(token, None)
            return
        if isinstance(error, Conflict | InvalidTransition):
            error = self._conflict(error)
        elif not isinstance(error, StorageError | Stopped):
            error = StorageError(f"execution {self.session_id}: its journal write failed: {error}")
        if ending is not None:
            self._end_not_journaled(ending, error)
        try:
            self.actor_ref.tell(_CommitFailed(token, error))
        except Exception:  # the actor is gone (the runtime closed): its callers hear now
            self._gate.done(token, error)

    def on_unhandled(self, message: Any) -> bool:
        """A write's failure told after the stop: its waiting answers still fail."""
        if type(message) is _CommitFailed:
            self._gate.done(message.token, message.error)
            return True
        return False

    def _commit_failed(self, message: _CommitFailed) -> None:
        """A write this actor submitted failed: its memory is ahead of its journal. It
        leaves the registry first, then its callers hear the error (the gate)."""
        error = message.error
        if isinstance(error, Conflict):
            self.ctx.metrics.incr("execution_conflicts")
        retained = self._retained
        if retained is not None:
            if isinstance(error, Conflict):
                # It ended here while another runtime drove it: not its end after all;
                # the next call goes on from the journal.
                self._entry.passivated = True
                self._registry.drop(self.session_id)
                self._registry.unfinish(self.session_id, retained)
                log.warning("%s", error)
            else:
                # Ended in memory, its end not stored (counted, logged: _journal_end).
                self._registry.finish(self.session_id, retained)
            self._gate.done(message.token, error)
            self.actor_ref.stop(block=False)
            return
        if self._fenced is None:
            self._fenced = (
                error
                if isinstance(error, Conflict)
                else Conflict(
                    f"execution {self.session_id}: a journal write failed ({error}); this "
                    "runtime let its copy go: call again to go on from the journal"
                )
            )
        self._detach(counted=True)
        self._gate.done(message.token, error)

    def _lease_lost(self, _message: LeaseLost) -> None:
        """Another host took this session's lease over: let this copy go, unwritten."""
        if self._fenced is None:
            self._fenced = Conflict(
                f"execution {self.session_id}: another host took its lease over (this "
                "host did not renew it in time); this host let its copy go: call again "
                "to be told which host drives it"
            )
        self._detach()

    def _detach(self, *, counted: bool = False) -> None:
        """Leave memory without writing if fenced: another runtime drives the session.

        Like a passivation, but nothing is journaled; the next call here re-drives it
        from the journal as the other runtime left it.
        """
        fenced = self._fenced
        if fenced is None or self._passivated:
            return
        self._passivated = True
        # (No entry lock: a send may hold it, running this very turn. Messages queued
        # meanwhile get `fenced`, in on_receive, and their callers call again.)
        self._entry.passivated = True
        self._registry.drop(self.session_id)
        self._stop_strategy("another runtime drives it now")
        waiters, self._waiters = self._waiters, ()
        for reply in waiters:
            reply.fail(fenced)
        held, self._held = self._held or [], None
        for _message, future in held:
            if future is not None:
                Reply(future).fail(fenced)
        if not counted:
            self.ctx.metrics.incr("execution_conflicts")
        log.warning("%s", fenced)
        self.actor_ref.stop(block=False)

    def _journal_step(self, name: str, value: Any) -> None:
        self._write([step_record(name, value)])

    def _replayed_step(self, name: str) -> tuple[bool, Any]:
        """A step's journaled value `(True, value)` on re-drive, else `(False, None)`."""
        if self._step_index >= len(self._steps):
            return False, None
        recorded, value = self._steps[self._step_index]
        if recorded != name:
            self._nondeterminism = (
                f"step {self._step_index + 1} is {name!r} where the journal holds {recorded!r}"
            )
            raise NonDeterministicStrategy(f"execution {self.session_id}: {self._nondeterminism}")
        self._step_index += 1
        return True, value

    def _replay_round(self, queries: tuple[LlmQuery, ...]) -> FeedResult | list[str] | None:
        """Re-drive one round from the journal: its answers (all journaled), the pause
        at the round it leaves open, an error if the strategy asks something else, or
        None once the journal has no such round (live from here)."""
        journal = self._replay
        assert journal is not None
        recorded = journal.asks.get(self._round)
        if recorded is None:
            self._replay = None
            return None
        asked = [query_fields(query) for query in queries]
        if asked != list(recorded):
            return self._nondeterministic(_difference(self._round, recorded, asked))
        self._metrics.asked(queries)
        open_queries: dict[str, LlmQuery] = {}
        answers: dict[str, str] = {}
        for query in queries:
            found = journal.answers.get(query.id)
            if found is None:
                open_queries[query.id] = query
                continue
            response, usage = found
            answers[query.id] = response
            self._answered[query.id] = answer_digest(response)
            self._metrics.answered(query, response, usage)
        if not open_queries:
            self._metrics.rounds += 1
            return [answers[query.id] for query in queries]
        # The round the host has not fully answered: pause here, as before the restart.
        self._replay = None
        self._queries = queries
        self._pending = open_queries
        self._answers = answers
        self._state = "paused"
        self._touch()
        result = self._notify(self._current())
        self._release_held()
        return result

    def _nondeterministic(self, text: str) -> FeedResult:
        self._replay = None
        self._nondeterminism = text
        log.warning(
            "execution %s: NonDeterministicStrategy: %s; the session ends in error",
            self.session_id,
            text,
        )
        self._stop_strategy("the strategy is not deterministic")
        return self._end("error", error=f"NonDeterministicStrategy: {text}")

    def _release_held(self) -> None:
        """Handle the feeds and cancels that waited for a re-drive, in order."""
        held, self._held = self._held, None
        for message, future in held or ():
            saved, self._reply_to = self._reply_to, future
            try:
                result = _HANDLERS[type(message)](self, message)
                if future is not None and result is not DEFERRED:
                    reply = Reply(future)
                    # As every answer: once the writes before it are stored.
                    if not self._gate.hold(reply, result):
                        reply.set(result)
            except Exception as error:
                if future is not None:
                    Reply(future).fail(error)
            finally:
                self._reply_to = saved

    def _needs_response(self, queries: tuple[LlmQuery, ...]) -> FeedResult:
        # The snapshot keeps the counts, not these stats: a paused session then holds
        # no stats record for the cyclic GC to walk (the caller's result has them).
        self._snap()
        return FeedResult("needs_response", self.session_id, queries, metrics=self._stats())

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
        if self._name is not None:
            records = [answer_record(query.id, response, usage) for query, response, usage in plan]
            if self._async and len(plan) == len(pending):
                # The round is complete: committed with the strategy's next pause or end,
                # before this feed returns (one commit for both).
                self._buffer += encode(records)
            else:
                self._write(records)  # (if it fails, the answer fails: see _write)
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
        self._snap()  # (the counts: see _needs_response)
        return FeedResult(
            "accepted", self.session_id, pending, remaining=len(pending), metrics=self._stats()
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
        self._add_waiter()
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
        self._add_waiter()
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
            outcome = self._pause(message.requests)
        except Exception as error:
            self._internal_failure(error)
            return DEFERRED
        if isinstance(outcome, list):  # a round the journal answered: on at once
            self._thread_future = None
            self.ctx.tracker.enter()  # the strategy runs again: work in progress
            reply.set(outcome)
        return DEFERRED

    def _thread_step(self, message: ThreadStep) -> tuple[bool, Any]:
        if self._state in TERMINAL_STATES:
            raise ExecutionCancelled(f"execution {self.session_id} has ended")
        if not message.ran:
            return self._replayed_step(message.name)
        self._journal_step(message.name, message.value)
        return True, message.value

    def _thread_done(self, message: ThreadDone) -> None:
        if self._state in TERMINAL_STATES or self._passivated:
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
        if self._fenced is not None:
            raise self._fenced  # not an error of the session: another runtime has it
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

    def _passivate(self, message: Passivate) -> bool:
        """Leave memory if durable, paused and idle since `message.cutoff`; whether it did.

        The journal holds everything needed to come back; the status as of now is
        journaled too, so `status` answers without re-driving. The strategy is closed
        (an async one's `finally` blocks run; a plain one's `ctx.llm` raises
        `ExecutionCancelled`).
        """
        entry = self._entry
        if (
            self._name is None
            or self._state != "paused"
            or entry.last_active > message.cutoff
            or self._held is not None
        ):
            return False
        with entry.lock:
            # Sends take the entry's lock and re-drive once it is passivated, so a
            # message is either queued here already (then stay) or goes to a new actor.
            if len(self.actor_inbox) or entry.cancel_requested is not None:
                return False
            now = self.ctx.clock.monotonic()
            now_ms = self.ctx.clock.now_ms()
            last_ms = now_ms - max(0, round((now - entry.last_active) * 1000))
            status = self._status()
            try:
                # Waited for (with every write submitted before it): the next call
                # re-drives the session from what is stored.
                meta = {"state": "paused", "last_active_ms": last_ms, "passivated_ms": now_ms}
                if self._leases is not None:
                    meta.update(self._leases.given_up())  # another host may take it now
                self._write([passivated_record(status, now_ms)], meta, wait=True)
            except StorageError as error:
                log.warning("execution %s stays in memory: %s", self.session_id, error)
                return False
            except Conflict:
                return True  # another runtime drives it: it leaves memory (_detach)
            entry.passivated = True
            self._registry.drop(self.session_id)
        self._passivated = True
        self._stop_strategy("passivated: idle, it left memory (it comes back on its next call)")
        self.ctx.metrics.incr("executions_passivated")
        log.debug("execution %s passivated", self.session_id)
        self.actor_ref.stop(block=False)
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
        if self._fenced is not None:
            raise self._fenced  # another runtime drives it: it does not end here
        replay = self._replay
        redriving = replay is not None or self._nondeterminism is not None
        if replay is not None and status != "cancelled":
            self._replay = None
            if replay.rounds > self._round or self._nondeterminism is not None:
                text = self._nondeterminism or (
                    f"the strategy {'returned' if status == 'completed' else 'failed'} after "
                    f"round {self._round}, but the journal holds round {replay.rounds}"
                )
                log.warning("execution %s: NonDeterministicStrategy: %s", self.session_id, text)
                status, result, error = "error", None, f"NonDeterministicStrategy: {text}"
        elif self._nondeterminism is not None and status == "error":
            error = f"NonDeterministicStrategy: {self._nondeterminism}"
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
        if self._name is not None:
            self._journal_end(status)
        # The answers' digests stay with the result: a retried answer stays a no-op.
        retained = self._retained = RetainedResult(
            final,
            self._final,
            now,
            self._answered,
            durable=self._name is not None,
            ended_on_redrive=redriving and status == "error",
        )

        if not self._gate.hold(_EndStored(self), retained):
            self._finished(retained)
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
        self._release_held()
        return final

    def _finished(self, retained: RetainedResult) -> None:
        """The end is stored: the registry keeps the result from now on (until then
        calls still reach this actor, whose answers wait for the same write), and the
        actor stops. If the write fails, `_commit_failed` does."""
        self._registry.finish(self.session_id, retained)
        self.actor_ref.stop(block=False)

    def _journal_end(self, status: str) -> None:
        assert self._final is not None
        now_ms = self.ctx.clock.now_ms()
        submitted = self._gate.mark()
        try:
            self._write(
                [end_record(self._final, now_ms)],
                {"state": status, "finished_ms": now_ms},
                ending=status,
            )
        except Conflict:
            raise  # another runtime drives it: this end is not the session's
        except Exception as error:
            if self._gate.mark() == submitted:  # (a write submitted told it: _committed)
                self._end_not_journaled(status, error)

    def _end_not_journaled(self, status: str, error: BaseException) -> None:
        if isinstance(error, Conflict):
            return  # another runtime drives it: this end is not the session's
        # The session has ended in memory; a re-drive elsewhere would run it again.
        self.ctx.metrics.incr("execution_journal_failures")
        log.error(
            "execution %s ended %s but its end could not be journaled: %s",
            self.session_id,
            status,
            describe_error(error),
        )

    def _ended_error(self, action: str) -> InvalidTransition:
        return InvalidTransition(
            f"execution {self.session_id} has already {ENDED[self._state]}; cannot {action} it"
        )

    # -- helpers ---------------------------------------------------------------------------

    def _notify(self, result: FeedResult) -> FeedResult:
        if self._waiters:
            waiters, self._waiters = self._waiters, ()
            for reply in waiters:
                if not self._gate.hold(reply, result):
                    reply.set(result)
        return result

    def _add_waiter(self) -> None:
        """Answer the current ask at the next pause or end."""
        reply = self.reply_later()
        if isinstance(self._waiters, list):
            self._waiters.append(reply)
        else:
            self._waiters = [reply]

    def _touch(self) -> None:
        self._entry.last_active = self.ctx.clock.monotonic()

    def _stats(self) -> ExecutionStats:
        return self._metrics.snapshot(self.ctx.clock.monotonic())

    def _snapshot_of(self, counts: MetricCounts) -> LiveSnapshot:
        return LiveSnapshot(
            self._state, self._round, tuple(self._pending), counts, self._metrics.started_at
        )

    def _snap(self) -> None:
        """Publish the session's state to the registry (read by the status calls): its
        counts, made into stats only if read."""
        if self._retained is None:
            self._entry.snapshot = self._snapshot_of(self._metrics.counts())

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
            "durable": self._name is not None,
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


@attrs.frozen
class _CommitFailed:
    """A journal write this actor submitted failed: its memory is ahead of its journal."""

    token: int
    error: BaseException


_HANDLERS: dict[type, Callable[[ExecutionActor, Any], Any]] = {
    Begin: ExecutionActor._begin,
    Feed: ExecutionActor._feed,
    Cancel: ExecutionActor._cancel,
    Status: ExecutionActor._get_status,
    Reap: ExecutionActor._reap,
    Passivate: ExecutionActor._passivate,
    LeaseLost: ExecutionActor._lease_lost,
    ThreadStep: ExecutionActor._thread_step,
    ThreadPause: ExecutionActor._thread_pause,
    ThreadDone: ExecutionActor._thread_done,
    ThreadCustom: ExecutionActor._thread_custom,
}


def _shown(fields: Any) -> str:
    prompt = fields.get("prompt") if isinstance(fields, dict) else None
    text = repr(prompt) if isinstance(prompt, str) else repr(fields)
    return text if len(text) <= 200 else text[:197] + "..."


def _difference(round_no: int, recorded: Any, asked: list[dict[str, Any]]) -> str:
    """What differs between the journal's round and what the strategy asks now."""
    if len(recorded) != len(asked):
        return (
            f"round {round_no} asks {len(asked)} quer{'y' if len(asked) == 1 else 'ies'} "
            f"where the journal holds {len(recorded)} (journal: "
            f"{', '.join(_shown(f) for f in recorded)}; now: {', '.join(_shown(f) for f in asked)})"
        )
    for index, (was, now) in enumerate(zip(recorded, asked, strict=True)):
        if was != now:
            fields = ", ".join(key for key in now if now.get(key) != was.get(key))
            return (
                f"round {round_no}, query {index} differs in {fields}: the journal holds "
                f"{_shown(was)}, the strategy now asks {_shown(now)}"
            )
    return f"round {round_no} differs"
