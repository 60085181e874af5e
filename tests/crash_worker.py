"""The process the kill -9 harness (tests/test_crash.py) kills: does greenroom work in a loop.

    python tests/crash_worker.py SCENARIO DB SEED RUN [PATH]

It opens a greenroom `Runtime` on DB with the real clock and works until it is killed,
writing one acknowledgement line to stdout for each item only once greenroom has
acknowledged it (a turn once `on_turn_end` returned, block output once `flush()`
returned, an archive or restore once it returned). Each line is written with one
`os.write`, so a line the parent reads whole was acknowledged. Scenarios:

* `transcript`: turns through `on_turn_end` (PATH: the transcript to resume; `-` to
  create one, whose path is the first line, `path P`). Lines: `turn RUN I`.
* `flush`: output appended to two blocks (now and then a line in two appends), then
  `flush()`. Lines: `item BLOCK RUN I`.
* `archive`: a thread appends and flushes to three blocks while the main thread
  archives, restores and sweeps them (every agent block, a small archive budget, so
  archives are pruned). Lines: `item ...`, `op archive|restore|sweep BLOCK`, and
  `pruned BLOCK PRUNED_AT` for a prune the sweep did (read back after it returned).
* `restorer`: archives and restores the block `shared` (made by the parent with
  `shared_content(SEED)`) in a loop, checking each time that its whole output is still
  that content. Lines: `op archive|restore shared`, `conflict archive|restore` (the
  other process changed it: try again), `bad ...` when the output differs.

Anything unexpected is an `error ...` line (and the worker goes on, or exits with 3).
The item bytes are a function of (seed, block, run, index): the parent rebuilds them
with `item_bytes` to look for each acknowledged one in what it reads back.
"""

from __future__ import annotations

import os
import random
import sys
import threading
import traceback
from pathlib import Path
from typing import NoReturn

from greenroom import (
    AssistantMessage,
    CompactionConfig,
    Runtime,
    RuntimeConfig,
    SweepProgress,
    Usage,
    UserMessage,
)
from greenroom.errors import GreenroomError, InvalidTransition

SCENARIOS = ("transcript", "flush", "archive", "restorer")
FLUSH_BLOCKS = ("f0", "f1")
ARCHIVE_BLOCKS = ("a0", "a1", "a2")
SHARED_BLOCK = "shared"
ARCHIVE_BUDGET = 24 * 1024  # bytes of archives the sweeps keep: most sweeps prune
SHARED_BYTES = 4 * 1024 * 1024
MODEL = "anthropic:claude-sonnet-4-5"
PRUNED_AT = "session:archive_pruned_at"
# Timed sweeps never run in a worker: the scenarios sweep when they choose to.
CONFIG = RuntimeConfig(settle_timeout_s=30.0, sweep_first_after_s=1e9, sweep_interval_s=1e9)
NO_COMPACTION = CompactionConfig(enabled=False)

# 64 characters, none of them `<`, `:`, `>` or a newline: an item's frame is unambiguous.
_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_TO_ALPHABET = bytes(_ALPHABET[b % 64] for b in range(256))


def _text(rng: random.Random, size: int) -> bytes:
    return rng.randbytes(size).translate(_TO_ALPHABET)


def item_label(block: str, run: int, index: int) -> bytes:
    """The label that starts an item's frame: `<BLOCK:rRUN-INDEX:`."""
    return f"<{block}:r{run}-{index}:".encode()


def item_bytes(seed: int, block: str, run: int, index: int) -> bytes:
    """The bytes of one item of output: `<BLOCK:rRUN-INDEX:PAYLOAD>\\n`.

    Mostly small lines, now and then one of 64-200 KiB (more than a store chunk).
    """
    rng = random.Random(f"{seed}:{block}:{run}:{index}")
    size = rng.randint(64_000, 200_000) if rng.random() < 0.03 else rng.randint(1, 3_000)
    return item_label(block, run, index) + _text(rng, size) + b">\n"


def turn_texts(seed: int, run: int, index: int) -> tuple[str, str]:
    """The user's and the assistant's text of one transcript turn (labelled `rRUN-INDEX`)."""
    rng = random.Random(f"{seed}:turn:{run}:{index}")
    question = _text(rng, rng.randint(1, 2_000)).decode()
    answer = _text(rng, rng.randint(1, 4_000)).decode()
    return f"q r{run}-{index} {question}", f"a r{run}-{index} {answer}"


def shared_content(seed: int) -> bytes:
    """The output of the `restorer` scenario's block: SHARED_BYTES bytes of lines."""
    rng = random.Random(f"{seed}:shared")
    lines = []
    size = 0
    while size < SHARED_BYTES:
        line = _text(rng, rng.randint(20, 400)) + b"\n"
        lines.append(line)
        size += len(line)
    return b"".join(lines)


