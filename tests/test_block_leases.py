"""Block leases on a shared store (`greenroom.leases`): one host serves a block at a
time, and only the host holding the sweep lease runs the timed sweeps.

Against a real PostgreSQL (`GREENROOM_PG_URL`), in a schema of the test's own; each
host has a fake clock of its own, so leases run out when the test says.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from greenroom import FakeClock, Runtime
from greenroom.blocks.records import ARCHIVE_PATH, PRUNED_AT
from greenroom.errors import LeaseHeld
from greenroom.leases import LEASE_OWNER
from tests.conftest import START_MS

pytestmark = pytest.mark.postgres

Host = Callable[..., Runtime]


@pytest.fixture
def hosts(pg_hosts: Host) -> Host:
    """Hosts on the test's database (`pg_hosts`)."""
    return pg_hosts


def test_one_host_serves_a_block_until_it_lets_go(hosts: Host) -> None:
    a = hosts("host-a", FakeClock(START_MS))
    b = hosts("host-b", FakeClock(START_MS))
    pane = a.blocks.get("pane-1")
    pane.append_output(b"from a\n")
    pane.flush()
    with pytest.raises(LeaseHeld) as held:
        b.blocks.get("pane-1")
    assert held.value.owner == "host-a"
    a.close()  # lets go of its leases
    pane = b.blocks.get("pane-1")
    pane.append_output(b"from b\n")
    pane.flush()
    assert pane.read_output().data == b"from a\nfrom b\n"
    assert b.store.get_object("block", "pane-1").meta[LEASE_OWNER] == "host-b"


def test_a_hung_hosts_block_is_taken_over_and_it_lets_go(hosts: Host) -> None:
    clock_a = FakeClock(START_MS)
    a = hosts("host-a", clock_a)
    b = hosts("host-b", FakeClock(START_MS + 31_000))  # past host-a's lease
    a.blocks.get("pane-1").append_output(b"one\n")
    a.blocks.get("pane-1").flush()
    pane_b = b.blocks.get("pane-1")  # taken over
    pane_b.append_output(b"two\n")
    pane_b.flush()
    clock_a.advance(10.0)  # host-a's renewal finds the lease host-b's: it lets go
    with pytest.raises(LeaseHeld) as held:
        a.blocks.get("pane-1").append_output(b"late\n")
    assert held.value.owner == "host-b"
    assert pane_b.read_output().data == b"one\ntwo\n"


def test_only_the_host_holding_the_sweep_lease_sweeps_on_its_timer(hosts: Host) -> None:
    quick = {"sweep_first_after_s": 5.0, "sweep_interval_s": 5.0}
    clock_a, clock_b = FakeClock(START_MS), FakeClock(START_MS)
    a = hosts("host-a", clock_a, **quick)
    b = hosts("host-b", clock_b, **quick)
    a.blocks.get("pane-a").append_output(b"x\n")
    b.blocks.get("pane-b").append_output(b"y\n")
    clock_a.advance(6.0)  # host-a's timer: it takes the sweep lease and sweeps
    clock_b.advance(6.0)  # host-b's: the lease is host-a's, it sweeps its own blocks only
    assert (a.metrics()["sweeps"], a.metrics()["own_block_sweeps"]) == (1, 0)
    assert (b.metrics()["sweeps"], b.metrics()["own_block_sweeps"]) == (0, 1)


def test_each_host_archives_its_own_idle_blocks_and_leaves_the_others(hosts: Host) -> None:
    quick = {"sweep_first_after_s": 100.0, "sweep_interval_s": 100.0, "inactive_days": 0.001}
    clock_a, clock_b = FakeClock(START_MS), FakeClock(START_MS)
    a = hosts("host-a", clock_a, **quick)
    b = hosts("host-b", clock_b, **quick)
    for rt, name in ((a, "pane-a"), (b, "pane-b")):
        rt.blocks.get(name).append_output(b"line\n")
        rt.blocks.get(name).flush()
    # Both hosts live on (renewing their leases) past 86.4 s idle and their sweeps:
    # host-a (the sweep lease's) archives pane-a and leaves pane-b to host-b, whose
    # own sweep archives it.
    for _ in range(11):
        clock_a.advance(10.0)
        clock_b.advance(10.0)
    assert a.store.get_object("block", "pane-a").meta.get(ARCHIVE_PATH)
    assert b.store.get_object("block", "pane-b").meta.get(ARCHIVE_PATH)
    assert a.metrics()["sweep_failures"] == b.metrics()["sweep_failures"] == 0
    assert b.blocks.get("pane-b").read_output().data == b"line\n"
    with pytest.raises(LeaseHeld):
        a.blocks.get("pane-b")


