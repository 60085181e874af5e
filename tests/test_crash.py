"""Kill -9 harness: nothing greenroom acknowledged is lost, no temporary is left behind.

Each scenario starts `tests/crash_worker.py` as a real process on a database in
`tmp_path` (the real clock), reads its acknowledgement lines, and kills it with SIGKILL
after a random number of them plus a small random delay (both from a seeded RNG). It
then reopens the database here, through the public surface, and checks that every
acknowledged item is there, whole, once and in order, and that no temporary is left:
archive temporaries (`.*.tmp`) and lock files of runtimes that are gone in the archive
folder, block store files other than `output` (`output.restoring*`), and files in the
transcript folder that are not the transcript. The next run carries on with the same
database, so each scenario is a chain of crashes and recoveries.

GREENROOM_CRASH_KILLS sets the kills per scenario (5 by default, so `make test` runs
them all; `make crash` runs 100), GREENROOM_CRASH_SEED the seed (15), and
GREENROOM_CRASH_FIGURES a file to append each scenario's figures to, as JSON lines.
Each test prints one figure line: kills, acknowledged items, items lost (must be 0),
temporaries left after reopen (must be 0).
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

from greenroom import AssistantMessage, Runtime, RuntimeConfig, UserMessage
from greenroom.errors import NotFound

from .crash_lines import LineReader
from .crash_worker import (
    ARCHIVE_BLOCKS,
    FLUSH_BLOCKS,
    NO_COMPACTION,
    PRUNED_AT,
    SHARED_BLOCK,
    item_bytes,
    shared_content,
    turn_texts,
)

KILLS = int(os.environ.get("GREENROOM_CRASH_KILLS", "5"))
SEED = int(os.environ.get("GREENROOM_CRASH_SEED", "15"))
FIGURES_FILE = os.environ.get("GREENROOM_CRASH_FIGURES")
WORKER = Path(__file__).resolve().with_name("crash_worker.py")
CHECK_CONFIG = RuntimeConfig(settle_timeout_s=30.0, sweep_first_after_s=1e9, sweep_interval_s=1e9)
EXPORT = [sys.executable, "-m", "greenroom.cli", "export"]
STALL_S = 60.0  # a worker silent this long is stuck: recorded as an error, then killed
TIMEOUT_S = 120 + 12 * KILLS  # real seconds per scenario (pytest-timeout)

_TURN = re.compile(r"[qa] r(\d+)-(\d+) ")
_ITEM = re.compile(rb"<([A-Za-z0-9_.-]+):r(\d+)-(\d+):")
_TRANSCRIPT = re.compile(r"[0-9a-f]{16}\.jsonl")

pytestmark = [pytest.mark.crash, pytest.mark.timeout(TIMEOUT_S)]


# -- figures ---------------------------------------------------------------------------------


@attrs.define
class Figures:
    """What one scenario measured; `lost`, `temporaries` and `errors` must stay at zero."""

    scenario: str
    kills: int = 0
    acknowledged: int = 0  # items acknowledged (turns, output items, or restores+archives)
    operations: int = 0  # archives, restores and sweeps acknowledged besides the items
    lost: int = 0  # acknowledged items missing, changed, duplicated or out of order
    temporaries: int = 0  # distinct leftovers found by the checks after the kills
    temporaries_by_kind: Counter[str] = attrs.field(factory=Counter)
    leftovers: set[tuple[str, str]] = attrs.field(factory=set)  # (kind, name) seen
    errors: int = 0  # unexpected exceptions, stuck workers, tracebacks
    info: dict[str, int] = attrs.field(factory=dict)  # counts that are not failures
    failures: list[str] = attrs.field(factory=list)  # the first few, with kill and seed

    def fail(self, kill: int, seed: int, what: str) -> None:
        if len(self.failures) < 8:
            self.failures.append(f"kill {kill} (run seed {seed}): {what}")

    def line(self) -> str:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.temporaries_by_kind.items()))
        info = "".join(f" {k}={n}" for k, n in sorted(self.info.items()))
        return (
            f"crash figures: scenario={self.scenario} seed={SEED} kills={self.kills} "
            f"acknowledged={self.acknowledged} operations={self.operations} lost={self.lost} "
            f"temporaries={self.temporaries}{f' ({kinds})' if kinds else ''} "
            f"errors={self.errors}{info}"
        )


def report(figures: Figures) -> None:
    """Print the figure line (and append it to GREENROOM_CRASH_FIGURES); assert zeros."""
    print("\n" + figures.line())
    for failure in figures.failures:
        print(f"  {failure}")
    if FIGURES_FILE:
        with open(FIGURES_FILE, "a", encoding="utf-8") as out:
            record = attrs.asdict(figures, filter=lambda field, _: field.name != "leftovers")
            record["seed"] = SEED
            out.write(json.dumps(record) + "\n")
    assert figures.kills == KILLS
    assert figures.acknowledged > 0, figures.line()
    summary = "\n".join([figures.line(), *figures.failures])
    assert (figures.lost, figures.temporaries, figures.errors) == (0, 0, 0), summary


# -- running and killing a worker ------------------------------------------------------------


@attrs.frozen
class Run:
    """One worker's life: the whole acknowledgement lines it wrote, and how it ended."""

    lines: list[str]
    killed: bool  # killed by us (else it exited by itself, or stalled)
    stalled: bool
    returncode: int | None
    stderr: str


