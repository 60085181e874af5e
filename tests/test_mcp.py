"""`greenroom mcp`: strategies served over stdio to the MCP SDK's own clients.

Each test starts `greenroom mcp` as a real process (the SDK's stdio client spawns it)
on a database in `tmp_path`, and talks to it with `mcp.client.Client` (the 2026-07-28
revision, multi round-trip requests) or a plain `ClientSession` (the handshake era).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import jsonschema
import pytest

mcp = pytest.importorskip("mcp")

import mcp.types as types  # noqa: E402
from mcp.client import Client  # noqa: E402
from mcp.client.session import ClientRequestContext, ClientSession  # noqa: E402
from mcp.client.stdio import StdioServerParameters, stdio_client  # noqa: E402

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def anyio_backend() -> str:
    """The SDK's clients under asyncio (the server is another process either way)."""
    return "asyncio"


def server_params(
    db: Path, pid_file: Path | None = None, *, synchronous: str = "FULL"
) -> StdioServerParameters:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if pid_file is not None:
        env["GREENROOM_TEST_PID_FILE"] = str(pid_file)
    return StdioServerParameters(
        command=sys.executable,
        args=[
            "-m",
            "greenroom.cli",
            "mcp",
            "--db",
            str(db),
            "--strategies",
            "tests.mcp_strategies",
            "--synchronous",
            synchronous,
        ],
        env=env,
        cwd=str(ROOT),
    )


ASKED: list[tuple[str, str | None, int, dict[str, Any]]] = []


async def llm(
    context: ClientRequestContext, params: types.CreateMessageRequestParams
) -> types.CreateMessageResult:
    """The client's "LLM": answers each prompt with a text derived from it."""
    prompt = "".join(
        block.text
        for message in params.messages
        for block in message.content_as_list
        if isinstance(block, types.TextContent)
    )
    meta = dict(params.meta or {})
    ASKED.append((prompt, params.system_prompt, params.max_tokens, meta))
    return types.CreateMessageResult.model_validate(
        {
            "role": "assistant",
            "content": {"type": "text", "text": f"<{prompt}>"},
            "model": "test-llm",
            "_meta": {"usage": {"input_tokens": 7, "output_tokens": 3}},
        }
    )


@pytest.fixture(autouse=True)
def _fresh_asked() -> None:
    ASKED.clear()


@asynccontextmanager
async def legacy_session(params: StdioServerParameters) -> AsyncIterator[ClientSession]:
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


@asynccontextmanager
async def modern_session(params: StdioServerParameters) -> AsyncIterator[ClientSession]:
    async with (
        stdio_client(params) as (read, write),
        ClientSession(read, write, sampling_callback=llm) as session,
    ):
        await session.discover()
        yield session


async def answer(session: ClientSession, result: types.InputRequiredResult) -> types.InputResponses:
    """Answer every input request of `result` through the session's sampling callback."""
    responses: types.InputResponses = {}
    for key, request in (result.input_requests or {}).items():
        context = ClientRequestContext(session=session, request_id=key, meta=None)
        response = await session.dispatch_input_request(context, request)
        assert not isinstance(response, types.ErrorData), response
        responses[key] = response
    return responses


async def retry(
    session: ClientSession,
    tool: str,
    arguments: dict[str, Any],
    responses: types.InputResponses | None,
    state: str | None,
) -> types.CallToolResult | types.InputRequiredResult:
    """The same call again with `responses` and `state`: a multi round-trip retry."""
    return await session.call_tool(
        tool,
        arguments,
        input_responses=responses,
        request_state=state,
        allow_input_required=True,
    )


