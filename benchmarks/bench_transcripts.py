"""Transcripts: turns/s against a raw JSONL loop, and resuming a 100,000-entry log.

Two measurements, each beside a baseline measured in the same run:

1. turns/s of `Transcript.on_turn_end` with 10-message turns (a user message, four
   assistant messages with one tool call each and their four results, a final answer)
   and `durability="turn"`, against a raw loop that writes the same JSON lines (ids,
   parent links, timestamps, a leaf per turn) with one `write` and one fsync per turn.
   The two alternate turn by turn, each turn timed, so a noisy neighbour hurts both
   alike; the median of the rounds is printed, with every round's ratio. Ratio =
   transcript / raw, higher is better (target >= 0.9: the host-scale issue's; it was 0.7).
   Automatic compaction is off in both (the raw loop has none).
2. `rt.transcripts.resume` of a 100,000-entry log (9,091 such turns of 11 entries; open, lock,
   parse, rebuild the context and usage, start the actor), against a bare loop that only
   `json.loads` every line of the same file. Ratio = resume / bare parse, lower is better.

    .venv/bin/python benchmarks/bench_transcripts.py          # the full run
    .venv/bin/python benchmarks/bench_transcripts.py --quick  # smaller counts, a smoke test

`--json PATH` also writes the headline figures there as rows for `run_all.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from greenroom import (
    AssistantMessage,
    CompactionConfig,
    Runtime,
    RuntimeConfig,
    ToolCall,
    ToolResult,
    Usage,
    UserMessage,
)
from greenroom.clock import stopwatch
from greenroom.transcripts.logformat import iso_utc, message_to_json

from _table import Row, Target, add_json_option, cpu_model, figure, write_rows  # isort: skip

OFF = CompactionConfig(enabled=False)
TURNS_TARGET = Target(">=", 0.9)  # transcript turns/s / the raw loop's, median of the rounds


def make_turn(n: int) -> list[Any]:
    """Ten messages, a few hundred bytes each, like a coding agent's tool loop."""
    messages: list[Any] = [UserMessage(f"turn {n}: please fix the failing test in module_{n}.py")]
    for step in range(4):
        call = ToolCall(f"call-{n}-{step}", "bash", {"command": f"pytest -q tests/t{step}.py"})
        messages.append(
            AssistantMessage(
                f"Running the tests, step {step}.",
                tool_calls=[call],
                usage=Usage(1_200 + 40 * step, 60, 900, 0),
            )
        )
        messages.append(ToolResult(call.id, "." * 60 + f" {step + 3} passed in 0.4{step}s\n" * 3))
    messages.append(AssistantMessage("All tests pass now.", usage=Usage(1_400, 30, 1_100, 0)))
    return messages