def kill_after(
    args: list[str],
    *,
    acks: int,
    extra_s: float,
    counted: Callable[[str], bool],
    stderr_path: Path,
) -> Run:
    """Run the worker; SIGKILL it once `acks` counted lines came and `extra_s` passed."""
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    assert proc.stdout is not None
    reader = LineReader(proc.stdout)
    seen = 0
    stalled = killed = False
    try:
        while seen < acks and not reader.eof:
            before = len(reader.lines)
            if reader.read(STALL_S) < 0:
                stalled = True
                break
            seen += sum(1 for line in reader.lines[before:] if counted(line))
        if seen >= acks and extra_s > 0:
            reader.read_for(extra_s)
        killed = proc.poll() is None
    finally:
        proc.kill()  # SIGKILL
        returncode = proc.wait(timeout=30)
    reader.read_rest(STALL_S)  # what it wrote before dying (the pipe closes with it)
    proc.stdout.close()
    return Run(
        reader.lines,
        killed and not stalled,
        stalled,
        returncode,
        stderr_path.read_text(errors="replace"),
    )


def note_run(figures: Figures, run: Run, kill: int, seed: int) -> None:
    """Count the kill; an `error` line, a stall or a worker that exited is an error."""
    figures.kills += run.killed
    for line in run.lines:
        if line.startswith("error "):
            figures.errors += 1
            figures.fail(kill, seed, f"worker: {line[6:]}")
    if run.stalled:
        figures.errors += 1
        figures.fail(kill, seed, f"worker silent for {STALL_S:.0f}s (stuck); stderr: ...")
    elif not run.killed and not any(line.startswith("error ") for line in run.lines):
        figures.errors += 1
        tail = run.stderr.strip().splitlines()[-1:] or ["(nothing on stderr)"]
        figures.fail(kill, seed, f"worker exited by itself ({run.returncode}): {tail[0]}")


# -- what a reopen finds -----------------------------------------------------------------------


def open_runtime(db: Path) -> Runtime:
    return Runtime.open(db, config=CHECK_CONFIG)


Leftovers = set[tuple[str, str]]
"""Temporaries found: (kind, name)."""


def store_temporaries(rt: Runtime) -> Leftovers:
    """Block store files other than `output` (a restore's copy: `output.restoring*`)."""
    found = set()
    for block_id in rt.blocks.ids():
        for info in rt.store.list_files("block", block_id):
            if info.name != "output":
                found.add(("store file", f"{block_id}/{info.name}"))
    return found


def disk_temporaries(db: Path, transcript: Path | None = None) -> Leftovers:
    """Temporaries on disk once the checking runtime is closed.

    In the archive folder: the lock files of runtimes that are gone (`.owner.*.lock`;
    the checking runtime removed its own at close) and any other name ending in `.tmp`
    or starting with a dot (an archive's temporary). In the transcript folder: anything
    but `transcript` (or, without one, anything but transcripts).
    """
    found = set()
    archives = db.with_name(db.name + ".archives")
    if archives.is_dir():
        for entry in archives.iterdir():
            if entry.name.startswith(".owner.") and entry.name.endswith(".lock"):
                found.add(("owner lock", entry.name))
            elif entry.name.endswith(".tmp") or entry.name.startswith("."):
                found.add(("archive .tmp", entry.name))
    transcripts = db.with_name(db.name + ".transcripts")
    if transcripts.is_dir():
        for entry in transcripts.iterdir():
            known = (
                entry.name == transcript.name
                if transcript is not None
                else _TRANSCRIPT.fullmatch(entry.name)
            )
            if not known:
                found.add(("transcript folder", entry.name))
    return found


