"""Replay buffers against bare pykka actors doing the same work, in one run.

Three measurements, each printed with greenroom's figure, the baseline's and the ratio:

1. append throughput into one session's buffer, from one host thread: one
   `rt.replay.append` (an ask: it returns the event and its cursor) at a time,
   `rt.replay.append_many` in batches of 100, and one `rt.replay.publish` (a tell) at a time
   until the buffer has them all (events/s; baseline: a pykka `ThreadingActor` asked
   to append each event to a deque, one ask per event);
2. fan-out to 100 subscribers, each drained by its own host thread, until every
   subscriber has every event (deliveries/s = events x 100 / seconds), beside
   `pykka.ActorRegistry.broadcast` of the same events to 100 bare `ThreadingActor`s
   until every one has counted them all (ratio = greenroom / pykka, higher is better).
   The target (ratio >= 1.0, PASS/FAIL) is like for like: one `rt.replay.publish` per
   event against one `broadcast` per event, both tells; 3 rounds alternate, and the
   medians and the range of the rounds' ratios are printed. Two more lines, for
   information only: batches of 100 (`rt.replay.append_many`) and one `rt.replay.append`
   (an ask, which waits for its event) per event;
3. `rt.replay.after` a cursor 2,048 events back (the whole default buffer): time per call,
   median of many (baseline: asking a `ThreadingActor` for a tuple of its 2,048-event
   deque; ratio = greenroom / pykka, lower is better).

    .venv/bin/python benchmarks/bench_replay.py          # the full run
    .venv/bin/python benchmarks/bench_replay.py --quick  # smaller counts, a smoke test

`--json PATH` also writes the headline figures there as rows for `run_all.py`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
from collections import deque
from typing import Any

import attrs
import pykka

from greenroom import Replayed, Runtime, RuntimeConfig, Subscription
from greenroom.clock import stopwatch

from _table import Row, Target, add_json_option, cpu_model, figure, write_rows  # isort: skip

SUBSCRIBERS = 100
BATCH = 100
FAN_ROUNDS = 3  # fan-out rounds, each greenroom then the broadcast baseline
PAYLOAD = {"type": "turn_activity", "text": "hello"}


class PykkaLog(pykka.ThreadingActor):
    """The baseline buffer: appends to a deque, answers a snapshot."""

    def __init__(self) -> None:
        super().__init__()
        self.events: deque[Any] = deque(maxlen=2048)

    def on_receive(self, message: Any) -> Any:
        if message == "snapshot":
            return tuple(self.events)
        self.events.append(message)
        return len(self.events)


class PykkaCounter(pykka.ThreadingActor):
    """The baseline subscriber: counts broadcasts, says when it has them all."""

    def __init__(self, expected: int, done: threading.Event) -> None:
        super().__init__()
        self.expected = expected
        self.done = done
        self.count = 0

    def on_receive(self, message: Any) -> Any:
        self.count += 1
        if self.count == self.expected:
            self.done.set()


def bench_append(rt: Runtime, count: int) -> dict[str, float]:
    for _ in range(200):  # warm up
        rt.replay.append("warm", PAYLOAD)
    began = stopwatch()
    for _ in range(count):
        rt.replay.append("single", PAYLOAD)
    single = count / (stopwatch() - began)

    payloads = [PAYLOAD] * BATCH
    began = stopwatch()
    for _ in range(count // BATCH):
        rt.replay.append_many("batched", payloads)
    batched = (count // BATCH) * BATCH / (stopwatch() - began)

    began = stopwatch()
    for _ in range(count):
        rt.replay.publish("published", PAYLOAD)
    rt.replay.current_cursor("published")  # an ask: answered once every publish is appended
    published = count / (stopwatch() - began)

    ref = PykkaLog.start()
    try:
        for _ in range(200):
            ref.ask(PAYLOAD)
        began = stopwatch()
        for _ in range(count):
            ref.ask(PAYLOAD)
        baseline = count / (stopwatch() - began)
    finally:
        ref.stop()
    return {"single": single, "batched": batched, "published": published, "baseline": baseline}


def _drain(sub: Subscription, count: int, ready: threading.Barrier) -> None:
    ready.wait()
    for _ in range(count):
        sub.next_event()


def bench_fan_out(rt: Runtime, events: int, mode: str) -> float:
    """Deliveries/s from one appender: `publish` (one rt.replay.publish per event),
    `ask` (one rt.replay.append per event) or `batched` (rt.replay.append_many of BATCH)."""
    session = f"fan-out-{mode}"
    start = rt.replay.current_cursor(session)
    subs = [rt.replay.subscribe(start) for _ in range(SUBSCRIBERS)]
    ready = threading.Barrier(SUBSCRIBERS + 1)
    threads = [
        threading.Thread(target=_drain, args=(sub, events, ready), daemon=True)
        for sub in subs
        if isinstance(sub, Subscription)
    ]
    for thread in threads:
        thread.start()
    ready.wait()
    began = stopwatch()
    if mode == "publish":
        for _ in range(events):
            rt.replay.publish(session, PAYLOAD)
    elif mode == "ask":
        for _ in range(events):
            rt.replay.append(session, PAYLOAD)
    else:
        payloads = [PAYLOAD] * BATCH
        for _ in range(events // BATCH):
            rt.replay.append_many(session, payloads)
    for thread in threads:
        thread.join()
    took = stopwatch() - began
    lags = rt.metrics()["replay_subscriber_lags"]
    assert lags == 0, f"{lags} subscribers lagged: raise subscriber_queue_size"
    for sub in subs:
        sub.close()  # type: ignore[union-attr]
    return events * SUBSCRIBERS / took


def bench_broadcast(events: int) -> float:
    dones = [threading.Event() for _ in range(SUBSCRIBERS)]
    refs = [PykkaCounter.start(events, done) for done in dones]
    try:
        began = stopwatch()
        for _ in range(events):
            pykka.ActorRegistry.broadcast(PAYLOAD, target_class=PykkaCounter)
        for done in dones:
            done.wait()
        return events * SUBSCRIBERS / (stopwatch() - began)
    finally:
        for ref in refs:
            ref.stop(block=False)
        pykka.ActorRegistry.stop_all()


def bench_replay_after(rt: Runtime, calls: int) -> dict[str, float]:
    first = rt.replay.current_cursor("replay")  # position 0: the whole buffer comes after it
    rt.replay.append_many("replay", [PAYLOAD] * 2048)
    result = rt.replay.after(first)
    assert isinstance(result, Replayed), result
    assert len(result.events) == 2048
    green = []
    for _ in range(calls):
        began = stopwatch()
        rt.replay.after(first)
        green.append(stopwatch() - began)

    ref = PykkaLog.start()
    try:
        for _ in range(2048):
            ref.tell(PAYLOAD)
        assert len(ref.ask("snapshot")) == 2048
        base = []
        for _ in range(calls):
            began = stopwatch()
            ref.ask("snapshot")
            base.append(stopwatch() - began)
    finally:
        ref.stop()
    return {"green": statistics.median(green), "baseline": statistics.median(base)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts (a smoke test)")
    add_json_option(parser)
    args = parser.parse_args()
    print(f"CPU: {cpu_model()}, {os.cpu_count()} CPUs")
    scale = 0.1 if args.quick else 1.0
    appends = int(20_000 * scale)
    fan_events = int(10_000 * scale)
    single_events = int(2_000 * scale)
    calls = int(2_000 * scale)

    config = attrs.evolve(
        RuntimeConfig(), subscriber_queue_size=fan_events + BATCH, max_events_per_session=2048
    )
    with Runtime.open(":memory:", config=config) as rt:
        a = bench_append(rt, appends)
        print("append into one buffer, one host thread (events/s; ratio greenroom/pykka)")
        print(
            f"  {'single (ask each)':24} greenroom {a['single']:>10,.0f}  "
            f"pykka ask {a['baseline']:>10,.0f}  ratio {a['single'] / a['baseline']:.2f}"
        )
        print(
            f"  {'batches of ' + str(BATCH):24} greenroom {a['batched']:>10,.0f}  "
            f"pykka ask {a['baseline']:>10,.0f}  ratio {a['batched'] / a['baseline']:.2f}"
        )
        print(
            f"  {'publish (tell each)':24} greenroom {a['published']:>10,.0f}  "
            f"pykka ask {a['baseline']:>10,.0f}  ratio {a['published'] / a['baseline']:.2f}"
        )

        print(
            f"fan-out to {SUBSCRIBERS} subscribers, each drained by its own thread "
            "(deliveries/s; ratio greenroom/pykka)"
        )
        # Alternate, so drift in the machine's load hits both alike; each round's
        # ratio is against that round's broadcast.
        published, batched, asked, base = [], [], [], []
        for _ in range(FAN_ROUNDS):
            published.append(bench_fan_out(rt, fan_events, "publish"))
            base.append(bench_broadcast(fan_events))
            batched.append(bench_fan_out(rt, fan_events, "batched"))
            asked.append(bench_fan_out(rt, single_events, "ask"))
        broadcast = statistics.median(base)
        ratios = sorted(p / b for p, b in zip(published, base, strict=True))
        ratio = statistics.median(ratios)
        verdict = "PASS" if ratio >= 1.0 else "FAIL"
        print(
            f"  {'publish per event':24} greenroom {statistics.median(published):>10,.0f}  "
            f"broadcast {broadcast:>10,.0f}  ratio {ratio:.2f} (rounds {ratios[0]:.2f}-"
            f"{ratios[-1]:.2f})  target >= 1.0: {verdict}"
        )
        print(f"  extra lines (not like for like; for information; medians of {FAN_ROUNDS}):")
        for label, figures in (
            (f"batches of {BATCH}", batched),
            ("rt.replay.append per event", asked),
        ):
            mid = statistics.median(figures)
            each = sorted(f / b for f, b in zip(figures, base, strict=True))
            print(
                f"  {label:24} greenroom {mid:>10,.0f}  broadcast {broadcast:>10,.0f}  "
                f"ratio {statistics.median(each):.2f} (rounds {each[0]:.2f}-{each[-1]:.2f})"
            )
        print(
            "  (one tell per event on both sides for the target line; a batch gives the\n"
            "   subscribers many events per wake-up; rt.replay.append is an ask, so the\n"
            "   appender waits for each event's cursor and the 100 subscriber threads wake\n"
            "   once per event)"
        )

        r = bench_replay_after(rt, calls)
        print("rt.replay.after of 2,048 events (time per call, median; ratio greenroom/pykka)")
        print(
            f"  {'whole buffer':24} greenroom {r['green'] * 1e6:>8.1f} us  "
            f"pykka ask {r['baseline'] * 1e6:>8.1f} us  ratio {r['green'] / r['baseline']:.2f}"
        )
    rows: list[Row] = [
        figure(
            f"fan-out to {SUBSCRIBERS}, rt.replay.publish per event",
            statistics.median(published),
            "deliveries/s",
            baseline=broadcast,
            baseline_label="pykka broadcast",
            ratio=ratio,
            target=Target(">=", 1.0),
        ),
        figure(
            f"fan-out to {SUBSCRIBERS}, batches of {BATCH}",
            statistics.median(batched),
            "deliveries/s",
            baseline=broadcast,
            baseline_label="pykka broadcast",
            ratio=statistics.median(b / base_ for b, base_ in zip(batched, base, strict=True)),
        ),
        figure(
            f"append, batches of {BATCH}",
            a["batched"],
            "events/s",
            baseline=a["baseline"],
            baseline_label="pykka ask each",
            ratio=a["batched"] / a["baseline"],
        ),
        figure(
            "rt.replay.after of 2,048 events",
            r["green"] * 1e6,
            "us",
            baseline=r["baseline"] * 1e6,
            baseline_label="pykka ask",
            ratio=r["green"] / r["baseline"],
        ),
    ]
    write_rows(args.json, rows)


if __name__ == "__main__":
    main()
