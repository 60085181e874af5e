"""An asyncio host's own timer while greenroom works: a 10 ms ticker, 1,000 executions fed.

The host is one asyncio loop. A ticker task on it sleeps 10 ms at a time and notes each
gap between two ticks, while 1,000 sessions of an async strategy (`bench.loop`, one
question a round, in memory) are fed 5 rounds through `AsyncRuntime`, every feed of a
round in flight at once (`asyncio.gather`); the sessions are started before the ticker
starts. The figures: the share of the ticks the ticker would have got in that time
(target >= 80%) and the gaps' p50 and p99 (target p99 <= 30 ms). The baseline is the
same ticker on the same loop while the same number of bare `asyncio` tasks each await a
future that a plain worker thread resolves (the least a loop can do per call with
threads answering), in the same process, alternating.

Three configurations, each in a fresh process: the defaults; the host calling
`gc.freeze()` once its sessions are made (Python's cyclic collector otherwise walks
every live session in its full collections, a pause the ticker feels); and that with
`RuntimeConfig(dispatcher_threads=1)` (fewer workers taking the interpreter's lock
from the loop). The CPU model heads the output.

    .venv/bin/python benchmarks/bench_aio.py          # the full run (3 rounds each)
    .venv/bin/python benchmarks/bench_aio.py --quick  # 1 round each

`--json PATH` also writes the headline figures there as rows for `run_all.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import greenroom
from greenroom.aio import AsyncRuntime
from greenroom.clock import stopwatch

from _child import run_child  # isort: skip
from _table import Row, Target, add_json_option, cpu_model, figure, write_rows  # isort: skip

SESSIONS = 1_000
ROUNDS = 5
TICK_S = 0.01
TICKS_TARGET = Target(">=", 80.0, on="value")
P99_TARGET = Target("<=", 30.0, on="value")
CONFIGS = {
    "defaults": "the defaults",
    "freeze": "gc.freeze() after the sessions are made",
    "freeze-1": "gc.freeze() and dispatcher_threads=1",
}


async def bench_loop(ctx: Any, rounds: int) -> int:
    """Ask one question a round, `rounds` times."""
    for index in range(rounds):
        await ctx.llm(f"q {index}")
    return rounds


class Ticker:
    """A task that sleeps `TICK_S` at a time and notes the gaps between its ticks."""

    def __init__(self) -> None:
        self.gaps: list[float] = []
        self._stop = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        last = stopwatch()
        while not self._stop:
            await asyncio.sleep(TICK_S)
            now = stopwatch()
            self.gaps.append(now - last)
            last = now

    async def stop(self) -> None:
        self._stop = True
        assert self._task is not None
        await self._task


def _summary(gaps: list[float], took: float) -> dict[str, float]:
    ordered = sorted(gaps)
    return {
        "ticks_pct": 100.0 * len(gaps) / max(took / TICK_S, 1.0),
        "p50_ms": ordered[len(ordered) // 2] * 1e3,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3,
        "took_s": took,
    }


async def _greenroom(folder: str, config: str) -> dict[str, float]:
    threads = 1 if config == "freeze-1" else greenroom.RuntimeConfig().dispatcher_threads
    settings = greenroom.RuntimeConfig(dispatcher_threads=threads)
    art = await AsyncRuntime.open(Path(folder) / "aio.db", config=settings)
    try:
        art.runtime.executions.register("bench.loop", bench_loop)
        steps = await asyncio.gather(
            *(art.executions.start("bench.loop", rounds=ROUNDS) for _ in range(SESSIONS))
        )
        if config != "defaults":
            gc.freeze()
        ticker = Ticker()
        ticker.start()
        began = stopwatch()
        for _ in range(ROUNDS):
            steps = await asyncio.gather(
                *(art.executions.feed(step.session_id, "answer") for step in steps)
            )
        took = stopwatch() - began
        await ticker.stop()
        assert {step.status for step in steps} == {"completed"}, steps[0]
        return _summary(ticker.gaps, took)
    finally:
        await art.aclose()


async def _bare() -> dict[str, float]:
    """The same rounds of calls, each a future a worker thread resolves at once."""
    loop = asyncio.get_running_loop()
    work: list[asyncio.Future[None] | None] = []
    ready = threading.Condition()

    def worker() -> None:
        while True:
            with ready:
                while not work:
                    ready.wait()
                item = work.pop()
            if item is None:
                return
            loop.call_soon_threadsafe(item.set_result, None)

    thread = threading.Thread(target=worker)
    thread.start()

    async def call() -> None:
        future = loop.create_future()
        with ready:
            work.append(future)
            ready.notify()
        await future

    ticker = Ticker()
    ticker.start()
    began = stopwatch()
    for _ in range(ROUNDS):
        await asyncio.gather(*(call() for _ in range(SESSIONS)))
    took = stopwatch() - began
    await ticker.stop()
    with ready:
        work.append(None)
        ready.notify()
    thread.join()
    return _summary(ticker.gaps, took)


def child(config: str) -> None:
    """One configuration's round, then the bare baseline's, printed as one JSON line."""
    with tempfile.TemporaryDirectory(prefix="bench-aio-") as folder:
        ours = asyncio.run(_greenroom(folder, config))
    bare = asyncio.run(_bare())
    print(json.dumps({"ours": ours, "bare": bare}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round each (a smoke test)")
    parser.add_argument("--child", choices=sorted(CONFIGS), help=argparse.SUPPRESS)
    add_json_option(parser)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    rounds = 1 if args.quick else 3
    print(f"CPU: {cpu_model()}, {os.cpu_count()} CPUs")
    print(
        f"a 10 ms asyncio ticker while {SESSIONS:,} executions are fed {ROUNDS} rounds "
        f"through AsyncRuntime, every feed of a round in flight at once (medians of "
        f"{rounds} round(s), each in a fresh process; the baseline: the same calls as "
        "bare loop futures a worker thread resolves)"
    )
    rows: list[Row] = []
    for config, label in CONFIGS.items():
        results = [run_child(__file__, "--child", config) for _ in range(rounds)]
        ours = {
            key: statistics.median(r["ours"][key] for r in results) for key in results[0]["ours"]
        }
        bare = {
            key: statistics.median(r["bare"][key] for r in results) for key in results[0]["bare"]
        }
        ticks_ok = "PASS" if TICKS_TARGET.met(ours["ticks_pct"]) else "FAIL"
        p99_ok = "PASS" if P99_TARGET.met(ours["p99_ms"]) else "FAIL"
        print(f"  {label}:")
        print(
            f"    greenroom {ours['ticks_pct']:5.1f}% of the ticks (target >= 80%: "
            f"{ticks_ok}), gap p50 {ours['p50_ms']:5.1f} ms, p99 {ours['p99_ms']:6.1f} ms "
            f"(target <= 30 ms: {p99_ok}); {ours['took_s']:.2f} s of feeding"
        )
        print(
            f"    baseline  {bare['ticks_pct']:5.1f}% of the ticks, gap p50 "
            f"{bare['p50_ms']:5.1f} ms, p99 {bare['p99_ms']:6.1f} ms; {bare['took_s']:.2f} s"
        )
        if rounds > 1:
            ticks = sorted(r["ours"]["ticks_pct"] / r["bare"]["ticks_pct"] for r in results)
            p99s = sorted(r["ours"]["p99_ms"] / r["bare"]["p99_ms"] for r in results)
            print(
                f"    rounds' ratios greenroom / baseline: ticks {ticks[0]:.2f}-{ticks[-1]:.2f}"
                f", p99 gap {p99s[0]:.2f}-{p99s[-1]:.2f}"
            )
        for key, unit, target, what in (
            ("ticks_pct", "%", TICKS_TARGET, "ticks"),
            ("p99_ms", "ms", P99_TARGET, "p99 gap"),
        ):
            rows.append(
                figure(
                    f"10 ms ticker while 1,000 executions are fed ({label}): {what}",
                    ours[key],
                    unit,
                    baseline=bare[key],
                    baseline_label="bare loop futures",
                    ratio=ours[key] / max(bare[key], 1e-9),
                    target=target,
                )
            )
    write_rows(args.json, rows)


if __name__ == "__main__":
    sys.exit(main())