def unreferenced_archives(db: Path, rt: Runtime) -> int:
    """Archive files no block points at (an archive killed before its commit)."""
    archives = db.with_name(db.name + ".archives")
    if not archives.is_dir():
        return 0
    used = set()
    for block_id in rt.blocks.ids():
        meta = rt.store.get_object("block", block_id).meta
        for key in ("session:archive_path", "session:archive_backup_path"):
            if isinstance(meta.get(key), str):
                used.add(Path(meta[key]).name)
    return sum(
        1
        for entry in archives.iterdir()
        if entry.name.endswith((".zst", ".gz")) and entry.name not in used
    )


def note_temporaries(figures: Figures, found: Leftovers, kill: int, seed: int) -> None:
    """Count the leftovers not seen by an earlier check (a file left for good counts once)."""
    new = found - figures.leftovers
    if new:
        figures.leftovers |= new
        figures.temporaries = len(figures.leftovers)
        figures.temporaries_by_kind.update(kind for kind, _ in new)
        shown = ", ".join(f"{kind} {name}" for kind, name in sorted(new)[:4])
        figures.fail(kill, seed, f"{len(new)} left after reopen: {shown}")


# -- looking for acknowledged items in a block's output ----------------------------------------


@attrs.frozen
class BlockCheck:
    missing: list[int]  # indexes (in acknowledgement order) of items not found
    disordered: list[int]  # found, but before an item acknowledged earlier
    duplicated: list[str]  # labels found more than once


def check_output(
    data: bytes, block: str, acked: list[tuple[int, int]], seeds: dict[int, int]
) -> BlockCheck:
    """Find each acknowledged item (run, index) of `block`, whole and in order, in `data`."""
    labels = Counter(m.group(0) for m in _ITEM.finditer(data) if m.group(1) == block.encode())
    duplicated = sorted(label.decode() for label, n in labels.items() if n > 1)
    missing, disordered = [], []
    position = 0
    for number, (run, index) in enumerate(acked):
        expected = item_bytes(seeds[run], block, run, index)
        found = data.find(expected, position)
        if found >= 0:
            position = found + len(expected)
        elif data.find(expected) >= 0:
            disordered.append(number)
        else:
            missing.append(number)
    return BlockCheck(missing, disordered, duplicated)


def read_block(rt: Runtime, block_id: str) -> bytes:
    try:
        return rt.blocks.get(block_id).read_output().data
    except NotFound:
        return b""  # its archive was pruned and nothing came since


def describe(acked: list[tuple[int, int]], numbers: list[int], this_run: int) -> str:
    items = [acked[n] for n in numbers]
    recent = sum(1 for run, _ in items if run == this_run)
    shown = ", ".join(f"r{run}-{index}" for run, index in items[:6])
    more = f" and {len(items) - 6} more" if len(items) > 6 else ""
    return f"{shown}{more} ({recent} of them acknowledged by the run just killed)"


# -- the scenarios ----------------------------------------------------------------------------


