"""Compaction: how big the current context is, where to cut it, and the default summary.

The seed this replaces triggered on cumulative billed spend (which reaches the
threshold long before the context does), kept 25 % of the entries whatever their size,
could orphan a tool result, and swallowed summarizer errors. Here:

* the trigger is the current context's estimated size (`context_tokens`);
* the cut (`choose_cut`) keeps the newest messages up to `keep_recent_tokens`, at a
  turn boundary (a user message) when one lies within that budget, and never between
  an assistant's tool call and its tool result;
* the summarizer's failure is the caller's error (`CompactionError`), nothing changed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Protocol

from greenroom.transcripts.records import (
    AssistantMessage,
    CompactionSummary,
    Message,
    ToolResult,
    UserMessage,
)

__all__ = ["ContextItem", "choose_cut", "context_tokens", "default_summarizer", "straddled_cuts"]

_LINE = 120
_LAST_REQUESTS = 5
_MIN_CHARS = 400
_MAX_CHARS = 8_000


class ContextItem(Protocol):
    """An item of a context: a message and its bytes // 4 (`logformat.Node` is one)."""

    @property
    def message(self) -> Message:
        """The message."""
        ...

    @property
    def tokens(self) -> int:
        """Its estimated size."""
        ...


def context_tokens(items: Sequence[ContextItem], post_start: int, est_sum: int) -> int:
    """The estimated size of a context (`items`, whose bytes // 4 add up to `est_sum`).

    The newest assistant message at or after `post_start` (that is, written after the
    last compaction) with a known usage gives its call's context size (input + output +
    cache read + cache write); messages after it add their bytes // 4. Without one, the
    context's bytes // 4 (`est_sum`). Usage from before the compaction is ignored: it
    measured the context that compaction replaced.
    """
    after = 0
    for index in range(len(items) - 1, post_start - 1, -1):
        message = items[index].message
        if type(message) is AssistantMessage and message.usage.total_tokens:
            return message.usage.total_tokens + after
        after += items[index].tokens
    return est_sum


def straddled_cuts(messages: Sequence[Message]) -> list[bool]:
    """`result[c]` is True when cutting before index `c` would split a tool call from its
    result (the call kept and the result summarised, or the other way round).

    A result is paired with the newest assistant message before it that made a call with
    its `tool_call_id` (or, failing that, one after it); a result with no call anywhere
    constrains nothing.
    """
    n = len(messages)
    calls: dict[str, list[int]] = {}
    for index, message in enumerate(messages):
        if type(message) is AssistantMessage:
            for call in message.tool_calls:
                calls.setdefault(call.id, []).append(index)
    marks = [0] * (n + 2)
    for index, message in enumerate(messages):
        if type(message) is not ToolResult:
            continue
        where = calls.get(message.tool_call_id)
        if not where:
            continue
        before = [i for i in where if i < index]
        partner = before[-1] if before else where[0]
        low, high = min(partner, index), max(partner, index)
        # Cuts c with low < c <= high separate the two.
        marks[low + 1] += 1
        marks[high + 1] -= 1
    straddled = []
    depth = 0
    for c in range(n + 1):
        depth += marks[c]
        straddled.append(depth > 0)
    return straddled


def choose_cut(
    messages: Sequence[Message], tokens: Sequence[int], keep_recent_tokens: int
) -> int | None:
    """Where to cut `messages`: summarise `messages[:cut]`, keep `messages[cut:]`.

    `None` when nothing can be summarised. Only cuts that leave at least one message
    kept and at least one (other than a leading summary) summarised, and that split no
    tool call from its result, are considered; `budget` is the smallest cut whose kept
    part is within `keep_recent_tokens`. In order of preference:

    1. the first turn boundary (a user message) at or after `budget`;
    2. the first allowed cut at or after `budget` (the newest turn alone is too big);
    3. the last allowed cut before `budget` (a tool call and its result together exceed
       the budget: keep a little more rather than split them).
    """
    n = len(messages)
    first = 1 if n and type(messages[0]) is CompactionSummary else 0
    lowest = first + 1  # at least one message summarised
    if lowest > n - 1:
        return None
    straddled = straddled_cuts(messages)
    kept = 0
    budget = n
    for cut in range(n - 1, lowest - 1, -1):
        kept += tokens[cut]
        if kept > keep_recent_tokens:
            break
        budget = cut
    budget = max(budget, lowest)
    allowed = [cut for cut in range(budget, n) if not straddled[cut]]
    for cut in allowed:
        if type(messages[cut]) is UserMessage:
            return cut
    if allowed:
        return allowed[0]
    for cut in range(min(budget, n) - 1, lowest - 1, -1):
        if not straddled[cut]:
            return cut
    return None


def _line(text: str, limit: int = _LINE) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def default_summarizer(messages: list[Message]) -> str:
    """A deterministic digest of `messages`: at most a quarter of their text (or 400
    characters when they are shorter than that; never more than 8,000).

    The message counts, the tools used, the last user requests, the last assistant
    answer and the previous summary, in that order, cut at the limit. Hosts wanting a
    real summary pass an LLM summarizer in `CompactionConfig`.
    """
    counts: Counter[str] = Counter()
    tools: Counter[str] = Counter()
    errors = 0
    previous: str | None = None
    requests: list[str] = []
    last_answer: str | None = None
    size = 0
    for message in messages:
        if isinstance(message, CompactionSummary):
            previous = message.summary
            size += len(message.summary)
            continue
        size += len(message.text)
        if isinstance(message, UserMessage):
            counts["user"] += 1
            if message.text.strip():
                requests.append(message.text)
        elif isinstance(message, AssistantMessage):
            counts["assistant"] += 1
            tools.update(call.name for call in message.tool_calls)
            if message.text.strip():
                last_answer = message.text
        else:
            counts["tool"] += 1
            errors += message.is_error
    lines = [
        f"Summary of {sum(counts.values())} earlier messages: {counts['user']} from the "
        f"user, {counts['assistant']} from the assistant, {counts['tool']} tool results "
        f"({errors} errors)."
    ]
    if tools:
        used = ", ".join(f"{name} x{count}" for name, count in sorted(tools.items()))
        lines.append(f"Tools used: {used}.")
    if requests:
        lines.append("Last user requests:")
        lines.extend(f"- {_line(text)}" for text in requests[-_LAST_REQUESTS:])
    if last_answer:
        lines.append("Last assistant answer: " + _line(last_answer, 2 * _LINE))
    if previous:
        lines.append("Before that: " + _line(previous, _MAX_CHARS))
    text = "\n".join(lines)
    limit = min(max(_MIN_CHARS, size // 4), _MAX_CHARS)
    return text if len(text) <= limit else text[: limit - 1] + "…"
