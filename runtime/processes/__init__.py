"""`greenroom.processes`: programs run under a pseudo-terminal, their output into blocks.

    proc = greenroom.processes.spawn(rt, "pane-1", ["python", "agent.py"])
    proc.wait()               # its exit status; the output is in rt.blocks.get("pane-1")

A program sees a terminal (`isatty` is true, so it writes as it would to a person) and
nothing is in between: no shell, the terminal in raw mode, so the block holds exactly
the bytes the program wrote. Each complete line is also an event of a replay buffer.
"""

from __future__ import annotations

from greenroom.processes.pty_process import MAX_EVENT_CHARS, Process, spawn

__all__ = ["MAX_EVENT_CHARS", "Process", "spawn"]