def crash_transcript(tmp_path: Path, kills: int) -> Figures:
    """Turns through `on_turn_end`, each acknowledged once it returned."""
    figures = Figures("transcript turns")
    rng = random.Random(f"{SEED}:transcript")
    db = tmp_path / "crash.db"
    path: Path | None = None
    seeds: dict[int, int] = {}
    acked: list[tuple[int, int]] = []
    lost: set[tuple[int, int]] = set()
    for kill in range(kills):
        seeds[kill] = seed = rng.getrandbits(31)
        run = kill_after(
            ["transcript", str(db), str(seed), str(kill), str(path) if path else "-"],
            acks=rng.randint(1, 40),
            extra_s=0.0 if rng.random() < 0.3 else rng.uniform(0, 0.02),
            counted=lambda line: line.startswith("turn "),
            stderr_path=tmp_path / "worker.err",
        )
        note_run(figures, run, kill, seed)
        for line in run.lines:
            word, *rest = line.split(" ", 1)
            if word == "path":
                path = Path(rest[0])
            elif word == "turn":
                r, i = rest[0].split()
                acked.append((int(r), int(i)))
        if path is None:
            continue
        with open_runtime(db) as rt:
            transcript = rt.transcripts.resume(path, compaction=NO_COMPACTION)
            context = transcript.context()
            transcript.close()
            found = store_temporaries(rt)
        found |= disk_temporaries(db, path)
        note_temporaries(figures, found, kill, seed)
        stored: dict[tuple[int, int], list[str]] = {}
        order: list[tuple[int, int]] = []
        for message in context:
            assert isinstance(message, UserMessage | AssistantMessage), message
            match = _TURN.match(message.text)
            assert match is not None, message
            key = (int(match.group(1)), int(match.group(2)))
            if isinstance(message, UserMessage):
                order.append(key)
            stored.setdefault(key, []).append(message.text)
        duplicated = [key for key, n in Counter(order).items() if n > 1]
        position = {key: n for n, key in enumerate(order)}
        bad: list[str] = []
        last = -1
        for key in acked:
            if key in lost:
                continue
            if stored.get(key) != list(turn_texts(seeds[key[0]], *key)):
                lost.add(key)
                bad.append(f"r{key[0]}-{key[1]} missing or changed")
            elif position[key] < last or key in duplicated:
                lost.add(key)
                bad.append(f"r{key[0]}-{key[1]} out of order or duplicated")
            else:
                last = position[key]
        if bad:
            figures.fail(kill, seed, f"{len(bad)} acknowledged turns: {'; '.join(bad[:4])}")
    figures.acknowledged = len(acked)
    figures.lost = len(lost)
    return figures


def crash_flush(tmp_path: Path, kills: int) -> Figures:
    """Output appended to two blocks, acknowledged once `flush()` returned."""
    figures = Figures("appends then flush()")
    rng = random.Random(f"{SEED}:flush")
    db = tmp_path / "crash.db"
    seeds: dict[int, int] = {}
    acked: dict[str, list[tuple[int, int]]] = {block: [] for block in FLUSH_BLOCKS}
    lost: set[tuple[str, int, int]] = set()
    for kill in range(kills):
        seeds[kill] = seed = rng.getrandbits(31)
        run = kill_after(
            ["flush", str(db), str(seed), str(kill)],
            acks=rng.randint(1, 60),
            extra_s=0.0 if rng.random() < 0.3 else rng.uniform(0, 0.02),
            counted=lambda line: line.startswith("item "),
            stderr_path=tmp_path / "worker.err",
        )
        note_run(figures, run, kill, seed)
        for line in run.lines:
            if line.startswith("item "):
                _, block, r, i = line.split()
                acked[block].append((int(r), int(i)))
        with open_runtime(db) as rt:
            outputs = {block: read_block(rt, block) for block in FLUSH_BLOCKS}
            found = store_temporaries(rt)
        found |= disk_temporaries(db)
        note_temporaries(figures, found, kill, seed)
        for block, data in outputs.items():
            check_block(figures, lost, block, data, acked[block], seeds, 0, kill, seed)
    figures.acknowledged = sum(len(items) for items in acked.values())
    figures.lost += len(lost)
    return figures


def check_block(
    figures: Figures,
    lost: set[tuple[str, int, int]],
    block: str,
    data: bytes,
    acked: list[tuple[int, int]],
    seeds: dict[int, int],
    losable: int,
    kill: int,
    seed: int,
) -> None:
    """Add what `data` lacks of `acked` to `lost`; the first `losable` items may be
    missing as a whole prefix (a pruned archive held them)."""
    result = check_output(data, block, acked, seeds)
    missing_set = set(result.missing)
    pruned_prefix = 0
    while pruned_prefix < min(losable, len(acked)) and pruned_prefix in missing_set:
        pruned_prefix += 1
    missing = [n for n in result.missing if n >= pruned_prefix]
    new_missing = [n for n in missing if (block, *acked[n]) not in lost]
    new_disordered = [n for n in result.disordered if (block, *acked[n]) not in lost]
    for n in missing + result.disordered:
        lost.add((block, *acked[n]))
    if new_missing:
        figures.fail(
            kill,
            seed,
            f"block {block}: {len(new_missing)} acknowledged items missing: "
            + describe(acked, new_missing, kill),
        )
    if new_disordered:
        figures.fail(
            kill,
            seed,
            f"block {block}: {len(new_disordered)} acknowledged items out of order: "
            + describe(acked, new_disordered, kill),
        )
    if result.duplicated:
        figures.info["duplicated"] = figures.info.get("duplicated", 0) + len(result.duplicated)
        figures.lost += len(result.duplicated)
        figures.fail(kill, seed, f"block {block}: duplicated items {result.duplicated[:6]}")


