"""Sessions at host scale: creating 100,000 sessions and feeding each once, against SQLite.

A session is what a host keeps per agent: a block (`rt.blocks.get(f"s{i}")`) with 3
lines of output (`append_output`, one 60-byte NDJSON line per call), a replay buffer
with 3 events (`rt.replay.publish`) and a durable execution of a registered async
strategy that asks one question (`bench.ask`, `await ctx.llm(...)`), paused on it. All
on a real SQLite file in a temporary folder, with the default config (synchronous FULL).

1. Creation of N = 100,000 sessions, the way a busy host makes them, many in flight:
   each session's block, lines, events and `rt.executions.send_start(...)` are sent
   without waiting; then every start's future is waited for and its
   `rt.executions.outcome(...)` must be `needs_response`; then `rt.settle()` (every
   actor idle, everything stored). Timed whole: wall seconds (target <= 15 s), the
   process's CPU seconds (user + system, all threads), peak RSS (`ru_maxrss`, target
   <= 1,000 MB; MB = 10^6 bytes), us per session and the store commits it took. Also
   where the time went: the wall split into sending, waiting for the starts and the
   last settle; the CPU by thread (the host's thread, the dispatcher workers, the
   store's committer; from /proc/self/task); and the time in Python's cyclic garbage
   collector (`gc.callbacks`), which grows with the number of live objects.
2. Then every execution fed its answer once (`send_feed`, all in flight; every future
   waited for, each outcome `completed`; then `rt.settle()`): wall seconds (target <= 3
   s), feeds/s and store commits; the same breakdown of where the time went.
3. The same creation with passivation (`execution_passivate_after_s=1`, the GC every
   second), as `bench_executions.py` does it: on a `FakeClock`, in batches of 2,000
   sessions in flight, the clock advanced 2 s after each (the GC passivates the paused
   executions that idled past 1 s). Peak RSS (target <= 500 MB), the executions left in
   memory and passivated, its wall time. Once, after the rounds.
4. 2,000 sessions created and then fed as in parts 1 and 2, while another thread of
   the process runs Python, beside the same alone (alternating, 2 rounds each; no
   target): Python's `sqlite3` lets go of the interpreter's lock for every row a
   statement reads or writes, and such a thread makes taking it back cost up to a
   switch interval (5 ms).

The baseline is what the storage alone costs, with no actors: one `sqlite3` connection
(WAL, synchronous=FULL) on a fresh file with the store's tables, inserting per session
an object row, the 3 output lines in one chunk row and a journal row (a started
execution's journal, as greenroom writes it), 1,000 sessions per transaction. Parts 1
and 2 alternate with it, greenroom then the baseline, twice, each in a fresh process and
database; the medians are printed, with the range of the per-round ratios (greenroom
creation wall / baseline wall, lower is better).

The targets are set for 100,000 sessions; at another N (`--sessions N`, `--quick`) they
are scaled in proportion (15 s x N / 100,000, and so on). The CPU model heads the
output, as the figures depend on it. Every part runs in a child process, so each starts
from a clean heap and its `ru_maxrss` is its own (the parent stays small: a child's
high-water mark starts at its parent's RSS at the fork).

    .venv/bin/python benchmarks/bench_sessions.py                  # the full run, 100,000
    .venv/bin/python benchmarks/bench_sessions.py --quick          # 10,000, a smoke test
    .venv/bin/python benchmarks/bench_sessions.py --sessions 30000 # another N

`--json PATH` also writes the headline figures there as rows for `run_all.py`.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import random
import re
import resource
import sqlite3
import statistics
import tempfile
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import greenroom
from greenroom import AsyncExecutionContext, FakeClock, PendingStep, Runtime, RuntimeConfig
from greenroom.clock import SystemClock, stopwatch

from _child import BusyThread, run_child, status_kb  # isort: skip (this folder's own module)
from _table import Row, Target, add_json_option, cpu_model, figure, write_rows  # isort: skip

SESSIONS = 100_000  # the full run's N; the targets are set for this many
QUICK_SESSIONS = 10_000
ROUNDS = 2  # parts 1 and 2 alternate greenroom and the baseline this many times
LINES = 3  # output lines per session
EVENTS = 3  # replay events per session
LINE_BYTES = 60
LINE_POOL = 1024  # distinct lines, made before the clock starts and used in turn
BASELINE_BATCH = 1_000  # sessions per transaction in the baseline
PASSIVATE_BATCH = 2_000  # part 3: sessions in flight before the fake clock moves on
PASSIVATE_AFTER_S = 1.0
WAIT_S = 600.0  # the longest wait for one future or a settle: a stuck run fails, not hangs
MB = 1_000_000
STRATEGY = "bench.ask"

# The targets for SESSIONS sessions, as the docstring gives them; scaled with N.
CREATE_TARGET_S = 15.0
FEED_TARGET_S = 3.0
RSS_TARGET_MB = 1_000.0
PASSIVATED_RSS_TARGET_MB = 500.0
BUSY_SESSIONS = 2_000  # part 4: created and fed with and without a busy thread
BUSY_ROUNDS = 2


@greenroom.strategy(STRATEGY)
async def ask(ctx: AsyncExecutionContext, topic: str) -> str:
    """One question, then done: the session pauses on it until fed."""
    return await ctx.llm(f"about {topic}")


_TEXT = (
    "the agent read file src/main.py and found def parse(self, raw): return json.loads "
    "running pytest -q 12 passed 1 failed AssertionError expected 200 got 404 retrying "
    "edit applied to tests/test_api.py line 42 ok thinking about the next step"
)
_WORDS = tuple(_TEXT.split())


def line_pool() -> list[bytes]:
    """LINE_POOL NDJSON text lines of exactly LINE_BYTES bytes, newline included."""
    rng = random.Random(5)
    pool = []
    for _ in range(LINE_POOL):
        words = " ".join(rng.choice(_WORDS) for _ in range(12))
        head = ('{"type":"text","text":"' + words)[: LINE_BYTES - 3].ljust(LINE_BYTES - 3)
        pool.append(head.encode() + b'"}\n')
    return pool


def _cpu_s() -> float:
    """CPU seconds of this process so far, all threads (user + system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_kb() -> int:
    """This process's peak RSS so far, in KB (`ru_maxrss` on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def thread_cpu_s() -> dict[str, float]:
    """CPU seconds of each live thread so far, by name with its numbers as `N` (so a
    pool's threads add up), from /proc/self/task (empty off Linux)."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    out: dict[str, float] = {}
    for thread in threading.enumerate():
        try:
            stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # from field 3, the state, on
        name = re.sub(r"\d+", "N", thread.name)
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def _since(before: dict[str, float]) -> dict[str, float]:
    """Each thread group's CPU seconds since `before` (a `thread_cpu_s()`)."""
    now = thread_cpu_s()
    return {name: now[name] - before.get(name, 0.0) for name in now}


class GcTime:
    """The time Python's cyclic garbage collector takes (`gc.callbacks`), and its runs."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.runs = 0
        self.full = 0  # collections of the oldest generation: every tracked object
        self._began = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        # A collection holds the GIL throughout: no two overlap.
        if phase == "start":
            self._began = stopwatch()
            return
        self.seconds += stopwatch() - self._began
        self.runs += 1
        self.full += info["generation"] == 2

    def take(self) -> dict[str, float]:
        """The figures since the last `take` (or the start)."""
        out = {"gc_s": self.seconds, "gc_runs": self.runs, "gc_full": self.full}
        self.seconds, self.runs, self.full = 0.0, 0, 0
        return out


def scaled(bound: float, count: int) -> float:
    """A target set for SESSIONS sessions, scaled in proportion to `count`."""
    return bound * count / SESSIONS


# -- greenroom ------------------------------------------------------------------------


def send_session(rt: Runtime, i: int, lines: list[bytes]) -> PendingStep:
    """Send session `i`'s block lines, replay events and start; nothing waits."""
    session = f"s{i}"
    block = rt.blocks.get(session)
    for k in range(LINES):
        block.append_output(lines[(i * LINES + k) % LINE_POOL])
    for k in range(EVENTS):
        rt.replay.publish(session, {"type": "event", "n": k})
    return rt.executions.send_start(STRATEGY, kwargs={"topic": f"topic {i}"}, timeout=WAIT_S)


def paused_session(rt: Runtime, pending: PendingStep) -> str:
    """Wait for a start; the id of its session, paused on its question."""
    pending.future.wait(pending.timeout)
    result = rt.executions.outcome(pending)
    assert result.status == "needs_response", result
    return result.session_id


def _open(folder: str, config: RuntimeConfig, clock: FakeClock | None = None) -> Runtime:
    """The runtime on a new database in `folder`, `bench.ask` registered and warmed up:
    one session made and fed before the clock starts (its actors' code paths, the
    execution GC and the dispatcher threads are up)."""
    rt = Runtime.open(Path(folder) / "sessions.db", config=config, clock=clock)
    rt.executions.register(STRATEGY, ask)
    warm = paused_session(rt, send_session(rt, -1, line_pool()))
    rt.executions.send_feed(warm, "answer", timeout=WAIT_S).future.wait(WAIT_S)
    rt.settle(WAIT_S)
    return rt


def _phase(
    rt: Runtime,
    marks: tuple[float, float, float, float],
    cpu: float,
    threads: dict[str, float],
    commits: int,
) -> dict[str, Any]:
    """A phase's figures: `marks` are when it began, sent everything, had every answer
    and was settled; `cpu`, `threads` and `commits` were read when it began."""
    began, sent, answered, done = marks
    return {
        "wall_s": done - began,
        "cpu_s": _cpu_s() - cpu,
        "threads": _since(threads),
        "send_s": sent - began,
        "wait_s": answered - sent,
        "settle_s": done - answered,
        "commits": rt.metrics()["store_commits"] - commits,
        "peak_kb": _peak_kb(),
    }


def _check_stored(rt: Runtime, count: int, states: dict[str, int] | None) -> None:
    """Every session (the warm-up's too) is stored: output, execution (in `states`, by
    its stored state, when given) and replay events."""
    sessions = count + 1
    outputs = rt.store.files_named("block", "output")
    stored = sum(info.size for info in outputs.values())
    assert len(outputs) == sessions, (len(outputs), sessions)
    assert stored == sessions * LINES * LINE_BYTES, (stored, sessions * LINES * LINE_BYTES)
    executions = rt.store.list_objects("execution")
    assert len(executions) == sessions, (len(executions), sessions)
    if states is not None:
        found = Counter(obj.meta.get("state") for obj in executions)
        assert found == states, (found, states)
    metrics = rt.metrics()
    assert metrics["replay_events_appended"] == sessions * EVENTS, metrics
    assert metrics["execution_journal_failures"] == 0, metrics


def _rows_per_session(folder: str, count: int) -> dict[str, float]:
    """The rows of each of the store's tables, per session (the warm-up's included)."""
    conn = sqlite3.connect(Path(folder) / "sessions.db")
    try:
        tables = [
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        return {
            table: conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] / (count + 1)
            for table in tables
        }
    finally:
        conn.close()


def child_green(count: int, folder: str) -> dict[str, Any]:
    """Parts 1 and 2: create `count` sessions, all in flight; then feed each once."""
    lines = line_pool()
    rt = _open(folder, RuntimeConfig())
    try:
        empty_kb = status_kb("VmRSS")
        collector = GcTime()
        commits = rt.metrics()["store_commits"]
        threads = thread_cpu_s()
        cpu = _cpu_s()
        began = stopwatch()
        pending = [send_session(rt, i, lines) for i in range(count)]
        sent = stopwatch()
        session_ids = [paused_session(rt, step) for step in pending]
        answered = stopwatch()
        rt.settle(WAIT_S)
        created = stopwatch()
        create = {
            **_phase(rt, (began, sent, answered, created), cpu, threads, commits),
            "empty_kb": empty_kb,
            "active": rt.metrics()["executions_active"],
            **collector.take(),
        }
        del pending
        _check_stored(rt, count, {"running": count, "completed": 1})
        collector.take()

        commits = rt.metrics()["store_commits"]
        threads = thread_cpu_s()
        cpu = _cpu_s()
        began = stopwatch()
        feeds = [rt.executions.send_feed(sid, "answer", timeout=WAIT_S) for sid in session_ids]
        sent = stopwatch()
        for step in feeds:
            step.future.wait(step.timeout)
            result = rt.executions.outcome(step)
            assert result.status == "completed", result
        answered = stopwatch()
        rt.settle(WAIT_S)
        fed = stopwatch()
        feed = {
            **_phase(rt, (began, sent, answered, fed), cpu, threads, commits),
            **collector.take(),
        }
        _check_stored(rt, count, {"completed": count + 1})
        slow = rt.metrics()["slow_handlers"]
    finally:
        close_began = stopwatch()
        rt.close()
        close_s = stopwatch() - close_began
    return {
        "count": count,
        "create": create,
        "feed": feed,
        "slow_handlers": slow,
        "close_s": close_s,
        "rows": _rows_per_session(folder, count),
    }


def child_passivated(count: int, folder: str) -> dict[str, Any]:
    """Part 3: the same creation, passivated as it goes, PASSIVATE_BATCH in flight."""
    lines = line_pool()
    clock = FakeClock()
    config = RuntimeConfig(execution_passivate_after_s=PASSIVATE_AFTER_S, gc_interval_s=1.0)
    rt = _open(folder, config, clock)
    try:
        clock.advance(2 * PASSIVATE_AFTER_S)  # the warm-up's session leaves memory too
        empty_kb = status_kb("VmRSS")
        collector = GcTime()
        commits = rt.metrics()["store_commits"]
        cpu = _cpu_s()
        advancing = 0.0
        began = stopwatch()
        for first in range(0, count, PASSIVATE_BATCH):
            batch = range(first, min(first + PASSIVATE_BATCH, count))
            pending = [send_session(rt, i, lines) for i in batch]
            for step in pending:
                paused_session(rt, step)
            # Idle past execution_passivate_after_s: the GC's reaps passivate them.
            advance_began = stopwatch()
            clock.advance(2 * PASSIVATE_AFTER_S)
            advancing += stopwatch() - advance_began
        rt.settle(WAIT_S)
        wall = stopwatch() - began
        metrics = rt.metrics()
        out = {
            "count": count,
            "wall_s": wall,
            "advance_s": advancing,
            "cpu_s": _cpu_s() - cpu,
            "commits": metrics["store_commits"] - commits,
            "peak_kb": _peak_kb(),
            "rss_kb": status_kb("VmRSS"),
            "empty_kb": empty_kb,
            "in_memory": metrics["executions_active"],
            "passivated": metrics["executions_passivated"],
            "actors_alive": metrics["actors_alive"],
            **collector.take(),
        }
        _check_stored(rt, count, None)
    finally:
        rt.close()
    return out


def child_busy(count: int, folder: str) -> dict[str, Any]:
    """Part 4: `count` sessions created (all in flight, as part 1) and then fed (as part
    2), alone and while a `BusyThread` runs, alternating, 2 rounds each, on sessions of
    their own in one runtime: the median seconds of each."""
    lines = line_pool()
    rt = _open(folder, RuntimeConfig())
    took: dict[str, list[float]] = {
        key: [] for key in ("create", "create_busy", "feed", "feed_busy")
    }
    try:
        first = 0
        for _ in range(BUSY_ROUNDS):
            for case in ("", "_busy"):
                with BusyThread() if case else contextlib.nullcontext():
                    began = stopwatch()
                    pending = [send_session(rt, i, lines) for i in range(first, first + count)]
                    ids = [paused_session(rt, step) for step in pending]
                    rt.settle(WAIT_S)
                    took["create" + case].append(stopwatch() - began)
                    began = stopwatch()
                    feeds = [rt.executions.send_feed(sid, "answer", timeout=WAIT_S) for sid in ids]
                    for step in feeds:
                        step.future.wait(step.timeout)
                        assert rt.executions.outcome(step).status == "completed"
                    rt.settle(WAIT_S)
                    took["feed" + case].append(stopwatch() - began)
                first += count
    finally:
        rt.close()
    return {"count": count, **{key: statistics.median(values) for key, values in took.items()}}


# -- the baseline: the storage alone ----------------------------------------------------


def _baseline_db(path: Path) -> sqlite3.Connection:
    """A new WAL database, synchronous FULL, with the store's object and chunk tables."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(
        "CREATE TABLE objects (kind TEXT, id TEXT, meta TEXT NOT NULL, version INTEGER NOT "
        "NULL, created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL, PRIMARY KEY (kind, id))"
    )
    conn.execute(
        "CREATE TABLE file_chunks (kind TEXT, id TEXT, name TEXT, seq INTEGER, start INTEGER "
        "NOT NULL, data BLOB NOT NULL, PRIMARY KEY (kind, id, name, seq))"
    )
    return conn


def _journal(topic: str) -> bytes:
    """A started `bench.ask` execution's journal, as greenroom writes it."""
    start = {"k": "start", "strategy": STRATEGY, "args": [], "kwargs": {"topic": topic}}
    query = {
        "prompt": f"about {topic}",
        "system": None,
        "max_tokens": 1024,
        "grounded": False,
        "underspecified": False,
    }
    ask_record = {"k": "ask", "round": 1, "queries": [query]}
    return (json.dumps(start) + "\n" + json.dumps(ask_record) + "\n").encode()


def child_baseline(count: int, folder: str) -> dict[str, Any]:
    """The same sessions as raw rows, BASELINE_BATCH sessions per transaction."""
    lines = line_pool()
    clock = SystemClock()
    conn = _baseline_db(Path(folder) / "baseline.db")
    insert_object = "INSERT INTO objects VALUES (?, ?, ?, 1, ?, ?)"
    insert_chunk = "INSERT INTO file_chunks VALUES (?, ?, ?, 0, 0, ?)"
    try:
        commits = 0
        cpu = _cpu_s()
        began = stopwatch()
        for first in range(0, count, BASELINE_BATCH):
            objects: list[tuple[str, str, str, int, int]] = []
            chunks: list[tuple[str, str, str, bytes]] = []
            now = clock.now_ms()
            for i in range(first, min(first + BASELINE_BATCH, count)):
                session = f"s{i}"
                meta = {"view": "agent", "session:start_ts_ms": now, "session:line_count": LINES}
                objects.append(("block", session, json.dumps(meta), now, now))
                output = b"".join(lines[(i * LINES + k) % LINE_POOL] for k in range(LINES))
                chunks.append(("block", session, "output", output))
                chunks.append(("execution", f"s-{i:032x}", "journal", _journal(f"topic {i}")))
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(insert_object, objects)
            conn.executemany(insert_chunk, chunks)
            conn.execute("COMMIT")
            commits += 1
        wall = stopwatch() - began
        cpu = _cpu_s() - cpu
        stored = conn.execute("SELECT count(*) FROM file_chunks").fetchone()[0]
        assert stored == 2 * count, (stored, count)
    finally:
        conn.close()
    return {"wall_s": wall, "cpu_s": cpu, "commits": commits, "peak_kb": _peak_kb()}


# -- running --------------------------------------------------------------------------

CHILDREN: dict[str, Callable[[int, str], dict[str, Any]]] = {
    "green": child_green,
    "passivated": child_passivated,
    "baseline": child_baseline,
    "busy": child_busy,
}


def child(name: str, count: int) -> dict[str, Any]:
    """Run child `name` on `count` sessions in a fresh temporary folder."""
    with tempfile.TemporaryDirectory(prefix="bench-sessions-") as tmp:
        return run_child(__file__, "--child", name, "--sessions", count, "--folder", tmp)


def _mb(kb: float) -> float:
    return kb * 1024 / MB


def _verdict(target: Target, value: float) -> str:
    return "PASS" if target.met(value) else "FAIL"


def _listed(values: list[float], fmt: str) -> str:
    return ", ".join(format(value, fmt) for value in values)


def creation(count: int, green: list[dict[str, Any]], base: list[dict[str, Any]]) -> list[Row]:
    """Part 1's printout and rows."""
    made = [g["create"] for g in green]
    wall = statistics.median(c["wall_s"] for c in made)
    cpu = statistics.median(c["cpu_s"] for c in made)
    peak = statistics.median(_mb(c["peak_kb"]) for c in made)
    commits = statistics.median(c["commits"] for c in made)
    base_wall = statistics.median(b["wall_s"] for b in base)
    ratios = [c["wall_s"] / b["wall_s"] for c, b in zip(made, base, strict=True)]
    wall_target = Target("<=", scaled(CREATE_TARGET_S, count), on="value")
    rss_target = Target("<=", scaled(RSS_TARGET_MB, count), on="value")
    label = f"raw SQLite rows, {BASELINE_BATCH:,} sessions per transaction"
    print(
        f"create {count:,} sessions, all in flight (block + {LINES} lines, {EVENTS} replay "
        f"events, a durable execution paused on one question), until rt.settle(); medians "
        f"of {ROUNDS} rounds"
    )
    print(
        f"  greenroom {wall:7.2f} s wall ({wall / count * 1e6:,.0f} us per session)  "
        f"target <= {wall_target.bound:g} s: {_verdict(wall_target, wall)}"
    )
    print(
        f"  baseline  {base_wall:7.2f} s wall ({base_wall / count * 1e6:,.1f} us per session; "
        f"{label})"
    )
    print(
        f"  ratio greenroom / baseline {wall / base_wall:.1f}, rounds "
        f"{min(ratios):.1f}-{max(ratios):.1f} (lower is better)"
    )
    print(
        f"  rounds: greenroom {_listed([c['wall_s'] for c in made], '.2f')} s; baseline "
        f"{_listed([b['wall_s'] for b in base], '.2f')} s"
    )
    print(
        f"  process CPU {cpu:.1f} s ({cpu / wall:.2f} cores; baseline "
        f"{statistics.median(b['cpu_s'] for b in base):.2f} s)"
    )
    empty = statistics.median(_mb(c["empty_kb"]) for c in made)
    print(
        f"  peak RSS {peak:,.0f} MB (target <= {rss_target.bound:,.0f} MB: "
        f"{_verdict(rss_target, peak)}); the empty runtime {empty:,.0f} MB, so "
        f"{(peak - empty) * MB / count:,.0f} bytes per session; baseline peak "
        f"{statistics.median(_mb(b['peak_kb']) for b in base):,.0f} MB"
    )
    print(
        f"  where the wall went (median round): sending {_mid(made, 'send_s'):.2f} s, "
        f"waiting for the starts {_mid(made, 'wait_s'):.2f} s, the last settle "
        f"{_mid(made, 'settle_s'):.2f} s"
    )
    print(f"  CPU by thread (median round): {_by_thread(_mid_round(made))}")
    print(f"  {_gc_line(_mid_round(made))}")
    rows_per = green[0]["rows"]
    print(
        f"  store commits {commits:,.0f} ({count / max(commits, 1):,.0f} sessions per commit; "
        f"baseline {base[0]['commits']:,}); rows per session: "
        + ", ".join(f"{table} {n:.2f}" for table, n in sorted(rows_per.items()))
        + " (at the end, fed)"
        + f"; executions in memory {made[0]['active']:,}"
    )
    print(
        f"  slow handlers {_listed([g['slow_handlers'] for g in green], 'd')}; "
        f"rt.close() {_listed([g['close_s'] for g in green], '.1f')} s (not timed)"
    )
    name = f"create {count:,} sessions"
    return [
        figure(
            f"{name}: wall",
            wall,
            "s",
            baseline=base_wall,
            baseline_label=label,
            ratio=wall / base_wall,
            target=wall_target,
        ),
        figure(f"{name}: us per session", wall / count * 1e6, "us"),
        figure(f"{name}: process CPU", cpu, "s"),
        figure(f"{name}: peak RSS", peak, "MB", target=rss_target),
        figure(f"{name}: store commits", commits, "commits"),
    ]


def _mid_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The round whose wall time is the median (the lower of two)."""
    walls = [r["wall_s"] for r in rounds]
    return rounds[walls.index(statistics.median_low(walls))]


def _mid(rounds: list[dict[str, Any]], key: str) -> float:
    """`key` of the median round."""
    return float(_mid_round(rounds)[key])


def _gc_line(phase: dict[str, Any]) -> str:
    """A phase's time in Python's cyclic garbage collector."""
    return (
        f"Python's cyclic GC: {phase['gc_s']:.2f} s ({phase['gc_s'] / phase['wall_s']:.0%} of "
        f"the wall; {phase['gc_runs']:,} collections, {phase['gc_full']} of them full)"
    )


def _by_thread(phase: dict[str, Any]) -> str:
    """A phase's CPU seconds by thread group, most first (0.05 s and up)."""
    groups = sorted(phase["threads"].items(), key=lambda item: -item[1])
    listed = ", ".join(f"{name} {cpu:.1f}" for name, cpu in groups if cpu >= 0.05)
    return f"{listed} s (of {phase['cpu_s']:.1f} s)"


def feeding(count: int, green: list[dict[str, Any]]) -> list[Row]:
    """Part 2's printout and rows."""
    fed = [g["feed"] for g in green]
    wall = statistics.median(f["wall_s"] for f in fed)
    commits = statistics.median(f["commits"] for f in fed)
    target = Target("<=", scaled(FEED_TARGET_S, count), on="value")
    print(f"feed each of the {count:,} executions once, all in flight (each completes)")
    print(
        f"  {wall:7.2f} s wall, {count / wall:,.0f} feeds/s  target <= {target.bound:g} s: "
        f"{_verdict(target, wall)}; rounds {_listed([f['wall_s'] for f in fed], '.2f')} s"
    )
    print(
        f"  process CPU {statistics.median(f['cpu_s'] for f in fed):.1f} s; store commits "
        f"{commits:,.0f}; sending {_mid(fed, 'send_s'):.2f} s, waiting "
        f"{_mid(fed, 'wait_s'):.2f} s, the last settle {_mid(fed, 'settle_s'):.2f} s; "
        f"peak RSS by the end {statistics.median(_mb(f['peak_kb']) for f in fed):,.0f} MB"
    )
    print(f"  CPU by thread (median round): {_by_thread(_mid_round(fed))}")
    print(f"  {_gc_line(_mid_round(fed))}")
    name = f"feed {count:,} executions once"
    return [
        figure(f"{name}: wall", wall, "s", target=target),
        figure(f"{name}: feeds/s", count / wall, "feeds/s"),
        figure(f"{name}: store commits", commits, "commits"),
    ]


def passivation(count: int, full: int) -> list[Row]:
    """Part 3's run, printout and rows."""
    p = child("passivated", count)
    peak = _mb(p["peak_kb"])
    target = Target("<=", scaled(PASSIVATED_RSS_TARGET_MB, count), on="value")
    print(
        f"create {count:,} sessions with passivation (execution_passivate_after_s="
        f"{PASSIVATE_AFTER_S:g}, FakeClock advanced 2 s after every {PASSIVATE_BATCH:,} in "
        "flight)"
    )
    if count != full:
        print(f"  at {count:,} sessions only, not {full:,} (see --passivated-sessions)")
    print(
        f"  peak RSS {peak:,.0f} MB (target <= {target.bound:,.0f} MB: "
        f"{_verdict(target, peak)}); RSS at the end {_mb(p['rss_kb']):,.0f} MB, the empty "
        f"runtime {_mb(p['empty_kb']):,.0f} MB"
    )
    print(
        f"  executions in memory {p['in_memory']:,}, passivated {p['passivated']:,}; actors "
        f"alive {p['actors_alive']:,}; {p['wall_s']:.1f} s wall (of which "
        f"{p['advance_s']:.1f} s in clock.advance: the GC passivating), process CPU "
        f"{p['cpu_s']:.1f} s, store commits {p['commits']:,}"
    )
    print(f"  {_gc_line(p)}")
    return [figure(f"create {count:,} sessions, passivated: peak RSS", peak, "MB", target=target)]


def busy(count: int) -> list[Row]:
    """Part 4's run, printout and rows."""
    b = child("busy", count)
    print(
        f"{count:,} sessions created, then fed, while another thread runs Python (medians "
        f"of {BUSY_ROUNDS} rounds, alternating with the same alone)"
    )
    print(f"  created in {b['create_busy']:.2f} s (alone {b['create']:.2f} s)")
    print(f"  fed in {b['feed_busy']:.2f} s (alone {b['feed']:.2f} s)")
    return [
        figure(
            f"create {count:,} sessions, another thread running Python",
            b["create_busy"],
            "s",
            baseline=b["create"],
            baseline_label="the same alone",
            ratio=b["create_busy"] / b["create"],
        ),
        figure(
            f"feed {count:,} executions once, another thread running Python",
            b["feed_busy"],
            "s",
            baseline=b["feed"],
            baseline_label="the same alone",
            ratio=b["feed_busy"] / b["feed"],
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SESSIONS:,} sessions")
    parser.add_argument(
        "--sessions",
        type=int,
        default=0,
        metavar="N",
        help=f"sessions per run (default {SESSIONS:,}; {QUICK_SESSIONS:,} with --quick)",
    )
    parser.add_argument(
        "--passivated-sessions",
        type=int,
        default=0,
        metavar="N",
        help="sessions in the passivation run (default: as many as the others)",
    )
    add_json_option(parser)
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--folder", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    count = args.sessions or (QUICK_SESSIONS if args.quick else SESSIONS)
    if args.child:
        print(json.dumps(CHILDREN[args.child](count, args.folder)))
        return

    print(f"CPU: {cpu_model()}, {os.cpu_count()} CPUs")
    green: list[dict[str, Any]] = []
    base: list[dict[str, Any]] = []
    for _ in range(ROUNDS):
        # Alternate, so drift in the machine's load hits both alike.
        green.append(child("green", count))
        base.append(child("baseline", count))
    rows = creation(count, green, base)
    rows.extend(feeding(count, green))
    rows.extend(passivation(args.passivated_sessions or count, count))
    rows.extend(busy(BUSY_SESSIONS))
    write_rows(args.json, rows)


if __name__ == "__main__":
    main()
