"""MCP over stdio: one multi round-trip of a strategy tool, against a bare SDK tool call.

`greenroom mcp` serves this file's `bench.loop` strategy (it asks one question at a
time, as many as it is told to) over stdio; a client of the 2026-07-28 revision (a
plain `ClientSession`) answers it. One round trip is one retry of the tool call
carrying one `inputResponses` answer and the `requestState`, returning the next
`InputRequiredResult`: the answer is fed, the journal committed, the next question
signed into a new state. The baseline is a bare low-level `mcp.server.Server` in
another process with one tool, `echo`, that returns a `CallToolResult` at once, called
over stdio by a second session. The two sessions are open at once and the calls
alternate one by one, so drift in the machine's load hits both alike (ratio =
greenroom / bare, lower is better; the target is p50 <= 1.5, printed with PASS or FAIL
beside the p50 ratio).

The protocol's own cost is measured beside it: a second bare server process answers
each retry of its tool `ask` at once with a prebuilt `InputRequiredResult` of the same
shape (one sampling request, a state as long); greenroom's share is the rest.

Beside it, without a target, the explicit tool path: `greenroom_feed` (one answer, the
next `needs_response` step) over a third session, of the handshake era
(`initialize`), to a second `greenroom mcp` process; it alternates with the other two.

    .venv/bin/python benchmarks/bench_mcp.py          # the full run (2,000 round trips)
    .venv/bin/python benchmarks/bench_mcp.py --quick  # 300 round trips, a smoke test

`--json PATH` also writes the headline figures there as rows for `run_all.py`. The
servers are this file too: `greenroom mcp --strategies bench_mcp` imports it (run in
this folder) for `bench.loop`, and `--bare-server` runs the bare server.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio

try:  # the mcp extra is optional: say what to install rather than a traceback
    import mcp.types as types
    from mcp.client.session import ClientRequestContext, ClientSession, SamplingFnT
    from mcp.client.stdio import StdioServerParameters, stdio_client
    from mcp.server import Server, ServerRequestContext
    from mcp.server.stdio import stdio_server
except ImportError as error:
    raise SystemExit(
        f"bench_mcp needs the MCP SDK ({error}): pip install 'greenroom[mcp]'"
    ) from None

import greenroom
from greenroom.clock import stopwatch
from greenroom.mcp.stdio import loop_stdio

from _table import Row, Target, add_json_option, cpu_model, figure, write_rows  # isort: skip

HERE = Path(__file__).resolve().parent
LOOP = "bench.loop"
TARGET_P50_RATIO = 1.5  # the target: round trip p50 <= 1.5 x the bare tool call's
TARGET = Target("<=", TARGET_P50_RATIO)
# The same answer every time, built once: the client's LLM is not what is measured.
ANSWER = types.CreateMessageResult(
    role="assistant", content=types.TextContent(text="answer"), model="bench-llm"
)


@greenroom.strategy(LOOP)
async def bench_loop(ctx: Any, count: int) -> int:
    """Ask `count` questions, one at a time."""
    for i in range(count):
        await ctx.llm(f"q {i}")
    return count


# -- the bare server (a child process: --bare-server) --------------------------------------


async def _list_bare(
    _ctx: ServerRequestContext[Any], _params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    return types.ListToolsResult(
        tools=[
            types.Tool(
                name="echo",
                description="Echo the text back.",
                input_schema={"type": "object", "properties": {"text": {"type": "string"}}},
            )
        ]
    )


# What the bare server's `ask` answers: the same shape as a paused bench.loop round (one
# sampling request, a state of the same length), built once: the protocol's own cost.
_BARE_ASK = types.InputRequiredResult(
    input_requests={
        "q-1-0": types.CreateMessageRequest(
            params=types.CreateMessageRequestParams(
                messages=[
                    types.SamplingMessage(role="user", content=types.TextContent(text="q 1"))
                ],
                max_tokens=1000,
            )
        )
    },
    request_state="s" * 160,
    _meta={"greenroom/queries": {"session_id": "e" * 32, "queries": {"q-1-0": {}}}},
)


async def _call_bare(
    _ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
) -> types.CallToolResult | types.InputRequiredResult:
    if params.name == "ask":
        return _BARE_ASK
    text = str((params.arguments or {}).get("text", ""))
    return types.CallToolResult(content=[types.TextContent(text=text)])


async def serve_bare(loop_transport: bool = False) -> None:
    """The baseline: the SDK's low-level server, one tool that returns at once (on the
    SDK's stdio transport; on greenroom's with `loop_transport`)."""
    server: Server[Any] = Server(
        "bench-bare", version="1", on_list_tools=_list_bare, on_call_tool=_call_bare
    )
    transport = loop_stdio() if loop_transport else stdio_server()
    async with transport as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


# -- the client ----------------------------------------------------------------------------


async def _no_llm(
    context: ClientRequestContext, params: types.CreateMessageRequestParams
) -> types.CreateMessageResult:
    # Declares the sampling capability; the measured path answers without it.
    return ANSWER


def _params(*args: str) -> StdioServerParameters:
    path = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    return StdioServerParameters(
        command=sys.executable,
        args=list(args),
        env={**os.environ, "PYTHONPATH": path},
        cwd=str(HERE),  # greenroom mcp imports --strategies modules from its folder
    )


def _greenroom(db: Path, synchronous: str = "FULL") -> StdioServerParameters:
    return _params(
        *("-m", "greenroom.cli", "mcp", "--db", str(db), "--strategies", "bench_mcp"),
        *("--synchronous", synchronous),
    )


async def _open(
    stack: AsyncExitStack, params: StdioServerParameters, *, modern: bool
) -> ClientSession:
    """A session to a server started for it, both closed with `stack`."""
    read, write = await stack.enter_async_context(stdio_client(params))
    sampling: SamplingFnT | None = _no_llm if modern else None
    session = await stack.enter_async_context(
        ClientSession(read, write, sampling_callback=sampling)
    )
    if modern:
        await session.discover()
    else:
        await session.initialize()
    await session.list_tools()  # the client's output-schema cache, filled before timing
    return session


async def _answer(
    session: ClientSession, arguments: dict[str, Any], paused: Any, tool: str = LOOP
) -> types.CallToolResult | types.InputRequiredResult:
    """One round trip: `paused`'s requests answered, the call retried with its state."""
    return await session.call_tool(
        tool,
        arguments,
        input_responses=dict.fromkeys(paused.input_requests or {}, ANSWER),
        request_state=paused.request_state,
        allow_input_required=True,
    )


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def bench_round_trips(round_trips: int, warm_up: int) -> dict[str, list[float]]:
    """Bare calls, greenroom round trips and greenroom_feed calls, alternating."""
    results: dict[str, list[float]] = {
        "bare": [],
        "mrtr": [],
        "feed": [],
        "normal": [],
        "shape": [],
    }
    arguments = {"count": warm_up + round_trips + 1}  # never completes while measured
    with tempfile.TemporaryDirectory(prefix="greenroom-bench-mcp-") as folder:
        async with AsyncExitStack() as stack:
            bare_server = _params(str(Path(__file__).resolve()), "--bare-server")
            bare = await _open(stack, bare_server, modern=True)
            # The protocol alone, on a bare server of its own (so the baseline's server
            # gets exactly the calls it got before this figure was added).
            shape = await _open(stack, bare_server, modern=True)
            modern = await _open(stack, _greenroom(Path(folder) / "bench.db"), modern=True)
            # A database of its own: the two greenroom processes never share a lock.
            legacy = await _open(stack, _greenroom(Path(folder) / "feed.db"), modern=False)
            # The same round trip with the journal at synchronous=NORMAL (one fsync less).
            normal_server = _greenroom(Path(folder) / "normal.db", "NORMAL")
            normal = await _open(stack, normal_server, modern=True)

            paused = await modern.call_tool(LOOP, arguments, allow_input_required=True)
            asked = await shape.call_tool("ask", {}, allow_input_required=True)
            assert isinstance(paused, types.InputRequiredResult), paused
            paused_normal = await normal.call_tool(LOOP, arguments, allow_input_required=True)
            assert isinstance(paused_normal, types.InputRequiredResult), paused_normal
            started = await legacy.call_tool(
                "greenroom_start", {"strategy": LOOP, "arguments": arguments}
            )
            step = started.structured_content or {}
            assert step.get("status") == "needs_response", started
            feed_arguments = {"session_id": step["session_id"], "response": "answer"}

            for n in range(warm_up + round_trips):
                echo = {"text": f"q {n}"}
                began = stopwatch()
                answered = await bare.call_tool("echo", echo)
                bare_s = stopwatch() - began
                began = stopwatch()
                paused = await _answer(modern, arguments, paused)
                mrtr_s = stopwatch() - began
                began = stopwatch()
                fed = await legacy.call_tool("greenroom_feed", feed_arguments)
                feed_s = stopwatch() - began
                began = stopwatch()
                paused_normal = await _answer(normal, arguments, paused_normal)
                normal_s = stopwatch() - began
                began = stopwatch()
                asked = await _answer(shape, {}, asked, "ask")
                shape_s = stopwatch() - began
                assert isinstance(asked, types.InputRequiredResult), asked
                assert isinstance(paused_normal, types.InputRequiredResult), paused_normal
                assert not answered.is_error, answered
                assert isinstance(paused, types.InputRequiredResult), paused
                assert len(paused.input_requests or {}) == 1, paused
                assert (fed.structured_content or {}).get("status") == "needs_response", fed
                if n >= warm_up:
                    results["bare"].append(bare_s)
                    results["mrtr"].append(mrtr_s)
                    results["feed"].append(feed_s)
                    results["normal"].append(normal_s)
                    results["shape"].append(shape_s)
    return results


