"""Kill -9 harness for durable executions: every acknowledged answer is applied exactly once.

A host process (`tests/execution_crash_worker.py`, the real clock) runs EXECUTIONS
executions of the durable strategy `crash.rounds` (10 rounds of `ctx.llm`, a journaled
`ctx.step` after round 5) while this test, the driver, feeds them: it keeps up to
WINDOW commands in flight (at most one per execution), which the host runs on several
threads and acknowledges once `rt.executions.feed` (or `start`) has returned. The
driver kills the host with SIGKILL at KILLS random points: most once a random number
of acknowledgements came (plus a small random delay, commands still flowing), some at
a random time after it started (during its start, its recovery or the re-drives).
After each kill it starts a new host on the same database, asks every session's
status (`rt.executions.snapshots()`) and feeds on from what it last saw acknowledged:

* a feed that was in flight at the kill may or may not have been journaled; the
  status says which (its query is still pending, or the session moved on). One that
  was is then often fed again, with the same answer (a no-op returning the current
  state: counted `refed`) or with another answer (`AlreadyResponded`: counted
  `refused`); so is, now and then, the last answer acknowledged, as a host unsure of
  it would (that call is the one that re-drives the session from its journal);
* an acknowledged answer whose query is pending again is `lost`; a session that
  moved on further than the answers fed, or a feed result a round ahead, is
  `applied_twice`;
* a session killed in its step (round 5 answered, round 6 not asked yet) shows
  `running`: `rt.executions.resume` re-drives it and gives round 6's question;
* a start in flight at the kill is started again; the session it may have left (an
  *orphan*, found in the snapshots) is cancelled.

One host in five runs with passivation after 20-200 ms idle, so sessions also leave
memory and come back between feeds. Greenroom's ERROR log lines in a host's stderr are
errors.

Every answer the driver saw acknowledged is checked at each ack and each restart;
at the end, a runtime opened here reads every execution's final result, which must
equal the one an uninterrupted run gave (a reference run in this process, the step's
random token aside, which must be the one every prompt after the step showed), with
`rounds`, `response_chars` and the usage reported counted once.

GREENROOM_CRASH_KILLS sets the kills (5 by default, so `make test` runs it; `make crash`
runs 100), GREENROOM_CRASH_EXECUTIONS the executions (100, or 1,000 with 100 kills or
more), GREENROOM_CRASH_SEED the seed (15), and GREENROOM_CRASH_FIGURES a file to append
the figures to, as one JSON line. The test prints one figure line: kills, restarts,
acknowledged feeds, lost (must be 0), applied twice (must be 0), refused re-feeds and
the wall time.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs
import pytest

from greenroom import Runtime, RuntimeConfig, SystemClock

from .crash_lines import LineReader
from .execution_crash_worker import (
    FOLD_START,
    ROUNDS,
    STEP_AFTER,
    STRATEGY,
    answer_for,
    fold,
    prompt_for,
    rounds,
    usage_for,
)

KILLS = int(os.environ.get("GREENROOM_CRASH_KILLS", "5"))
SEED = int(os.environ.get("GREENROOM_CRASH_SEED", "15"))
EXECUTIONS = int(os.environ.get("GREENROOM_CRASH_EXECUTIONS", "1000" if KILLS >= 100 else "100"))
FIGURES_FILE = os.environ.get("GREENROOM_CRASH_FIGURES")
WORKER = Path(__file__).resolve().with_name("execution_crash_worker.py")
CHECK_CONFIG = RuntimeConfig(settle_timeout_s=30.0, sweep_first_after_s=1e9, sweep_interval_s=1e9)
STALL_S = 60.0  # a host silent this long while commands wait is stuck: an error, then killed
WINDOW = 32  # commands in flight at once
EARLY = 0.15  # share of the kills made at a random time after the start, not after acks
EARLY_S = 0.8  # ... within this many seconds (a host is ready after some 0.3 s)
PASSIVATING = 0.2  # share of the hosts whose idle sessions leave memory between feeds
RETRIES = 0.04  # share of the executions whose last answer is sent again after a restart
TIMEOUT_S = 120 + 6 * KILLS + EXECUTIONS // 10  # real seconds (pytest-timeout)

_TOKEN = re.compile(r" token ([0-9a-f]{16})$")

pytestmark = [pytest.mark.crash, pytest.mark.timeout(TIMEOUT_S)]


# -- figures ---------------------------------------------------------------------------------


@attrs.define
class Figures:
    """What the run measured; `lost`, `applied_twice`, `wrong` and `errors` must stay 0."""

    executions: int
    kills: int = 0
    restarts: int = 0
    acknowledged: int = 0  # answers acknowledged (a feed that returned a new answer's result)
    starts: int = 0  # starts acknowledged (orphans' restarts included)
    lost: int = 0  # acknowledged answers the store no longer held
    applied_twice: int = 0  # answers that counted twice
    wrong: int = 0  # final results unlike the uninterrupted run's
    in_doubt: int = 0  # feeds in flight at a kill
    in_doubt_journaled: int = 0  # ... that the store held after it
    refed: int = 0  # answers the store holds fed again, the same: a no-op
    refused: int = 0  # answers the store holds fed again, changed: AlreadyResponded
    resumed: int = 0  # sessions found `running` (killed in the step), resumed
    orphans: int = 0  # sessions of starts in flight at a kill, found and cancelled
    kills_recovering: int = 0  # kills before the host had recovered (start, snapshots)
    redriven: int = 0  # re-drives from the journal the hosts counted (as last reported)
    passivated: int = 0  # sessions that left memory idle (hosts with passivation on)
    commits: int = 0  # store commits (as last reported): fewer than writes, grouped
    warnings: int = 0  # greenroom's WARNING log lines in the hosts' stderr
    errors: int = 0  # unexpected results, worker errors, ERROR logs, stalls, exits
    wall_s: float = 0.0
    failures: list[str] = attrs.field(factory=list)  # the first few, with their host
    notes: list[str] = attrs.field(factory=list)  # the first few warnings, with their host

    def fail(self, host: int, what: str) -> None:
        if len(self.failures) < 10:
            self.failures.append(f"host {host} (after {host} kills): {what}")

    def line(self) -> str:
        return (
            f"execution crash figures: seed={SEED} executions={self.executions} "
            f"rounds={ROUNDS} kills={self.kills} restarts={self.restarts} "
            f"acknowledged_feeds={self.acknowledged} lost={self.lost} "
            f"applied_twice={self.applied_twice} wrong={self.wrong} "
            f"refused={self.refused} refed={self.refed} resumed={self.resumed} "
            f"in_doubt={self.in_doubt} "
            f"(journaled {self.in_doubt_journaled}) starts={self.starts} "
            f"orphans={self.orphans} kills_recovering={self.kills_recovering} "
            f"redriven={self.redriven} passivated={self.passivated} commits={self.commits} "
            f"warnings={self.warnings} errors={self.errors} wall_s={self.wall_s:.1f}"
        )


def report(figures: Figures) -> None:
    """Print the figure line (and append it to GREENROOM_CRASH_FIGURES); assert zeros."""
    print("\n" + figures.line())
    for failure in figures.failures:
        print(f"  {failure}")
    for note in figures.notes:
        print(f"  (warning) {note}")
    if FIGURES_FILE:
        with open(FIGURES_FILE, "a", encoding="utf-8") as out:
            record = attrs.asdict(figures)
            record.update(scenario="durable executions", seed=SEED, rounds=ROUNDS)
            out.write(json.dumps(record) + "\n")
    summary = "\n".join([figures.line(), *figures.failures])
    assert figures.kills == KILLS, summary
    # Every round was answered once: acknowledged, or journaled while in doubt.
    applied = figures.acknowledged + figures.in_doubt_journaled
    assert applied >= EXECUTIONS * ROUNDS, summary
    zeros = (figures.lost, figures.applied_twice, figures.wrong, figures.errors)
    assert zeros == (0, 0, 0, 0), summary


# -- the driver's view of each execution ---------------------------------------------------------


@attrs.define
class Tracked:
    """One execution as the driver knows it."""

    index: int
    sid: str | None = None
    applied: list[str] = attrs.field(factory=list)  # answers the store holds, rounds 1..n
    acked: set[int] = attrs.field(factory=set)  # rounds whose answer was acknowledged
    lost: set[int] = attrs.field(factory=set)  # acknowledged rounds found missing (counted)
    token: str | None = None  # the step's token, as the prompts after it show it
    result: Any = None
    done: bool = False  # completed (or given up on)
    broken: bool = False  # given up on after an error (counted): not looked at again
    sent: dict[str, Any] | None = None  # the command in flight
    doubt: dict[str, Any] | None = None  # in flight at the last kill, not settled yet
    probes: list[str] = attrs.field(factory=list)  # re-feeds to send next


def answered(status: dict[str, Any]) -> int | None:
    """The rounds a status says are answered; None if it is no state `rounds` has."""
    state, pending = status.get("state"), status.get("pending_queries")
    round_no = status.get("round")
    if state == "completed":
        return ROUNDS
    if state == "paused" and pending == [f"q-{round_no}-0"] and isinstance(round_no, int):
        return round_no - 1
    if state == "running" and pending == [] and round_no == STEP_AFTER:
        # Round 5's answer was committed with the step's value; round 6 not asked yet.
        return STEP_AFTER
    return None


@attrs.frozen
class Plan:
    """When to kill one host: once `progress` acknowledgements came in all (then
    `extra_s` more seconds), or `after_s` after it started if that comes first (an
    early kill: in its start, its recovery or its first re-drives). The last: never."""

    progress: int | None = None
    extra_s: float = 0.0
    after_s: float | None = None
    passivate_s: float | None = None


class Driver:
    """Feeds the executions through a chain of hosts, killing all but the last."""

    def __init__(self, tmp_path: Path, reference: dict[int, Any], salt: int) -> None:
        self.db = tmp_path / "executions.db"
        self.stderr_path = tmp_path / "worker.err"
        self.reference = reference
        self.salt = salt
        self.rng = random.Random(f"{SEED}:drive")
        self.tracked = [Tracked(index) for index in range(EXECUTIONS)]
        self.by_sid: dict[str, Tracked] = {}
        self.ready: list[Tracked] = list(self.tracked)  # something to send, nothing in flight
        self.orphans: set[str] = set()  # sessions of unacknowledged starts
        self.orphans_open: list[str] = []  # ... to cancel
        self.orphans_failed: set[str] = set()  # ... whose cancel was refused (counted)
        self.in_flight = 0
        self.host_metrics: dict[str, int] = {}  # the running host's last report
        self.progress = 0  # starts and answers acknowledged, in all
        self.figures = Figures(EXECUTIONS)
        self.host = 0  # the number of the host running (for failure messages)
        self.phase = "starting"
        self.clock = SystemClock()  # (no timer scheduled on it: no thread)
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: LineReader | None = None

    # -- failures ----------------------------------------------------------------------

    def error(self, what: str) -> None:
        self.figures.errors += 1
        self.figures.fail(self.host, what)

    def give_up(self, tracked: Tracked, what: str) -> None:
        """An execution in a state the driver cannot feed on from: an error, and left."""
        self.error(f"execution {tracked.index} ({tracked.sid}): {what}")
        tracked.done = tracked.broken = True
        tracked.probes.clear()

    # -- commands ------------------------------------------------------------------------

    def has_next(self, tracked: Tracked) -> bool:
        if tracked.sent is not None or tracked.doubt is not None:
            return False
        return bool(tracked.probes) or tracked.sid is None or not tracked.done

    def command(self, tracked: Tracked) -> dict[str, Any]:
        """The next command for `tracked`: a probe, its start, or its next answer."""
        ex = tracked.index
        if tracked.sid is None:
            return {"op": "start", "ex": ex, "salt": self.salt}
        if tracked.probes and tracked.probes[0] == "resume":
            tracked.probes.pop(0)
            return {"op": "resume", "ex": ex, "kind": "resume", "sid": tracked.sid}
        if tracked.probes:
            kind = tracked.probes.pop(0)
            round_no = len(tracked.applied)  # the answer the store took without an ack
            answer = answer_for(ex, round_no) + ("-changed" if kind == "conflict" else "")
        else:
            kind, round_no = "next", len(tracked.applied) + 1
            answer = answer_for(ex, round_no)
        return {
            "op": "feed",
            "ex": ex,
            "kind": kind,
            "sid": tracked.sid,
            "qid": f"q-{round_no}-0",
            "answer": answer,
            "usage": usage_for(ex, round_no),
        }

    def send(self, command: dict[str, Any]) -> bool:
        """Write one command to the host; False if it has gone."""
        if self._proc is None or self._proc.stdin is None:
            return False  # killed: what it said last is read, nothing more is sent
        try:
            os.write(self._proc.stdin.fileno(), (json.dumps(command) + "\n").encode())
        except BrokenPipeError:
            return False
        return True

    def fill(self) -> None:
        """Send commands until WINDOW are in flight (orphans' cancels first)."""
        while self.in_flight < WINDOW and (self.orphans_open or self.ready):
            if self.orphans_open:
                sid = self.orphans_open.pop()
                if not self.send({"op": "cancel", "sid": sid}):
                    return
                self.in_flight += 1
                continue
            pick = self.rng.randrange(len(self.ready))
            self.ready[pick], self.ready[-1] = self.ready[-1], self.ready[pick]
            tracked = self.ready.pop()
            if not self.has_next(tracked):
                continue
            tracked.sent = self.command(tracked)
            if not self.send(tracked.sent):
                return
            self.in_flight += 1

    # -- what the host says ------------------------------------------------------------------

    def handle(self, line: str) -> None:
        try:
            message: dict[str, Any] = json.loads(line)
        except ValueError:
            self.error(f"unreadable line from the host: {line[:200]!r}")
            return
        kind, op, ex = message.get("t"), message.get("op"), message.get("ex")
        if kind == "ready":
            self.phase = "recovering"
            self.send({"op": "snapshots"})
        elif kind == "snapshots":
            self.recover(message["sessions"])
            self.phase = "feeding"
        elif kind == "metrics":
            self.host_metrics = message
        elif kind == "closed":
            pass
        elif kind == "cancelled" or op == "cancel":
            self.in_flight -= 1
            self.cancel_done(message)
        elif not isinstance(ex, int):
            self.error(f"host: {line[:300]}")  # (open, close or snapshots failed)
        else:
            self.in_flight -= 1
            tracked = self.tracked[ex]
            command, tracked.sent = tracked.sent, None
            if command is None:
                self.error(f"execution {ex}: an answer to no command: {line[:200]}")
            elif kind == "started":
                self.started(tracked, message)
            elif kind == "fed":
                self.fed(tracked, command, message)
            elif kind == "refused":
                self.refused(tracked, command, message)
            elif kind == "status":
                self.settle(tracked, message["status"])
            else:
                self.error(f"execution {ex}: {message.get('what')}: {message.get('detail')}")
                self.ask_status(tracked)
            if self.has_next(tracked):
                self.ready.append(tracked)

    def ask_status(self, tracked: Tracked) -> None:
        """Settle `tracked` from its status before anything else is sent for it."""
        if tracked.sid is None:
            return
        tracked.sent = {"op": "status", "ex": tracked.index, "sid": tracked.sid}
        if self.send(tracked.sent):
            self.in_flight += 1

    def started(self, tracked: Tracked, message: dict[str, Any]) -> None:
        sid = message["sid"]
        tracked.sid = sid
        self.by_sid[sid] = tracked
        self.progress += 1
        self.figures.starts += 1
        self.check_pause(tracked, message, 0)

    def fed(self, tracked: Tracked, command: dict[str, Any], message: dict[str, Any]) -> None:
        if command["kind"] == "next":
            self.progress += 1
            self.figures.acknowledged += 1
            round_no = len(tracked.applied) + 1
            tracked.applied.append(command["answer"])
            tracked.acked.add(round_no)
        elif command["kind"] == "refeed":
            self.figures.refed += 1
        elif command["kind"] == "resume":
            self.figures.resumed += 1
        else:  # a changed answer to an answered query was taken
            self.error(f"execution {tracked.index}: a changed answer was taken")
        self.check_pause(tracked, message, len(tracked.applied))

    def check_pause(self, tracked: Tracked, message: dict[str, Any], done: int) -> None:
        """A start's or feed's result: the next round's question, or the final result."""
        status, queries = message["status"], message["queries"]
        if done == ROUNDS:
            if status != "completed":
                self.give_up(tracked, f"after round {ROUNDS}: {status} {message.get('error')}")
                return
            tracked.done = True
            tracked.result = message["result"]
            self.check_result(tracked, tracked.result, "the completing feed")
            return
        if status != "needs_response" or len(queries) != 1:
            self.give_up(tracked, f"after round {done}: {status} {message.get('error')}")
            return
        query_id, prompt = queries[0]["id"], queries[0]["prompt"]
        if query_id != f"q-{done + 1}-0":
            shown = query_id.split("-")
            later = len(shown) == 3 and shown[1].isdigit() and int(shown[1]) > done + 1
            if later:
                self.figures.applied_twice += 1
            self.give_up(tracked, f"asks {query_id} with {done} rounds answered")
            return
        self.check_prompt(tracked, done + 1, prompt)

    def check_prompt(self, tracked: Tracked, round_no: int, prompt: str) -> None:
        """The prompt shows the state of the answers applied and the step's one token."""
        state = FOLD_START
        for answer in tracked.applied[: round_no - 1]:
            state = fold(state, answer)
        if round_no > STEP_AFTER:
            found = _TOKEN.search(prompt)
            token = found.group(1) if found else None
            if tracked.token is None:
                tracked.token = token
            elif token != tracked.token:
                self.give_up(tracked, f"the step's token changed: {tracked.token} then {token}")
                return
        expected = prompt_for(tracked.index, self.salt, round_no, state, tracked.token)
        if prompt != expected:
            self.give_up(tracked, f"round {round_no} asks {prompt!r}, not {expected!r}")

    def check_result(self, tracked: Tracked, result: Any, where: str) -> bool:
        """The final result is the uninterrupted run's (with this run's step token)."""
        expected = dict(self.reference[tracked.index], token=tracked.token)
        if result == expected:
            return True
        self.figures.wrong += 1
        self.figures.fail(self.host, f"execution {tracked.index}, {where}: {result} != {expected}")
        return False

    def refused(self, tracked: Tracked, command: dict[str, Any], message: dict[str, Any]) -> None:
        conflict = command["op"] == "feed" and command["kind"] == "conflict"
        if conflict and message["error"] == "AlreadyResponded":
            self.figures.refused += 1
            return
        # Unexpected: say so, then settle the execution from its status.
        self.error(
            f"execution {tracked.index}: {command['op']} {command.get('qid', '')} refused: "
            f"{message['error']}: {message['message'][:300]}"
        )
        self.ask_status(tracked)

    def cancel_done(self, message: dict[str, Any]) -> None:
        sid = message["sid"]
        cancelled = message["t"] == "cancelled" and message["status"] == "cancelled"
        if not cancelled and sid not in self.orphans_failed:  # (each orphan counted once)
            self.orphans_failed.add(sid)
            self.error(
                f"orphan {sid}: cancel refused: {message.get('error')}: "
                f"{str(message.get('message'))[:300]}"
            )

    # -- after a restart ---------------------------------------------------------------------

    def recover(self, sessions: dict[str, dict[str, Any]]) -> None:
        """Settle every execution from its status; find the orphans."""
        for tracked in self.tracked:
            if tracked.sid is not None:
                self.settle(tracked, sessions.get(tracked.sid))
            tracked.doubt = None
        for sid, status in sessions.items():
            if sid in self.by_sid:
                continue
            if sid not in self.orphans:
                self.orphans.add(sid)
                self.figures.orphans += 1
            if status.get("state") != "cancelled" and sid not in self.orphans_failed:
                self.orphans_open.append(sid)
        for tracked in self.tracked:
            # A host unsure of its last answer sends it again: the same (a no-op), or,
            # now and then, another one (refused).
            if tracked.applied and not tracked.probes and not tracked.broken:
                draw = self.rng.random()
                if draw < RETRIES:
                    tracked.probes.append("refeed")
                elif draw < 1.5 * RETRIES:
                    tracked.probes.append("conflict")
        self.ready = [tracked for tracked in self.tracked if self.has_next(tracked)]

    def settle(self, tracked: Tracked, status: dict[str, Any] | None) -> None:
        """Compare a status with what the driver knows: in-doubt feeds, lost answers."""
        doubt, tracked.doubt = tracked.doubt, None
        if tracked.broken:
            return
        known = len(tracked.applied)
        if status is None:
            missing = sorted(tracked.acked - tracked.lost)
            tracked.lost |= set(missing)
            self.figures.lost += len(missing)
            self.give_up(tracked, f"its session is gone ({len(missing)} acknowledged answers)")
            return
        count = answered(status)
        if count is None:
            self.give_up(tracked, f"unexpected status {status}")
            return
        if doubt is not None and doubt["op"] == "feed" and doubt["kind"] == "next":
            self.figures.in_doubt += 1
            if count == known + 1:  # the store took it before the kill
                self.figures.in_doubt_journaled += 1
                tracked.applied.append(doubt["answer"])
                known += 1
                draw = self.rng.random()
                if draw < 0.25:
                    tracked.probes += ["conflict", "refeed"]
                elif draw < 0.6:
                    tracked.probes.append("refeed")
        if count < known:
            missing = sorted(
                round_no for round_no in tracked.acked - tracked.lost if round_no > count
            )
            tracked.lost |= set(missing)
            self.figures.lost += len(missing)
            self.figures.fail(
                self.host,
                f"execution {tracked.index}: acknowledged answers of rounds {missing} lost "
                f"(status {status.get('state')} {status.get('pending_queries')})",
            )
            del tracked.applied[count:]  # fed again from there
            tracked.probes.clear()
            tracked.done = False
        elif count > known:
            self.figures.applied_twice += 1
            self.give_up(tracked, f"{count} rounds answered, {known} fed")
            return
        if status["state"] == "running":  # killed in the step: where is it now?
            tracked.probes.insert(0, "resume")
        if count == ROUNDS:
            result = status.get("result")
            if not tracked.done:
                tracked.done = True
                tracked.result = result
                self.check_result(tracked, result, "its status after a restart")
            elif result != tracked.result:
                self.figures.wrong += 1
                self.figures.fail(self.host, f"execution {tracked.index}: its result changed")

    # -- running hosts ------------------------------------------------------------------------

    def pump(self, until: Callable[[], bool], deadline: float | None = None) -> str:
        """Send and handle until `until()`: "done"; or "idle" (nothing in flight and
        nothing to send), "deadline", "eof" or "stalled"."""
        reader = self._reader
        assert reader is not None
        while not until():
            if self.phase == "feeding":
                self.fill()
                if self.in_flight == 0:
                    return "idle"
            wait = STALL_S
            if deadline is not None:
                wait = min(wait, deadline - self.clock.monotonic())
                if wait <= 0:
                    return "deadline"
            if reader.read(wait) < 0:
                if deadline is not None and self.clock.monotonic() >= deadline:
                    return "deadline"
                return "stalled"
            for line in reader.take():
                self.handle(line)
            if reader.eof:
                return "eof"
        return "done"

    def run(self, plan: Plan, final: bool) -> None:
        """One host's life: start it, recover, feed; kill it as `plan` says."""
        args = [sys.executable, str(WORKER), str(self.db)]
        if plan.passivate_s is not None:
            args.append(str(plan.passivate_s))
        with open(self.stderr_path, "wb") as stderr:
            proc = subprocess.Popen(
                args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr
            )
        assert proc.stdout is not None
        assert proc.stdin is not None
        reader = LineReader(proc.stdout)
        self._proc, self._reader = proc, reader
        self.phase = "starting"
        self.in_flight = 0
        self.host_metrics = {}
        start = self.clock.monotonic()
        try:
            if final:
                outcome = self.pump(lambda: False)
                if outcome == "idle" and self.send({"op": "close"}):
                    self.phase = "closing"
                    outcome = self.pump(lambda: False, self.clock.monotonic() + STALL_S)
                    if outcome == "eof":  # it closed its runtime: let it exit
                        with contextlib.suppress(subprocess.TimeoutExpired):
                            proc.wait(timeout=STALL_S)
            else:
                target = plan.progress or 0
                deadline = None if plan.after_s is None else start + plan.after_s
                outcome = self.pump(
                    lambda: self.phase == "feeding" and self.progress >= target, deadline
                )
                if outcome == "done" and plan.extra_s > 0:
                    outcome = self.pump(lambda: False, self.clock.monotonic() + plan.extra_s)
            alive = proc.poll() is None
            killed_in = self.phase
        finally:
            if proc.poll() is None:
                proc.kill()  # SIGKILL
            returncode = proc.wait(timeout=30)
            self._proc = None
        # What it acknowledged before dying is acknowledged (the pipe closes with it).
        while reader.read(STALL_S) >= 0 and not reader.eof:
            pass
        for line in reader.take():
            self.handle(line)
        proc.stdout.close()
        proc.stdin.close()
        self.note_end(final, outcome, alive, returncode)
        if alive and killed_in in ("starting", "recovering"):
            self.figures.kills_recovering += 1
        self.figures.redriven += self.host_metrics.get("executions_redriven", 0)
        self.figures.passivated += self.host_metrics.get("executions_passivated", 0)
        self.figures.commits += self.host_metrics.get("store_commits", 0)
        for tracked in self.tracked:
            if tracked.sent is not None:
                tracked.doubt, tracked.sent = tracked.sent, None

    def note_end(self, final: bool, outcome: str, alive: bool, returncode: int) -> None:
        lines = self.stderr_path.read_text(errors="replace").strip().splitlines()
        tail = lines[-1:]
        for line in lines:
            if line.startswith("WARNING "):
                self.figures.warnings += 1
                if len(self.figures.notes) < 5:
                    self.figures.notes.append(f"host {self.host}: {line[:300]}")
            elif line.startswith(("ERROR ", "CRITICAL ", "Traceback")):
                self.error(f"host stderr: {line[:300]}")
        if outcome == "stalled":
            self.error(f"host silent for {STALL_S:.0f}s in {self.phase} (stuck)")
        elif final:
            if outcome != "eof" or returncode != 0:
                self.error(f"the last host ended {outcome} ({returncode}): {tail}")
        elif alive:
            self.figures.kills += 1
        else:
            self.error(f"host exited by itself ({returncode}) in {self.phase}: {tail}")

    def plans(self) -> list[Plan]:
        """KILLS kill plans (progress points in order, some early kills), then the last."""
        rng = random.Random(f"{SEED}:plans")
        total = EXECUTIONS * (1 + ROUNDS)
        plans = []
        for point in sorted(rng.sample(range(1, int(total * 0.95)), KILLS)):
            extra = 0.0 if rng.random() < 0.3 else rng.uniform(0, 0.02)
            after = rng.uniform(0.0, EARLY_S) if rng.random() < EARLY else None
            passivate = rng.uniform(0.02, 0.2) if rng.random() < PASSIVATING else None
            plans.append(Plan(point, extra, after, passivate))
        return [*plans, Plan()]

    def drive(self) -> Figures:
        plans = self.plans()
        for number, plan in enumerate(plans):
            self.host = number
            self.run(plan, final=number == len(plans) - 1)
        self.figures.restarts = KILLS
        return self.figures

    # -- the end -------------------------------------------------------------------------

    def check_final(self) -> None:
        """Every execution's final result, read by a runtime opened here."""
        figures = self.figures
        expected_chars = {
            tracked.index: sum(len(answer_for(tracked.index, r)) for r in range(1, ROUNDS + 1))
            for tracked in self.tracked
        }
        with Runtime.open(self.db, config=CHECK_CONFIG) as rt:
            sessions = rt.executions.snapshots()
        for tracked in self.tracked:
            status = sessions.get(tracked.sid) if tracked.sid is not None else None
            if status is None or status.get("state") != "completed":
                state = None if status is None else status.get("state")
                missing = sorted(tracked.acked - tracked.lost)
                figures.lost += len(missing)
                tracked.lost |= set(missing)
                self.error(f"execution {tracked.index} ended {state}, not completed")
                continue
            result = status["result"]
            answers = result.get("answers") if isinstance(result, dict) else None
            if not isinstance(answers, list):
                self.error(f"execution {tracked.index}: result {result!r}")
                continue
            for round_no in sorted(tracked.acked - tracked.lost):
                answer = answer_for(tracked.index, round_no)
                if round_no > len(answers) or answers[round_no - 1] != answer:
                    figures.lost += 1
                    figures.fail(self.host, f"execution {tracked.index}: {answer} not applied")
            twice = sum(n - 1 for n in Counter(answers).values() if n > 1)
            metrics = status["metrics"]
            prompt_tokens = sum(
                usage_for(tracked.index, r)["prompt_tokens"] for r in range(1, ROUNDS + 1)
            )
            counted = (
                metrics["rounds"],
                metrics["llm_calls"],
                metrics["response_chars"],
                metrics["prompt_tokens"],
            )
            once = (
                ROUNDS,
                ROUNDS,
                expected_chars[tracked.index],
                {"value": prompt_tokens, "source": "provided"},
            )
            if counted != once:
                twice = max(twice, 1)
                figures.fail(self.host, f"execution {tracked.index}: counted {counted}, not {once}")
            figures.applied_twice += twice
            self.check_result(tracked, result, "its final status")
        leftovers = [
            sid
            for sid, status in sessions.items()
            if sid not in self.by_sid and status.get("state") != "cancelled"
        ]
        if leftovers:
            self.error(f"{len(leftovers)} sessions neither ours nor cancelled: {leftovers[:3]}")


# -- the uninterrupted run ---------------------------------------------------------------------


def reference_results(db: Path, salt: int) -> dict[int, Any]:
    """Every execution's result when no kill interrupts it (the host's answers, in one run)."""
    with Runtime.open(db, config=CHECK_CONFIG) as rt:
        rt.executions.register(STRATEGY, rounds)

        def run(ex: int) -> Any:
            step = rt.executions.start(STRATEGY, ex, salt)
            for round_no in range(1, ROUNDS + 1):
                step = rt.executions.feed(
                    step.session_id,
                    answer_for(ex, round_no),
                    query_id=f"q-{round_no}-0",
                    usage=usage_for(ex, round_no),
                )
            assert step.status == "completed", step.to_json()
            return step.result

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(run, range(EXECUTIONS)))
    return dict(enumerate(results))


# -- the test -----------------------------------------------------------------------------------


def test_acknowledged_answers_are_applied_exactly_once_across_kill_9(tmp_path: Path) -> None:
    clock = SystemClock()
    began = clock.monotonic()
    salt = random.Random(f"{SEED}:salt").getrandbits(31)
    reference = reference_results(tmp_path / "reference.db", salt)
    driver = Driver(tmp_path, reference, salt)
    driver.drive()
    driver.check_final()
    driver.figures.wall_s = clock.monotonic() - began
    report(driver.figures)