def structured(result: types.CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    assert json.loads(result.content[0].text) == result.structured_content  # type: ignore[union-attr]
    return result.structured_content


def error_text(result: types.CallToolResult) -> str:
    assert result.is_error, result
    text = result.content[0].text  # type: ignore[union-attr]
    assert isinstance(text, str)
    assert "rt.executions" not in text  # never a Python call
    assert "executions." not in text
    return text


async def test_a_strategy_completes_through_input_required_rounds(tmp_path: Path) -> None:
    async with Client(server_params(tmp_path / "host.db"), sampling_callback=llm) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert {"panel", "fails", "schema", "greenroom_start", "greenroom_feed"} <= set(tools)
        panel = tools["panel"]
        assert panel.input_schema["required"] == ["question"]
        assert panel.input_schema["properties"]["judges"] == {"type": "integer", "default": 2}
        assert (
            panel.description == "Ask a panel of judges at once, then have their votes summed up."
        )
        assert tools["schema"].input_schema["properties"]["words"]["minItems"] == 1

        result = await client.call_tool("panel", {"question": "tabs?"})
        final = structured(result)
        assert panel.output_schema is not None
        jsonschema.validate(final, panel.output_schema)
    assert final["status"] == "completed"
    assert final["result"] == {
        "votes": ["<judge 0: tabs?>", "<judge 1: tabs?>"],
        "summary": "<sum up the votes ['<judge 0: tabs?>', '<judge 1: tabs?>']>",
    }
    assert (final["stats"]["rounds"], final["stats"]["llm_calls"]) == (2, 3)
    # The client's usage went in: tokens are the provided ones, not estimates.
    assert final["stats"]["total_tokens"] == {"value": 30, "source": "provided"}
    prompts = [(prompt, system, max_tokens) for prompt, system, max_tokens, _meta in ASKED]
    assert prompts == [
        ("judge 0: tabs?", "Answer yes or no.", 1024),
        ("judge 1: tabs?", "Answer yes or no.", 1024),
        ("sum up the votes ['<judge 0: tabs?>', '<judge 1: tabs?>']", None, 64),
    ]


async def test_each_round_is_one_input_required_result_and_a_forged_state_is_refused(
    tmp_path: Path,
) -> None:
    async with modern_session(server_params(tmp_path / "host.db")) as session:
        first = await session.call_tool("panel", {"question": "tabs?"}, allow_input_required=True)
        assert isinstance(first, types.InputRequiredResult)
        assert sorted(first.input_requests or {}) == ["q-1-0", "q-1-1"]
        responses = await answer(session, first)
        state = first.request_state
        assert state is not None

        forged = state[:-4] + ("AAAA" if not state.endswith("AAAA") else "BBBB")
        for bad in (forged, "not-a-state", json.dumps({"s": "s-x", "r": 1})):
            refused = await retry(session, "panel", {"question": "tabs?"}, responses, bad)
            assert isinstance(refused, types.CallToolResult)
            assert "requestState" in error_text(refused)
        other_call = await retry(session, "panel", {"question": "spaces?"}, responses, state)
        assert isinstance(other_call, types.CallToolResult)
        assert "belongs to another call" in error_text(other_call)

        # Half the round: the other query is asked again, with a fresh state.
        half = await retry(
            session, "panel", {"question": "tabs?"}, {"q-1-1": responses["q-1-1"]}, state
        )
        assert isinstance(half, types.InputRequiredResult)
        assert sorted(half.input_requests or {}) == ["q-1-0"]
        second = await retry(
            session,
            "panel",
            {"question": "tabs?"},
            {"q-1-0": responses["q-1-0"]},
            half.request_state,
        )
        assert isinstance(second, types.InputRequiredResult)
        assert sorted(second.input_requests or {}) == ["q-2-0"]
        # A state answers its own round only.
        ahead = await retry(
            session, "panel", {"question": "tabs?"}, {"q-2-0": responses["q-1-0"]}, state
        )
        assert isinstance(ahead, types.CallToolResult)
        assert "does not answer a request" in error_text(ahead)
        # A state replayed with the same answers changes nothing: the session is on.
        again = await retry(session, "panel", {"question": "tabs?"}, responses, state)
        assert isinstance(again, types.InputRequiredResult)
        assert sorted(again.input_requests or {}) == ["q-2-0"]
        # ... and with other answers it is refused: an answer is never changed.
        changed = {
            key: types.CreateMessageResult(
                role="assistant", content=types.TextContent(text="other"), model="m"
            )
            for key in responses
        }
        refused = await retry(session, "panel", {"question": "tabs?"}, changed, state)
        assert isinstance(refused, types.CallToolResult)
        assert "cannot be changed" in error_text(refused)


async def test_a_failing_strategy_a_cancel_and_bad_arguments_are_tool_errors(
    tmp_path: Path,
) -> None:
    async with modern_session(server_params(tmp_path / "host.db")) as session:
        first = await session.call_tool("fails", {"topic": "tides"}, allow_input_required=True)
        assert isinstance(first, types.InputRequiredResult)
        failed = await retry(
            session, "fails", {"topic": "tides"}, await answer(session, first), first.request_state
        )
        assert isinstance(failed, types.CallToolResult)
        assert "ValueError: no good answer about tides" in error_text(failed)

        paused = await session.call_tool("panel", {"question": "q"}, allow_input_required=True)
        assert isinstance(paused, types.InputRequiredResult)
        about = (paused.meta or {})["greenroom/queries"]
        assert about["queries"] == {
            "q-1-0": {"grounded": False, "underspecified": False},
            "q-1-1": {"grounded": False, "underspecified": False},
        }
        sid = about["session_id"]
        cancelled = structured(await session.call_tool("greenroom_cancel", {"session_id": sid}))
        assert (cancelled["status"], cancelled["session_id"]) == ("cancelled", sid)
        retried = await retry(
            session, "panel", {"question": "q"}, await answer(session, paused), paused.request_state
        )
        assert isinstance(retried, types.CallToolResult)
        assert "has ended; call greenroom_status" in error_text(retried)

        bad = await session.call_tool("panel", {"question": 3}, allow_input_required=True)
        assert isinstance(bad, types.CallToolResult)
        assert "question: 3 is not of type 'string'" in error_text(bad)
        missing = await session.call_tool("schema", {"words": []}, allow_input_required=True)
        assert isinstance(missing, types.CallToolResult)
        assert "words" in error_text(missing)


async def test_the_explicit_tools_serve_a_client_of_the_handshake_era(tmp_path: Path) -> None:
    params = server_params(tmp_path / "host.db", synchronous="NORMAL")  # (either will do)
    async with legacy_session(params) as session:
        listed = structured(await session.call_tool("greenroom_strategies", {}))
        assert [s["name"] for s in listed["strategies"]] == ["chatty", "fails", "panel", "schema"]

        # A strategy tool needs multi round-trip requests: the error says what to use.
        direct = await session.call_tool("panel", {"question": "q"})
        assert "greenroom_start" in error_text(direct)

        step = structured(
            await session.call_tool(
                "greenroom_start", {"strategy": "panel", "arguments": {"question": "q"}}
            )
        )
        sid = step["session_id"]
        assert step["status"] == "needs_response"
        assert [q["id"] for q in step["queries"]] == ["q-1-0", "q-1-1"]
        accepted = structured(
            await session.call_tool(
                "greenroom_feed", {"session_id": sid, "query_id": "q-1-0", "response": "yes"}
            )
        )
        assert (accepted["status"], accepted["remaining"], accepted["session_id"]) == (
            "accepted",
            1,
            sid,
        )
        assert [q["id"] for q in accepted["queries"]] == ["q-1-1"]
        single = structured(
            await session.call_tool(
                "greenroom_feed",
                {
                    "session_id": sid,
                    "query_id": "q-1-1",
                    "response": "no",
                    "usage": {"prompt_tokens": 4, "completion_tokens": 1},
                },
            )
        )
        # One query: the seed's single-query keys, and `queries` too.
        assert (single["query_id"], single["max_tokens"]) == ("q-2-0", 64)
        assert single["queries"][0]["id"] == "q-2-0"
        status = structured(await session.call_tool("greenroom_status", {"session_id": sid}))
        assert (status["state"], status["pending_queries"]) == ("paused", ["q-2-0"])
        done = structured(
            await session.call_tool("greenroom_feed", {"session_id": sid, "response": "1 yes"})
        )
        assert done["status"] == "completed"
        assert done["result"] == {"votes": ["yes", "no"], "summary": "1 yes"}
        assert done["session_id"] == sid

        unknown = await session.call_tool(
            "greenroom_feed", {"session_id": sid, "query_id": "q-9-9", "response": "x"}
        )
        assert "has ended" in error_text(unknown)
        nowhere = await session.call_tool("greenroom_status", {"session_id": "s-nope"})
        assert "greenroom_start" in error_text(nowhere)
        not_one = await session.call_tool("greenroom_start", {"strategy": "nope"})
        assert "greenroom_strategies" in error_text(not_one)


async def test_a_call_goes_on_after_the_server_is_killed_between_two_rounds(
    tmp_path: Path,
) -> None:
    db = tmp_path / "host.db"
    first, responses, second = await _kill_after_round_one(db, tmp_path / "server.pid")
    # A new server process on the same database: the same retry completes.
    async with modern_session(server_params(db)) as session:
        last = await answer(session, second)
        done = await retry(session, "panel", {"question": "q"}, last, second.request_state)
        assert isinstance(done, types.CallToolResult)
        final = structured(done)
        # A client that retries the round before (its answers are in) gets it too.
        again = await retry(session, "panel", {"question": "q"}, responses, first.request_state)
    assert final["result"]["summary"] == "<sum up the votes ['<judge 0: q>', '<judge 1: q>']>"
    assert isinstance(again, types.CallToolResult)
    assert structured(again) == final


async def test_a_round_answered_before_its_commit_survives_a_kill_in_that_window(
    tmp_path: Path,
) -> None:
    """A retry is answered before its answers are committed; its requestState carries
    them, so a server killed before the commit loses nothing."""
    _first, _answers, second = await _kill_after_round_one(
        tmp_path / "host.db", tmp_path / "server.pid", hold_commit=True
    )
    # The journal holds the first round's questions, not the answers (asked anew on
    # the re-drive); the state brings them back, and the call completes.
    async with modern_session(server_params(tmp_path / "host.db")) as session:
        last = await answer(session, second)
        done = await retry(session, "panel", {"question": "q"}, last, second.request_state)
    final = structured(done)  # type: ignore[arg-type]
    # The same crash, then a retry with the state alone (no answers): it too feeds the
    # carried answers, and its own state carries them on.
    _first, _answers, again = await _kill_after_round_one(
        tmp_path / "again.db", tmp_path / "again.pid", hold_commit=True
    )
    async with modern_session(server_params(tmp_path / "again.db")) as session:
        polled = await retry(session, "panel", {"question": "q"}, None, again.request_state)
        assert isinstance(polled, types.InputRequiredResult)
        assert set(polled.input_requests or {}) == {"q-2-0"}  # round 1 stays answered
        responses = await answer(session, polled)
        done = await retry(session, "panel", {"question": "q"}, responses, polled.request_state)
    assert structured(done)["result"] == final["result"]  # type: ignore[arg-type]
    assert final["result"] == {
        "votes": ["<judge 0: q>", "<judge 1: q>"],
        "summary": "<sum up the votes ['<judge 0: q>', '<judge 1: q>']>",
    }
    assert final["stats"]["rounds"] == 2


async def _kill_after_round_one(
    db: Path, pid_file: Path, *, hold_commit: bool = False
) -> tuple[types.InputRequiredResult, types.InputResponses, types.InputRequiredResult]:
    """Start `panel`, answer round 1, then kill the server with kill -9: the first
    result, its answers and the second round's result. With `hold_commit`, another
    connection holds the write lock meanwhile, so round 1's answers are not committed
    (the second result's state carries them)."""
    lock = sqlite3.connect(db, isolation_level=None, timeout=10)
    rounds: list[types.InputRequiredResult] = []
    answered: list[types.InputResponses] = []
    died: list[BaseException] = []
    try:
        async with modern_session(server_params(db, pid_file)) as session:
            first = await session.call_tool("panel", {"question": "q"}, allow_input_required=True)
            assert isinstance(first, types.InputRequiredResult)
            rounds.append(first)
            answered.append(await answer(session, first))
            if hold_commit:
                lock.execute("BEGIN IMMEDIATE")
            second = await retry(
                session, "panel", {"question": "q"}, answered[0], first.request_state
            )
            assert isinstance(second, types.InputRequiredResult)
            rounds.append(second)
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
            await session.call_tool("greenroom_strategies", {})
    except Exception as error:  # the session dies with its server
        died.append(error)
    finally:
        if lock.in_transaction:
            lock.execute("ROLLBACK")
        lock.close()
    assert died, "the killed server still answered"
    assert len(rounds) == 2, died
    return rounds[0], answered[0], rounds[1]


async def test_answers_given_again_with_the_rest_of_their_round_go_in_once(
    tmp_path: Path,
) -> None:
    async with modern_session(server_params(tmp_path / "host.db")) as session:
        first = await session.call_tool("panel", {"question": "q"}, allow_input_required=True)
        assert isinstance(first, types.InputRequiredResult)
        responses = await answer(session, first)
        part = await retry(
            session, "panel", {"question": "q"}, {"q-1-0": responses["q-1-0"]}, first.request_state
        )
        assert isinstance(part, types.InputRequiredResult)
        assert set(part.input_requests or {}) == {"q-1-1"}
        # The client sends the whole round (q-1-0 again, the same): no error.
        whole = await retry(session, "panel", {"question": "q"}, responses, part.request_state)
        assert isinstance(whole, types.InputRequiredResult), whole
        assert set(whole.input_requests or {}) == {"q-2-0"}


async def test_a_round_with_answers_too_big_to_carry_is_committed_first(tmp_path: Path) -> None:
    """Answers a state could not carry (over half its 16 MiB) are fed durably: the next
    state carries none, and the call goes on."""
    big = "y" * (5 * 1024 * 1024)
    async with modern_session(server_params(tmp_path / "host.db")) as session:
        first = await session.call_tool("panel", {"question": "q"}, allow_input_required=True)
        assert isinstance(first, types.InputRequiredResult)
        responses = {
            key: types.CreateMessageResult.model_validate(
                {"role": "assistant", "content": {"type": "text", "text": big}, "model": "m"}
            )
            for key in first.input_requests or {}
        }
        second = await retry(session, "panel", {"question": "q"}, responses, first.request_state)
        assert isinstance(second, types.InputRequiredResult), second
        assert second.request_state is not None
        assert len(second.request_state) < 4096  # it carries nothing
        last = await answer(session, second)
        done = await retry(session, "panel", {"question": "q"}, last, second.request_state)
    assert structured(done)["result"]["votes"] == [big, big]  # type: ignore[arg-type]


async def test_stray_output_of_a_strategy_goes_to_stderr_not_to_the_wire(
    tmp_path: Path,
) -> None:
    errlog = tmp_path / "stderr.txt"
    with errlog.open("w") as err:
        async with (
            stdio_client(server_params(tmp_path / "host.db"), errlog=err) as (read, write),
            ClientSession(read, write, sampling_callback=llm) as session,
        ):
            await session.discover()
            paused = await session.call_tool("chatty", {"text": "hi"}, allow_input_required=True)
            assert isinstance(paused, types.InputRequiredResult)
            responses = await answer(session, paused)
            done = await retry(session, "chatty", {"text": "hi"}, responses, paused.request_state)
            assert structured(done)["result"] == "<hi>"  # type: ignore[arg-type]
    said = errlog.read_text()
    assert "stray output on stdout" in said
    assert "a child's output" in said


def test_a_server_whose_stdin_is_a_regular_file_answers_it(tmp_path: Path) -> None:
    """The loop cannot wait on a regular file: the SDK's threaded stdio serves it.

    (Only `initialize`, which the SDK answers before it reads on: at the file's end
    the session ends, and requests still in flight are cancelled.)
    """
    requests = tmp_path / "requests.jsonl"
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "file", "version": "1"},
        },
    }
    requests.write_text(json.dumps(initialize) + "\n")
    params = server_params(tmp_path / "host.db")
    with requests.open("rb") as stdin:
        done = subprocess.run(
            [params.command, *params.args],
            stdin=stdin,
            capture_output=True,
            cwd=params.cwd,
            env=params.env,
            timeout=30,
            check=True,
        )
    (reply,) = map(json.loads, done.stdout.splitlines())
    assert reply["id"] == 1
    assert reply["result"]["serverInfo"]["name"] == "greenroom"


