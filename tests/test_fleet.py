"""Two and four host processes on one PostgreSQL (`tests/fleet_host_worker.py`): durable
executions started on one host and fed through others, blocks appended to and swept
on all of them at once, one host killed with kill -9 mid-run and its executions and
blocks taken over by the rest.

Every host is a real process with a runtime of its own; each runs on a fake clock
that starts at the real time and moves only when the test says, so a dead host's
leases run out when the test moves the survivors past them (no test waits).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
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

    def send(self, command: str) -> None:
        """Send `command`; its answer is read later (`read`), so hosts work at once."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def ask(self, command: str) -> dict[str, Any]:
        self.send(command)
        return self.read()

    def kill(self) -> None:
        self.proc.kill()  # SIGKILL: nothing of it runs again
        self.proc.wait(timeout=30)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.ask("close")
            self.proc.wait(timeout=60)


@pytest.fixture(params=[2, 4], ids=["2-hosts", "4-hosts"])
def fleet(request: pytest.FixtureRequest, pg_url: str, tmp_path: Path) -> Iterator[dict[str, Host]]:
    """Two, then four, host processes, h0 first; at the end each is closed (h0, killed
    by the tests, is killed if it still runs)."""
    names = [f"h{n}" for n in range(request.param)]
    hosts = {name: Host(pg_url, tmp_path / "archives", name) for name in names}
    try:
        yield hosts
    finally:
        for name, host in hosts.items():
            if name == "h0":
                if host.proc.poll() is None:
                    host.kill()
            else:
                host.close()


def test_hosts_share_executions_and_finish_a_killed_hosts(fleet: dict[str, Host]) -> None:
    hosts = fleet
    names = list(hosts)
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


def _lines(tag: str, count: int) -> list[str]:
    """The lines `append <block> <count> <tag>` writes."""
    return [f"{tag} {index}" for index in range(count)]


def _served(hosts: dict[str, Host], first: str, command: str) -> dict[str, Any]:
    """`command` asked of `first`, or of the host it names as the block's owner."""
    reply = hosts[first].ask(command)
    if reply.get("error") == "LeaseHeld":
        reply = hosts[reply["owner"]].ask(command)
    assert "error" not in reply, (command, reply)
    return reply


def test_hosts_append_to_blocks_and_race_sweeps_while_one_is_killed(fleet: dict[str, Host]) -> None:
    hosts = fleet
    names = list(hosts)
    panes = {name: [f"{name}-pane-{k}" for k in range(2)] for name in names}
    acked: dict[str, list[str]] = {pane: [] for own in panes.values() for pane in own}
    archived = 0
    for round_no in range(3):
        # Every host appends to its blocks at once, then every host sweeps at once.
        sent = []
        for name in names:
            for pane in panes[name]:
                tag = f"{pane}/r{round_no}"
                hosts[name].send(f"append {pane} 50 {tag}")
                sent.append((name, pane, tag))
        for name, pane, tag in sent:
            assert hosts[name].read() == {"ok": 50}
            acked[pane] += _lines(tag, 50)
        for host in hosts.values():
            host.send("sweep")
        for host in hosts.values():
            archived += host.read()["archived"]
    assert hosts["h1"].ask("append h0-pane-0 1 stray") == {"error": "LeaseHeld", "owner": "h0"}
    # h0 is killed while it appends and flushes lines without end.
    assert hosts["h0"].ask("spew h0-pane-1 spewed") == {"flushed": 100}
    acked["h0-pane-1"] += _lines("spewed", 100)
    assert hosts["h1"].ask("read h1-pane-0")["data"]  # (h0 spews meanwhile)
    hosts["h0"].kill()
    survivors = names[1:]
    for _ in range(4):  # past h0's leases; the survivors' renewed on the way
        for name in survivors:
            assert hosts[name].ask("advance 10") == {"ok": True}
    # The survivors sweep at once: they race to take h0's idle blocks over.
    for name in survivors:
        hosts[name].send("sweep")
    for name in survivors:
        archived += hosts[name].read()["archived"]
    for index, pane in enumerate(panes["h0"]):
        first = survivors[index % len(survivors)]
        reply = _served(hosts, first, f"append {pane} 20 {pane}/after")
        assert reply == {"ok": 20}
        acked[pane] += _lines(f"{pane}/after", 20)
    assert archived > 0
    for pane, lines in acked.items():
        data = _served(hosts, "h1", f"read {pane}")["data"]
        got = data.splitlines()
        if pane != "h0-pane-1":
            assert got == lines, pane  # nothing lost, nothing twice
            continue
        # The lines h0 spewed: the first 100 acknowledged, and maybe more after
        # them, whole and in order, before the new owner's.
        before, after = lines[:-120], lines[-20:]
        assert got[: len(before)] == before
        assert got[-20:] == after
        spewed = got[len(before) : -20]
        assert spewed == _lines("spewed", len(spewed))
        assert len(spewed) >= 100
