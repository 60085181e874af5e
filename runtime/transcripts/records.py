"""Transcripts' records: the message model, compaction settings, results, recovery reports.

One transcript per agent conversation: an append-only JSONL file, owned by its own
actor (`greenroom.actors.transcript.TranscriptActor`), holding every message the host
reports at the end of each turn, the compactions, and the branch pointers ("leaves").
The `Transcript` handle is in `greenroom.transcripts.handle`.

    t = rt.transcripts.create(model="anthropic:claude-sonnet-4-5")
    t.on_turn_end([UserMessage("hi"), AssistantMessage("hello", usage=Usage(12, 3))])
    t.context()   # [UserMessage('hi'), AssistantMessage('hello', ...)]
    t.usage()     # Usage(input_tokens=12, output_tokens=3, ...)
    t.close()
    again = rt.transcripts.resume(t.path)  # the same context, usage and next entry id

The log format, the recovery rules and the compaction rules are described in
`greenroom.transcripts.logformat` and `greenroom.transcripts.compaction`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import attrs

from greenroom.checks import (
    check_bool,
    check_callable,
    check_int,
    check_path,
    check_text,
    validator,
)
from greenroom.errors import InvalidInput, InvalidTransition
from greenroom.jsonvalue import json_copy
from greenroom.pricing import CostBreakdown, ModelPricing
from greenroom.usage import ZERO_USAGE, Usage, as_usage

__all__ = [
    "DURABILITIES",
    "TURN_MESSAGES",
    "AssistantMessage",
    "CompactionConfig",
    "CompactionResult",
    "CompactionSummary",
    "CostBreakdown",
    "Message",
    "ModelPricing",
    "RecoveryReport",
    "ToolCall",
    "ToolResult",
    "TurnMessage",
    "TurnResult",
    "Usage",
    "UserMessage",
]

DURABILITIES = ("turn", "entry", "none")
"""`durability` choices: one fsync per turn, one per entry, or none (the OS decides)."""

COMPACTION_RESERVE_TOKENS = 16_384
"""Room kept free for the next answer when `threshold_tokens` is left to its default."""

MAX_TOKENS = 10**15
"""The most tokens of one kind a transcript records for a message or a turn, and the
largest window or threshold it takes: far above any model's, and small enough that
sums over a whole file stay exact and price as floats. Larger is `InvalidInput` when
written and a corrupt line when read back."""

MAX_ESTIMATE = 10**18
"""The largest context size a compaction entry records (`tokens_before`, `tokens_after`)."""

MAX_ARGUMENT_DEPTH = 100
"""How deeply `ToolCall.arguments` may nest (the arguments object is level 1): deeper is
`InvalidInput` when written and a corrupt line when read back."""


# -- validators ---------------------------------------------------------------------------

_text = validator(check_text)
_nonempty_text = validator(check_text, nonempty=True)
_estimate = validator(check_int, minimum=0, maximum=MAX_ESTIMATE)
_positive = validator(check_int, minimum=1, maximum=MAX_TOKENS)


def json_depth(value: Any, limit: int) -> int:
    """How deeply `value` (fresh from `json.loads`) nests: 0 for a scalar, 1 for a flat
    object or array. Walked without recursion; stops early once past `limit`."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        cls = type(item)
        if cls is dict:
            children: Any = item.values()
        elif cls is list:
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            break
        stack.extend((child, depth + 1) for child in children)
    return deepest


def bounded_usage(usage: Usage, what: str) -> Usage:
    """`usage` if each of its kinds is at most `MAX_TOKENS`; `InvalidInput` otherwise."""
    for name in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"):
        check_int(getattr(usage, name), f"{what}.{name}", minimum=0, maximum=MAX_TOKENS)
    return usage


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _read_only(self: Any, *_args: Any, **_kwargs: Any) -> Any:
    raise InvalidTransition(
        f"ToolCall.arguments is read-only (the transcript's own record of the call, "
        f"{type(self).__name__}); take a mutable copy with ToolCall.arguments_copy()"
    )


class JSONObject(dict):  # type: ignore[type-arg]
    """A read-only JSON object: `ToolCall.arguments` (and the objects nested in it).

    A `dict` (so `json.dumps`, `isinstance(x, dict)` and `==` with a plain dict work)
    whose mutating methods raise `InvalidTransition`; hashable by content.
    """

    __slots__ = ()
    __setitem__ = __delitem__ = __ior__ = _read_only
    clear = pop = popitem = setdefault = update = _read_only

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def __reduce__(self) -> tuple[Any, ...]:
        return (JSONObject, (dict(self),))

    def __repr__(self) -> str:
        return dict.__repr__(self)