async def test_a_server_started_with_stderr_closed_keeps_stray_output_off_its_files(
    tmp_path: Path,
) -> None:
    """`2>&-`: the database would take fd 2, and stray output would go into it; the
    command opens the null device there first."""
    params = server_params(tmp_path / "host.db")
    shell = StdioServerParameters(
        command="/bin/sh",
        args=["-c", 'exec "$0" "$@" 2>&-', params.command, *params.args],
        env=params.env,
        cwd=params.cwd,
    )
    async with modern_session(shell) as session:
        paused = await session.call_tool("chatty", {"text": "hi"}, allow_input_required=True)
        assert isinstance(paused, types.InputRequiredResult), paused
        responses = await answer(session, paused)
        done = await retry(session, "chatty", {"text": "hi"}, responses, paused.request_state)
        assert structured(done)["result"] == "<hi>"  # type: ignore[arg-type]
    with sqlite3.connect(tmp_path / "host.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def _json_line(message: dict[str, Any]) -> bytes:
    return (json.dumps(message) + "\n").encode()


def _initialize(request_id: int) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"},
        },
    }


def _command(db: Path) -> tuple[list[str], StdioServerParameters]:
    params = server_params(db)
    return [params.command, *params.args], params


def test_a_server_with_dev_null_on_stdin_ends_at_once(tmp_path: Path) -> None:
    """No client (as under a supervisor): the SDK's transport reads the end, and the
    server stops; the loop's would wait on /dev/null for ever."""
    command, params = _command(tmp_path / "host.db")
    with open(os.devnull, "rb") as null:
        done = subprocess.run(
            command, stdin=null, capture_output=True, cwd=params.cwd, env=params.env, timeout=30
        )
    assert done.returncode == 0, done.stderr[-500:]


