"""`make demo` (examples/multi_agent_host.py) runs, checks itself and leaves its files."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "multi_agent_host.py"


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=50, check=False)


def test_demo_runs_and_replaces_a_previous_run(tmp_path: Path) -> None:
    # What a previous run would have left, none of it usable: the demo must clear it.
    (tmp_path / "demo.db").write_bytes(b"not a database")
    (tmp_path / "demo.db-wal").write_bytes(b"stale")
    (tmp_path / "demo.db.archives").mkdir()
    (tmp_path / "demo.db.archives" / "agent-00.1.zst").write_bytes(b"x" * 50_000)
    (tmp_path / "demo.db.transcripts").mkdir()
    (tmp_path / "demo.db.transcripts" / "stale.jsonl").write_text("{}\n")

    done = run([sys.executable, str(DEMO)], tmp_path)

    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for line in (
        "50 agents streamed 1213 NDJSON lines (~26401 tokens) into their panes",
        "48 exited 0; agent-13 crashed (SIGSEGV, status -11); agent-29 ran on until the host "
        "stopped it (SIGTERM, -15)",
        "each line also went to its pane's replay buffer: 1213 events",
        "10 executions: 8 completed, 1 cancelled, 1 error; 39 answers fed",
        "the failing one ended in error: ValueError: the judge named no winner",
        "closed and resumed: the same 9-message context, next entry 61",
        "tokens of the completed ones: 1506 provided by the LLM, 834 estimated",
        "5 transcripts, 51 turns, 10 compactions, 276 entries written",
        "148126 tokens billed in all: $0.5121 at anthropic:claude-sonnet-4-5's price",
        "it pruned 16 archives (oldest first) to fit 12000 bytes: 24 left, 11748 bytes",
        "connected: 8 events live; disconnected while 12 more came",
        "reconnected from its cursor: 12 replayed (exactly those), then 1 live",
        "came back too late: Gap 'trimmed' (41 of 141 events trimmed, 100 kept)",
        "the hourly sweep archived 40 idle panes; the 10 busy ones stay live",
        "All checks passed.",
        "  greenroom blocks demo.db",
        "  greenroom show demo.db agent-40",
    ):
        assert line in out, line

    # The MCP JSON of the paused execution is printed whole and parses.
    start = out.index("\n{\n") + 1
    paused = json.loads(out[start : out.index("\n}\n", start) + 2])
    assert paused["status"] == "needs_response"
    assert re.fullmatch(r"s-[0-9a-f]{32}", paused["session_id"])
    assert [query["id"] for query in paused["queries"]] == ["q-1-0", "q-1-1", "q-1-2"]
    assert {query["system"] for query in paused["queries"]} == {
        "You are the planner.",
        "You are the coder.",
        "You are the reviewer.",
    }

    # What it leaves: the database, archives within the budget, the transcripts.
    assert (tmp_path / "demo.db").read_bytes()[:16] == b"SQLite format 3\x00"
    archives = sorted((tmp_path / "demo.db.archives").glob("*.zst"))
    assert archives, "no archives left"
    assert all(path.name.startswith("agent-") and path.suffix == ".zst" for path in archives)
    assert "agent-00.1.zst" not in {path.name for path in archives}
    assert sum(path.stat().st_size for path in archives) <= 12_000
    export = re.search(r"^  greenroom export demo\.db (agent-\d\d)$", out, re.MULTILINE)
    assert export
    assert any(path.name.startswith(export[1] + ".") for path in archives)
    transcripts = sorted((tmp_path / "demo.db.transcripts").iterdir())
    assert len(transcripts) == 5
    assert all(path.suffix == ".jsonl" for path in transcripts)
    shown = re.search(r"^  greenroom transcript (\S+)$", out, re.MULTILINE)
    assert shown
    assert (tmp_path / shown[1]).resolve() in {path.resolve() for path in transcripts}


def run_broken(tmp_path: Path, patch: str) -> subprocess.CompletedProcess[str]:
    """Run the demo after `patch` (Python source) has broken the runtime."""
    broken = f"""
import runpy, sys
sys.path.insert(0, {str(DEMO.parent)!r})
{textwrap.dedent(patch).strip()}
runpy.run_path({str(DEMO)!r}, run_name="__main__")
"""
    return run([sys.executable, "-c", broken], tmp_path)


# Runtime bugs, each one making a figure the demo prints wrong, and the check that fails.
BUGS = {
    "block token estimate": (
        """
        from greenroom.blocks.counting import LineCounts
        count = LineCounts.count
        LineCounts.count = lambda self, lines, tokens, now: count(self, lines, tokens + 1, now)
        """,
        "demo check failed: agent-00 token estimate",
    ),
    "execution token estimate": (
        """
        from greenroom.executions.records import SessionMetrics
        answered = SessionMetrics.answered
        def off_by_one(self, query, response, usage):
            answered(self, query, response, usage)
            if usage is None:
                self.response_tokens += 1
        SessionMetrics.answered = off_by_one
        """,
        "demo check failed: tokens {'value': 226, 'source': 'estimated'}",
    ),
    "transcript cost": (
        """
        import attrs
        import greenroom.pricing
        calculate_cost = greenroom.pricing.calculate_cost
        def dearer(usage, pricing):
            cost = calculate_cost(usage, pricing)
            return attrs.evolve(cost, output=cost.output * 1.01)
        greenroom.pricing.calculate_cost = dearer
        import greenroom.actors.transcript
        greenroom.actors.transcript.calculate_cost = dearer
        """,
        "demo check failed: cost CostBreakdown(",
    ),
}


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_demo_fails_when_the_runtime_misbehaves(tmp_path: Path, bug: str) -> None:
    patch, failure = BUGS[bug]
    done = run_broken(tmp_path, patch)

    assert done.returncode == 1, done.stdout + done.stderr
    assert failure in done.stderr
    assert "All checks passed." not in done.stdout


def test_make_live_serves_agents_that_keep_working(tmp_path: Path) -> None:
    httpx = pytest.importorskip("httpx")
    live = subprocess.Popen(
        [sys.executable, str(DEMO), "--live", "--port", "0"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert live.stdout is not None
        found = re.search(
            r"serving 8 live agents on (http://127\.0\.0\.1:\d+/)", live.stdout.readline()
        )
        assert found, live.stderr.read() if live.poll() is not None else "no URL line"
        base = found.group(1)
        with httpx.stream("GET", base + "sessions/agent-01/events", timeout=10.0) as events:
            seen = 0
            for line in events.iter_lines():
                if line.startswith("event: observation"):
                    seen += 1
                if seen == 3:
                    break
        blocks = httpx.get(base + "blocks", timeout=10.0).json()
        assert {block["id"] for block in blocks} >= {f"agent-{n:02d}" for n in range(8)}
        live.send_signal(signal.SIGINT)
        assert live.wait(timeout=30) == 0
        assert "stopped" in live.stdout.read()
    finally:
        if live.poll() is None:
            live.kill()
