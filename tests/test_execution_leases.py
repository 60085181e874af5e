"""Execution leases on a shared store (`greenroom.leases`): hosts on one
PostgreSQL database each drive the executions they hold a lease on.

Against a real server (`GREENROOM_PG_URL`), in a schema of the test's own. Hosts in
this process each have a fake clock of their own, so a lease runs out when the test
says; the host killed with kill -9 is a real process on the system clock, and the
host taking over sets its fake clock past that host's lease.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from greenroom import FakeClock, Runtime
from greenroom.clock import SystemClock
from greenroom.errors import InvalidTransition, LeaseHeld
from greenroom.leases import LEASE_OWNER, LEASE_UNTIL
from tests.conftest import START_MS
from tests.lease_strategies import answers

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parent.parent
STRATEGY = "lease.answers"
Host = Callable[..., Runtime]


@pytest.fixture
def hosts(pg_hosts: Host) -> Host:
    """Hosts on the test's database (`pg_hosts`), each with the strategy registered."""

    def open_host(name: str, clock: FakeClock, **config: object) -> Runtime:
        rt = pg_hosts(name, clock, **config)
        rt.executions.register(STRATEGY, answers)
        return rt

    return open_host


def test_another_hosts_feed_is_refused_naming_the_owner_until_it_lets_go(hosts: Host) -> None:
    a = hosts("host-a", FakeClock(START_MS))
    b = hosts("host-b", FakeClock(START_MS))
    sid = a.executions.start(STRATEGY, 2).session_id
    meta = a.store.get_object("execution", sid).meta
    assert (meta[LEASE_OWNER], meta[LEASE_UNTIL]) == ("host-a", START_MS + 30_000)
    with pytest.raises(LeaseHeld) as held:
        b.executions.feed(sid, "one")
    assert (held.value.owner, held.value.until_ms) == ("host-a", START_MS + 30_000)
    assert "host-a" in str(held.value)
    a.close()  # lets go of its leases: host-b takes over at once
    assert b.executions.feed(sid, "one").status == "needs_response"
    done = b.executions.feed(sid, "two")
    assert (done.status, done.result) == ("completed", ["one", "two"])
    assert b.store.get_object("execution", sid).meta[LEASE_OWNER] == "host-b"


def test_a_host_renews_its_leases_while_it_lives(hosts: Host) -> None:
    clock_a = FakeClock(START_MS)
    a = hosts("host-a", clock_a)
    b = hosts("host-b", FakeClock(START_MS + 35_000))  # past the first lease
    sid = a.executions.start(STRATEGY, 2).session_id
    clock_a.advance(25.0)  # renewed at 10 s and 20 s: held until 50 s
    with pytest.raises(LeaseHeld) as held:
        b.executions.feed(sid, "one")
    assert held.value.until_ms == START_MS + 50_000


def test_a_host_that_stopped_is_taken_over_once_its_lease_ran_out(hosts: Host) -> None:
    a = hosts("host-a", FakeClock(START_MS))
    clock_b = FakeClock(START_MS)
    b = hosts("host-b", clock_b)
    sid = a.executions.start(STRATEGY, 3).session_id
    assert a.executions.feed(sid, "one").status == "needs_response"  # acknowledged
    # host-a stops renewing (its clock stands still, as a hung host's timers would).
    clock_b.advance(31.0)
    assert b.executions.feed(sid, "two").status == "needs_response"
    assert b.executions.feed(sid, "three").result == ["one", "two", "three"]
    # host-a wakes up: its copy is fenced by the journal, and it lets go.
    with pytest.raises(InvalidTransition):
        a.executions.feed(sid, "late")
    assert a.executions.status(sid)["state"] == "completed"


def test_a_host_killed_mid_run_is_taken_over_and_nothing_is_fed_twice(
    hosts: Host, pg_url: str, tmp_path: Path
) -> None:
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.lease_host_worker", pg_url, str(tmp_path / "archives")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdout is not None
        started = worker.stdout.readline().split()
        assert started[0] == "started", started
        sid = started[1]
        assert worker.stdout.readline().strip() == "fed 1"  # acknowledged
        worker.kill()  # kill -9: its lease is left to run out
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    # This host's clock: past the worker's lease (30 s from its system clock's now).
    b = hosts("host-b", FakeClock(SystemClock().now_ms() + 31_000))
    with pytest.raises(LeaseHeld):
        hosts("host-c", FakeClock(SystemClock().now_ms())).executions.feed(sid, "two")
    assert b.executions.feed(sid, "two").status == "needs_response"
    done = b.executions.feed(sid, "three")
    # The answer the dead host acknowledged is in, once; the result is a one-host run's.
    assert (done.status, done.result) == ("completed", ["one", "two", "three"])
    alone = hosts("host-d", FakeClock(START_MS))
    step = alone.executions.start(STRATEGY, 3)
    for text in ("one", "two", "three"):
        step = alone.executions.feed(step.session_id, text)
    assert step.result == done.result


def test_a_host_that_lost_its_lease_writes_nothing_more(hosts: Host) -> None:
    a = hosts("host-a", FakeClock(START_MS))
    b = hosts("host-b", FakeClock(START_MS + 31_000))  # past host-a's lease
    sid = a.executions.start(STRATEGY, 2).session_id
    # host-b brings it back (takes the lease) but has not written to its journal yet.
    assert b.executions.resume(sid).status == "needs_response"
    journal = a.store.read_file("execution", sid, "journal")
    with pytest.raises(InvalidTransition):
        a.executions.feed(sid, "from a")  # fenced by the lease, not only the journal
    assert a.store.read_file("execution", sid, "journal") == journal
    assert b.executions.feed(sid, "one").status == "needs_response"
    assert b.executions.feed(sid, "two").result == ["one", "two"]


def test_a_renewal_keeps_a_lease_from_a_takeover_that_read_it_before(hosts: Host) -> None:
    clock_a = FakeClock(START_MS)
    a = hosts("host-a", clock_a)
    b = hosts("host-b", FakeClock(START_MS + 31_000))
    sid = a.executions.start(STRATEGY, 2).session_id
    stale = a.store.get_object("execution", sid).meta  # as host-b would have read it
    clock_a.advance(10.0)  # host-a renews: its lease runs until 40 s now
    with pytest.raises(LeaseHeld) as held:
        b.executions._leases.take(sid, stale)
    assert held.value.owner == "host-a"


def test_a_host_whose_lease_was_taken_over_lets_go_at_its_next_renewal(hosts: Host) -> None:
    clock_a = FakeClock(START_MS)
    a = hosts("host-a", clock_a)
    b = hosts("host-b", FakeClock(START_MS + 31_000))
    sid = a.executions.start(STRATEGY, 2).session_id
    assert b.executions.resume(sid).status == "needs_response"  # host-b took it over
    assert a.metrics()["execution_conflicts"] == 0
    clock_a.advance(10.0)  # host-a's renewal finds the lease is host-b's: it lets go
    assert a.metrics()["execution_conflicts"] == 1
    with pytest.raises(LeaseHeld) as held:
        a.executions.feed(sid, "one")
    assert held.value.owner == "host-b"