def crash_archive(tmp_path: Path, kills: int) -> Figures:
    """Appends and flushes on a thread while archives, restores and sweeps (pruning
    to a small budget) run: only a prune may take acknowledged items, and only all of
    a block's oldest ones at once."""
    figures = Figures("archive/restore/sweep with pruning")
    rng = random.Random(f"{SEED}:archive")
    db = tmp_path / "crash.db"
    seeds: dict[int, int] = {}
    acked: dict[str, list[tuple[int, int]]] = {block: [] for block in ARCHIVE_BLOCKS}
    # How many of a block's acknowledged items a prune (acknowledged, or found by a
    # check after a kill) may have taken.
    losable = dict.fromkeys(ARCHIVE_BLOCKS, 0)
    pruned_values: dict[str, set[Any]] = {block: set() for block in ARCHIVE_BLOCKS}
    lost: set[tuple[str, int, int]] = set()
    ops: Counter[str] = Counter()
    stray = 0
    for kill in range(kills):
        seeds[kill] = seed = rng.getrandbits(31)
        run = kill_after(
            ["archive", str(db), str(seed), str(kill)],
            acks=rng.randint(1, 60),
            extra_s=0.0 if rng.random() < 0.3 else rng.uniform(0, 0.05),
            counted=lambda line: line.startswith(("item ", "op ")),
            stderr_path=tmp_path / "worker.err",
        )
        note_run(figures, run, kill, seed)
        for line in run.lines:
            word, *rest = line.split()
            if word == "item":
                block, r, i = rest
                acked[block].append((int(r), int(i)))
            elif word == "op":
                ops[rest[0]] += 1
            elif word == "pruned":
                block, value = rest
                losable[block] = len(acked[block])
                pruned_values[block].add(int(value))
        with open_runtime(db) as rt:
            outputs = {}
            for block in ARCHIVE_BLOCKS:
                outputs[block] = read_block(rt, block)
                pruned_at = rt.store.get_object("block", block).meta.get(PRUNED_AT)
                if pruned_at and pruned_at not in pruned_values[block]:
                    # Pruned by a sweep the kill cut short, before its line: no item of
                    # this run was acknowledged after it (the worker's lock).
                    losable[block] = len(acked[block])
                    pruned_values[block].add(pruned_at)
            found = store_temporaries(rt)
            stray = max(stray, unreferenced_archives(db, rt))
        found |= disk_temporaries(db)
        note_temporaries(figures, found, kill, seed)
        for block, data in outputs.items():
            check_block(figures, lost, block, data, acked[block], seeds, losable[block], kill, seed)
    figures.acknowledged = sum(len(items) for items in acked.values())
    figures.operations = sum(ops.values())
    figures.lost += len(lost)
    figures.info.update({f"{op}s": n for op, n in sorted(ops.items())})
    figures.info["prunes"] = sum(len(values) for values in pruned_values.values())
    figures.info["unreferenced_archives_max"] = stray
    return figures


