"""Store write path: one serialised connection against a connection per thread.

The store serialises every write through one connection under a lock. The other
common design gives each thread its own connection and lets SQLite's file lock (with a
busy timeout) arbitrate. This script measures both on the same work, in the same run:
8 threads each doing read-modify-write metadata updates of their own objects, and
appends of small output pieces. The two run in alternating rounds (3; 1 with
`--quick`), each on a fresh file; it prints the CPU model, the medians of ops/s, the
errors, and the median and range of the per-round ratios store / per-thread
connections.

    .venv/bin/python benchmarks/bench_store.py          # the full run
    .venv/bin/python benchmarks/bench_store.py --quick  # a quarter of the counts, a smoke test

`--json PATH` also writes the headline figures there as rows for `run_all.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from greenroom.clock import SystemClock
from greenroom.store import Store

from _table import Row, add_json_option, cpu_model, figure, write_rows  # isort: skip

THREADS = 8
UPDATES_PER_THREAD = 400  # a quarter of each with --quick
APPENDS_PER_THREAD = 400
PIECE = b'{"type":"token","text":"hello world"}\n' * 3

_clock = SystemClock()


def timed(fn: Callable[[], None]) -> float:
    start = _clock.monotonic()
    fn()
    return _clock.monotonic() - start


def run_threads(work: Callable[[int], None]) -> tuple[float, list[BaseException]]:
    errors: list[BaseException] = []

    def guarded(n: int) -> None:
        try:
            work(n)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(n,)) for n in range(THREADS)]

    def go() -> None:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    return timed(go), errors


def bench_store(folder: Path, n_updates: int, n_appends: int) -> tuple[float, float, int]:
    store = Store.open(folder / "store.db")
    for n in range(THREADS):
        store.ensure_object("block", f"b{n}", {})

    def updates(n: int) -> None:
        for i in range(n_updates):
            store.update_meta("block", f"b{n}", {"session:line_count": i, f"k{i % 10}": i})

    def appends(n: int) -> None:
        for _ in range(n_appends):
            store.append_file("block", f"b{n}", "output", PIECE, create=True)

    t_upd, e_upd = run_threads(updates)
    t_app, e_app = run_threads(appends)
    store.close()
    return t_upd, t_app, len(e_upd) + len(e_app)


def bench_per_thread_connections(
    folder: Path, n_updates: int, n_appends: int
) -> tuple[float, float, int]:
    path = folder / "raw.db"
    setup = sqlite3.connect(path)
    setup.execute("PRAGMA journal_mode=wal")
    setup.execute("CREATE TABLE objects (id TEXT PRIMARY KEY, meta TEXT, version INTEGER)")
    setup.execute("CREATE TABLE chunks (id TEXT, seq INTEGER, data BLOB, PRIMARY KEY (id, seq))")
    setup.executemany(
        "INSERT INTO objects VALUES (?, '{}', 1)", [(f"b{n}",) for n in range(THREADS)]
    )
    setup.commit()
    setup.close()

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, timeout=5.0)
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    def updates(n: int) -> None:
        conn = connect()
        for i in range(n_updates):
            conn.execute("BEGIN IMMEDIATE")
            meta, version = conn.execute(
                "SELECT meta, version FROM objects WHERE id = ?", (f"b{n}",)
            ).fetchone()
            merged = json.loads(meta) | {"session:line_count": i, f"k{i % 10}": i}
            conn.execute(
                "UPDATE objects SET meta = ?, version = ? WHERE id = ?",
                (json.dumps(merged), version + 1, f"b{n}"),
            )
            conn.execute("COMMIT")
        conn.close()

    def appends(n: int) -> None:
        conn = connect()
        for seq in range(n_appends):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO chunks VALUES (?, ?, ?)", (f"b{n}", seq, PIECE))
            conn.execute("COMMIT")
        conn.close()

    t_upd, e_upd = run_threads(updates)
    t_app, e_app = run_threads(appends)
    return t_upd, t_app, len(e_upd) + len(e_app)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts (a smoke test)")
    add_json_option(parser)
    args = parser.parse_args()
    scale = 4 if args.quick else 1
    updates, appends = UPDATES_PER_THREAD // scale, APPENDS_PER_THREAD // scale
    rounds = 1 if args.quick else 3
    print(f"CPU: {cpu_model()}, {os.cpu_count()} CPUs")
    n_upd = THREADS * updates
    n_app = THREADS * appends
    # Per round: (store updates/s, appends/s, errors), then the same for the baseline.
    ours: list[tuple[float, float, int]] = []
    base: list[tuple[float, float, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(rounds):
            folder = Path(tmp) / f"round-{index}"
            folder.mkdir()
            s_upd, s_app, s_err = bench_store(folder, updates, appends)
            ours.append((n_upd / s_upd, n_app / s_app, s_err))
            b_upd, b_app, b_err = bench_per_thread_connections(folder, updates, appends)
            base.append((n_upd / b_upd, n_app / b_app, b_err))
    rows = []
    print(f"{rounds} alternating round(s), medians; ratio = store / per-thread, its range")
    print(f"{'figure':32} {'store':>12} {'per-thread':>12} {'ratio':>7}  range")
    for at, name in enumerate(("meta updates/s, 8 threads", "appends/s, 8 threads")):
        value = statistics.median(r[at] for r in ours)
        baseline = statistics.median(r[at] for r in base)
        ratios = sorted(o[at] / b[at] for o, b in zip(ours, base, strict=True))
        rows.append((name, value, baseline, statistics.median(ratios)))
        print(
            f"{name:32} {value:12.0f} {baseline:12.0f} {statistics.median(ratios):7.2f}  "
            f"{ratios[0]:.2f}-{ratios[-1]:.2f}"
        )
    s_err = sum(r[2] for r in ours)
    b_err = sum(r[2] for r in base)
    print(f"{'errors (locked, lost), all rounds':32} {s_err:12d} {b_err:12d}")
    out: list[Row] = [
        figure(
            f"{name}, {THREADS} threads",
            value,
            unit,
            baseline=baseline,
            baseline_label="connection per thread",
            ratio=ratio,
        )
        for name, unit, (_, value, baseline, ratio) in zip(
            ("metadata updates", "small appends"), ("updates/s", "appends/s"), rows, strict=True
        )
    ]
    out.append(
        figure(
            "writes failed or lost",
            s_err,
            "writes",
            baseline=b_err,
            baseline_label="connection per thread",
        )
    )
    write_rows(args.json, out)


if __name__ == "__main__":
    main()