class JSONArray(list):  # type: ignore[type-arg]
    """A read-only JSON array nested in `ToolCall.arguments` (a `list`, see
    `JSONObject`)."""

    __slots__ = ()
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _read_only
    append = extend = insert = pop = remove = clear = sort = reverse = _read_only

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(self))

    def __reduce__(self) -> tuple[Any, ...]:
        return (JSONArray, (list(self),))

    def __repr__(self) -> str:
        return list.__repr__(self)


def _freeze(value: Any) -> Any:
    """`value` (fresh from `json.loads`) with its objects and arrays made read-only."""
    cls = type(value)
    if cls is dict:
        return JSONObject({key: _freeze(item) for key, item in value.items()})
    if cls is list:
        return JSONArray([_freeze(item) for item in value])
    return value


def _json_object(value: Any) -> tuple[JSONObject, int]:
    """A read-only copy of `value` through JSON, and the size of that JSON in UTF-8
    bytes.

    The copy is what the log will hold, so a resumed transcript's messages equal the
    live ones; later changes to the caller's dict change nothing here, and the copy
    itself cannot be changed (a context handed to the host shares it).
    """
    if not isinstance(value, dict):
        raise InvalidInput(
            f"ToolCall.arguments must be a dict (a JSON object), got {type(value).__name__}"
        )
    try:
        text = _ENCODER.encode(value)
        size = len(text.encode("utf-8"))
        loaded = json.loads(text)
    except (TypeError, ValueError, RecursionError) as error:  # UnicodeEncodeError: ValueError
        raise InvalidInput(
            f"ToolCall.arguments must be JSON-serialisable and at most {MAX_ARGUMENT_DEPTH} "
            f"levels deep: {error}"
        ) from None
    # Fewer brackets than the bound cannot nest deeper: the walk is only for the others.
    if text.count("{") + text.count("[") > MAX_ARGUMENT_DEPTH:
        check_depth(loaded)
    return _freeze(loaded), size


def check_depth(arguments: Any) -> None:
    """`InvalidInput` when `arguments` nests deeper than `MAX_ARGUMENT_DEPTH` (what the
    log can read back)."""
    if json_depth(arguments, MAX_ARGUMENT_DEPTH) > MAX_ARGUMENT_DEPTH:
        raise InvalidInput(
            f"ToolCall.arguments must be at most {MAX_ARGUMENT_DEPTH} levels deep (the "
            "arguments object is level 1)"
        )


# -- the message model ----------------------------------------------------------------------


