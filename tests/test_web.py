"""`greenroom.web`: Server-Sent Events and the block routes, over real HTTP.

Each test serves the app with uvicorn on 127.0.0.1 (a free port, in a thread of the
test process, so the test can publish into the same runtime) and talks to it with
httpx, a real HTTP client.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

from greenroom import Runtime  # noqa: E402
from greenroom.web import GreenroomWeb, app  # noqa: E402

TIMEOUT = httpx.Timeout(10.0)
TOKEN = "a-token-of-sixteen-plus"


@contextmanager
def serving(web: GreenroomWeb) -> Iterator[str]:
    """Serve `web` on 127.0.0.1; its base URL. Stops it (streams first) on exit."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(web, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()  # (the port listens already: requests wait for the server)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        web.close_streams()
        server.should_exit = True
        thread.join(15)
        assert not thread.is_alive()


class Stream:
    """One SSE connection: its frames, read as they come."""

    def __init__(self, response: Any) -> None:
        self.response = response
        self._lines = response.iter_lines()
        self.comments: list[str] = []

    def next(self) -> dict[str, str]:
        """The next event's fields (`id`, `event`, `data`); comments are kept aside."""
        fields: dict[str, str] = {}
        for line in self._lines:
            if line == "":
                if "event" in fields or "data" in fields:
                    return fields
                fields = {}
                continue
            if line.startswith(":"):
                self.comments.append(line)
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
        raise EOFError("the stream ended")

    def events(self, n: int) -> list[dict[str, Any]]:
        """The next `n` observations' data, checking each id is its cursor."""
        out = []
        for _ in range(n):
            frame = self.next()
            assert frame["event"] == "observation", frame
            data = json.loads(frame["data"])
            assert frame["id"] == data["cursor"]
            out.append(data)
        return out


@contextmanager
def stream(base: str, session: str, **kwargs: Any) -> Iterator[Stream]:
    with httpx.stream(
        "GET", f"{base}/sessions/{session}/events", timeout=TIMEOUT, **kwargs
    ) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield Stream(response)


def publish(rt: Runtime, session: str, *numbers: int) -> None:
    rt.replay.publish_many(session, [{"n": n} for n in numbers])


def test_events_stream_from_the_oldest_held_then_live(rt: Runtime) -> None:
    publish(rt, "s1", 1, 2, 3)
    with serving(app(rt)) as base, stream(base, "s1") as events:
        assert [e["payload"] for e in events.events(3)] == [{"n": 1}, {"n": 2}, {"n": 3}]
        publish(rt, "s1", 4, 5)
        live = events.events(2)
        assert [e["payload"]["n"] for e in live] == [4, 5]
        assert [e["position"] for e in live] == [4, 5]


def test_a_reconnect_with_last_event_id_gets_exactly_what_it_missed(rt: Runtime) -> None:
    publish(rt, "s1", *range(1, 6))
    with serving(app(rt)) as base:
        with stream(base, "s1") as first:
            seen = first.events(2)
        publish(rt, "s1", *range(6, 9))
        last_id = seen[-1]["cursor"]
        with stream(base, "s1", headers={"Last-Event-ID": last_id}) as again:
            rest = again.events(6)
        with stream(base, "s1", params={"cursor": last_id}) as by_parameter:
            same = by_parameter.events(6)
    assert [e["payload"]["n"] for e in rest] == [3, 4, 5, 6, 7, 8]
    assert same == rest


def test_a_cursor_from_before_a_restart_is_a_gap_then_live_events(open_rt: Any) -> None:
    first = open_rt()
    publish(first, "s1", 1, 2)
    with serving(app(first)) as base, stream(base, "s1") as events:
        old = events.events(2)[-1]["cursor"]
    first.close()
    second = open_rt()  # a new process, say: the buffer's epoch is new
    with (
        serving(app(second)) as base,
        stream(base, "s1", headers={"Last-Event-ID": old}) as events,
    ):
        gap = events.next()
        assert gap["event"] == "gap"
        data = json.loads(gap["data"])
        assert data["reason"] == "unavailable"
        assert gap["id"] == data["latest_cursor"]
        publish(second, "s1", 10)
        assert events.events(1)[0]["payload"] == {"n": 10}


def test_trimmed_events_are_a_gap(open_rt: Any) -> None:
    rt = open_rt(max_events_per_session=5)
    publish(rt, "s1", 1, 2)
    with serving(app(rt)) as base:
        with stream(base, "s1") as events:
            old = events.events(1)[0]["cursor"]
        publish(rt, "s1", *range(3, 11))  # 1 to 5 are trimmed
        with stream(base, "s1", headers={"Last-Event-ID": old}) as events:
            gap = events.next()
            data = json.loads(gap["data"])
            assert (gap["event"], data["reason"], data["oldest_position"]) == ("gap", "trimmed", 6)
            # On from the gap's latest cursor: what comes next.
            assert gap["id"] == data["latest_cursor"]
            publish(rt, "s1", 11)
            assert [e["payload"]["n"] for e in events.events(1)] == [11]
        # A new client (no cursor) gets what is held, without a gap.
        with stream(base, "s1") as fresh:
            assert [e["payload"]["n"] for e in fresh.events(5)] == [7, 8, 9, 10, 11]


