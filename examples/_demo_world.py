"""The scripted world around the demo host: agents' output, a fake LLM, a fake summarizer.

Everything here is deterministic (no randomness, no clock), so `multi_agent_host.py`
prints the same report on every run. It stands in for the agent processes and the LLM
provider a real host talks to, and calls no greenroom API (it only reads the transcript
messages the summarizer is given).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from _agent_world import line_stream, pane_chunks, pane_lines, turn_lines, word

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
    return f"[{agent}] For '{prompt}': keep it in the {word(len(prompt))} layer, test it first."


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
    topic = word(conversation * 5 + turn)
    ask = f"Turn {turn}: please look at the {topic} and tell me what the {word(turn)} does. "
    ask += "Context from the ticket: " + " ".join(word(turn + k) for k in range(30))
    path = f"src/{topic}.py"
    body = "\n".join(f"def {word(turn + k)}_{k}(x):\n    return x + {k}" for k in range(40))
    answer = f"The {topic} delegates to the {word(turn)}; " + " ".join(
        word(conversation + k) for k in range(50)
    )
    return ask, path, body, answer


def summarize(messages: Sequence[Any]) -> str:
    """A deterministic stand-in for an LLM summary of the messages compacted away."""
    asks = [m.text.split(":")[0] for m in messages if isinstance(m, UserMessage)]
    reads = sum(len(m.tool_calls) for m in messages if isinstance(m, AssistantMessage))
    earlier = " (after an earlier summary)" if isinstance(messages[0], CompactionSummary) else ""
    return f"{len(messages)} messages{earlier}: {', '.join(asks)}; {reads} files read."