class _Acks:
    """Acknowledgement lines to stdout, one `os.write` per line (threads share it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def send(self, *lines: str) -> None:
        with self._lock:
            for line in lines:
                data = (line + "\n").encode()
                while data:
                    try:
                        written = os.write(1, data)
                    except BrokenPipeError:
                        os._exit(0)  # the parent has gone: nobody reads, stop working
                    data = data[written:]

    def fail(self, what: str) -> NoReturn:
        detail = traceback.format_exc().strip().splitlines()[-1]
        self.send(f"error {what}: {detail}")
        sys.stderr.write(traceback.format_exc())
        sys.stderr.flush()
        os._exit(3)


def run_transcript(rt: Runtime, acks: _Acks, seed: int, run: int, path: str) -> None:
    if path == "-":
        transcript = rt.transcripts.create(model=MODEL, compaction=NO_COMPACTION)
        acks.send(f"path {transcript.path}")
    else:
        transcript = rt.transcripts.resume(path, compaction=NO_COMPACTION)
    rng = random.Random(f"{seed}:{run}:usage")
    index = 0
    while True:
        question, answer = turn_texts(seed, run, index)
        usage = Usage(rng.randint(1, 10_000), rng.randint(1, 2_000))
        transcript.on_turn_end([UserMessage(question), AssistantMessage(answer, usage=usage)])
        acks.send(f"turn {run} {index}")
        index += 1


def run_flush(rt: Runtime, acks: _Acks, seed: int, run: int) -> None:
    rng = random.Random(f"{seed}:{run}:flush")
    blocks = {block_id: rt.blocks.get(block_id) for block_id in FLUSH_BLOCKS}
    index = 0
    while True:
        block_id = rng.choice(FLUSH_BLOCKS)
        block = blocks[block_id]
        sent = []
        for _ in range(rng.randint(1, 4)):
            data = item_bytes(seed, block_id, run, index)
            if rng.random() < 0.2:  # a line in two appends
                cut = rng.randint(1, len(data) - 1)
                block.append_output(data[:cut])
                block.append_output(data[cut:])
            else:
                block.append_output(data)
            sent.append(f"item {block_id} {run} {index}")
            index += 1
        block.flush()
        acks.send(*sent)


def run_archive(rt: Runtime, acks: _Acks, seed: int, run: int) -> None:
    rng = random.Random(f"{seed}:{run}:archive")
    blocks = {block_id: rt.blocks.get(block_id) for block_id in ARCHIVE_BLOCKS}
    # Held from an append to its acknowledgement, and around a sweep with the report of
    # its prunes: so every item acknowledged before a prune's line was stored before
    # it, and every item acknowledged after it was appended after it.
    quiet = threading.Lock()

    def append_loop() -> None:
        arng = random.Random(f"{seed}:{run}:append")
        index = 0
        try:
            while True:
                block_id = arng.choice(ARCHIVE_BLOCKS)
                with quiet:
                    sent = []
                    for _ in range(arng.randint(1, 3)):
                        blocks[block_id].append_output(item_bytes(seed, block_id, run, index))
                        sent.append(f"item {block_id} {run} {index}")
                        index += 1
                    blocks[block_id].flush()
                    acks.send(*sent)
        except BaseException:
            acks.fail("appending")

    def progress(event: SweepProgress) -> None:
        if event.outcome == "failed":  # (counted as skipped, when another process raced)
            error = " ".join(str(event.error).split())
            acks.send(f"error sweep {event.phase} {event.block_id} failed: {error}")

    threading.Thread(target=append_loop, daemon=True).start()
    while True:
        op = rng.choices(("archive", "restore", "sweep"), (4, 3, 1))[0]
        block_id = rng.choice(ARCHIVE_BLOCKS)
        try:
            if op == "archive":
                blocks[block_id].archive()
                acks.send(f"op archive {block_id}")
            elif op == "restore":
                try:
                    blocks[block_id].restore()
                except InvalidTransition:
                    continue  # not archived (or pruned): nothing to restore
                acks.send(f"op restore {block_id}")
            else:
                with quiet:
                    before = {b: _pruned_at(rt, b) for b in ARCHIVE_BLOCKS}
                    stats = rt.blocks.sweep(
                        inactive_days=0, max_archive_bytes=ARCHIVE_BUDGET, progress=progress
                    )
                    lines = []
                    for b in ARCHIVE_BLOCKS:
                        after = _pruned_at(rt, b)
                        if after and after != before[b]:
                            lines.append(f"pruned {b} {after}")
                    acks.send(*lines, f"op sweep - {stats.archived_count} {stats.pruned_count}")
        except GreenroomError:
            acks.fail(op)


def _pruned_at(rt: Runtime, block_id: str) -> object:
    """When the sweep last pruned the block's archive (metadata), or None."""
    return rt.store.get_object("block", block_id).meta.get(PRUNED_AT)


def run_restorer(rt: Runtime, acks: _Acks, seed: int) -> None:
    expected = shared_content(seed)
    block = rt.blocks.get(SHARED_BLOCK)
    while True:
        for op in ("archive", "restore"):
            try:
                if op == "archive":
                    block.archive()
                else:
                    block.restore()
            except InvalidTransition as error:
                # Another process changed the block (try again), or it is not archived
                # because an archive lost such a race.
                acks.send(f"conflict {op} {type(error).__name__}")
                continue
            except GreenroomError:
                acks.fail(op)
            try:
                data = block.read_output().data
            except GreenroomError:
                acks.fail(f"read after {op}")
            if data == expected:
                acks.send(f"op {op} {SHARED_BLOCK}")
            else:
                acks.send(f"bad {op} {len(data)} bytes, expected {len(expected)}")


def main(argv: list[str]) -> None:
    scenario, db, seed, run = argv[0], Path(argv[1]), int(argv[2]), int(argv[3])
    if scenario not in SCENARIOS:
        raise SystemExit(f"unknown scenario {scenario!r}; one of {', '.join(SCENARIOS)}")
    acks = _Acks()
    try:
        rt = Runtime.open(db, config=CONFIG)
    except GreenroomError:
        acks.fail("open")
    try:
        if scenario == "transcript":
            run_transcript(rt, acks, seed, run, argv[4])
        elif scenario == "flush":
            run_flush(rt, acks, seed, run)
        elif scenario == "archive":
            run_archive(rt, acks, seed, run)
        else:
            run_restorer(rt, acks, seed)
    except BaseException:
        acks.fail(scenario)


if __name__ == "__main__":
    main(sys.argv[1:])