def test_a_server_writing_to_a_regular_file_serves_every_request(tmp_path: Path) -> None:
    """stdin a pipe, stdout a file: the SDK's transport serves both, stdin untouched."""
    command, params = _command(tmp_path / "host.db")
    out = tmp_path / "out.jsonl"
    with out.open("wb") as sink:
        server = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=sink, cwd=params.cwd, env=params.env
        )
        assert server.stdin is not None
        server.stdin.write(_json_line(_initialize(1)))
        server.stdin.flush()
        with pytest.raises(subprocess.TimeoutExpired):
            server.wait(timeout=3)  # still serving: the first request did not end it
        server.stdin.write(_json_line(_initialize(2)))  # answered before the end is read
        server.stdin.close()
        assert server.wait(timeout=30) == 0
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == [1, 2]


def test_a_server_on_one_socket_for_stdin_and_stdout_serves_it(tmp_path: Path) -> None:
    """As inetd or socat start it: the SDK's transport serves the socket."""
    command, params = _command(tmp_path / "host.db")
    ours, theirs = socket.socketpair()
    server = subprocess.Popen(command, stdin=theirs, stdout=theirs, cwd=params.cwd, env=params.env)
    theirs.close()
    ours.settimeout(30)
    replies = ours.makefile("rb")
    try:
        ours.sendall(_json_line(_initialize(1)))
        assert json.loads(replies.readline())["id"] == 1
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
        ours.sendall(_json_line(initialized) + _json_line(listing))
        reply = replies.readline()
        assert reply, "the server closed the connection"
        assert json.loads(reply)["id"] == 2
    finally:
        replies.close()  # (the socket stays open while its file does)
        ours.close()
        assert server.wait(timeout=30) == 0  # the end of the connection ends it