@attrs.frozen
class ToolCall:
    """A tool call the assistant made; `arguments` is a JSON object, kept as a read-only
    copy (a `JSONObject`: a `dict` whose changes raise `InvalidTransition`)."""

    id: str = attrs.field(validator=_nonempty_text)
    name: str = attrs.field(validator=_nonempty_text)
    arguments: Mapping[str, Any] = attrs.field(factory=dict)
    _size: int = attrs.field(init=False, default=0, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        arguments, size = _json_object(self.arguments)
        object.__setattr__(self, "arguments", arguments)
        object.__setattr__(self, "_size", size + len(self.name.encode("utf-8")))

    @classmethod
    def from_log(cls, id: str, name: str, arguments: Any) -> ToolCall:
        """A call read back from a log line: `arguments` is fresh from `json.loads` (no
        copy needed), only measured."""
        if not isinstance(arguments, dict):
            raise InvalidInput(f"ToolCall.arguments must be a dict, got {arguments!r}")
        arguments = _freeze(arguments)
        check_text(id, "ToolCall.id", nonempty=True)
        check_text(name, "ToolCall.name", nonempty=True)
        call = cls.__new__(cls)
        size = len(_ENCODER.encode(arguments).encode("utf-8")) + len(name.encode("utf-8"))
        object.__setattr__(call, "id", id)
        object.__setattr__(call, "name", name)
        object.__setattr__(call, "arguments", arguments)
        object.__setattr__(call, "_size", size)
        return call

    def arguments_copy(self) -> dict[str, Any]:
        """A deep, mutable copy of `arguments` (plain dicts and lists)."""
        copy: dict[str, Any] = json_copy(self.arguments)
        return copy

    @property
    def size_bytes(self) -> int:
        """The name's and the arguments' (compact JSON) size in UTF-8 bytes."""
        return self._size


def _tool_calls(value: Any) -> tuple[ToolCall, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise InvalidInput(
            f"AssistantMessage.tool_calls must be a sequence of ToolCall, got {value!r}"
        )
    calls = tuple(value)
    for call in calls:
        if not isinstance(call, ToolCall):
            raise InvalidInput(
                f"AssistantMessage.tool_calls must hold ToolCall objects, got {call!r}"
            )
    return calls


def _message_usage(value: Any) -> Usage:
    """`AssistantMessage.usage`: a `Usage` or a provider's usage mapping (see `as_usage`)."""
    usage = as_usage(value, "AssistantMessage.usage")
    return ZERO_USAGE if usage is None else bounded_usage(usage, "AssistantMessage.usage")


@attrs.frozen
class UserMessage:
    """What the user said: a turn starts with one."""

    text: str = attrs.field(validator=_text)


@attrs.frozen
class AssistantMessage:
    """A model answer: text, the tool calls it made, and what that call was billed."""

    text: str = attrs.field(validator=_text)
    tool_calls: tuple[ToolCall, ...] = attrs.field(default=(), converter=_tool_calls)
    usage: Usage = attrs.field(default=ZERO_USAGE, converter=_message_usage)


@attrs.frozen
class ToolResult:
    """The result of the tool call `tool_call_id`."""

    tool_call_id: str = attrs.field(validator=_nonempty_text)
    text: str = attrs.field(validator=_text)
    is_error: bool = attrs.field(default=False, validator=validator(check_bool))


@attrs.frozen
class CompactionSummary:
    """Stands for every message before `first_kept_entry_id` in a compacted context."""

    summary: str = attrs.field(validator=_text)
    first_kept_entry_id: str = attrs.field(validator=_nonempty_text)
    tokens_before: int = attrs.field(validator=_estimate)
    tokens_after: int = attrs.field(validator=_estimate)


Message: TypeAlias = UserMessage | AssistantMessage | ToolResult | CompactionSummary
"""Anything in a transcript's context."""

TurnMessage: TypeAlias = UserMessage | AssistantMessage | ToolResult
"""What a host may append with `on_turn_end` (summaries are the transcript's own)."""

TURN_MESSAGES = (UserMessage, AssistantMessage, ToolResult)
"""What a host may append with `on_turn_end` (summaries are the transcript's own)."""


# -- settings and results -----------------------------------------------------------------


class _DefaultKeepRecent(int):
    """`CompactionConfig.keep_recent_tokens` left to its default (an int like any other;
    the type only marks that it may be clamped to the threshold)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return int.__repr__(self)


DEFAULT_KEEP_RECENT_TOKENS = 20_000
_DEFAULT_KEEP_RECENT = _DefaultKeepRecent(DEFAULT_KEEP_RECENT_TOKENS)


@attrs.frozen
class CompactionConfig:
    """When and how a transcript compacts its context.

    Compaction triggers after a turn whose **current context** (the active branch after
    the last compaction) is estimated above `threshold_tokens`; the estimate is the
    usage of the newest assistant message since that compaction (input + output +
    cache read + cache write: what that call's context was) plus bytes // 4 for any
    message after it, or bytes // 4 of the whole context when no such usage is known.
    `threshold_tokens=None` means `max(context_window_tokens - 16_384,
    context_window_tokens * 8 // 10)`: 183,616 for the default 200,000 window.

    Compaction keeps the newest messages up to `keep_recent_tokens` (bytes // 4 each;
    left to its default, 20,000 or half the threshold when that is smaller, so a small
    window works without setting it; given explicitly, it must be below the threshold),
    cut at a turn boundary where it can be, never between a tool call and its result,
    and replaces the rest with a summary from `summarizer(messages) -> str` (run on the
    blocking pool; it may call an LLM) or, when `None`, a deterministic digest.
    `enabled=False` turns the automatic trigger off; `Transcript.compact()` still works.
    """

    enabled: bool = attrs.field(default=True, validator=validator(check_bool))
    context_window_tokens: int = attrs.field(default=200_000, validator=_positive)
    threshold_tokens: int | None = attrs.field(
        default=None, validator=validator(check_int, optional=True, minimum=1, maximum=MAX_TOKENS)
    )
    keep_recent_tokens: int = attrs.field(default=_DEFAULT_KEEP_RECENT, validator=_positive)
    summarizer: Callable[[list[Message]], str] | None = attrs.field(
        default=None, validator=validator(check_callable, optional=True), eq=False
    )

    def __attrs_post_init__(self) -> None:
        threshold = self.effective_threshold
        if threshold > self.context_window_tokens:
            raise InvalidInput(
                f"CompactionConfig.threshold_tokens ({threshold}) must not exceed "
                f"context_window_tokens ({self.context_window_tokens})"
            )
        if type(self.keep_recent_tokens) is _DefaultKeepRecent:
            # Left to its default (also through attrs.evolve): fit it to the threshold.
            keep = min(DEFAULT_KEEP_RECENT_TOKENS, threshold // 2)
            if keep > 0:
                object.__setattr__(self, "keep_recent_tokens", _DefaultKeepRecent(keep))
        if self.keep_recent_tokens >= threshold:
            raise InvalidInput(
                f"CompactionConfig.keep_recent_tokens ({self.keep_recent_tokens}) must be "
                f"below the threshold ({threshold}), or every compaction would keep it all"
            )

    @property
    def keep_recent_is_default(self) -> bool:
        """Whether `keep_recent_tokens` was left to its default (and so fitted to the
        threshold) rather than chosen."""
        return type(self.keep_recent_tokens) is _DefaultKeepRecent

    @property
    def effective_threshold(self) -> int:
        """`threshold_tokens`, or its default derived from the window (see the class)."""
        if self.threshold_tokens is not None:
            return self.threshold_tokens
        window = self.context_window_tokens
        return max(window - COMPACTION_RESERVE_TOKENS, window * 8 // 10)


@attrs.frozen
class CompactionResult:
    """A compaction that happened: its entry, its summary and the new agent buffer.

    `context` is what the agent should now hold: `[summary, ...kept messages]`.
    """

    reason: str
    entry_id: str
    summary: CompactionSummary
    context: tuple[Message, ...]

    @property
    def first_kept_entry_id(self) -> str:
        """The entry id of the oldest message kept verbatim."""
        return self.summary.first_kept_entry_id

    @property
    def tokens_before(self) -> int:
        """The context's estimated size before the compaction."""
        return self.summary.tokens_before

    @property
    def tokens_after(self) -> int:
        """The context's estimated size after it (summary + kept, bytes // 4)."""
        return self.summary.tokens_after


@attrs.frozen
class TurnResult:
    """What `on_turn_end` did: the entry ids given to the turn's messages (in order, for
    `append_leaf`), the compaction it triggered (or `None`), and the context's
    estimated size afterwards."""

    entry_ids: tuple[str, ...]
    compaction: CompactionResult | None
    context_tokens: int


def _report_path(value: Any) -> Path:
    return check_path(value, "RecoveryReport.path")


@attrs.frozen
class RecoveryReport:
    """What opening a transcript file found and did; `clean` when nothing at all.

    * `path`: the file read, a `Path`.
    * `truncated_line`: the 1-based line number of a last line cut short by a crash,
      repaired on open: cut off (`truncated_bytes` bytes), or completed with its
      missing newline when it held a whole entry (`truncated_bytes == 0`).
    * `corrupt_lines`: 1-based line numbers of lines skipped (not JSON, not an entry,
      a duplicate id, an unknown entry type, or anything greenroom never writes: an id
      that is no short decimal, nesting or numbers past the bounds, invalid Unicode;
      see `greenroom.transcripts.logformat`).
    * `missing_leaf`: the entry id the last leaf pointed at when that entry is not in
      the file; the branch then ends at `fallback_entry_id`, the newest intact entry
      (also set, with `missing_leaf` `None`, when the file has no leaf at all).
    * `unfinished_entries`: entries written after the last leaf that are not on the
      active branch (a turn cut short by a crash); kept in the file, and counted in
      `usage()`, but not in the context.
    * `broken_links`: links the active branch could not follow: an entry whose parent
      is missing or loops back into the branch (the context starts after it), and a
      compaction whose first kept entry is not on its branch (the context starts at
      its summary). Each is also in `notes`.
    * `notes`: every finding in words.

    A fork's report is the one of reading its source file (the fork itself is new).
    """

    path: Path = attrs.field(converter=_report_path)
    truncated_line: int | None = None
    truncated_bytes: int = 0
    corrupt_lines: tuple[int, ...] = ()
    missing_leaf: str | None = None
    fallback_entry_id: str | None = None
    unfinished_entries: int = 0
    broken_links: int = 0
    notes: tuple[str, ...] = ()

    @property
    def clean(self) -> bool:
        """Whether the file was read as written, with nothing skipped or repaired."""
        return not self.notes
