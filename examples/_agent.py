"""A stand-in coding agent for the demo, run as a real process under a pseudo-terminal.

    python examples/_agent.py PANE [run|crash|long|forever]

It prints pane PANE's NDJSON turns (`_agent_world.pane_lines`) in pipe-sized pieces with
short pauses, as an agent thinking between writes would, then: `run` exits 0; `crash`
dies of SIGSEGV; `long` keeps running, silent, until it is stopped; `forever` goes on
with new turns for as long as it is let run (`make live`).
"""

from __future__ import annotations

import os
import signal
import sys
import time

from _agent_world import line_stream, pane_chunks, pane_lines

THINK_S = 0.004  # between two writes: the agent "thinks"


def main() -> None:
    pane = int(sys.argv[1])
    mode = sys.argv[2] if len(sys.argv) > 2 else "run"
    out = sys.stdout.buffer
    for piece in pane_chunks(pane, b"".join(pane_lines(pane))):
        out.write(piece)
        out.flush()
        time.sleep(THINK_S)
    if mode == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif mode == "long":
        while True:
            time.sleep(3600)  # still at work, quietly, until stopped
    elif mode == "forever":
        first = len(pane_lines(pane)) and 3 + pane % 4
        for line in line_stream(pane, first):
            out.write(line)
            out.flush()
            time.sleep(0.2 + (pane % 7) / 10)


if __name__ == "__main__":
    main()
