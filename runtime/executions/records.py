"""Execution sessions: the records a session hands back and the context a strategy sees.

An execution runs a *strategy*. Whenever the strategy needs the host's LLM it pauses
with one or more queries; the host answers them (`Runtime.executions.feed` / `feed_many`), and
once all are answered the strategy resumes. Each session is served by its own actor
(`greenroom.actors.execution.ExecutionActor`).

    async def strategy(ctx, topic):
        outline = await ctx.llm(f"Outline an essay on {topic}", max_tokens=200)
        a, b = await ctx.llm_batch([LlmRequest("Intro: " + outline), LlmRequest("End")])
        ctx.metric("sections", 2)
        return {"intro": a, "end": b}

    first = rt.executions.start(strategy, "tides")       # needs_response, one query
    nxt = rt.executions.feed(first.session_id, "1. Moon 2. Sun")   # needs_response, two queries
    ...

This module holds the records (`LlmRequest`, `LlmQuery`, `FeedResult`,
`ExecutionStats`, `TokenCount`), the strategy contexts (`AsyncExecutionContext` for an
`async def` strategy, where `await ctx.llm(...)` is a `str`; `ExecutionContext` for a
plain `def` one, where `ctx.llm(...)` is a `str`) and the per-session accounting
(`SessionMetrics`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar

import attrs

from greenroom.checks import check_bool, check_int, check_text, validator
from greenroom.clock import Clock
from greenroom.errors import InvalidInput
from greenroom.jsontext import json_encoder
from greenroom.jsonvalue import json_copy
from greenroom.usage import Usage

__all__ = [
    "FEED_STATUSES",
    "NOW_STEP",
    "SESSION_STATES",
    "TERMINAL_STATES",
    "AsyncExecutionContext",
    "BlockingBackend",
    "ExecutionContext",
    "ExecutionStats",
    "FeedResult",
    "LlmCall",
    "LlmQuery",
    "LlmRequest",
    "SessionMetrics",
    "StepCall",
    "StrategyBackend",
    "StrategyContext",
    "TokenCount",
    "answer_digest",
    "describe_error",
    "json_copy",
    "json_value",
]

SESSION_STATES = ("running", "paused", "completed", "error", "cancelled")
"""The states a session can be in, as `execution_status()["state"]` names them."""

TERMINAL_STATES = frozenset({"completed", "error", "cancelled"})
"""States a session never leaves."""

FEED_STATUSES = ("accepted", "needs_response", "completed", "error", "cancelled")
"""The values of `FeedResult.status`."""

MAX_LOG_ENTRIES = 1000
"""`ctx.log` entries a session keeps; older ones are dropped (counted in the stats as
`logs_dropped` and in `Runtime.metrics()` as `execution_logs_dropped`)."""

MAX_LOG_CHARS = 4000
"""Characters of one `ctx.log` message a session keeps; a longer message is cut to this
length plus a `[... N more chars truncated]` marker (counted in `Runtime.metrics()` as
`execution_logs_truncated`)."""

T = TypeVar("T")

_encode = json_encoder()

ESTIMATED = "estimated"
PROVIDED = "provided"


def json_value(value: Any, what: str) -> Any:
    """`value` as JSON gives it back (tuples become lists); `InvalidInput` if it is not JSON.

    Round-tripping decouples the stored value from the strategy's own objects and makes
    `to_json()` exact (NaN and infinities are refused: they are not JSON). Any failure
    while serialising (such as a `dict` subclass whose `items()` raises) is
    `InvalidInput` too.
    """
    try:
        text = _encode(value)
    except (TypeError, ValueError, RecursionError) as error:
        raise InvalidInput(f"{what} is not JSON-serialisable: {_text_of(error)}") from None
    except Exception as error:  # a broken __iter__, items(), __str__ ... of the value
        raise InvalidInput(
            f"{what} is not JSON-serialisable: serialising it raised {describe_error(error)}"
        ) from None
    return json.loads(text)


def _text_of(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:
        return f"<unprintable {type(error).__name__} object>"


def describe_error(error: BaseException) -> str:
    """`"Type: message"` (just `"Type"` when the message is empty).

    An exception whose `__str__` raises is described as
    `"Type: <unprintable Type object>"`.
    """
    text = _text_of(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def answer_digest(response: str) -> bytes:
    """A 16-byte digest of an answer: enough to tell a repeated answer from a changed one."""
    return hashlib.blake2b(response.encode("utf-8", "surrogatepass"), digest_size=16).digest()


# -- requests and queries ------------------------------------------------------------------


@attrs.frozen
class LlmRequest:
    """One question for the host's LLM, as a strategy asks it (`ctx.llm_batch`).

    `grounded` asks the host to check the answer against sources; `underspecified`
    says the strategy lacks information only the user can give. Malformed fields raise
    `InvalidInput` when the request is made.
    """

    prompt: str = attrs.field(validator=validator(check_text, nonempty=True))
    system: str | None = attrs.field(
        default=None, kw_only=True, validator=validator(check_text, optional=True)
    )
    max_tokens: int = attrs.field(
        default=1024, kw_only=True, validator=validator(check_int, minimum=1)
    )
    grounded: bool = attrs.field(default=False, kw_only=True, validator=validator(check_bool))
    underspecified: bool = attrs.field(default=False, kw_only=True, validator=validator(check_bool))

    @property
    def prompt_chars(self) -> int:
        """Characters of the prompt and the system prompt together."""
        return len(self.prompt) + len(self.system or "")


@attrs.frozen
class LlmQuery:
    """A request the session is waiting on, with its id (`q-<round>-<index>`)."""

    id: str
    prompt: str
    system: str | None
    max_tokens: int
    grounded: bool = False
    underspecified: bool = False

    @classmethod
    def of(cls, query_id: str, request: LlmRequest) -> LlmQuery:
        """The query `query_id` asking `request`."""
        return cls(
            query_id,
            request.prompt,
            request.system,
            request.max_tokens,
            request.grounded,
            request.underspecified,
        )

    @classmethod
    def of_fields(cls, query_id: str, fields: Mapping[str, Any]) -> LlmQuery:
        """The query `query_id` with journaled `fields` (`KeyError` / `TypeError` if
        they are malformed)."""
        system = fields.get("system")
        if system is not None and not isinstance(system, str):
            raise TypeError("system must be a str or None")
        return cls(
            query_id,
            str(fields["prompt"]),
            system,
            int(fields["max_tokens"]),
            bool(fields.get("grounded", False)),
            bool(fields.get("underspecified", False)),
        )

    @property
    def prompt_chars(self) -> int:
        """Characters of the prompt and the system prompt together."""
        return len(self.prompt) + len(self.system or "")

    def to_json(self, *, id_key: str = "id") -> dict[str, Any]:
        """The MCP JSON of this query; `grounded` / `underspecified` only when true."""
        out: dict[str, Any] = {
            id_key: self.id,
            "prompt": self.prompt,
            "system": self.system,
            "max_tokens": self.max_tokens,
        }
        if self.grounded:
            out["grounded"] = True
        if self.underspecified:
            out["underspecified"] = True
        return out


# -- metrics --------------------------------------------------------------------------------


@attrs.frozen
class TokenCount:
    """A token count and where it came from: `estimated` (chars // 4) or `provided`."""

    value: int = 0
    source: str = ESTIMATED

    def to_json(self) -> dict[str, Any]:
        """`{"value": int, "source": "estimated" | "provided"}`."""
        return {"value": self.value, "source": self.source}


_ZERO_TOKENS = TokenCount()  # shared by every snapshot whose count is still 0

_SHARED_BELOW = 4096  # token counts below this are shared (at most twice this many)
_shared_counts: dict[int, TokenCount] = {}


def _token_count(value: int, source: str) -> TokenCount:
    """`TokenCount(value, source)`, one shared object per small count.

    Every paused session's stats hold two counts, and most of them are small numbers
    sessions have in common: shared, they are not one more object each for the cyclic
    GC to walk. (A dict read and write is atomic: threads may race to add the same
    count, and either object will do.)
    """
    if not 0 <= value < _SHARED_BELOW:
        return TokenCount(value, source)
    key = value if source == ESTIMATED else ~value
    found = _shared_counts.get(key)
    if found is None:
        found = _shared_counts.setdefault(key, TokenCount(value, source))
    return found


@attrs.frozen(eq=True, hash=False)
class ExecutionStats:
    """A session's metrics at one moment (`stats` in the MCP JSON).

    `llm_calls` counts queries asked (a batch of 3 counts 3), `pauses` the times the
    strategy stopped to wait for answers (one per `ctx.llm` / `ctx.llm_batch`),
    `rounds` the pauses whose answers were all fed. `prompt_chars` counts prompt and
    system prompt. A token count is `provided` only when every query it sums had
    host-supplied `usage`; otherwise `estimated` (chars // 4 where usage is missing).
    `custom` holds `ctx.metric` values, `logs` the last `ctx.log` messages
    (`logs_dropped` older ones were dropped).

    Unhashable (`custom` is a dict). The stats a `Runtime` method returns are the
    caller's own: changing them (or `to_json()`'s output) changes nothing in the session.
    """

    elapsed_ms: int = 0
    llm_calls: int = 0
    pauses: int = 0
    rounds: int = 0
    prompt_chars: int = 0
    response_chars: int = 0
    prompt_tokens: TokenCount = TokenCount()
    response_tokens: TokenCount = TokenCount()
    total_tokens: TokenCount = TokenCount()
    custom: dict[str, Any] = attrs.field(factory=dict)
    logs: tuple[str, ...] = ()
    logs_dropped: int = 0

    def to_json(self) -> dict[str, Any]:
        """The stats as a JSON object (a fresh dict every call)."""
        return {
            "elapsed_ms": self.elapsed_ms,
            "llm_calls": self.llm_calls,
            "pauses": self.pauses,
            "rounds": self.rounds,
            "prompt_chars": self.prompt_chars,
            "response_chars": self.response_chars,
            "prompt_tokens": self.prompt_tokens.to_json(),
            "response_tokens": self.response_tokens.to_json(),
            "total_tokens": self.total_tokens.to_json(),
            "custom": json_copy(self.custom),
            "logs": list(self.logs),
            "logs_dropped": self.logs_dropped,
        }

    def detached(self) -> ExecutionStats:
        """These stats with a deep copy of `custom` (the rest is immutable)."""
        if not self.custom:
            return self
        return attrs.evolve(self, custom=json_copy(self.custom))


class SessionMetrics:
    """The live accounting of one session; owned by its actor (not thread-safe)."""

    __slots__ = (
        "custom",
        "ended_at",
        "llm_calls",
        "logs",
        "logs_dropped",
        "logs_view",
        "pauses",
        "prompt_chars",
        "prompt_estimated",
        "prompt_tokens",
        "prompt_view",
        "response_chars",
        "response_estimated",
        "response_tokens",
        "response_view",
        "responses",
        "rounds",
        "started_at",
    )

    def __init__(self, started_at: float) -> None:
        self.started_at = started_at
        self.ended_at: float | None = None
        self.llm_calls = 0
        self.pauses = 0
        self.rounds = 0
        self.prompt_chars = 0
        self.response_chars = 0
        self.prompt_tokens = 0
        self.prompt_estimated = 0  # queries whose prompt tokens are still an estimate
        self.response_tokens = 0
        self.response_estimated = 0  # answers counted by estimate
        self.responses = 0
        self.custom: dict[str, Any] = {}
        self.logs: list[str] | tuple[()] = ()  # (the list made for the first entry)
        self.logs_view: tuple[str, ...] | None = ()  # `logs` as a tuple; None: stale
        self.logs_dropped = 0
        # The last snapshot's token counts, reused while they hold: a feed takes two
        # snapshots, and each count changes in only one of them.
        self.prompt_view = self.response_view = _ZERO_TOKENS

    def asked(self, queries: Sequence[LlmQuery]) -> None:
        """The strategy paused with `queries`."""
        self.pauses += 1
        self.llm_calls += len(queries)
        for query in queries:
            chars = query.prompt_chars
            self.prompt_chars += chars
            self.prompt_tokens += chars // 4
            self.prompt_estimated += 1

    def answered(self, query: LlmQuery, response: str, usage: Usage | None) -> None:
        """`query` got `response`; host `usage` replaces the estimates for it.

        The prompt's tokens are all the input the call read: uncached input plus cache
        reads and writes (an OpenAI-style `prompt_tokens` is all of them already).
        """
        self.responses += 1
        self.response_chars += len(response)
        if usage is None:
            self.response_tokens += len(response) // 4
            self.response_estimated += 1
        else:
            prompt = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
            self.prompt_tokens += prompt - query.prompt_chars // 4
            self.prompt_estimated -= 1
            self.response_tokens += usage.output_tokens

    def log(self, message: str) -> bool:
        """Keep `message` (cut to `MAX_LOG_CHARS`); whether an older entry was dropped."""
        if len(message) > MAX_LOG_CHARS:
            message = truncate_log(message)
        if isinstance(self.logs, list):
            self.logs.append(message)
        else:
            self.logs = [message]
        self.logs_view = None
        if len(self.logs) > MAX_LOG_ENTRIES:
            del self.logs[0]
            self.logs_dropped += 1
            return True
        return False

    def snapshot(self, now: float) -> ExecutionStats:
        """The stats as of `now` (clock seconds; the end time once the session ended)."""
        end = self.ended_at if self.ended_at is not None else now
        stats = stats_of(
            self.counts(),
            max(0, round((end - self.started_at) * 1000)),
            self.prompt_view,
            self.response_view,
        )
        self.prompt_view = stats.prompt_tokens
        self.response_view = stats.response_tokens
        return stats

    def counts(self) -> MetricCounts:
        """The counts as of now in one tuple: what `stats_of` makes the stats of.

        Cheap, for a snapshot that is seldom read (a session's state while it runs).
        """
        if self.logs_view is None:
            # Cached: a snapshot is taken at every pause and feed, logs change rarely.
            self.logs_view = tuple(self.logs)
        return (
            self.llm_calls,
            self.pauses,
            self.rounds,
            self.prompt_chars,
            self.response_chars,
            self.prompt_tokens,
            self.prompt_estimated,
            self.response_tokens,
            self.response_estimated,
            self.responses,
            # None for no custom entries: a tuple holding only atomic values is one
            # the cyclic GC stops tracking, and a paused session keeps its counts.
            self.custom.copy() if self.custom else None,
            self.logs_view,
            self.logs_dropped,
        )


MetricCounts = tuple[
    int, int, int, int, int, int, int, int, int, int, dict[str, Any] | None, tuple[str, ...], int
]
"""`SessionMetrics.counts()`: a session's counts at one moment, before they are stats."""


def stats_of(
    counts: MetricCounts,
    elapsed_ms: int,
    prompt_view: TokenCount | None = None,
    response_view: TokenCount | None = None,
) -> ExecutionStats:
    """The stats of `counts`; a token count equal to `prompt_view` or `response_view`
    is that object (a feed takes two snapshots, and each count changes in only one)."""
    (
        llm_calls,
        pauses,
        rounds,
        prompt_chars,
        response_chars,
        prompt_tokens,
        prompt_estimated,
        response_tokens,
        response_estimated,
        responses,
        custom,
        logs,
        logs_dropped,
    ) = counts
    prompt_source = PROVIDED if llm_calls and not prompt_estimated else ESTIMATED
    response_source = PROVIDED if responses and not response_estimated else ESTIMATED
    both = PROVIDED if prompt_source == response_source == PROVIDED else ESTIMATED
    # (A large count is made here: a call to `_token_count` per count costs a feed of a
    # long session about 0.5 us.)
    prompt = prompt_view or _ZERO_TOKENS
    if prompt.value != prompt_tokens or prompt.source != prompt_source:
        prompt = (
            _token_count(prompt_tokens, prompt_source)
            if prompt_tokens < _SHARED_BELOW
            else TokenCount(prompt_tokens, prompt_source)
        )
    response = response_view or _ZERO_TOKENS
    if response.value != response_tokens or response.source != response_source:
        response = (
            _token_count(response_tokens, response_source)
            if response_tokens < _SHARED_BELOW
            else TokenCount(response_tokens, response_source)
        )
    total_tokens = prompt_tokens + response_tokens
    total = (
        _token_count(total_tokens, both)
        if total_tokens < _SHARED_BELOW
        else TokenCount(total_tokens, both)
    )
    # Positional: this runs twice a feed, and keywords cost a third more here.
    return ExecutionStats(
        elapsed_ms,
        llm_calls,
        pauses,
        rounds,
        prompt_chars,
        response_chars,
        prompt,
        response,
        total,
        {} if custom is None else custom,
        logs,
        logs_dropped,
    )


def truncate_log(message: str) -> str:
    """`message` cut to `MAX_LOG_CHARS`, with a marker saying how much was cut."""
    cut = len(message) - MAX_LOG_CHARS
    return f"{message[:MAX_LOG_CHARS]}[... {cut} more chars truncated]"


# -- feed results ------------------------------------------------------------------------------


@attrs.frozen(eq=True, hash=False)
class FeedResult:
    """What a session says after a start, a feed or a cancel.

    `status` is one of:

    * `accepted`: the answer was taken; `remaining` queries of this round still wait
      (`queries` lists them);
    * `needs_response`: the strategy paused; `queries` are the ones to answer;
    * `completed`: the strategy returned `result` (a JSON value);
    * `error`: the strategy failed; `error` says how;
    * `cancelled`: stopped by `Runtime.executions.cancel` or reaped by the GC.

    `metrics` is the session's `ExecutionStats` at that moment. `to_json()` gives the
    MCP JSON shape of each status (a fresh, deep-copied dict every call). Unhashable
    (`result` and `metrics.custom` may be dicts); a result a `Runtime` method returns is
    the caller's own copy.
    """

    status: str
    session_id: str
    queries: tuple[LlmQuery, ...] = ()
    remaining: int = 0
    result: Any = None
    error: str | None = None
    metrics: ExecutionStats | None = None

    @property
    def finished(self) -> bool:
        """Whether the session has ended (completed, error or cancelled)."""
        return self.status in TERMINAL_STATES

    @property
    def query_ids(self) -> list[str]:
        """The ids of `queries`, in order."""
        return [query.id for query in self.queries]

    def detached(self) -> FeedResult:
        """This result with its own copies of `result` and `metrics.custom`."""
        metrics = self.metrics.detached() if self.metrics is not None else None
        result = self.result
        if type(result) is dict or type(result) is list:
            result = json_copy(result)
        elif metrics is self.metrics:
            return self
        return attrs.evolve(self, result=result, metrics=metrics)

    def to_json(self) -> dict[str, Any]:
        """The MCP JSON of this result.

        * accepted: `{"status", "remaining"}`;
        * one query: `{"status", "session_id", "query_id", "prompt", "system",
          "max_tokens"}`, plus `grounded` / `underspecified` when true;
        * several: `{"status", "session_id", "queries": [{"id", "prompt", "system",
          "max_tokens", ...}, ...]}`;
        * completed: `{"status", "result", "stats"}`; error: `{"status", "error"}`;
          cancelled: `{"status", "stats"}`.
        """
        status = self.status
        if status == "accepted":
            return {"status": "accepted", "remaining": self.remaining}
        if status == "needs_response":
            if len(self.queries) == 1:
                return {
                    "status": "needs_response",
                    "session_id": self.session_id,
                    **self.queries[0].to_json(id_key="query_id"),
                }
            return {
                "status": "needs_response",
                "session_id": self.session_id,
                "queries": [query.to_json() for query in self.queries],
            }
        stats = self.metrics.to_json() if self.metrics is not None else ExecutionStats().to_json()
        if status == "completed":
            return {"status": "completed", "result": json_copy(self.result), "stats": stats}
        if status == "error":
            return {"status": "error", "error": self.error}
        return {"status": "cancelled", "stats": stats}


# -- the strategy context ---------------------------------------------------------------------


class StrategyBackend(Protocol):
    """How a context reaches its session: custom entries (`ctx.log`, `ctx.metric`) and
    journaled steps (`ctx.step`, `ctx.now`)."""

    def log(self, message: str) -> None:
        """Record a `ctx.log` message (checked)."""
        ...

    def metric(self, name: str, value: Any) -> None:
        """Record a `ctx.metric` value (checked, a JSON value)."""
        ...

    def step(self, name: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        """`fn(*args)` run once and journaled (a durable session), or just run."""
        ...


class BlockingBackend(StrategyBackend, Protocol):
    """A plain strategy's way to its session, from a strategy-pool thread."""

    def request(self, requests: tuple[LlmRequest, ...]) -> list[str]:
        """Ask the host `requests`; their answers, in order, once the host has fed them."""
        ...


def _first(answers: list[str]) -> str:
    return answers[0]


def _every(answers: list[str]) -> list[str]:
    return list(answers)


class LlmCall(Generic[T]):
    """What `ctx.llm` (a `str`) and `ctx.llm_batch` (a `list[str]`) return in an async
    strategy: awaiting it pauses the session until the host has answered."""

    __slots__ = ("_asked", "_pick")

    def __init__(
        self, asked: LlmRequest | tuple[LlmRequest, ...], pick: Callable[[list[str]], T]
    ) -> None:
        self._asked = asked  # (one request alone: no tuple kept per paused session)
        self._pick = pick

    @property
    def requests(self) -> tuple[LlmRequest, ...]:
        """The requests asked, in order."""
        asked = self._asked
        return asked if isinstance(asked, tuple) else (asked,)

    def __await__(self) -> Generator[LlmCall[T], list[str], T]:
        """Pause: the session's actor sends the answers back into the coroutine."""
        answers = yield self
        return self._pick(answers)

    def __repr__(self) -> str:
        count = len(self.requests)
        return f"<pending ctx.llm of {count} quer{'y' if count == 1 else 'ies'}>"


class StrategyContext:
    """What every strategy's context has: its session id, its clock, logs and metrics.

    The context a strategy gets is an `ExecutionContext` (a plain `def` strategy,
    whose `ctx.llm` blocks) or an `AsyncExecutionContext` (an `async def` strategy,
    which awaits `ctx.llm`).
    """

    __slots__ = ("_backend", "clock", "session_id")

    def __init__(self, session_id: str, clock: Clock, backend: StrategyBackend) -> None:
        self.session_id = session_id
        self.clock = clock
        self._backend = backend

    def log(self, message: str) -> None:
        """Record `message` in the session's metrics (`stats["logs"]`)."""
        self._backend.log(check_text(message, "ctx.log's message"))

    def metric(self, name: str, value: Any) -> None:
        """Set the custom metric `name` to `value` (a JSON value) in `stats["custom"]`."""
        check_text(name, "a metric name", nonempty=True)
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidInput(f"metric {name!r} must be a finite number, got {value!r}")
        self._backend.metric(name, json_value(value, f"metric {name!r}"))

    def _step(self, name: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        check_text(name, "a step name", nonempty=True)
        if not callable(fn):
            raise InvalidInput(f"ctx.step({name!r}, ...) takes a function, got {fn!r}")
        return self._backend.step(name, fn, args)

    def now(self) -> float:
        """The runtime clock's time (seconds since the epoch), journaled like a step:
        a re-driven durable session gets the time its first run saw."""
        return float(self._backend.step(NOW_STEP, _clock_now, (self.clock,)))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.session_id}>"


def _request(
    prompt: str,
    system: str | None,
    max_tokens: int,
    grounded: bool,
    underspecified: bool,
) -> LlmRequest:
    return LlmRequest(
        prompt,
        system=system,
        max_tokens=max_tokens,
        grounded=grounded,
        underspecified=underspecified,
    )


def _batch(requests: object) -> tuple[LlmRequest, ...]:
    """`requests` checked: a non-empty sequence of `LlmRequest`."""
    if isinstance(requests, str | bytes) or not isinstance(requests, Sequence):
        raise InvalidInput(f"llm_batch takes a list of LlmRequest, got {type(requests).__name__}")
    if not requests:
        raise InvalidInput("llm_batch needs at least one LlmRequest; got an empty batch")
    for index, request in enumerate(requests):
        if not isinstance(request, LlmRequest):
            raise InvalidInput(
                f"llm_batch item {index} must be an LlmRequest, got {type(request).__name__}"
            )
    return tuple(requests)


class ExecutionContext(StrategyContext):
    """A plain `def` strategy's first argument: `ctx.llm` blocks until the host answered.

    The strategy runs on a thread of the strategy pool; `ctx.llm` and `ctx.llm_batch`
    wait there for the host's answers and raise `ExecutionCancelled` once the session
    is cancelled (reaped, or the runtime closed).
    """

    __slots__ = ()

    _backend: BlockingBackend

    def __init__(self, session_id: str, clock: Clock, backend: BlockingBackend) -> None:
        super().__init__(session_id, clock, backend)

    def llm(
        self,
        prompt: str,
        *,
        system: str | None = None,
        max_tokens: int = 1024,
        grounded: bool = False,
        underspecified: bool = False,
    ) -> str:
        """Ask the host's LLM one question; its answer, once the host has fed it."""
        request = _request(prompt, system, max_tokens, grounded, underspecified)
        return self._backend.request((request,))[0]

    def llm_batch(self, requests: Sequence[LlmRequest]) -> list[str]:
        """Ask several questions at once; the answers in request order.

        An empty batch, or an item that is not an `LlmRequest`, is `InvalidInput`.
        """
        return self._backend.request(_batch(requests))

    def step(self, name: str, fn: Callable[..., T], /, *args: Any) -> T:
        """Run `fn(*args)` once for the session: a side effect (an API call, a file
        write) that must not run again when a durable session is re-driven.

        Its result must be JSON; it is journaled before this returns, and a re-drive
        returns the journaled value without calling `fn`. Steps are matched by order
        and `name` (another name at the same place is `NonDeterministicStrategy`). In
        a session that is not durable, `fn` just runs.
        """
        value: T = self._step(name, fn, args)
        return value


class AsyncExecutionContext(StrategyContext):
    """An `async def` strategy's first argument: `await ctx.llm(...)` gives the answer.

    `await ctx.llm(...)` and `await ctx.llm_batch(...)` are the only things the strategy
    may await: the session drives the coroutine itself, with no event loop.
    """

    __slots__ = ()

    def llm(
        self,
        prompt: str,
        *,
        system: str | None = None,
        max_tokens: int = 1024,
        grounded: bool = False,
        underspecified: bool = False,
    ) -> LlmCall[str]:
        """Ask the host's LLM one question; awaited, its answer once the host has fed it."""
        return LlmCall(_request(prompt, system, max_tokens, grounded, underspecified), _first)

    def llm_batch(self, requests: Sequence[LlmRequest]) -> LlmCall[list[str]]:
        """Ask several questions at once; awaited, the answers in request order.

        An empty batch, or an item that is not an `LlmRequest`, is `InvalidInput`.
        """
        return LlmCall(_batch(requests), _every)

    def step(self, name: str, fn: Callable[..., T], /, *args: Any) -> StepCall[T]:
        """`await ctx.step(name, fn, *args)`: run the plain function `fn(*args)` once
        for the session (see `ExecutionContext.step`); awaited, its (journaled) result.

        `fn` runs in the session's turn, so it must be quick; it cannot be `async`.
        """
        return StepCall(lambda: self._step(name, fn, args))


class StepCall(Generic[T]):
    """What `ctx.step` returns in an async strategy: awaiting it gives the result
    without pausing the session."""

    __slots__ = ("_run",)

    def __init__(self, run: Callable[[], T]) -> None:
        self._run = run

    def __await__(self) -> Generator[Any, Any, T]:
        """Run the step (or read its journaled result); no pause."""
        yield from ()  # a generator (`await` needs one) that never pauses
        return self._run()

    def __repr__(self) -> str:
        return "<ctx.step call>"


NOW_STEP = "greenroom.now"
"""The step name `ctx.now()` is journaled under."""


def _clock_now(clock: Clock) -> float:
    return clock.now_ms() / 1000
