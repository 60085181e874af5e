"""`greenroom.processes`: real programs under a pseudo-terminal, their output in blocks."""

from __future__ import annotations

import logging
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from greenroom import Follower, ObservationEvent, Runtime
from greenroom.errors import InvalidInput
from greenroom.processes import MAX_EVENT_CHARS, spawn

WAIT = 30.0  # real seconds a test waits for a program


def python(code: str) -> list[str]:
    """argv running `code` in a fresh interpreter, unbuffered."""
    return [sys.executable, "-u", "-c", textwrap.dedent(code)]


def output(rt: Runtime, block_id: str) -> bytes:
    return rt.blocks.get(block_id).read_output().data


def next_line(follower: Follower) -> str:
    """The text of the next line event (waiting for it in real time)."""
    item = follower.next_item(WAIT)
    assert isinstance(item, ObservationEvent), item
    text: str = item.payload["text"]
    return text


def test_the_output_is_stored_byte_for_byte(rt: Runtime, tmp_path: Path) -> None:
    burst = tmp_path / "burst.bin"
    # 10 MB of every byte value, newlines and carriage returns among them.
    burst.write_bytes(bytes(range(256)) * (10 * 1024 * 1024 // 256))
    code = f"""
        import os, sys
        out = sys.stdout.buffer
        out.write(b"half a line"); out.flush()
        out.write(b" ... and its end\\r\\nnext\\n")
        out.write(open({str(burst)!r}, "rb").read())
        out.write(b"last, no newline")
        print(os.isatty(1), os.isatty(0), file=sys.stderr)
    """
    proc = spawn(rt, "pane-1", python(code))
    assert proc.wait(WAIT) == 0
    expected = (
        b"half a line ... and its end\r\nnext\n"
        + burst.read_bytes()
        + b"last, no newline"
        + b"True True\n"
    )
    stored = output(rt, "pane-1")
    assert len(stored) == len(expected)
    assert stored == expected
    assert proc.bytes_read == len(expected)
    meta = rt.blocks.get("pane-1").meta()
    assert meta["session:exit_code"] == 0
    assert meta["session:ended_ms"] == rt.clock.now_ms()


def test_each_complete_line_is_an_event(rt: Runtime) -> None:
    cursor = rt.replay.current_cursor("agent-7")
    code = f"""
        import sys
        sys.stdout.write('{{"type": "thinking"}}\\r\\n')
        sys.stdout.write("part")
        sys.stdout.flush()
        sys.stdout.write("ial\\n" + "x" * {MAX_EVENT_CHARS + 10} + "\\n")
        sys.stdout.write("é and no newline")
    """
    proc = spawn(rt, "pane-2", python(code), session_id="agent-7")
    assert proc.wait(WAIT) == 0
    replayed = rt.replay.after(cursor)
    texts = [event.payload for event in replayed.events]  # type: ignore[union-attr]
    assert texts[:2] == [
        {"type": "line", "block_id": "pane-2", "text": '{"type": "thinking"}'},
        {"type": "line", "block_id": "pane-2", "text": "partial"},
    ]
    assert texts[2]["text"] == "x" * MAX_EVENT_CHARS
    assert texts[2]["cut"] == MAX_EVENT_CHARS + 10
    assert texts[3]["text"] == "é and no newline"  # the last line, at the end
    assert (proc.lines_published, proc.lines_cut) == (4, 1)


def test_exit_codes_and_signals(rt: Runtime) -> None:
    assert spawn(rt, "ok", python("pass")).wait(WAIT) == 0
    assert spawn(rt, "three", python("import sys; sys.exit(3)")).wait(WAIT) == 3
    sleeper = spawn(rt, "slept", python("import time; print('up'); time.sleep(60)"))
    sleeper.terminate()
    assert sleeper.wait(WAIT) == -15
    assert rt.blocks.get("slept").meta()["session:exit_code"] == -15
    assert rt.blocks.get("three").meta()["session:exit_code"] == 3


def test_a_program_that_ignores_sigterm_is_killed(rt: Runtime) -> None:
    code = """
        import signal, sys, time
        signal.signal(signal.SIGTERM, lambda *_: print("ignored SIGTERM", flush=True))
        print("ready", flush=True)
        while True:
            time.sleep(0.05)
    """
    with rt.replay.follow(rt.replay.current_cursor("stubborn")) as follower:
        stubborn = spawn(rt, "stubborn", python(code))
        assert next_line(follower) == "ready"
        stubborn.terminate()
        assert next_line(follower) == "ignored SIGTERM"
    assert stubborn.returncode is None
    stubborn.kill()
    assert stubborn.wait(WAIT) == -9
    assert b"ignored SIGTERM" in output(rt, "stubborn")


def test_programs_still_running_at_close_are_stopped_and_their_output_kept(
    open_rt: Any, caplog: pytest.LogCaptureFixture
) -> None:
    rt = open_rt(process_stop_timeout_s=0.5)
    follower = rt.replay.follow(rt.replay.current_cursor("both"))
    polite = spawn(
        rt, "polite", python("import time; print('working'); time.sleep(60)"), session_id="both"
    )
    stubborn = spawn(
        rt,
        "stubborn",
        python(
            """
            import signal, time
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            print("not stopping")
            time.sleep(60)
            """
        ),
        session_id="both",
    )
    assert {next_line(follower), next_line(follower)} == {"working", "not stopping"}
    follower.close()
    with caplog.at_level(logging.WARNING, logger="greenroom.processes"):
        rt.close()
    assert (polite.returncode, stubborn.returncode) == (-15, -9)
    assert "still ran when its runtime closed" in caplog.text
    assert "did not end 0.5 s after SIGTERM: killing it" in caplog.text
    again = open_rt()
    assert output(again, "polite") == b"working\n"
    assert again.blocks.get("polite").meta()["session:exit_code"] == -15
    assert again.blocks.get("stubborn").meta()["session:exit_code"] == -9


def test_bad_programs_are_refused(rt: Runtime, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="non-empty list"):
        spawn(rt, "x", [])
    with pytest.raises(InvalidInput, match="non-empty list"):
        spawn(rt, "x", "ls -l")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="could not start"):
        spawn(rt, "x", [str(tmp_path / "no-such-program")])
    spawned = spawn(rt, "cwd", python("import os; print(os.getcwd())"), cwd=tmp_path)
    assert spawned.wait(WAIT) == 0
    assert output(rt, "cwd") == f"{tmp_path}\n".encode()
