"""The sweep: archiving idle agent blocks, on demand and on the clock's timer, and
pruning the archive folder to its byte budget, oldest first.

Real SQLite files and archive files in tmp_path; a `FakeClock` moves time (days of it)
without sleeping.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import zstandard

import greenroom.actors.block
from greenroom import ArchiveResult, Block, FakeClock, OutputRead, Runtime, SweepStats
from greenroom.blocks.messages import SweepRequest
from greenroom.blocks.records import SweepProgress
from greenroom.errors import InvalidInput, InvalidTransition, NotFound, Stopped, StorageError

from .conftest import QUIET, START_MS

DAY = 86_400.0
ARCHIVED_AT = "session:archived_at"
ARCHIVED_BYTES = "session:archived_bytes"
ARCHIVE_PATH = "session:archive_path"
BACKUP = "session:archive_backup_path"
PRUNED_AT = "session:archive_pruned_at"


def with_output(rt: Runtime, block_id: str, data: bytes, view: str = "agent") -> Block:
    block = rt.blocks.get(block_id, view=view)
    block.append_output(data)
    block.flush()
    return block


def noise(size: int, seed: int) -> bytes:
    """Incompressible output (hex-free random bytes), so archive sizes add up plainly."""
    return random.Random(seed).randbytes(size).replace(b"\n", b"#") + b"\n"


def archive_files(rt: Runtime) -> list[str]:
    if not rt.blocks.archive_dir.exists():
        return []
    return sorted(
        p.name for p in rt.blocks.archive_dir.iterdir() if not p.name.startswith(".owner.")
    )


def _path(result: ArchiveResult) -> Path:
    """The archive file an `ArchiveResult` names (a `Path`; there must be one)."""
    assert isinstance(result.path, Path), result.path
    return result.path


def is_archived(rt: Runtime, block_id: str) -> bool:
    return ARCHIVE_PATH in rt.store.get_object("block", block_id).meta


# -- archiving idle agent blocks --------------------------------------------------------------


def test_sweep_archives_only_idle_agent_blocks_with_lines(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock
) -> None:
    rt = open_rt()
    old_a = with_output(rt, "old-a", b"line one\nline two\n")
    old_b = with_output(rt, "old-b", b"x" * 1000 + b"\n")
    with_output(rt, "old-shell", b"$ ls\n", view="shell")
    with_output(rt, "old-blank", b"\n\n\n")  # output, but no lines
    rt.blocks.get("old-empty")  # no output at all
    rt.blocks.get("old-elsewhere").record_line(50)  # lines, but the output is kept elsewhere
    fake_clock.advance(1 * DAY)
    with_output(rt, "fresh", b"recent\n")
    fake_clock.advance(7 * DAY)  # 8 days since the old ones, 7 since "fresh"
    with_output(rt, "very-fresh", b"now\n")

    stats = rt.blocks.sweep()
    # "fresh" has been idle exactly 7 days: inactive_days is "at least".
    assert stats == SweepStats(
        archived_count=3, pruned_count=0, bytes_freed=18 + 1001 + len(b"recent\n")
    )
    assert [b for b in rt.blocks.ids() if is_archived(rt, b)] == ["fresh", "old-a", "old-b"]
    assert rt.store.get_object("block", "old-shell").meta.get(ARCHIVED_AT) is None
    assert rt.store.read_file("block", "old-shell", "output") == b"$ ls\n"
    assert rt.store.read_file("block", "old-blank", "output") == b"\n\n\n"
    assert rt.store.read_file("block", "very-fresh", "output") == b"now\n"
    assert old_a.read_output() == OutputRead(b"line one\nline two\n", 2, archived=True)
    assert old_b.meta()[ARCHIVED_BYTES] == 1001
    assert len(archive_files(rt)) == 3
    # Nothing is left to do: a second sweep archives nothing and counts nothing.
    assert rt.blocks.sweep() == SweepStats()
    assert rt.metrics()["sweeps"] == 2


def test_inactivity_boundary_is_inclusive(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock
) -> None:
    rt = open_rt()
    with_output(rt, "pane", b"some output\n")
    fake_clock.advance(7 * DAY - 0.001)
    assert rt.blocks.sweep().archived_count == 0
    assert not is_archived(rt, "pane")
    fake_clock.advance(0.001)
    assert rt.blocks.sweep().archived_count == 1
    assert is_archived(rt, "pane")


def test_inactive_days_is_configurable(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock
) -> None:
    rt = open_rt(inactive_days=0.5)
    with_output(rt, "pane", b"some output\n")
    fake_clock.advance(0.4 * DAY)
    assert rt.blocks.sweep().archived_count == 0
    fake_clock.advance(0.1 * DAY)
    assert rt.blocks.sweep().archived_count == 1


def test_activity_resets_the_idle_time(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock
) -> None:
    rt = open_rt()
    block = with_output(rt, "pane", b"first\n")
    fake_clock.advance(6 * DAY)
    block.append_output(b"still working\n")
    rt.settle()
    fake_clock.advance(2 * DAY)  # 8 days since the first line, 2 since the last
    assert rt.blocks.sweep().archived_count == 0
    fake_clock.advance(5 * DAY)
    assert rt.blocks.sweep().archived_count == 1
    assert block.read_output().data == b"first\nstill working\n"


def test_archived_blocks_are_not_archived_again(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock
) -> None:
    rt = open_rt()
    block = with_output(rt, "pane", b"output\n")
    first = block.archive()
    fake_clock.advance(10 * DAY)
    assert rt.blocks.sweep() == SweepStats()
    assert block.meta()[ARCHIVE_PATH] == _path(first).name


def test_sweep_runs_by_itself_shortly_after_the_runtime_opens(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock
) -> None:
    rt = open_rt(sweep_first_after_s=30.0, sweep_interval_s=DAY)
    with_output(rt, "old", b"an old session\n")
    rt.close()
    fake_clock.advance(8 * DAY)  # the host was down for 8 days

    rt = open_rt(sweep_first_after_s=30.0, sweep_interval_s=DAY)
    assert not is_archived(rt, "old")
    fake_clock.advance(29.0)
    assert not is_archived(rt, "old")
    fake_clock.advance(1.0)  # the first sweep, long before an interval has passed
    assert is_archived(rt, "old")
    assert rt.metrics()["sweeps"] == 1
    assert rt.blocks.get("old").read_output().data == b"an old session\n"

    # Then every interval: a block going idle now is archived by the sweep 7 days on.
    with_output(rt, "later", b"a later session\n")
    fake_clock.advance(6 * DAY)
    assert not is_archived(rt, "later")
    assert rt.metrics()["sweeps"] == 7
    fake_clock.advance(1 * DAY)
    assert is_archived(rt, "later")
    assert rt.metrics()["sweeps"] == 8


def test_sweep_timer_starts_with_the_first_block_of_a_new_database(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock
) -> None:
    rt = open_rt(sweep_first_after_s=10.0, sweep_interval_s=3600.0, inactive_days=0.001)
    fake_clock.advance(100)
    assert rt.metrics().get("sweeps", 0) == 0  # no blocks, no block services yet
    with_output(rt, "pane", b"output\n")  # idle for 86.4 s is enough here
    fake_clock.advance(10)
    assert rt.metrics()["sweeps"] == 1
    assert not is_archived(rt, "pane")
    fake_clock.advance(3600)
    assert rt.metrics()["sweeps"] == 2
    assert is_archived(rt, "pane")


def test_a_failing_block_is_counted_and_the_sweep_goes_on(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = open_rt()
    for name in ("a", "bad", "c"):
        with_output(rt, name, f"output of {name}\n".encode())
    fake_clock.advance(8 * DAY)
    original = greenroom.actors.block.write_archive

    def failing_for_bad(pieces: Any, archives: Any, name: str, codec: str, **kw: Any) -> Any:
        if name.startswith("bad."):
            raise StorageError("injected: cannot write the archive of 'bad'")
        return original(pieces, archives, name, codec, **kw)

    with monkeypatch.context() as patch:
        patch.setattr(greenroom.actors.block, "write_archive", failing_for_bad)
        stats = rt.blocks.sweep()
    assert stats.archived_count == 2
    assert rt.metrics()["sweep_failures"] == 1
    assert is_archived(rt, "a")
    assert is_archived(rt, "c")
    assert not is_archived(rt, "bad")
    assert rt.store.read_file("block", "bad", "output") == b"output of bad\n"
    # The next sweep picks it up.
    assert rt.blocks.sweep().archived_count == 1
    assert rt.blocks.get("bad").read_output().data == b"output of bad\n"
    assert rt.metrics()["sweep_failures"] == 1


# -- pruning ----------------------------------------------------------------------------------


def _archive_in_turn(rt: Runtime, fake_clock: FakeClock, names: list[str], size: int) -> dict:
    """Archive one block per name, a second apart (oldest first); their file sizes."""
    sizes = {}
    for n, name in enumerate(names):
        block = with_output(rt, name, noise(size, seed=n))
        result = block.archive()
        sizes[name] = _path(result).stat().st_size
        fake_clock.advance(1)
    return sizes


def test_pruning_deletes_the_oldest_archives_down_to_the_budget(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock
) -> None:
    names = ["p0", "p1", "p2", "p3", "p4"]
    rt = open_rt()
    sizes = _archive_in_turn(rt, fake_clock, names, 20_000)
    rt.close()
    budget = sizes["p2"] + sizes["p3"] + sizes["p4"]  # room for the newest three, exactly
    rt = open_rt(max_archive_bytes=budget)
    now = fake_clock.now_ms()

    stats = rt.blocks.sweep()
    assert stats == SweepStats(0, 2, sizes["p0"] + sizes["p1"])
    assert sum(p.stat().st_size for p in rt.blocks.archive_dir.iterdir()) == budget
    assert [name.split(".")[0] for name in archive_files(rt)] == ["p2", "p3", "p4"]
    for name in ("p0", "p1"):
        meta = rt.store.get_object("block", name).meta
        assert meta[PRUNED_AT] == now
        assert not {ARCHIVED_AT, ARCHIVED_BYTES, ARCHIVE_PATH} & set(meta)
        assert meta["session:line_count"] == 1  # the stats stay
        block = rt.blocks.get(name)
        with pytest.raises(NotFound, match="pruned"):
            block.read_output()
        with pytest.raises(InvalidTransition, match="pruned"):
            block.restore()
    for name in ("p2", "p3", "p4"):
        assert rt.blocks.get(name).read_output().data == noise(20_000, seed=names.index(name))
    # Within budget now: nothing more to prune, and the pruned blocks are not swept.
    fake_clock.advance(30 * DAY)
    assert rt.blocks.sweep() == SweepStats()


def test_a_sweep_archives_then_prunes_what_does_not_fit(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock
) -> None:
    rt = open_rt(max_archive_bytes=1)
    for n in range(3):
        with_output(rt, f"old-{n}", noise(5000, seed=n))
        fake_clock.advance(1)
    fake_clock.advance(8 * DAY)
    stats = rt.blocks.sweep()
    assert stats.archived_count == 3
    assert stats.pruned_count == 3
    assert stats.bytes_freed > 3 * 5001  # the outputs dropped plus the files deleted
    assert archive_files(rt) == []
    for n in range(3):
        assert PRUNED_AT in rt.store.get_object("block", f"old-{n}").meta
        with pytest.raises(NotFound, match="pruned"):
            rt.blocks.get(f"old-{n}").read_output()


def test_a_pruned_block_with_new_output_reads_its_live_part(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock
) -> None:
    rt = open_rt(max_archive_bytes=1)
    block = with_output(rt, "pane", b"old output\n")
    block.archive()
    assert rt.blocks.sweep().pruned_count == 1
    block.append_output(b"new output\n")
    block.flush()
    assert block.read_output() == OutputRead(b"new output\n", 1, archived=False)
    # It can be archived again, which clears the pruned mark.
    result = block.archive()
    assert result.archived_bytes == len(b"new output\n")
    assert PRUNED_AT not in block.meta()
    assert block.read_output().data == b"new output\n"


def test_pruning_a_restored_blocks_backup_unlinks_it(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock
) -> None:
    rt = open_rt(max_archive_bytes=1)
    block = with_output(rt, "pane", b"output\n")
    result = block.archive()
    block.restore()
    assert block.meta()[BACKUP] == _path(result).name
    stats = rt.blocks.sweep()
    assert stats.pruned_count == 1
    assert stats.bytes_freed > 0
    assert not _path(result).exists()
    meta = block.meta()
    assert BACKUP not in meta
    assert PRUNED_AT not in meta  # the output itself is live, not pruned
    assert block.read_output() == OutputRead(b"output\n", 1, archived=False)


def test_archives_of_blocks_whose_id_starts_with_a_dot_count_towards_the_budget(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock
) -> None:
    # ".hidden" is a valid block id; its archive file is ".hidden.<ms>.zst".
    names = ["a-old", ".hidden", "z-new"]
    rt = open_rt()
    sizes = _archive_in_turn(rt, fake_clock, names, 10_000)
    rt.close()
    budget = sizes[".hidden"] + sizes["z-new"]
    rt = open_rt(max_archive_bytes=budget)
    stats = rt.blocks.sweep()
    on_disk = sum(p.stat().st_size for p in rt.blocks.archive_dir.iterdir())
    assert on_disk <= budget, f"archive folder holds {on_disk} bytes, budget {budget}"
    assert stats.pruned_count == 1
    assert PRUNED_AT in rt.store.get_object("block", "a-old").meta


def test_an_archive_of_no_block_is_left_alone_and_not_counted_as_pruned(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock
) -> None:
    rt = open_rt()
    # A file in the archive folder of a block that is not in this database (deleted,
    # or another database's): no metadata could record its deletion.
    with_output(rt, "pane", b"output\n").archive()
    rt.blocks.archive_dir.mkdir(exist_ok=True)
    orphan = rt.blocks.archive_dir / f"gone.{START_MS - 1000}.zst"
    orphan.write_bytes(zstandard.ZstdCompressor().compress(b"old\n" * 1000))
    budget = sum(p.stat().st_size for p in rt.blocks.archive_dir.iterdir()) - 1
    rt.close()
    with Runtime.open(
        rt.path, clock=fake_clock, config=attrs.evolve(QUIET, max_archive_bytes=budget)
    ) as again:
        stats = again.blocks.sweep()
        assert orphan.exists(), "the sweep deleted a file no block's metadata can account for"
        # The oldest file the sweep may delete went instead, and its block says so.
        assert stats.pruned_count == 1
        assert archive_files(again) == [orphan.name]
        assert PRUNED_AT in again.store.get_object("block", "pane").meta
        assert again.metrics()["sweep_unowned_archives"] == 1
        assert again.blocks.ids() == ["pane"], "the sweep created a block for an orphan file"


def test_pruning_recognises_a_relative_archive_path_that_reads_accept(
    open_rt: Callable[..., Runtime],
) -> None:
    # Reads resolve a relative `session:archive_path` against the archive folder
    # (runtime.archive.checked_archive_path), so a bare file name is a valid pointer.
    rt = open_rt(max_archive_bytes=1)
    block = with_output(rt, "pane", b"hello\n")
    result = block.archive()
    name = _path(result).name
    rt.store.update_meta("block", "pane", {ARCHIVE_PATH: name})
    assert block.read_output() == OutputRead(b"hello\n", 1, archived=True)
    assert rt.blocks.sweep().pruned_count == 1
    meta = block.meta()
    assert ARCHIVE_PATH not in meta, "the block still points at the archive the sweep deleted"
    assert PRUNED_AT in meta
    with pytest.raises(NotFound, match="pruned"):
        block.read_output()


# -- re-archiving, blocks with nothing to archive, close during a sweep ------------------------


def test_an_archived_block_with_new_output_is_archived_again_when_idle(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock
) -> None:
    rt = open_rt()
    block = with_output(rt, "agent-1", b"first\n")
    block.archive()
    block.append_output(b"second\n")
    block.flush()
    fake_clock.advance(8 * DAY)
    stats = rt.blocks.sweep()
    assert stats.archived_count == 1
    read = block.read_output()
    assert (read.data, read.archived) == (b"first\nsecond\n", True)
    assert rt.store.list_files("block", "agent-1") == []


def test_blocks_with_nothing_live_to_archive_are_not_started_by_the_sweep(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock
) -> None:
    rt = open_rt()
    rt.blocks.get("counted-only").record_line(40)  # lines kept elsewhere: no output
    with_output(rt, "archived", b"output\n").archive()
    rt.close()
    fake_clock.advance(8 * DAY)
    rt = open_rt()
    assert rt.blocks.sweep() == SweepStats(0, 0, 0)
    assert rt.actor_ids("block") == []  # neither block was woken up


def test_closing_the_runtime_during_a_sweep_answers_the_caller(
    db_path: Path, fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = Runtime.open(db_path, clock=fake_clock, config=attrs.evolve(QUIET, stop_timeout_s=5.0))
    for n in range(3):
        with_output(rt, f"agent-{n}", b"output\n")
    fake_clock.advance(8 * DAY)
    entered, go = threading.Event(), threading.Event()
    original_write = greenroom.actors.block.write_archive

    def held(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        go.wait(10)
        return original_write(*args, **kwargs)

    monkeypatch.setattr(greenroom.actors.block, "write_archive", held)
    outcome: list[Any] = []

    def sweep() -> None:
        try:
            outcome.append(rt.blocks.sweep())
        except Exception as error:
            outcome.append(error)

    worker = threading.Thread(target=sweep, daemon=True)
    worker.start()
    assert entered.wait(10)
    closing = threading.Thread(target=rt.close, daemon=True)
    closing.start()
    go.set()
    closing.join(10)
    worker.join(3)
    assert not worker.is_alive(), "rt.blocks.sweep() still waits after Runtime.close() returned"
    assert isinstance(outcome[0], SweepStats | Stopped)
    # Nothing is lost: every block's output is live or archived.
    with Runtime.open(db_path, clock=fake_clock, config=QUIET) as again:
        for n in range(3):
            assert again.blocks.get(f"agent-{n}").read_output().data == b"output\n"


# -- one sweep at a time: joining, waiting, stopping --------------------------------------------


def _held_archives(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """Archives wait for `go` once they have `entered`: a sweep stays under way meanwhile."""
    entered, go = threading.Event(), threading.Event()
    original = greenroom.actors.block.write_archive

    def held(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        assert go.wait(10)
        return original(*args, **kwargs)

    monkeypatch.setattr(greenroom.actors.block, "write_archive", held)
    return entered, go


def _in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(fn())
        except Exception as error:
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_plain_sweeps_join_the_one_under_way_and_a_sweep_with_options_waits_its_turn(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = open_rt()  # (no sweep timer)
    with_output(rt, "agent-1", b"output\n")
    fake_clock.advance(8 * DAY)
    entered, go = _held_archives(monkeypatch)
    first, first_outcome = _in_thread(rt.blocks.sweep)
    assert entered.wait(10)
    # Asked of the sweeper directly, so they are known to be queued before the release.
    sweeper = rt.get_actor("sweeper", "sweeper")
    joined = [sweeper.ask(SweepRequest(), block=False) for _ in range(2)]
    events: list[SweepProgress] = []
    with_options = sweeper.ask(SweepRequest(dry_run=True, progress=events.append), block=False)
    assert not with_options.done
    go.set()
    first.join(10)
    stats = first_outcome[0]
    assert stats == SweepStats(archived_count=1, bytes_freed=7)
    assert all(future.get(timeout=10) is stats for future in joined)  # the same sweep's stats
    # The dry run ran after it (and so found nothing live left to archive).
    assert with_options.get(timeout=10) == SweepStats()
    assert [event.outcome for event in events] == ["started", "started"]
    assert rt.metrics()["sweeps"] == 1  # the joined ones ran no sweep of their own


def test_plain_sweeps_waiting_behind_a_sweep_with_options_run_once(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = open_rt()  # (no sweep timer)
    with_output(rt, "agent-1", b"output\n")
    fake_clock.advance(8 * DAY)
    entered, go = _held_archives(monkeypatch)
    events: list[SweepProgress] = []
    first, first_outcome = _in_thread(lambda: rt.blocks.sweep(progress=events.append))
    assert entered.wait(10)
    sweeper = rt.get_actor("sweeper", "sweeper")
    waiting = [sweeper.ask(SweepRequest(), block=False) for _ in range(3)]
    assert not any(future.done for future in waiting)
    go.set()
    first.join(10)
    assert first_outcome[0].archived_count == 1
    results = [future.get(timeout=10) for future in waiting]
    assert results == [SweepStats()] * 3
    assert results[0] is results[1] is results[2]  # one plain sweep served all three
    assert rt.metrics()["sweeps"] == 2
    # The archive's event names the file it wrote, as a Path.
    [archived] = [event for event in events if event.outcome == "archived"]
    assert isinstance(archived.path, Path)
    assert archived.path.parent == rt.blocks.archive_dir
    assert archive_files(rt) == [archived.path.name]


def test_sweeps_running_or_waiting_are_answered_stopped_when_the_runtime_closes(
    db_path: Path, fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = Runtime.open(db_path, clock=fake_clock, config=attrs.evolve(QUIET, stop_timeout_s=5.0))
    with_output(rt, "agent-1", b"output\n")
    fake_clock.advance(8 * DAY)
    entered, go = _held_archives(monkeypatch)
    sweeper = rt.get_actor("sweeper", "sweeper")
    running = sweeper.ask(SweepRequest(), block=False)
    assert entered.wait(10)
    waiting = sweeper.ask(SweepRequest(dry_run=True), block=False)
    closing, _ = _in_thread(rt.close)
    # The sweeper stops first, with the sweep's archive still held: both are answered.
    with pytest.raises(Stopped, match="cut short"):
        waiting.get(timeout=10)
    with pytest.raises(Stopped, match="cut short"):
        running.get(timeout=10)
    go.set()
    closing.join(10)
    assert not closing.is_alive()
    with Runtime.open(db_path, clock=fake_clock, config=QUIET) as again:
        assert again.blocks.get("agent-1").read_output().data == b"output\n"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"inactive_days": -1}, "inactive_days must be a finite number >= 0"),
        ({"inactive_days": float("inf")}, "inactive_days must be a finite number"),
        ({"max_archive_bytes": 2.5}, "max_archive_bytes must be an int >= 0"),
        ({"dry_run": 1}, "dry_run must be True or False"),
        ({"progress": "print"}, "progress must be callable"),
    ],
)
def test_bad_sweep_options_say_which_and_start_nothing(
    rt: Runtime, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        rt.blocks.sweep(**options)
    assert rt.metrics()["sweeps"] == 0
