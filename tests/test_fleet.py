"""Four host processes on one PostgreSQL (`tests/fleet_host_worker.py`): durable
executions started on one host and fed through others, one host killed with kill -9
mid-run and its executions finished by the rest.

Every host is a real process with a runtime of its own; each runs on a fake clock
that starts at the real time and moves only when the test says, so a dead host's
leases run out when the test moves the survivors past them (no test waits).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parent.parent
ANSWERS = ["one", "two", "three"]


class Host:
    """One host process, asked one command at a time."""

    def __init__(self, url: str, archives: Path, name: str) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fleet_host_worker", url, str(archives), name],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.read() == {"ready": name}

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, f"host {self.name} ended (exit status {self.proc.poll()})"
        reply: dict[str, Any] = json.loads(line)
        return reply

    def ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.read()

    def kill(self) -> None:
        self.proc.kill()  # SIGKILL: nothing of it runs again
        self.proc.wait(timeout=30)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.ask("close")
            self.proc.wait(timeout=60)


def test_four_hosts_share_executions_and_finish_a_killed_hosts(pg_url: str, tmp_path: Path) -> None:
    hosts = {name: Host(pg_url, tmp_path / "archives", name) for name in ("h0", "h1", "h2", "h3")}
    names = list(hosts)
    try:
        owner: dict[str, str] = {}
        for name, host in hosts.items():
            for sid in host.ask(f"start 3 {len(ANSWERS)}")["sids"]:
                owner[sid] = name
        fed: dict[str, list[str]] = {sid: [] for sid in owner}
        # Round 1, sent to the wrong host first: refused, naming the owner; then there.
        for sid, name in owner.items():
            other = hosts[names[(names.index(name) + 1) % len(names)]]
            assert other.ask(f"feed {sid} {ANSWERS[0]}") == {"error": "LeaseHeld", "owner": name}
            reply = hosts[name].ask(f"feed {sid} {ANSWERS[0]}")
            assert reply["status"] == "needs_response", reply
            fed[sid].append(ANSWERS[0])  # acknowledged
        hosts["h0"].kill()  # mid-run: three executions paused on it
        survivors = names[1:]
        for name in survivors:  # past h0's leases; theirs renewed on the way
            for _ in range(4):
                assert hosts[name].ask("advance 10") == {"ok": True}
        results: dict[str, Any] = {}
        for round_no, text in enumerate(ANSWERS[1:], start=2):
            for index, sid in enumerate(owner):
                target = owner[sid]
                if target == "h0":  # dead: any survivor takes it over
                    target = survivors[index % len(survivors)]
                reply = hosts[target].ask(f"feed {sid} {text}")
                assert "error" not in reply, (sid, target, reply)
                owner[sid] = target
                fed[sid].append(text)
                if round_no == len(ANSWERS):
                    assert reply["status"] == "completed", reply
                    results[sid] = reply["result"]
        # Every acknowledged answer applied once, in order: what one host gives.
        assert results == {sid: ANSWERS for sid in owner}
        assert {sid: answers for sid, answers in fed.items()} == results
        assert sum(1 for name in owner.values() if name == "h0") == 0  # all taken over
    finally:
        for name, host in hosts.items():
            if name == "h0":
                if host.proc.poll() is None:
                    host.kill()
            else:
                host.close()
