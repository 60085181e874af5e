"""The host the durable-execution kill -9 harness (tests/test_execution_crash.py) kills.

    python tests/execution_crash_worker.py DB [PASSIVATE_AFTER_S]

It opens a greenroom `Runtime` on DB with the real clock, registers the durable
strategy `crash.rounds` (`rounds`: 10 rounds of `ctx.llm`, each answer folded into its
state, a `ctx.step` after round 5 whose value every later prompt shows) and writes
`{"t": "ready"}`. Then it reads commands from stdin, one JSON object a line, and runs
them on THREADS threads at once (so feeds from several threads meet in the store's
group commit), writing one JSON line to stdout for each once its call has returned:

* `{"op": "start", "ex": I, "salt": S}`: `rt.executions.start("crash.rounds", I, S)`;
  `{"t": "started", "ex", "sid", "status", "queries"}`.
* `{"op": "feed", "ex", "sid", "qid", "answer", "usage", "kind"}`:
  `rt.executions.feed(sid, answer, query_id=qid, usage=usage)`; `{"t": "fed", "ex",
  "kind", "status", "queries", "result", "error"}` once it returned (the answer is
  journaled by then: that line is the acknowledgement), or `{"t": "refused", "op",
  "ex", "sid", "kind", "error": TYPE, "message"}` for a `GreenroomError`.
* `{"op": "resume", "ex", "sid", "kind"}`: `rt.executions.resume(sid)`; as a feed.
* `{"op": "status", "ex", "sid"}`: `{"t": "status", "ex", "status"}` (`None`: `NotFound`).
* `{"op": "snapshots"}`: `{"t": "snapshots", "sessions": {sid: status}}`.
* `{"op": "cancel", "sid"}`: `{"t": "cancelled", "sid", "status"}`, or `refused`.
* `{"op": "close"}`: finish the commands read, close the runtime, `{"t": "closed"}`.

Every METRICS_S it also writes `{"t": "metrics", ...}`: the runtime's execution
counters (re-drives, passivations), for the parent's figures. Greenroom's log records
of WARNING and above go to stderr, one line each, starting with their level.

Each line is written whole under one lock, once its call has returned, so a line the
parent reads whole was acknowledged. Anything unexpected is `{"t": "error", "what",
"detail", ...}` (with the command's `op`, `ex` and `sid`) and the worker goes on.
Statuses are cut to what the parent checks: `state`, `round`, `pending_queries` and
`result`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import secrets
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

from greenroom import AsyncExecutionContext, FeedResult, Runtime, RuntimeConfig, SystemClock
from greenroom.errors import GreenroomError, NotFound

STRATEGY = "crash.rounds"
ROUNDS = 10
STEP_AFTER = 5  # the step runs between round 5's answer and round 6's question
THREADS = 8
METRICS_S = 0.05
COUNTERS = ("executions_redriven", "executions_passivated", "store_commits")
FOLD_START = "0" * 16
# Timed sweeps never run in a worker (there are no blocks); the GC's timers are the
# defaults unless the parent asks for passivation.
CONFIG = RuntimeConfig(settle_timeout_s=30.0, sweep_first_after_s=1e9, sweep_interval_s=1e9)


def answer_for(ex: int, round_no: int) -> str:
    """The host's answer to execution `ex`'s round `round_no`: the same in every run."""
    return f"e{ex}-r{round_no}"


def usage_for(ex: int, round_no: int) -> dict[str, int]:
    """The usage the host reports with that answer (OpenAI's shape)."""
    return {"prompt_tokens": 100 + ex % 97 + round_no, "completion_tokens": round_no}


def fold(state: str, answer: str) -> str:
    """The strategy's state after `answer`: a digest of every answer so far, in order."""
    return hashlib.sha256(f"{state}|{answer}".encode()).hexdigest()[:16]


def prompt_for(ex: int, salt: int, round_no: int, state: str, token: str | None) -> str:
    """What `rounds` asks in `round_no`, given its state and the step's token."""
    return f"execution {ex} salt {salt} round {round_no} state {state} token {token or '-'}"


async def rounds(ctx: AsyncExecutionContext, ex: int, salt: int) -> dict[str, Any]:
    """Ask ROUNDS questions, folding each answer into the state the next one shows.

    After round STEP_AFTER a journaled step draws a random token: a re-drive must get
    the journaled one back (a new one would change every later prompt).
    """
    answers: list[str] = []
    state = FOLD_START
    token: str | None = None
    for round_no in range(1, ROUNDS + 1):
        if round_no == STEP_AFTER + 1:
            token = await ctx.step("token", secrets.token_hex, 8)
        answer = await ctx.llm(prompt_for(ex, salt, round_no, state, token), max_tokens=64)
        answers.append(answer)
        state = fold(state, answer)
    return {"ex": ex, "answers": answers, "state": state, "token": token}


class _Acks:
    """JSON lines to stdout, each written whole under the lock (threads share it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        data = (json.dumps(message) + "\n").encode()
        with self._lock:
            while data:
                try:
                    written = os.write(1, data)
                except BrokenPipeError:
                    os._exit(0)  # the parent has gone: nobody reads, stop working
                data = data[written:]

    def error(self, what: str, **fields: Any) -> None:
        detail = traceback.format_exc().strip().splitlines()[-1]
        self.send({"t": "error", "what": what, "detail": detail, **fields})
        sys.stderr.write(traceback.format_exc())
        sys.stderr.flush()


def _queries(result: FeedResult) -> list[dict[str, str]]:
    return [{"id": query.id, "prompt": query.prompt} for query in result.queries]


def _cut(status: dict[str, Any]) -> dict[str, Any]:
    keys = ("state", "round", "pending_queries", "result")
    return {key: status[key] for key in keys if key in status}


def run_command(rt: Runtime, acks: _Acks, command: dict[str, Any]) -> None:
    """Run one command and acknowledge it once its call has returned."""
    op = command["op"]
    ex = command.get("ex")
    kind = command.get("kind")
    executions = rt.executions
    try:
        if op == "start":
            result = executions.start(STRATEGY, ex, command["salt"])
            acks.send(
                {
                    "t": "started",
                    "ex": ex,
                    "sid": result.session_id,
                    "status": result.status,
                    "queries": _queries(result),
                }
            )
        elif op in ("feed", "resume"):
            if op == "feed":
                result = executions.feed(
                    command["sid"],
                    command["answer"],
                    query_id=command["qid"],
                    usage=command["usage"],
                )
            else:
                result = executions.resume(command["sid"])
            acks.send(
                {
                    "t": "fed",
                    "ex": ex,
                    "kind": kind,
                    "status": result.status,
                    "queries": _queries(result),
                    "result": result.result,
                    "error": result.error,
                }
            )
        elif op == "status":
            try:
                status: dict[str, Any] | None = _cut(executions.status(command["sid"]))
            except NotFound:
                status = None
            acks.send({"t": "status", "ex": ex, "status": status})
        elif op == "snapshots":
            sessions = {sid: _cut(status) for sid, status in executions.snapshots().items()}
            acks.send({"t": "snapshots", "sessions": sessions})
        elif op == "cancel":
            result = executions.cancel(command["sid"])
            acks.send({"t": "cancelled", "sid": command["sid"], "status": result.status})
        else:
            raise ValueError(f"unknown command {op!r}")
    except GreenroomError as error:
        acks.send(
            {
                "t": "refused",
                "op": op,
                "ex": ex,
                "sid": command.get("sid"),
                "kind": kind,
                "error": type(error).__name__,
                "message": str(error),
            }
        )
    except BaseException:
        acks.error(op, op=op, ex=ex, sid=command.get("sid"))


def serve(rt: Runtime, acks: _Acks, commands: queue.Queue[dict[str, Any] | None]) -> None:
    while (command := commands.get()) is not None:
        run_command(rt, acks, command)


def report_metrics(rt: Runtime, acks: _Acks, stop: threading.Event) -> None:
    while not stop.wait(METRICS_S):
        try:
            metrics = rt.metrics()
        except GreenroomError:
            return  # closing
        acks.send({"t": "metrics", **{name: metrics.get(name, 0) for name in COUNTERS}})


def main(argv: list[str]) -> None:
    db = Path(argv[0])
    config = CONFIG
    if len(argv) > 1:  # passivation: idle sessions leave memory between feeds
        after = float(argv[1])
        config = RuntimeConfig(
            settle_timeout_s=30.0,
            sweep_first_after_s=1e9,
            sweep_interval_s=1e9,
            execution_passivate_after_s=after,
            gc_interval_s=after,
        )
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    acks = _Acks()
    try:
        rt = Runtime.open(db, clock=SystemClock(), config=config)
        rt.executions.register(STRATEGY, rounds)
    except BaseException:
        acks.error("open")
        os._exit(3)
    acks.send({"t": "ready", "pid": os.getpid()})
    commands: queue.Queue[dict[str, Any] | None] = queue.Queue()
    threads = [
        threading.Thread(target=serve, args=(rt, acks, commands), daemon=True)
        for _ in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    stop = threading.Event()
    reporter = threading.Thread(target=report_metrics, args=(rt, acks, stop), daemon=True)
    reporter.start()
    for line in sys.stdin.buffer:
        command = json.loads(line)
        if command["op"] == "close":
            break
        commands.put(command)
    else:
        os._exit(0)  # stdin closed without `close`: the parent has gone
    for _ in threads:
        commands.put(None)
    for thread in threads:
        thread.join()
    stop.set()
    reporter.join()
    try:
        rt.close()
    except BaseException:
        acks.error("close")
        os._exit(3)
    acks.send({"t": "closed"})


if __name__ == "__main__":
    main(sys.argv[1:])
