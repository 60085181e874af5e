"""Server-Sent Events fan-out: 1,000 clients following one session, against a bare SSE app.

Measured in one run, round by round (bare, greenroom, bare, greenroom, ...; the median
of each figure over the rounds of each), so drift in the machine's load hits both:

- greenroom: `greenroom.web.app(rt)` over a `Runtime` (a temporary database file, the
  real clock; the replay buffer holds every event and each subscriber's queue takes
  them all, so nothing is trimmed or lagged; lags are counted and printed anyway);
- bare: a Starlette endpoint that registers one `asyncio.Queue` per client and streams
  frames from it; the publisher puts each event into every queue. It sends the same
  stream, byte for byte in shape (`retry:`, then `id:` cursor, `event: observation`,
  `data:` the same JSON, encoded once per event as greenroom does), with a heartbeat
  while idle as greenroom has, so the difference is the delivery machinery: replay
  buffer, subscriptions, wake-ups and follower against a queue per client.

Each server runs in a child process of its own (uvicorn, h11, on 127.0.0.1 with a
backlog of 2,048), published into by a thread of that process, as a host's thread
publishes (`rt.replay.publish`; the bare app's puts are handed to its loop with
`call_soon_threadsafe`): the publisher keeps its schedule whatever the server's loop
is doing. The clients are in this process, so they do not share the server's GIL:
1,000 raw asyncio connections (HTTP/1.1, chunked SSE parsed by hand: less client work
than an HTTP library, and the same for both servers) to one session's stream. Once
every client has its stream open, each round has two phases on those connections:

1. burst: 200 events published back to back (one publish each): deliveries/s, every
   event to every client over the time from the first publish to the last delivery,
   which is what the server can deliver (target: greenroom / bare >= 0.8);
2. steady: 100 events at a steady rate of 5,000 deliveries/s in all (5 events/s to
   1,000 clients; well within both servers): the p50 and p99 delivery latency.

Each event is stamped with `stopwatch()` as it is published (CLOCK_MONOTONIC on
Linux: one clock for both processes, which the script checks); a delivery's latency
is the client's receive time minus the stamp.

    .venv/bin/python benchmarks/bench_web.py          # 1,000 clients, 2 rounds of each
    .venv/bin/python benchmarks/bench_web.py --quick  # 100 clients, 50 + 50 events, 1 round

`--json PATH` also writes the headline figures there as rows for `run_all.py`. The
servers are this file too (`--serve bare|greenroom`, driven over stdin and stdout).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import socket
import statistics
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

try:  # the web extra is optional: say what to install rather than a traceback
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route
except ImportError as error:
    raise SystemExit(
        f"bench_web needs the web extra ({error}): pip install 'greenroom[web]'"
    ) from None

from greenroom import Runtime, RuntimeConfig
from greenroom.clock import stopwatch
from greenroom.cursor import format_cursor
from greenroom.web import GreenroomWeb, app

from _table import Row, Target, add_json_option, cpu_model, figure, write_rows  # isort: skip

TARGET_RATIO = 0.8  # the target: greenroom deliveries/s >= 0.8 x the bare app's
TARGET = Target(">=", TARGET_RATIO)
SESSION = "bench-1"
LOAD = 5_000.0  # the steady phase: deliveries a second in all, well within both servers
HEARTBEAT_S = 15.0  # greenroom's default: no heartbeat falls inside a run
BACKLOG = 2048
CONNECT_AT_ONCE = 100  # connections being opened at a time (a burst overflows SYN queues)
TEXT = "a line of a tool's output, as a session streams it to a browser"
BARE_EPOCH = "0123456789abcdef"  # a cursor as long as greenroom's (token_hex(8))
# A frame's stamp: the payload is {"type", "n", "t", "text"}, in that order.
STAMP = re.compile(rb'"n":(\d+),"t":([0-9.e+-]+)')


def _payload(n: int) -> dict[str, Any]:
    return {"type": "line", "n": n, "t": stopwatch(), "text": TEXT}


def _raise_open_files(wanted: int) -> None:
    """One descriptor per connection: raise the soft limit as far as the hard one lets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    goal = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < goal:
        resource.setrlimit(resource.RLIMIT_NOFILE, (goal, hard))


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- the servers (a child process each: --serve) ------------------------------------------