async def test_the_same_tools_over_streamable_http_on_127_0_0_1(tmp_path: Path) -> None:
    params = server_params(tmp_path / "host.db")
    command = [params.command, *params.args, "--http", "127.0.0.1:0"]
    server = subprocess.Popen(
        command, cwd=params.cwd, env=params.env, stderr=subprocess.PIPE, text=True
    )
    try:
        assert server.stderr is not None
        line = server.stderr.readline()  # the port listens once this is written
        found = re.search(r"serving MCP on (http://127\.0\.0\.1:\d+/mcp)", line)
        assert found, line
        async with Client(found.group(1), sampling_callback=llm) as client:
            final = structured(await client.call_tool("panel", {"question": "http?"}))
            listed = structured(await client.call_tool("greenroom_strategies", {}))
        assert final["result"]["votes"] == ["<judge 0: http?>", "<judge 1: http?>"]
        assert len(listed["strategies"]) == 4
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=20) in (0, 130)


async def test_a_client_that_does_not_sample_is_sent_to_the_explicit_tools(
    tmp_path: Path,
) -> None:
    params = server_params(tmp_path / "host.db")
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.discover()  # the 2026-07-28 revision, but no sampling callback
        result = await session.call_tool("panel", {"question": "q"}, allow_input_required=True)
        assert isinstance(result, types.CallToolResult)
        text = error_text(result)
        assert "does not answer" in text
        assert "greenroom_start with strategy 'panel'" in text