def test_the_sweep_lease_outlasts_the_ticks_of_hosts_out_of_phase(hosts: Host) -> None:
    clock_a, clock_b = FakeClock(START_MS), FakeClock(START_MS)
    a = hosts("host-a", clock_a, sweep_first_after_s=5.0, sweep_interval_s=100.0)
    b = hosts("host-b", clock_b, sweep_first_after_s=65.0, sweep_interval_s=100.0)
    a.blocks.get("pane-a").append_output(b"x\n")
    b.blocks.get("pane-b").append_output(b"y\n")
    for _ in range(22):  # 220 s: host-a ticks at 5, 105, 205; host-b at 65, 165
        clock_a.advance(10.0)
        clock_b.advance(10.0)
    # host-b's ticks come 60 s after host-a's, past a 30 s lease_s: still host-a's.
    assert (a.metrics()["sweeps"], a.metrics()["own_block_sweeps"]) == (3, 0)
    assert (b.metrics()["sweeps"], b.metrics()["own_block_sweeps"]) == (0, 2)


def test_each_host_prunes_its_share_and_the_budget_is_kept(hosts: Host) -> None:
    quick = {
        "sweep_first_after_s": 100.0,
        "sweep_interval_s": 100.0,
        "inactive_days": 0.001,
        "max_archive_bytes": 1,
    }
    clock_a, clock_b = FakeClock(START_MS), FakeClock(START_MS)
    a = hosts("host-a", clock_a, **quick)
    b = hosts("host-b", clock_b, **quick)
    for rt, name in ((a, "pane-a"), (b, "pane-b")):
        rt.blocks.get(name).append_output(b"line\n" * 100)
        rt.blocks.get(name).flush()
    for _ in range(40):  # archived at the first ticks, pruned by the next ones
        clock_a.advance(10.0)
        clock_b.advance(10.0)
    assert a.blocks.archives.entries() == []  # each archive pruned, by its block's host
    assert a.store.get_object("block", "pane-a").meta.get(PRUNED_AT)
    assert b.store.get_object("block", "pane-b").meta.get(PRUNED_AT)
    assert a.metrics()["sweep_failures"] == b.metrics()["sweep_failures"] == 0


def test_a_manual_sweep_leaves_another_live_hosts_blocks(hosts: Host) -> None:
    a = hosts("host-a", FakeClock(START_MS))
    b = hosts("host-b", FakeClock(START_MS))
    b.blocks.get("pane-b").append_output(b"y\n")
    b.blocks.get("pane-b").flush()
    stats = a.blocks.sweep(inactive_days=0)
    assert (stats.archived_count, stats.skipped_count) == (0, 0)
    assert a.metrics()["sweep_failures"] == 0
    assert not b.store.get_object("block", "pane-b").meta.get(ARCHIVE_PATH)


def test_a_hung_hosts_late_output_is_not_written_over_the_new_owners(hosts: Host) -> None:
    clock_a = FakeClock(START_MS)
    a = hosts("host-a", clock_a)
    b = hosts("host-b", FakeClock(START_MS + 31_000))
    pane_a = a.blocks.get("pane-1")
    pane_a.append_output(b"one\n")
    pane_a.flush()
    pane_b = b.blocks.get("pane-1")  # host-a hung: taken over
    pane_b.append_output(b"two\n")
    pane_b.flush()
    pane_a.append_output(b"late\n")  # host-a wakes before its renewal, output in hand
    pane_a.flush()
    assert a.metrics()["block_write_failures"] == 1  # refused, counted (and logged)
    assert pane_b.read_output().data == b"one\ntwo\n"


@pytest.mark.parametrize("started", [True, False], ids=["its-actor-ran", "output-only"])
def test_a_block_taken_over_and_back_carries_on_from_the_other_hosts_counts(
    hosts: Host, started: bool
) -> None:
    clock_a = FakeClock(START_MS)
    a = hosts("host-a", clock_a, sweep_first_after_s=1e9, sweep_interval_s=1e9)
    b = hosts("host-b", FakeClock(START_MS + 31_000), sweep_first_after_s=1e9)
    pane_a = a.blocks.get("pane-1")
    pane_a.append_output(b"1\n")
    if started:
        pane_a.flush()  # (starts the block's actor on host-a)
    else:
        a.settle()
        assert a.actor_ids("block") == []  # output only: no actor of the block
    pane_b = b.blocks.get("pane-1")  # host-a hung: taken over
    clock_a.advance(10.0)  # host-a's renewal: it lets go (its actor, if any, stops)
    if started:
        assert pane_a.stats().line_count == 1  # (read, not kept: host-b writes on)
    pane_b.append_output(b"2\n3\n")
    pane_b.flush()
    b.close()  # host-b lets go of its leases
    pane_a = a.blocks.get("pane-1")  # host-a serves the block again
    pane_a.append_output(b"4\n")
    pane_a.flush()
    assert pane_a.read_output().data == b"1\n2\n3\n4\n"
    assert pane_a.stats().line_count == 4
    assert a.store.get_object("block", "pane-1").meta["session:line_count"] == 4