def _frame(event: str, ident: str, data: dict[str, Any]) -> bytes:
    # As greenroom.web.sse frames an event: the same JSON settings, one `data:` line.
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    return f"id: {ident}\nevent: {event}\ndata: {text}\n\n".encode()


class BareSse:
    """The baseline: one `asyncio.Queue` per client; `publish` puts into every queue."""

    def __init__(self, heartbeat_s: float) -> None:
        self.heartbeat_s = heartbeat_s
        self.queues: set[asyncio.Queue[bytes | None]] = set()
        self.position = 0
        route = Route("/sessions/{session_id:path}/events", self.events)
        self.app = Starlette(routes=[route])

    async def events(self, _request: Request) -> Response:
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.queues.add(queue)

        async def body() -> AsyncIterator[bytes]:
            try:
                yield b"retry: 1000\n\n"
                while True:
                    try:
                        async with asyncio.timeout(self.heartbeat_s):
                            event = await queue.get()
                    except TimeoutError:
                        yield b": heartbeat\n\n"
                        continue
                    if event is None:
                        return
                    yield event
            finally:
                self.queues.discard(queue)

        return StreamingResponse(
            body(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    def publish(self, payload: dict[str, Any]) -> None:
        self.position += 1
        cursor = format_cursor(BARE_EPOCH, 0, self.position, SESSION)
        event = {
            "session_id": SESSION,
            "revision": 0,
            "position": self.position,
            "cursor": cursor,
            "payload": payload,
        }
        frame = _frame("observation", cursor, event)  # once, for every client
        for queue in self.queues:
            queue.put_nowait(frame)

    def close_streams(self) -> None:
        for queue in self.queues:
            queue.put_nowait(None)


async def _line() -> str:
    # The parent's commands, read on a worker thread: the loop only serves.
    return await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _publish(
    publish: Callable[[dict[str, Any]], None], first: int, events: int, rate: float | None
) -> float:
    """Events `first`, `first + 1`, ...: back to back, or `rate` a second (a steady
    schedule kept whatever the server does: an open loop). The last publish's time."""
    pause = threading.Event()  # never set: its wait is the sleep
    start = stopwatch()
    for i in range(events):
        if rate is not None:
            pause.wait(max(0.0, start + i / rate - stopwatch()))
        publish(_payload(first + i))
    return stopwatch()


async def serve(kind: str, clients: int, db: Path) -> None:
    """Serve one kind of stream; publish on each "go FIRST COUNT [RATE]", until "stop"."""
    _raise_open_files(clients + 256)
    rt: Runtime | None = None
    web: GreenroomWeb | BareSse
    loop = asyncio.get_running_loop()
    if kind == "greenroom":
        config = RuntimeConfig(
            # Room for every event of a run: nothing is trimmed, and a subscriber lags
            # only if it falls 4,096 events behind (lags are counted and printed).
            max_events_per_session=8192,
            subscriber_queue_size=4096,
        )
        rt = Runtime.open(db, config=config)
        web = app(rt, heartbeat_s=HEARTBEAT_S)
        asgi: Any = web
        replay = rt.replay

        def publish(payload: dict[str, Any]) -> None:
            replay.publish(SESSION, payload)  # a tell, from the host's thread

    else:
        bare = web = BareSse(HEARTBEAT_S)
        asgi = bare.app

        def publish(payload: dict[str, Any]) -> None:
            # The queues are the loop's: the put runs there (the stamp is taken here).
            loop.call_soon_threadsafe(bare.publish, payload)

    listener = socket.create_server(("127.0.0.1", 0), backlog=BACKLOG)
    server = uvicorn.Server(
        uvicorn.Config(
            asgi,
            log_level="warning",
            lifespan="off",
            http="h11",
            backlog=BACKLOG,
            timeout_graceful_shutdown=5,
        )
    )
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    _say({"port": listener.getsockname()[1], "now": stopwatch()})
    try:
        while (command := (await _line()).split()) and command[0] == "go":
            first, count = int(command[1]), int(command[2])
            rate = float(command[3]) if len(command) > 3 else None
            # A thread of its own, as a host's: the publisher never waits for the loop.
            last = await asyncio.to_thread(_publish, publish, first, count, rate)
            _say({"last_publish": last})
        counters = rt.metrics() if rt is not None else {}
        _say(
            {
                "lags": counters.get("replay_subscriber_lags", 0),
                "missed": counters.get("replay_events_missed", 0),
                "trimmed": counters.get("replay_events_trimmed", 0),
            }
        )
    finally:
        web.close_streams()  # uvicorn waits for open responses: end the streams first
        server.should_exit = True
        await serving
        if rt is not None:
            rt.close()


# -- the clients (this process) -----------------------------------------------------------


class Tally:
    """What the clients received in one phase of a round."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.last_delivery = 0.0
        self.first_publish: float | None = None  # the stamp of the phase's first event
        self.out_of_order = 0

    def figures(self, expected: int, last_publish: float) -> dict[str, float]:
        delivered = len(self.latencies)
        first = last_publish if self.first_publish is None else self.first_publish
        span = max(self.last_delivery - first, 1e-9)
        nan = float("nan")
        return {
            "deliveries_per_s": delivered / span,
            "p50_ms": _pct(self.latencies, 0.5) * 1e3 if delivered else nan,
            "p99_ms": _pct(self.latencies, 0.99) * 1e3 if delivered else nan,
            "delivered": delivered,
            "expected": expected,
            "span_s": span,
            "publish_s": last_publish - first,
            "out_of_order": self.out_of_order,
        }


class SseClient(asyncio.Protocol):
    """One stream: HTTP/1.1, its chunks decoded and its frames split by hand."""

    def __init__(self, request: bytes) -> None:
        self.loop = asyncio.get_running_loop()
        self.request = request
        self.ready: asyncio.Future[None] = self.loop.create_future()  # `retry:` came
        self.done: asyncio.Future[None] = self.loop.create_future()  # the phase's last came
        self.tally = Tally()
        self.last = 0  # the number of the phase's last event
        self.transport: asyncio.Transport | None = None
        self.raw = bytearray()
        self.body = bytearray()
        self.headed = False
        self.seen = 0

    def arm(self, tally: Tally, last: int) -> None:
        """Count the next phase's events into `tally`, done at event `last`."""
        self.tally, self.last = tally, last
        self.done = self.loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = stopwatch()  # every frame of this read arrived now
        raw = self.raw
        raw += data
        pos = 0
        if not self.headed:
            end = raw.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(raw[:end]).lower()
            if not head.startswith(b"http/1.1 200") or b"transfer-encoding: chunked" not in head:
                self._fail(f"unexpected response head {head[:200]!r}")
                return
            self.headed = True
            pos = end + 4
        while True:  # whole chunks only: each is one small frame
            eol = raw.find(b"\r\n", pos)
            if eol < 0:
                break
            size = int(raw[pos:eol].split(b";")[0], 16)
            end = eol + 2 + size
            if len(raw) < end + 2:
                break
            self.body += raw[eol + 2 : end]
            pos = end + 2
            if size == 0:
                break
        del raw[:pos]
        self._frames(now)

    def _frames(self, now: float) -> None:
        body, pos, tally = self.body, 0, self.tally
        while (end := body.find(b"\n\n", pos)) >= 0:
            frame = body[pos:end]
            pos = end + 2
            stamp = STAMP.search(frame)
            if stamp is None:
                if frame.startswith(b"retry:") and not self.ready.done():
                    self.ready.set_result(None)
                continue  # a heartbeat, or the retry
            n, sent = int(stamp[1]), float(stamp[2])
            if n != self.seen + 1:
                tally.out_of_order += 1
            self.seen = n
            if tally.first_publish is None:
                tally.first_publish = sent  # events come in order: the phase's first
            tally.latencies.append(now - sent)
            if now > tally.last_delivery:
                tally.last_delivery = now
            if n == self.last and not self.done.done():
                self.done.set_result(None)
        del body[:pos]

    def _fail(self, why: str) -> None:
        for future in (self.ready, self.done):
            if not future.done():
                future.set_exception(ConnectionError(why))
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(f"the stream ended ({exc or 'closed'}) after {self.seen} events")


async def _connect(port: int, clients: int) -> list[SseClient]:
    """`clients` streams of the session, each open (its `retry:` frame read)."""
    loop = asyncio.get_running_loop()
    request = (
        f"GET /sessions/{SESSION}/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
    ).encode()
    gate = asyncio.Semaphore(CONNECT_AT_ONCE)

    async def one() -> SseClient:
        async with gate:
            _, client = await loop.create_connection(lambda: SseClient(request), "127.0.0.1", port)
            await client.ready
            return client

    return list(await asyncio.wait_for(asyncio.gather(*(one() for _ in range(clients))), 120))


class Server:
    """A server child process (`--serve KIND`), driven over its stdin and stdout."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdin is not None
        assert proc.stdout is not None
        self.proc, self.stdin, self.stdout = proc, proc.stdin, proc.stdout

    @classmethod
    async def start(cls, kind: str, clients: int, db: Path) -> tuple[Server, int]:
        """The child, once it listens, and its port."""
        command = [sys.executable, str(Path(__file__).resolve()), "--serve", kind]
        command += ["--clients", str(clients), "--db", str(db)]
        before = stopwatch()
        proc = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        server = cls(proc)
        hello = await server.ask("")
        if not before <= hello["now"] <= stopwatch():
            await server.stop()
            raise SystemExit(
                "bench_web: stopwatch() is not one clock across processes here (it is "
                "CLOCK_MONOTONIC on Linux): delivery latencies cannot be measured"
            )
        return server, int(hello["port"])

    async def ask(self, command: str) -> dict[str, Any]:
        if command:
            self.stdin.write(command.encode() + b"\n")
            await self.stdin.drain()
        line = await asyncio.wait_for(self.stdout.readline(), 600)
        if not line:
            raise SystemExit(f"bench_web: the server child exited ({command or 'starting'})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.stdin.close()  # end of its commands: it closes its streams and exits
        try:
            await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


async def one_round(
    kind: str, clients: int, events: int, steady: int, rate: float, db: Path
) -> dict[str, Any]:
    """One server child, `clients` streams; `events` back to back, then `steady` at
    `rate` a second: each phase's figures, and the server's lags."""
    server, port = await Server.start(kind, clients, db)
    streams: list[SseClient] = []
    result: dict[str, Any] = {}
    try:
        streams = await _connect(port, clients)
        first = 1
        for phase, count, at in (("burst", events, None), ("steady", steady, rate)):
            tally = Tally()
            for stream in streams:
                stream.arm(tally, first + count - 1)
            command = f"go {first} {count}" + ("" if at is None else f" {at!r}")
            published = await server.ask(command)
            limit = 120.0 + (0.0 if at is None else count / at)
            waiting = [stream.done for stream in streams]
            finished, _ = await asyncio.wait(waiting, timeout=limit)
            failed = len(waiting) - sum(1 for f in finished if f.exception() is None)
            result[phase] = tally.figures(clients * count, published["last_publish"])
            result[phase]["failed_clients"] = failed
            first += count
        result.update(await server.ask("stop"))
    finally:
        for stream in streams:
            if stream.transport is not None:
                stream.transport.close()
        await server.stop()
    return result


def _describe(phase: dict[str, Any]) -> str:
    return (
        f"{phase['deliveries_per_s']:9,.0f} deliveries/s   p50 {phase['p50_ms']:7.1f} ms   "
        f"p99 {phase['p99_ms']:7.1f} ms   ({phase['delivered']:,} of {phase['expected']:,} "
        f"in {phase['span_s']:.2f} s, published in {phase['publish_s']:.2f} s"
        + (f"; {phase['failed_clients']} clients failed" if phase["failed_clients"] else "")
        + (f"; {phase['out_of_order']} out of order" if phase["out_of_order"] else "")
        + ")"
    )


async def bench(
    clients: int, events: int, steady: int, rate: float, rounds: int
) -> dict[str, list[dict[str, Any]]]:
    """`rounds` rounds of each kind, alternating, bare first."""
    results: dict[str, list[dict[str, Any]]] = {"bare": [], "greenroom": []}
    with tempfile.TemporaryDirectory(prefix="greenroom-bench-web-") as folder:
        for n in range(rounds):
            for kind in ("bare", "greenroom"):
                db = Path(folder) / f"{kind}-{n}.db"  # a new database each round
                r = await one_round(kind, clients, events, steady, rate, db)
                results[kind].append(r)
                lags = f"   lags {r['lags']}, trimmed {r['trimmed']}" if r.get("lags") else ""
                print(f"  round {n + 1} {kind:9} burst  {_describe(r['burst'])}", flush=True)
                print(f"  round {n + 1} {kind:9} steady {_describe(r['steady'])}{lags}", flush=True)
    return results


def _median(runs: list[dict[str, Any]], phase: str, key: str) -> float:
    return float(statistics.median(run[phase][key] for run in runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts (a smoke test)")
    add_json_option(parser)
    parser.add_argument("--clients", type=int, help="streams (default 1,000; --quick 100)")
    parser.add_argument(
        "--events", type=int, help="events published back to back (default 200; --quick 50)"
    )
    parser.add_argument(
        "--steady", type=int, help="events published at a steady rate (default 100; --quick 50)"
    )
    parser.add_argument(
        "--load",
        type=float,
        default=LOAD,
        help=f"the steady phase's deliveries/s in all (default {LOAD:,.0f}): its rate is "
        "LOAD / clients events a second",
    )
    parser.add_argument("--rounds", type=int, help="rounds of each server (default 2; --quick 1)")
    parser.add_argument("--serve", choices=("bare", "greenroom"), help=argparse.SUPPRESS)
    parser.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    clients = args.clients or (100 if args.quick else 1_000)
    if args.serve:
        asyncio.run(serve(args.serve, clients, args.db))
        return
    print(f"CPU: {cpu_model()}, {os.cpu_count()} CPUs")
    events = args.events or (50 if args.quick else 200)
    steady = args.steady or (50 if args.quick else 100)
    rounds = args.rounds or (1 if args.quick else 2)
    rate = args.load / clients

    _raise_open_files(clients + 256)
    print(
        f"SSE fan-out: {clients:,} clients following one session, greenroom.web against a "
        f"bare Starlette app with one asyncio.Queue per client; per round {events} events "
        f"back to back (burst: deliveries/s), then {steady} at {rate:g}/s (steady: delivery "
        f"latency); {rounds} round(s) of each, alternating"
    )
    r = asyncio.run(bench(clients, events, steady, rate, rounds))
    green, bare = r["greenroom"], r["bare"]
    g_rate = _median(green, "burst", "deliveries_per_s")
    b_rate = _median(bare, "burst", "deliveries_per_s")
    ratio = g_rate / b_rate
    verdict = "PASS" if TARGET.met(ratio) else "FAIL"
    print(
        f"  median  burst deliveries/s  bare {b_rate:,.0f}   greenroom {g_rate:,.0f}   "
        f"ratio greenroom / bare {ratio:.2f} (target >= {TARGET_RATIO}: {verdict})"
    )
    latency: dict[str, tuple[float, float]] = {}
    for q in ("p50", "p99"):
        b, g = _median(bare, "steady", f"{q}_ms"), _median(green, "steady", f"{q}_ms")
        latency[q] = (g, b)
        print(
            f"  median  steady {q} delivery latency  bare {b:.1f} ms   greenroom {g:.1f} ms   "
            f"ratio greenroom / bare {g / b:.2f}"
        )
    lags = sum(run["lags"] for run in green)
    if lags:
        print(f"  greenroom subscriptions lagged {lags} times in all (each was resumed)")

    label = "bare Starlette, a queue per client"
    rows: list[Row] = [
        figure(
            f"SSE deliveries/s, {clients:,} clients",
            g_rate,
            "/s",
            baseline=b_rate,
            baseline_label=label,
            ratio=ratio,
            target=TARGET,
        )
    ]
    for q, (g, b) in latency.items():
        rows.append(
            figure(
                f"SSE delivery latency {q} at {args.load:,.0f}/s, {clients:,} clients",
                g,
                "ms",
                baseline=b,
                baseline_label=label,
                ratio=g / b,
            )
        )
    write_rows(args.json, rows)


if __name__ == "__main__":
    main()
