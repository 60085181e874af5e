"""The scripted world around the demo host: agents' output, a fake LLM, a fake summarizer.

Everything here is deterministic (no randomness, no clock), so `multi_agent_host.py`
prints the same report on every run. It stands in for the agent processes and the LLM
provider a real host talks to, and calls no greenroom API (it only reads the transcript
messages the summarizer is given).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from typing import Any

from greenroom import AssistantMessage, CompactionSummary, UserMessage

__all__ = [
    "AGENTS",
    "PANEL_TASKS",
    "judge_prompt",
    "line_stream",
    "llm_answer",
    "llm_usage",
    "pane_chunks",
    "pane_lines",
    "parse_verdict",
    "summarize",
    "turn_lines",
    "turn_texts",
]

_WORDS = (
    "parser", "cache", "scheduler", "migration", "socket", "index", "retry", "config",
    "logger", "tokenizer", "router", "queue", "snapshot", "lexer", "pool", "codec",
)  # fmt: skip
_TOOLS = ("bash", "read_file", "edit_file", "grep")


def _word(n: int) -> str:
    return _WORDS[n % len(_WORDS)]


def _ndjson(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode() + b"\n"


# -- agent panes ----------------------------------------------------------------------------


def turn_lines(pane: int, turn: int) -> list[bytes]:
    """The NDJSON lines agent pane `pane` prints in its turn `turn`: tool use, then text."""
    topic = _word(pane + turn)
    lines = [_ndjson({"type": "turn_started", "turn": turn, "topic": topic})]
    for step in range(1 + (pane + turn) % 3):
        tool = _TOOLS[(pane + turn + step) % len(_TOOLS)]
        target = f"src/{topic}/{_word(pane * 3 + step)}.py"
        lines.append(_ndjson({"type": "tool_use", "tool": tool, "input": target}))
        output = f"{tool} {target}: " + " ".join(_word(pane + step + k) for k in range(12))
        ok = (pane + step) % 5 != 3  # now and then a tool fails
        lines.append(_ndjson({"type": "tool_result", "ok": ok, "output": output}))
    text = f"Turn {turn}: the {topic} now handles the {_word(pane + 7)} case; tests pass."
    lines.append(_ndjson({"type": "text", "text": text}))
    lines.append(_ndjson({"type": "turn_finished", "turn": turn}))
    return lines


def pane_lines(pane: int) -> list[bytes]:
    """Everything agent pane `pane` prints at first: two to five turns."""
    return [line for turn in range(1, 3 + pane % 4) for line in turn_lines(pane, turn)]


def line_stream(pane: int, first_turn: int) -> Iterator[bytes]:
    """Pane `pane`'s lines from its turn `first_turn` on, for as long as it is read."""
    for turn in itertools.count(first_turn):
        yield from turn_lines(pane, turn)


def pane_chunks(pane: int, data: bytes) -> list[bytes]:
    """`data` cut the way a pipe delivers it: fixed-size reads that split lines."""
    size = 61 + pane % 29
    return [data[start : start + size] for start in range(0, len(data), size)]


# -- the fake LLM ---------------------------------------------------------------------------

AGENTS = ("planner", "coder", "reviewer")

PANEL_TASKS = (
    "Name the module that should own retries",
    "Propose a cache key for build artefacts",
    "Pick a log format for the scheduler",
    "Choose a socket timeout for the router",
    "Decide where the tokenizer config lives",
    "Split the migration into safe steps",
    "Write a haiku about the index",  # the judge cannot decide: the strategy fails
    "Rename the queue's worker pool",
    "Suggest a snapshot interval",
    "Choose a codec for the archives",
)


def judge_prompt(task: str, drafts: Sequence[str]) -> str:
    """The judge's prompt: the task and the three numbered drafts."""
    numbered = "\n".join(f"{n}. {draft}" for n, draft in enumerate(drafts, 1))
    return f"Task: {task}\nDrafts:\n{numbered}\nReply with 'WINNER: <number>'."


def llm_answer(prompt: str, system: str | None) -> str:
    """The scripted model: a deterministic answer to each prompt."""
    if system == "You are the judge.":
        task = prompt.splitlines()[0].removeprefix("Task: ")
        if "haiku" in task:
            return "Each draft has its charm; I cannot pick one."
        return f"WINNER: {1 + sum(map(ord, task)) % len(AGENTS)}"
    agent = (system or "").removeprefix("You are the ").removesuffix(".")
    return f"[{agent}] For '{prompt}': keep it in the {_word(len(prompt))} layer, test it first."


def llm_usage(prompt: str, system: str | None, answer: str) -> dict[str, int]:
    """What the provider would bill for `answer`: prompt and completion tokens."""
    prompt_tokens = 40 + (len(prompt) + len(system or "")) // 4
    return {"prompt_tokens": prompt_tokens, "completion_tokens": 1 + len(answer) // 4}


def parse_verdict(verdict: str) -> int:
    """The draft number in a judge's `WINNER: <n>`; `ValueError` for anything else."""
    head, _, number = verdict.partition(":")
    if head.strip() != "WINNER" or not number.strip().isdigit():
        raise ValueError(f"the judge named no winner: {verdict!r}")
    return int(number)


# -- transcripts ----------------------------------------------------------------------------


def turn_texts(conversation: int, turn: int) -> tuple[str, str, str, str]:
    """One coding-agent turn: the user's ask, a file to read, its content, the answer."""
    topic = _word(conversation * 5 + turn)
    ask = f"Turn {turn}: please look at the {topic} and tell me what the {_word(turn)} does. "
    ask += "Context from the ticket: " + " ".join(_word(turn + k) for k in range(30))
    path = f"src/{topic}.py"
    body = "\n".join(f"def {_word(turn + k)}_{k}(x):\n    return x + {k}" for k in range(40))
    answer = f"The {topic} delegates to the {_word(turn)}; " + " ".join(
        _word(conversation + k) for k in range(50)
    )
    return ask, path, body, answer


def summarize(messages: Sequence[Any]) -> str:
    """A deterministic stand-in for an LLM summary of the messages compacted away."""
    asks = [m.text.split(":")[0] for m in messages if isinstance(m, UserMessage)]
    reads = sum(len(m.tool_calls) for m in messages if isinstance(m, AssistantMessage))
    earlier = " (after an earlier summary)" if isinstance(messages[0], CompactionSummary) else ""
    return f"{len(messages)} messages{earlier}: {', '.join(asks)}; {reads} files read."
