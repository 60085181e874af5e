"""Replay buffers on Redis Streams against bare redis-py loops, and the in-memory buffers.

Redis: `GREENROOM_REDIS_URL` if set (`make services`), else a `redis-server` this
script starts on a free port of 127.0.0.1 in a temporary folder (and stops). Three
figures, each in rounds that alternate greenroom and its baseline (the median ratio
and its range are printed; the target is a ratio >= 0.7, higher is better):

1. append, one host thread, one event at a time: `rt.replay.append` (which returns the
   event and its cursor) against a bare `XADD` of the same JSON per event (events/s);
2. `rt.replay.after` a cursor 2,048 events back (the whole default buffer) against a
   bare `XRANGE` of the same 2,048 entries (calls/s);
3. fan-out to 100 subscribers, each read on a thread of its own, from one publisher:
   `rt.replay.publish` per event, the subscribers fed by greenroom's one reader thread,
   against 100 threads each looping `XREAD BLOCK` on its own connection while one
   thread `XADD`s (deliveries/s, until every subscriber has every event).

Beside each, for information: the same greenroom call on the in-memory buffers.

    .venv/bin/python benchmarks/bench_replay_redis.py          # the full run (3 rounds)
    .venv/bin/python benchmarks/bench_replay_redis.py --quick  # 1 round, smaller counts

`--json PATH` also writes the headline figures there as rows for `run_all.py`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator

import redis

from greenroom import Replayed, Runtime, RuntimeConfig
from greenroom.clock import stopwatch

from bench_replay import bench_fan_out  # isort: skip
from _table import Row, Target, add_json_option, cpu_model, figure, write_rows  # isort: skip

SUBSCRIBERS = 100
PAYLOAD = {"type": "turn_activity", "text": "hello"}
DATA = json.dumps(PAYLOAD, separators=(",", ":"))
TARGET = Target(">=", 0.7)


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A Redis URL: GREENROOM_REDIS_URL, or a server started here for the run."""
    url = os.environ.get("GREENROOM_REDIS_URL")
    if url:
        yield url
        return
    program = shutil.which("redis-server")
    if program is None:
        raise SystemExit(
            "bench_replay_redis needs Redis: set GREENROOM_REDIS_URL (make services) or "
            "install redis-server"
        )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as folder:
        server = subprocess.Popen(
            [program, "--bind", "127.0.0.1", "--port", str(port), "--dir", folder, "--save", ""],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            # It says when it listens: wait for that line, not for a time.
            for line in server.stdout:
                if "Ready to accept connections" in line:
                    break
            else:
                raise SystemExit(f"redis-server on port {port} ended before it was ready")
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            server.terminate()
            server.wait(timeout=10)


def _session() -> str:
    return f"bench-{uuid.uuid4().hex}"


# -- 1. append ----------------------------------------------------------------------------


def append_ours(rt: Runtime, count: int) -> float:
    sid = _session()
    for _ in range(100):
        rt.replay.append(sid, PAYLOAD)
    began = stopwatch()
    for _ in range(count):
        rt.replay.append(sid, PAYLOAD)
    return count / (stopwatch() - began)


def append_bare(client: redis.Redis, count: int) -> float:
    key = _session()
    for _ in range(100):
        client.xadd(key, {"d": DATA})
    began = stopwatch()
    for _ in range(count):
        client.xadd(key, {"d": DATA})
    took = stopwatch() - began
    client.delete(key)
    return count / took


# -- 2. after -------------------------------------------------------------------------------


def after_ours(rt: Runtime, calls: int) -> float:
    sid = _session()
    start = rt.replay.current_cursor(sid)
    rt.replay.append_many(sid, [PAYLOAD] * 2048)
    result = rt.replay.after(start)
    assert isinstance(result, Replayed)
    assert len(result.events) == 2048
    began = stopwatch()
    for _ in range(calls):
        rt.replay.after(start)
    return calls / (stopwatch() - began)


def after_bare(client: redis.Redis, calls: int) -> float:
    key = _session()
    pipe = client.pipeline(transaction=False)
    for _ in range(2048):
        pipe.xadd(key, {"d": DATA})
    pipe.execute()
    assert len(client.xrange(key, "-", "+")) == 2048
    began = stopwatch()
    for _ in range(calls):
        client.xrange(key, "(0-0", "+")
    took = stopwatch() - began
    client.delete(key)
    return calls / took


# -- 3. fan-out -------------------------------------------------------------------------------


def fan_out_ours(rt: Runtime, events: int) -> float:
    """`bench_replay`'s fan-out (one `publish` per event, 100 subscribers)."""
    return bench_fan_out(rt, events, "publish")


def fan_out_bare(url: str, events: int) -> float:
    key = _session()
    ready = threading.Barrier(SUBSCRIBERS + 1)
    clients = [redis.Redis.from_url(url, decode_responses=True) for _ in range(SUBSCRIBERS)]

    def consume(client: redis.Redis) -> None:
        last = "0-0"
        seen = 0
        ready.wait()
        while seen < events:
            for _key, entries in client.xread({key: last}, block=60_000) or ():
                for entry_id, fields in entries:
                    json.loads(fields["d"])
                    last = entry_id
                    seen += 1

    threads = [threading.Thread(target=consume, args=(c,), daemon=True) for c in clients]
    for thread in threads:
        thread.start()
    producer = redis.Redis.from_url(url, decode_responses=True)
    ready.wait()
    began = stopwatch()
    for _ in range(events):
        producer.xadd(key, {"d": DATA})
    for thread in threads:
        thread.join()
    took = stopwatch() - began
    producer.delete(key)
    producer.close()
    for client in clients:
        client.close()
    return events * SUBSCRIBERS / took


# -- the run -----------------------------------------------------------------------------------


def _rounds(
    rounds: int, ours: Callable[[], float], bare: Callable[[], float]
) -> tuple[list[float], list[float]]:
    mine, theirs = [], []
    for _ in range(rounds):
        mine.append(ours())
        theirs.append(bare())
    return mine, theirs


def _line(label: str, unit: str, mine: list[float], theirs: list[float], memory: float) -> Row:
    ratios = [a / b for a, b in zip(mine, theirs, strict=True)]
    ratio = statistics.median(ratios)
    verdict = "PASS" if TARGET.met(ratio) else "FAIL"
    print(
        f"  {label:34} greenroom {statistics.median(mine):>10,.0f}  bare redis-py "
        f"{statistics.median(theirs):>10,.0f} {unit}  ratio {ratio:.2f} "
        f"({min(ratios):.2f}-{max(ratios):.2f}; target >= 0.7: {verdict})  "
        f"in-memory buffers {memory:>10,.0f}"
    )
    return figure(
        f"replay on Redis: {label}",
        statistics.median(mine),
        unit,
        baseline=statistics.median(theirs),
        baseline_label="bare redis-py loop",
        ratio=ratio,
        target=TARGET,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round, smaller counts")
    add_json_option(parser)
    args = parser.parse_args()
    scale = 0.2 if args.quick else 1.0
    rounds = 1 if args.quick else 3
    appends, calls, fan_events = int(5_000 * scale), int(300 * scale), int(2_000 * scale)

    print(f"CPU: {cpu_model()}")
    rows: list[Row] = []
    with redis_server() as url, tempfile.TemporaryDirectory(prefix="bench-") as folder:
        config = RuntimeConfig(subscriber_queue_size=fan_events + 10)
        on_redis = RuntimeConfig(subscriber_queue_size=fan_events + 10, replay_url=url)
        client = redis.Redis.from_url(url, decode_responses=True)
        with (
            Runtime.open(os.path.join(folder, "redis.db"), config=on_redis) as rt,
            Runtime.open(os.path.join(folder, "memory.db"), config=config) as memory,
        ):
            print(
                f"replay buffers on Redis Streams ({url}) against bare redis-py loops, "
                f"{rounds} alternating round(s); medians (range of the ratio)"
            )
            mine, theirs = _rounds(
                rounds, lambda: append_ours(rt, appends), lambda: append_bare(client, appends)
            )
            rows.append(
                _line(
                    "append, one event a call",
                    "events/s",
                    mine,
                    theirs,
                    append_ours(memory, appends),
                )
            )
            mine, theirs = _rounds(
                rounds, lambda: after_ours(rt, calls), lambda: after_bare(client, calls)
            )
            rows.append(
                _line(
                    "after, 2,048 events back", "calls/s", mine, theirs, after_ours(memory, calls)
                )
            )
            mine, theirs = _rounds(
                rounds,
                lambda: fan_out_ours(rt, fan_events),
                lambda: fan_out_bare(url, fan_events),
            )
            rows.append(
                _line(
                    f"fan-out to {SUBSCRIBERS} subscribers",
                    "deliveries/s",
                    mine,
                    theirs,
                    fan_out_ours(memory, fan_events),
                )
            )
        client.close()
    write_rows(args.json, rows)


if __name__ == "__main__":
    main()