async def bench_transports(calls: int, warm_up: int) -> dict[str, list[float]]:
    """The bare server's tool call on the SDK's stdio transport and on greenroom's
    (`greenroom.mcp.stdio`), alternating: how much of a round trip is the transport."""
    results: dict[str, list[float]] = {"sdk": [], "loop": []}
    async with AsyncExitStack() as stack:
        here = str(Path(__file__).resolve())
        sdk = await _open(stack, _params(here, "--bare-server"), modern=True)
        loop = await _open(stack, _params(here, "--bare-server", "--loop-stdio"), modern=True)
        for n in range(warm_up + calls):
            echo = {"text": f"q {n}"}
            began = stopwatch()
            await sdk.call_tool("echo", echo)
            sdk_s = stopwatch() - began
            began = stopwatch()
            await loop.call_tool("echo", echo)
            loop_s = stopwatch() - began
            if n >= warm_up:
                results["sdk"].append(sdk_s)
                results["loop"].append(loop_s)
    return results


def _print(label: str, at: dict[str, float]) -> None:
    bare, mrtr, feed = at["bare"] * 1e6, at["mrtr"] * 1e6, at["feed"] * 1e6
    ratio = mrtr / bare
    verdict = ""
    if label == "p50":
        passed = "PASS" if ratio <= TARGET_P50_RATIO else "FAIL"
        verdict = f" (target <= {TARGET_P50_RATIO:.1f}: {passed})"
    normal = at["normal"] * 1e6
    print(
        f"  {label}  bare tool call {bare:8.1f}   round trip {mrtr:8.1f}   greenroom_feed "
        f"{feed:8.1f}   ratio round trip / bare {ratio:.2f}{verdict}   (greenroom_feed / "
        f"bare {feed / bare:.2f}; round trip at synchronous=NORMAL {normal:8.1f}, "
        f"{normal / bare:.2f}; the protocol alone, a bare server's input-required round "
        f"trip {at['shape'] * 1e6:8.1f}, {at['shape'] * 1e6 / bare:.2f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts (a smoke test)")
    add_json_option(parser)
    parser.add_argument("--bare-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--loop-stdio", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_server:
        anyio.run(serve_bare, args.loop_stdio)
        return
    print(f"CPU: {cpu_model()}, {os.cpu_count()} CPUs")

    round_trips, warm_up = (300, 50) if args.quick else (2_000, 200)
    r = anyio.run(bench_round_trips, round_trips, warm_up)
    print(
        f"MCP over stdio: one round trip of a strategy tool ({LOOP}, durable; one answer "
        f"in, the next InputRequiredResult out) against a bare SDK tool call, "
        f"{round_trips:,} each after {warm_up} to warm up, alternating call by call (us; "
        "ratio greenroom / bare, lower is better)"
    )
    p50 = {key: _pct(values, 0.5) for key, values in r.items()}
    p99 = {key: _pct(values, 0.99) for key, values in r.items()}
    _print("p50", p50)
    _print("p99", p99)

    transports = anyio.run(bench_transports, round_trips, warm_up)
    sdk_s, loop_s = _pct(transports["sdk"], 0.5) * 1e6, _pct(transports["loop"], 0.5) * 1e6
    print(
        f"  the transport: the bare server's tool call p50 on the SDK's stdio {sdk_s:8.1f}, on "
        f"greenroom's (read and written on the loop, as greenroom mcp serves) {loop_s:8.1f}, "
        f"ratio {loop_s / sdk_s:.2f} (part of what the round trip gains over the SDK's "
        "stdio is this)"
    )

    rows: list[Row] = []
    for label, at in (("p50", p50), ("p99", p99)):
        bare = at["bare"] * 1e6
        for key, name in (
            ("mrtr", "multi round-trip retry"),
            ("feed", "greenroom_feed call"),
            ("normal", "multi round-trip retry, synchronous=NORMAL"),
            ("shape", "bare server's input-required retry (the protocol alone)"),
        ):
            value = at[key] * 1e6
            rows.append(
                figure(
                    f"{name} over stdio, {label}",
                    value,
                    "us",
                    baseline=bare,
                    baseline_label="bare SDK tool call",
                    ratio=value / bare,
                    target=TARGET if (key, label) == ("mrtr", "p50") else None,
                )
            )
    rows.append(
        figure(
            "bare tool call on greenroom's stdio transport, p50",
            loop_s,
            "us",
            baseline=sdk_s,
            baseline_label="the same on the SDK's stdio transport",
            ratio=loop_s / sdk_s,
        )
    )
    write_rows(args.json, rows)


if __name__ == "__main__":
    main()
