"""What the demo's agents print: NDJSON turns, deterministic (no randomness, no clock).

Standard library only: every agent process (`_agent.py`) imports it, and importing
greenroom in each of 50 processes would cost more than the agents' work.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

__all__ = ["line_stream", "pane_chunks", "pane_lines", "turn_lines", "word"]

_WORDS = (
    "parser", "cache", "scheduler", "migration", "socket", "index", "retry", "config",
    "logger", "tokenizer", "router", "queue", "snapshot", "lexer", "pool", "codec",
)  # fmt: skip
_TOOLS = ("bash", "read_file", "edit_file", "grep")


def word(n: int) -> str:
    """The demo's word number `n` (they repeat)."""
    return _WORDS[n % len(_WORDS)]


def _ndjson(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode() + b"\n"


# -- agent panes ----------------------------------------------------------------------------


def turn_lines(pane: int, turn: int) -> list[bytes]:
    """The NDJSON lines agent pane `pane` prints in its turn `turn`: tool use, then text."""
    topic = word(pane + turn)
    lines = [_ndjson({"type": "turn_started", "turn": turn, "topic": topic})]
    for step in range(1 + (pane + turn) % 3):
        tool = _TOOLS[(pane + turn + step) % len(_TOOLS)]
        target = f"src/{topic}/{word(pane * 3 + step)}.py"
        lines.append(_ndjson({"type": "tool_use", "tool": tool, "input": target}))
        output = f"{tool} {target}: " + " ".join(word(pane + step + k) for k in range(12))
        ok = (pane + step) % 5 != 3  # now and then a tool fails
        lines.append(_ndjson({"type": "tool_result", "ok": ok, "output": output}))
    text = f"Turn {turn}: the {topic} now handles the {word(pane + 7)} case; tests pass."
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