@attrs.define
class _Exports:
    """`greenroom export` run over and over in another process until told to stop."""

    db: Path
    folder: Path
    expected: bytes
    results: Counter[str] = attrs.field(factory=Counter)
    problems: list[str] = attrs.field(factory=list)
    stop: threading.Event = attrs.field(factory=threading.Event)

    def loop(self) -> None:
        number = 0
        while not self.stop.is_set():
            target = self.folder / f"export-{number}.out"
            done = subprocess.run(
                [*EXPORT, str(self.db), SHARED_BLOCK, "-o", str(target)],
                capture_output=True,
                stdin=subprocess.DEVNULL,
                timeout=120,
                check=False,
            )
            stderr = done.stderr.decode(errors="replace").strip()
            if done.returncode == 0:
                data = target.read_bytes()
                if data == self.expected:
                    self.results["ok"] += 1
                else:
                    self.results["wrong"] += 1
                    self.problems.append(
                        f"export gave {len(data)} bytes, not the {len(self.expected)} appended"
                    )
            elif done.returncode == 1 and "Traceback" not in stderr and "\n" not in stderr:
                self.results["refused"] += 1  # one line: a race it reported
            else:
                self.results["traceback"] += 1
                self.problems.append(f"export exit {done.returncode}: {stderr[-300:]}")
            target.unlink(missing_ok=True)
            number += 1


def setup_shared(db: Path, expected: bytes) -> None:
    with open_runtime(db) as rt:
        block = rt.blocks.get(SHARED_BLOCK)
        block.append_output(expected)
        block.flush()


def crash_restore_export(tmp_path: Path, kills: int) -> Figures:
    """One process archives and restores a block in a loop (killed), another runs
    `greenroom export` on it: every read, export and reopen gives the bytes appended."""
    figures = Figures("restore + export, two processes")
    rng = random.Random(f"{SEED}:restorer")
    base_seed = rng.getrandbits(31)
    expected = shared_content(base_seed)
    generation = 0
    db = tmp_path / f"crash-{generation}.db"
    setup_shared(db, expected)
    exported: Counter[str] = Counter()
    conflicts = 0
    seed = base_seed  # (one content for every run: the base seed's)
    for kill in range(kills):
        exports = _Exports(db, tmp_path, expected)
        exporter = threading.Thread(target=exports.loop, daemon=True)
        exporter.start()
        try:
            run = kill_after(
                ["restorer", str(db), str(base_seed), str(kill)],
                acks=rng.randint(1, 6),
                extra_s=0.0 if rng.random() < 0.2 else rng.uniform(0, 0.3),
                counted=lambda line: line.startswith(("op ", "bad ", "conflict ")),
                stderr_path=tmp_path / "worker.err",
            )
        finally:
            exports.stop.set()
            exporter.join(timeout=300)
        note_run(figures, run, kill, seed)
        exported.update(exports.results)
        for problem in exports.problems:
            figures.fail(kill, seed, problem)
        figures.lost += exports.results["wrong"]
        figures.errors += exports.results["traceback"]
        figures.acknowledged += sum(1 for line in run.lines if line.startswith("op "))
        conflicts += sum(1 for line in run.lines if line.startswith("conflict "))
        bad = [line[4:] for line in run.lines if line.startswith("bad ")]
        if bad:  # (once wrong, every later read is: counted once per run)
            figures.lost += 1
            figures.fail(kill, seed, f"the restorer read back: {bad[0]} ({len(bad)} reads)")
        with open_runtime(db) as rt:
            data = read_block(rt, SHARED_BLOCK)
            found = store_temporaries(rt)
        found |= disk_temporaries(db)
        note_temporaries(figures, found, kill, seed)
        if data != expected:
            figures.lost += 1
            figures.fail(
                kill, seed, f"after reopen the output is {len(data)} bytes, not {len(expected)}"
            )
            # Corrupt for good: the next kills start again on a new database.
            generation += 1
            db = tmp_path / f"crash-{generation}.db"
            setup_shared(db, expected)
    figures.info.update({f"exports_{k}": n for k, n in sorted(exported.items())})
    figures.info["conflicts"] = conflicts
    figures.info["databases"] = generation + 1
    return figures


# -- the tests --------------------------------------------------------------------------------


def test_transcript_turns_survive_kill_9(tmp_path: Path) -> None:
    report(crash_transcript(tmp_path, KILLS))


def test_flushed_block_output_survives_kill_9(tmp_path: Path) -> None:
    report(crash_flush(tmp_path, KILLS))


def test_archive_restore_and_pruning_sweeps_survive_kill_9(tmp_path: Path) -> None:
    report(crash_archive(tmp_path, KILLS))


def test_restore_in_one_process_export_in_another_survive_kill_9(tmp_path: Path) -> None:
    report(crash_restore_export(tmp_path, KILLS))