def test_heartbeats_and_a_clean_end_on_shutdown(rt: Runtime) -> None:
    web = app(rt, heartbeat_s=0.05)
    with serving(web) as base, stream(base, "quiet") as events:
        ended = threading.Event()

        def read_to_the_end() -> None:
            try:
                events.next()
            except EOFError:
                ended.set()

        reader = threading.Thread(target=read_to_the_end)
        reader.start()
        # Heartbeats come while nothing happens; then the server closes the streams.
        while len(events.comments) < 2:
            assert reader.is_alive()
            reader.join(0.05)
        web.close_streams()
        reader.join(10)
        assert ended.is_set()
        assert events.comments[0] == ": heartbeat"


def test_a_slow_client_does_not_slow_the_others(open_rt: Any) -> None:
    rt = open_rt(max_events_per_session=10_000, subscriber_queue_size=64)
    with serving(app(rt)) as base, stream(base, "s1") as slow, stream(base, "s1") as fast:
        publish(rt, "s1", *range(1, 3001))  # far past the slow one's queue of 64
        assert [e["payload"]["n"] for e in fast.events(3000)] == list(range(1, 3001))
        # The slow one lagged, and was resumed from its last cursor: nothing skipped.
        assert [e["payload"]["n"] for e in slow.events(3000)] == list(range(1, 3001))


def test_the_token_is_wanted_on_every_route(rt: Runtime) -> None:
    with serving(app(rt, token=TOKEN)) as base:
        for path in ("/", "/blocks", "/blocks/x", "/sessions/s1/events"):
            refused = httpx.get(base + path, timeout=TIMEOUT)
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"] == "Bearer"
        assert (
            httpx.get(base + "/blocks", params={"token": "wrong-token-0123456"}).status_code == 401
        )
        ok = httpx.get(base + "/blocks", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200
        assert httpx.get(base + "/", params={"token": TOKEN}).status_code == 200


def test_the_block_routes_read_stats_metadata_and_output(rt: Runtime) -> None:
    pane = rt.blocks.get("pane-1")
    pane.append_output(b"first line\nsecond line\n" + b"x" * 100_000)
    pane.flush()
    pane.update_meta({"session:exit_code": 0})
    with serving(app(rt)) as base:
        listed = httpx.get(base + "/blocks", timeout=TIMEOUT).json()
        assert [(b["id"], b["line_count"], b["exit_code"]) for b in listed] == [("pane-1", 2, 0)]
        one = httpx.get(base + "/blocks/pane-1", timeout=TIMEOUT).json()
        assert one["meta"]["session:exit_code"] == 0
        whole = httpx.get(base + "/blocks/pane-1/output", timeout=TIMEOUT)
        assert whole.content == b"first line\nsecond line\n" + b"x" * 100_000
        part = httpx.get(
            base + "/blocks/pane-1/output", headers={"Range": "bytes=6-9"}, timeout=TIMEOUT
        )
        assert (part.status_code, part.content) == (206, b"line")
        assert part.headers["content-range"] == f"bytes 6-9/{len(whole.content)}"
        tail = httpx.get(
            base + "/blocks/pane-1/output", headers={"Range": "bytes=-3"}, timeout=TIMEOUT
        )
        assert tail.content == b"xxx"
        beyond = httpx.get(
            base + "/blocks/pane-1/output", headers={"Range": "bytes=999999-"}, timeout=TIMEOUT
        )
        assert beyond.status_code == 416
        assert httpx.get(base + "/blocks/nope", timeout=TIMEOUT).status_code == 404
        assert httpx.get(base + "/sessions/%00/events", timeout=TIMEOUT).status_code == 400
        bad_cursor = httpx.get(
            base + "/sessions/s1/events", params={"cursor": "v9:x"}, timeout=TIMEOUT
        )
        assert bad_cursor.status_code == 400
        page = httpx.get(base + "/", timeout=TIMEOUT)
        assert "EventSource" in page.text
        assert httpx.post(base + "/blocks", timeout=TIMEOUT).status_code == 405  # no writes


def test_greenroom_serve_serves_the_database_and_stops_cleanly(open_rt: Any, tmp_path: Any) -> None:
    host = open_rt()
    pane = host.blocks.get("pane-1")
    pane.append_output(b"hello\n")
    pane.flush()
    db = host.path
    host.close()
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    command = [sys.executable, "-m", "greenroom.cli", "serve", db, "--port", "0"]
    server = subprocess.Popen(
        [*command, "--token-file", str(token_file)], stderr=subprocess.PIPE, text=True
    )
    try:
        assert server.stderr is not None
        found = re.search(r"serving (http://127\.0\.0\.1:\d+/)", server.stderr.readline())
        assert found
        base = found.group(1).rstrip("/")
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert httpx.get(base + "/blocks", timeout=TIMEOUT).status_code == 401
        listed = httpx.get(base + "/blocks", headers=auth, timeout=TIMEOUT).json()
        assert [b["id"] for b in listed] == ["pane-1"]
        with stream(base, "pane-1", headers=auth) as events:
            assert events.response.status_code == 200
            server.send_signal(signal.SIGINT)  # the stream ends, then the server
            with pytest.raises(EOFError):
                events.next()
        assert server.wait(timeout=20) == 130  # interrupted (Ctrl-C), as every command
    finally:
        if server.poll() is None:
            server.kill()