class RawLog:
    """The baseline: the same JSON lines, written by hand, one write + fsync per turn."""

    def __init__(self, folder: Path, now_ms: int) -> None:
        name = f"raw-{os.urandom(4).hex()}.jsonl"
        self.fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND)
        self.now_ms = now_ms
        self.next_id = 1
        self.parent: str | None = None

    def turn(self, turn: list[Any]) -> None:
        ts = iso_utc(self.now_ms)
        lines = []
        for message in turn:
            entry_id = str(self.next_id)
            self.next_id += 1
            entry = {
                "type": "message",
                "id": entry_id,
                "parent_id": self.parent,
                "timestamp": ts,
                "message": message_to_json(message),
            }
            lines.append(json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n")
            self.parent = entry_id
        leaf = {"type": "leaf", "id": str(self.next_id), "parent_id": self.parent}
        leaf["timestamp"] = ts
        leaf["entry_id"] = self.parent
        self.next_id += 1
        lines.append(json.dumps(leaf, separators=(",", ":")) + "\n")
        os.write(self.fd, "".join(lines).encode("utf-8"))
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


def bench_turns(rt: Runtime, folder: Path, turns: list[list[Any]]) -> tuple[float, float]:
    """Seconds spent in the transcript's turns and in the raw loop's, turn by turn
    alternating, so that a slow phase of the shared machine hits both alike."""
    t = rt.transcripts.create(compaction=OFF, durability="turn")
    raw = RawLog(folder, rt.clock.now_ms())
    ours_s = raw_s = 0.0
    for turn in turns:
        start = stopwatch()
        raw.turn(turn)
        middle = stopwatch()
        t.on_turn_end(turn)
        ours_s += stopwatch() - middle
        raw_s += middle - start
    t.close()
    raw.close()
    return ours_s, raw_s


def bench_resume(rt: Runtime, folder: Path, entries: int) -> tuple[float, float, int]:
    turns = entries // 11
    t = rt.transcripts.create(compaction=OFF, durability="none")
    for n in range(turns):
        t.on_turn_end(make_turn(n))
    t.close()
    path = Path(t.path)
    lines = path.read_bytes().count(b"\n") - 1  # entries: every line but the header
    start = stopwatch()
    again = rt.transcripts.resume(path, compaction=OFF)
    resume_s = stopwatch() - start
    assert again.recovery.clean
    assert len(again.context()) == turns * 10
    again.close()
    start = stopwatch()
    with path.open("rb") as file:
        for line in file:
            json.loads(line)
    parse_s = stopwatch() - start
    return resume_s, parse_s, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts (a smoke test)")
    add_json_option(parser)
    args = parser.parse_args()
    n_turns, rounds, entries = (50, 3, 11_000) if args.quick else (300, 5, 100_001)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = RuntimeConfig(transcript_dir=str(folder / "transcripts"))
        with Runtime.open(folder / "bench.db", config=config) as rt:
            turns = [make_turn(n) for n in range(n_turns)]
            bench_turns(rt, folder, turns[:10])  # warm up both paths
            ours, raw = [], []
            for _ in range(rounds):
                ours_s, raw_s = bench_turns(rt, folder, turns)
                ours.append(n_turns / ours_s)
                raw.append(n_turns / raw_s)
            resume_s, parse_s, lines = bench_resume(rt, folder, entries)
    ours_med, raw_med = statistics.median(ours), statistics.median(raw)
    ratios = sorted(o / r for o, r in zip(ours, raw, strict=True))
    print(f"CPU: {cpu_model()}, {os.cpu_count()} CPUs")
    print(f"{'figure':52} {'transcript':>12} {'baseline':>12} {'ratio':>7}")
    print(
        f"{'turns/s, 10-message turns, fsync per turn':52} {ours_med:12.0f} {raw_med:12.0f} "
        f"{statistics.median(ratios):7.2f}"
    )
    verdict = "PASS" if statistics.median(ratios) >= TURNS_TARGET.bound else "FAIL"
    print(
        f"{'  per-round ratios':52} {', '.join(f'{r:.2f}' for r in ratios)} (range "
        f"{ratios[0]:.2f}-{ratios[-1]:.2f}; target: median >= {TURNS_TARGET.bound}: {verdict})"
    )
    print(
        f"{f'resume of a {lines:,}-entry log, s':52} {resume_s:12.3f} {parse_s:12.3f} "
        f"{resume_s / parse_s:7.2f}"
    )
    print(
        f"({rounds} rounds of {n_turns} turns, the two alternating turn by turn; baselines: "
        "a raw JSONL loop, a bare json.loads of every line)"
    )
    rows: list[Row] = [
        figure(
            "10-message turns, fsync per turn",
            ours_med,
            "turns/s",
            baseline=raw_med,
            baseline_label="raw JSONL loop",
            ratio=statistics.median(ratios),
            target=TURNS_TARGET,
        ),
        figure(
            f"resume a {lines:,}-entry log",
            resume_s,
            "s",
            baseline=parse_s,
            baseline_label="json.loads each line",
            ratio=resume_s / parse_s,
        ),
    ]
    write_rows(args.json, rows)


if __name__ == "__main__":
    main()
