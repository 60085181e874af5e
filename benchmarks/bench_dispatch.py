"""Greenroom's shared-pool actors against pykka's own `ThreadingActor`, in one run.

Four measurements, each printed with greenroom's figure, pykka's figure and the ratio:

1. tell throughput from 4 sender threads, into one actor and spread over 100 actors
   (messages/s until every message is handled; ratio = greenroom / pykka, higher is
   better; target >= 5, the host-scale issue's). ROUNDS rounds, greenroom's and
   pykka's alternating, so that a slow phase of the shared machine hits both; the
   median of the per-round ratios is the figure, printed with their range;
2. ask round trip from outside, one at a time: p50 and p99 (ratio = greenroom / pykka,
   lower is better; target for the p50 <= 0.5), in 10 alternating rounds;
3. start then stop 100,000 greenroom actors: seconds, peak RSS per actor, threads in
   the process at the peak (pykka cannot: it runs out of threads near 22,000);
4. ask each of 10,000 actors once, pipelined with `get_all`: seconds, beside pykka's
   figure for 10,000 `ThreadingActor`s.

The heavy parts (3 and 4) run in child processes so that each starts from a clean
heap and thread count. The CPU model heads the output: the ratios depend on it.

    .venv/bin/python benchmarks/bench_dispatch.py          # the full run
    .venv/bin/python benchmarks/bench_dispatch.py --quick  # smaller counts, a smoke test

`--json PATH` also writes the headline figures there as rows for `run_all.py`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
from collections.abc import Callable
from typing import Any

import pykka

from greenroom import Runtime
from greenroom.actors.base import ActorContext, GreenroomActor
from greenroom.clock import stopwatch

from _child import run_child, status_kb  # isort: skip (this folder's own module)
from _table import Row, Target, add_json_option, cpu_model, figure, write_rows  # isort: skip

SENDERS = 4
ROUNDS = 5  # tell rounds, each greenroom's then pykka's (3 with --quick)
TELL_TARGET = Target(">=", 5.0)  # greenroom / pykka messages/s, median of the rounds
ASK_TARGET = Target("<=", 0.5)  # greenroom / pykka ask p50


class GreenCounter(GreenroomActor):
    kind = "bench"

    def __init__(self, ctx: ActorContext) -> None:
        super().__init__(ctx)
        self.count = 0

    def on_receive(self, message: Any) -> Any:
        if message == "get":
            return self.count
        self.count += 1
        return None


class PykkaCounter(pykka.ThreadingActor):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def on_receive(self, message: Any) -> Any:
        if message == "get":
            return self.count
        self.count += 1
        return None


def _tell_rate(refs: list[Any], total: int) -> float:
    """Messages/s for SENDERS threads telling `total` messages round-robin over `refs`."""
    per_sender = total // SENDERS
    barrier = threading.Barrier(SENDERS + 1)
    before = sum(pykka.get_all([ref.ask("get", block=False) for ref in refs]))  # earlier rounds'

    def send(offset: int) -> None:
        targets = refs[offset % len(refs) :] + refs[: offset % len(refs)]
        n = len(targets)
        barrier.wait()
        for i in range(per_sender):
            targets[i % n].tell(i)

    threads = [threading.Thread(target=send, args=(k,)) for k in range(SENDERS)]
    for thread in threads:
        thread.start()
    barrier.wait()
    began = stopwatch()
    for thread in threads:
        thread.join()
    counted = sum(pykka.get_all([ref.ask("get", block=False) for ref in refs])) - before
    took = stopwatch() - began
    assert counted == per_sender * SENDERS, (counted, per_sender * SENDERS)
    return counted / took


def _ask_latencies(ref: Any, count: int) -> list[float]:
    for _ in range(50):  # warm up
        ref.ask("get")
    out = []
    for _ in range(count):
        began = stopwatch()
        ref.ask("get")
        out.append(stopwatch() - began)
    return out


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_tell_and_ask(scale: float, rounds: int) -> dict[str, Any]:
    total = int(200_000 * scale)
    asks = int(5_000 * scale)
    results: dict[str, Any] = {"green_ask": [], "pykka_ask": []}
    for key in ("green_tell_one", "pykka_tell_one", "green_tell_100", "pykka_tell_100"):
        results[key] = []
    with Runtime.open(":memory:") as rt:
        green_one = [rt.spawn(GreenCounter)]
        green_many = [rt.spawn(GreenCounter) for _ in range(100)]
        pykka_one = [PykkaCounter.start()]
        pykka_many = [PykkaCounter.start() for _ in range(100)]
        try:
            for _ in range(rounds):
                results["green_tell_one"].append(_tell_rate(green_one, total))
                results["pykka_tell_one"].append(_tell_rate(pykka_one, total))
                results["green_tell_100"].append(_tell_rate(green_many, total))
                results["pykka_tell_100"].append(_tell_rate(pykka_many, total))
            # Alternate in rounds, so drift in the machine's load hits both alike.
            for _ in range(10):
                results["green_ask"] += _ask_latencies(green_one[0], asks // 10)
                results["pykka_ask"] += _ask_latencies(pykka_one[0], asks // 10)
        finally:
            pykka.ActorRegistry.stop_all()
    return results


# -- child processes ------------------------------------------------------------------


def _rss_kb() -> int:
    return status_kb("VmRSS")


def _peak_kb() -> int:
    return status_kb("VmHWM")


def child_start_stop(count: int, asked: int) -> dict[str, Any]:
    rt = Runtime.open(":memory:")
    rt.spawn(GreenCounter).ask("get")  # pool threads up, imports done
    base_kb = _rss_kb()
    base_threads = threading.active_count()
    began = stopwatch()
    refs = [rt.spawn(GreenCounter) for _ in range(count)]
    rt.settle()
    started = stopwatch() - began
    peak_threads = threading.active_count()
    peak_kb = _peak_kb()
    asks_began = stopwatch()
    answers = pykka.get_all([ref.ask("get", block=False) for ref in refs[:asked]])
    ask_10k = stopwatch() - asks_began
    assert answers == [0] * len(answers)
    del refs
    stop_began = stopwatch()
    rt.close()
    stopped = stopwatch() - stop_began
    return {
        "count": count,
        "start_s": started,
        "stop_s": stopped,
        "total_s": started + stopped,
        "rss_per_actor_bytes": (peak_kb - base_kb) * 1024 / count,
        "threads_before": base_threads,
        "threads_at_peak": peak_threads,
        "threads_after_close": threading.active_count(),
        "ask_10k_s": ask_10k,
        "pool_threads": rt.config.dispatcher_threads,
    }


def child_pykka_asks(count: int, asked: int) -> dict[str, Any]:
    began = stopwatch()
    refs = [PykkaCounter.start() for _ in range(count)]
    started = stopwatch() - began
    asks_began = stopwatch()
    answers = pykka.get_all([ref.ask("get", block=False) for ref in refs])
    ask_s = stopwatch() - asks_began
    assert answers == [0] * count
    stop_began = stopwatch()
    pykka.ActorRegistry.stop_all()
    return {
        "count": count,
        "start_s": started,
        "ask_s": ask_s,
        "stop_s": stopwatch() - stop_began,
        "threads_at_peak": count + 1,
    }


CHILDREN: dict[str, Callable[[int, int], dict[str, Any]]] = {
    "start-stop": child_start_stop,
    "pykka-asks": child_pykka_asks,
}


def child(name: str, count: int, asked: int) -> dict[str, Any]:
    return run_child(__file__, "--child", name, "--count", count, "--asked", asked)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts (a smoke test)")
    add_json_option(parser)
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--asked", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child](args.count, args.asked)))
        return

    scale = 0.1 if args.quick else 1.0
    actors = 10_000 if args.quick else 100_000
    asked = 2_000 if args.quick else 10_000

    rows: list[Row] = []
    rounds = 3 if args.quick else ROUNDS
    print(f"CPU: {cpu_model()}")
    r = bench_tell_and_ask(scale, rounds)
    print(
        f"tell throughput, {SENDERS} sender threads (messages/s, medians of {rounds} "
        "alternating rounds; ratio greenroom/pykka, the median of the rounds' ratios)"
    )
    for label, key in (("into 1 actor", "tell_one"), ("into 100 actors", "tell_100")):
        greens, bases = r[f"green_{key}"], r[f"pykka_{key}"]
        ratios = sorted(g / b for g, b in zip(greens, bases, strict=True))
        green, base = statistics.median(greens), statistics.median(bases)
        ratio = statistics.median(ratios)
        verdict = "PASS" if TELL_TARGET.met(ratio) else "FAIL"
        print(
            f"  {label:16} greenroom {green:>10,.0f}  pykka {base:>10,.0f}  ratio {ratio:.2f}"
            f" (rounds {ratios[0]:.2f}-{ratios[-1]:.2f}; target >= {TELL_TARGET.bound:g}:"
            f" {verdict})"
        )
        rows.append(
            figure(
                f"tell {label}, {SENDERS} threads",
                green,
                "msg/s",
                baseline=base,
                baseline_label="pykka",
                ratio=ratio,
                target=TELL_TARGET,
            )
        )
    print("ask round trip from outside (us; ratio greenroom/pykka, lower is better)")
    for q, label in ((0.5, "p50"), (0.99, "p99")):
        green, base = _pct(r["green_ask"], q) * 1e6, _pct(r["pykka_ask"], q) * 1e6
        print(
            f"  {label:16} greenroom {green:>10.1f}  pykka {base:>10.1f}  ratio {green / base:.2f}"
        )
        if label != "p50":
            continue  # the table keeps the p50; the p99 is printed above
        rows.append(
            figure(
                f"ask round trip, {label}",
                green,
                "us",
                baseline=base,
                baseline_label="pykka",
                ratio=green / base,
                target=ASK_TARGET,
            )
        )
    mean_green = statistics.fmean(r["green_ask"]) * 1e6
    mean_base = statistics.fmean(r["pykka_ask"]) * 1e6
    print(f"  {'mean':16} greenroom {mean_green:>10.1f}  pykka {mean_base:>10.1f}")

    s = child("start-stop", actors, asked)
    print(f"start then stop {s['count']:,} greenroom actors")
    print(f"  start {s['start_s']:.2f} s + stop {s['stop_s']:.2f} s = {s['total_s']:.2f} s")
    print(f"  peak RSS per actor: {s['rss_per_actor_bytes']:,.0f} bytes")
    print(
        f"  threads: {s['threads_before']} before, {s['threads_at_peak']} at the peak, "
        f"{s['threads_after_close']} after close (pool size {s['pool_threads']})"
    )
    p = child("pykka-asks", asked, asked)
    print(f"ask each of {asked:,} actors once, pipelined with get_all")
    print(
        f"  greenroom {s['ask_10k_s']:.3f} s (among {s['count']:,} actors)  "
        f"pykka {p['ask_s']:.3f} s ({p['count']:,} ThreadingActors, "
        f"{p['start_s']:.1f} s to start them)  ratio {s['ask_10k_s'] / p['ask_s']:.2f}"
    )
    rows.append(figure(f"start then stop {s['count']:,} actors", s["total_s"], "s"))
    rows.append(
        figure(f"peak RSS per actor, {s['count']:,} alive", s["rss_per_actor_bytes"], "bytes")
    )
    rows.append(
        figure(
            f"ask {asked:,} actors once (get_all)",
            s["ask_10k_s"],
            "s",
            baseline=p["ask_s"],
            baseline_label="pykka",
            ratio=s["ask_10k_s"] / p["ask_s"],
        )
    )
    write_rows(args.json, rows)


if __name__ == "__main__":
    main()
