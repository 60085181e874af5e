"""Several hosts on one PostgreSQL: store writes/s and execution feeds/s with 1, 2 and 4
host processes, against one host on SQLite, in the same run.

Each host is a process of its own with its own runtime; all of them on one database
(a fresh schema per figure), each working on objects of its own, started together.
The figure is the total work done divided by the slowest host's time.

1. store writes: 4 threads a host, each `update_meta` then `append_file` of a small
   line on an object of its own, one after the other (a write: the pair);
2. execution feeds: a host starts 200 durable executions of a strategy asking one
   question a round, then feeds every one 5 rounds from 4 threads.

The baseline is one host on a SQLite file (`synchronous=FULL`), the same work, run
first in each round (3 rounds, 1 with `--quick`); there is no target (the issue asks
for the figures). Printed: the medians, and the median and range of each round's
ratio PostgreSQL / SQLite.

PostgreSQL: `GREENROOM_PG_URL` if set, else `.ci/services start` (started and stopped
here). On a small machine the hosts and the server share its CPUs: read the figures
as what one machine does, not a fleet.

    .venv/bin/python benchmarks/bench_hosts.py          # the full run
    .venv/bin/python benchmarks/bench_hosts.py --quick  # smaller counts

`--json PATH` also writes the headline figures there as rows for `run_all.py`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

from greenroom import Runtime, RuntimeConfig
from greenroom.clock import stopwatch
from greenroom.store import Store
from greenroom.store_postgres import PostgresStore

from _table import Row, add_json_option, cpu_model, figure, write_rows  # isort: skip

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
THREADS = 4
ROUNDS = 5
LINE = b"a line of agent output, about as long as most\n"


async def bench_rounds(ctx: Any, rounds: int) -> int:
    """Ask one question a round."""
    for index in range(rounds):
        await ctx.llm(f"q {index}")
    return rounds


# -- a host (a child process) ------------------------------------------------------------------


def _timed_when_told(work: Any) -> float:
    """Say "ready", wait for the parent's "go", run `work(n)` on THREADS threads; the
    seconds they took."""
    print("ready", flush=True)
    sys.stdin.readline()
    threads = [threading.Thread(target=work, args=(n,)) for n in range(THREADS)]
    began = stopwatch()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return stopwatch() - began


def host_writes(target: str, host: int, writes: int) -> dict[str, float]:
    """Writes from THREADS threads on one store; after 'ready', waits for 'go'."""
    store: Store
    if target.startswith("postgresql://"):
        store = PostgresStore.connect(target)
    else:
        store = Store.open(target)
    per_thread = writes // THREADS
    ids = [f"h{host}-t{n}" for n in range(THREADS)]
    for object_id in ids:
        store.ensure_object("block", object_id)

    def work(n: int) -> None:
        for i in range(per_thread):
            store.update_meta("block", ids[n], {"n": i})
            store.append_file("block", ids[n], "output", LINE, create=True)

    took = _timed_when_told(work)
    store.close()
    return {"ops": per_thread * THREADS, "seconds": took}


def host_feeds(target: str, host: int, sessions: int, archives: str) -> dict[str, float]:
    """Durable executions fed ROUNDS rounds from THREADS threads on one runtime."""
    config = RuntimeConfig(archive_dir=archives, host_id=f"bench-{host}")
    rt = Runtime.open(target, config=config)
    rt.executions.register("bench.rounds", bench_rounds)
    sids = [rt.executions.start("bench.rounds", ROUNDS).session_id for _ in range(sessions)]

    def work(n: int) -> None:
        for sid in sids[n::THREADS]:
            for _ in range(ROUNDS):
                rt.executions.feed(sid, "answer")

    took = _timed_when_told(work)
    rt.close()
    return {"ops": sessions * ROUNDS, "seconds": took}


def child(argv: list[str]) -> None:
    """A host: the work `argv[0]` names; its figures as one JSON line."""
    kind, target, host, count, archives = argv[0], argv[1], int(argv[2]), int(argv[3]), argv[4]
    if kind == "writes":
        result = host_writes(target, host, count)
    else:
        result = host_feeds(target, host, count, archives)
    print(json.dumps(result), flush=True)


# -- the run ------------------------------------------------------------------------------------


def run_hosts(kind: str, target: str, hosts: int, count: int, archives: str) -> float:
    """Start `hosts` host processes, let them go together; total ops / slowest time."""
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(HERE / "bench_hosts.py"),
                "--child",
                kind,
                target,
                str(n),
                str(count),
                archives,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for n in range(hosts)
    ]
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line == "ready", line
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=1800)
        assert proc.returncode == 0, out
        results.append(json.loads(out.strip().splitlines()[-1]))
    return sum(r["ops"] for r in results) / max(r["seconds"] for r in results)


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """A PostgreSQL URL: GREENROOM_PG_URL, or the servers of `.ci/services` (started
    here, and stopped after, when they were not running)."""
    url = os.environ.get("GREENROOM_PG_URL")
    if url:
        yield url
        return
    services = str(ROOT / ".ci" / "services")
    env = subprocess.run([services, "env"], check=True, capture_output=True, text=True).stdout
    url = dict(
        line.removeprefix("export ").split("=", 1) for line in env.splitlines() if "=" in line
    )["GREENROOM_PG_URL"]
    try:
        psycopg.connect(url, connect_timeout=2).close()
    except psycopg.Error:
        running = False
    else:
        running = True  # (a developer's `make services`: used, and left running)
    if not running:
        subprocess.run([services, "start"], check=True, capture_output=True)
    try:
        yield url
    finally:
        if not running:
            subprocess.run([services, "stop"], check=False)


@contextlib.contextmanager
def fresh_schema(url: str) -> Iterator[str]:
    """`url` on a schema of its own, dropped afterwards."""
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{url}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    add_json_option(parser)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    writes = 400 if args.quick else 2_000
    sessions = 40 if args.quick else 200
    rounds = 1 if args.quick else 3
    print(f"CPU: {cpu_model()}, {os.cpu_count()} CPUs; {rounds} round(s), SQLite first in each")
    rows: list[Row] = []
    with postgres() as url, tempfile.TemporaryDirectory(prefix="bench-hosts-") as folder:
        archives = str(Path(folder) / "archives")
        for kind, count, unit, label in (
            ("writes", writes, "writes/s", "store writes (update_meta + append_file)"),
            ("feeds", sessions, "feeds/s", "durable execution feeds"),
        ):
            sqlite: list[float] = []
            pg: dict[int, list[float]] = {hosts: [] for hosts in (1, 2, 4)}
            for index in range(rounds):
                db = str(Path(folder) / f"{kind}-{index}.db")
                sqlite.append(run_hosts(kind, db, 1, count, archives))
                for hosts, totals in pg.items():
                    with fresh_schema(url) as target:
                        totals.append(run_hosts(kind, target, hosts, count, archives))
            base = statistics.median(sqlite)
            print(f"{label}, {THREADS} threads a host; SQLite, 1 host: {base:,.0f} {unit}")
            for hosts, totals in pg.items():
                total = statistics.median(totals)
                ratios = sorted(t / b for t, b in zip(totals, sqlite, strict=True))
                ratio = statistics.median(ratios)
                print(
                    f"  PostgreSQL, {hosts} host(s): {total:>10,.0f} {unit}  "
                    f"ratio to SQLite {ratio:.2f} (rounds {ratios[0]:.2f}-{ratios[-1]:.2f})"
                )
                rows.append(
                    figure(
                        f"{label} on PostgreSQL, {hosts} host process(es)",
                        total,
                        unit,
                        baseline=base,
                        baseline_label="one host on SQLite",
                        ratio=ratio,
                    )
                )
    write_rows(args.json, rows)


if __name__ == "__main__":
    main()
