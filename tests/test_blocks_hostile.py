"""Blocks under two hosts, crashes mid-operation, hostile archive files and metadata.

Two runtimes opened on one database in this process stand for two hosts: each has its
own store connection, its own actors and its own owner token, exactly as two processes
have (`tests/test_crash.py` runs real ones). Operations are held at a chosen point by
wrapping the store or the archive writer, never by sleeping.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import greenroom.actors.block
from greenroom import Runtime
from greenroom.errors import (
    Conflict,
    GreenroomError,
    InvalidInput,
    Stopped,
    StorageError,
    Timeout,
)
from greenroom.store import Store

from .test_archive import append_in_pieces, varied_output

WAIT = 10.0


def restoring_files(rt: Runtime, block_id: str) -> list[str]:
    """The restore temporaries stored for `block_id`."""
    return [
        info.name
        for info in rt.store.list_files("block", block_id)
        if info.name.startswith("output.restoring")
    ]


def archive_files(rt: Runtime) -> list[str]:
    """Every name in the archive folder but the runtimes' owner locks."""
    folder = rt.blocks.archive_dir
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".owner."))


class Gate:
    """Holds the first call that passes `stop()` until `open_()`; says when it is held."""

    def __init__(self) -> None:
        self.held = threading.Event()
        self.go = threading.Event()
        self._first = threading.Lock()

    def stop(self) -> None:
        if self._first.acquire(blocking=False):
            self.held.set()
            assert self.go.wait(WAIT)

    def open_(self) -> None:
        self.go.set()


@pytest.fixture
def hold_restore(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    """A gate on the first piece a restore stages in the store."""
    gate = Gate()
    original = Store.append_file

    def append_file(self: Store, kind: str, object_id: str, name: str, *a: Any, **k: Any) -> Any:
        if name.startswith("output.restoring."):
            gate.stop()
        return original(self, kind, object_id, name, *a, **k)

    monkeypatch.setattr(Store, "append_file", append_file)
    yield gate
    gate.open_()


@pytest.fixture
def hold_archive(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    """A gate on the first archive, once it has read what it archives."""
    gate = Gate()
    original = greenroom.actors.block.write_archive

    def write_archive(pieces: Any, *args: Any, **kwargs: Any) -> Any:
        read = list(pieces)
        gate.stop()
        return original(read, *args, **kwargs)

    monkeypatch.setattr(greenroom.actors.block, "write_archive", write_archive)
    yield gate
    gate.open_()


def in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Run `call` on a thread; its result or exception lands in the list."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(call())
        except BaseException as error:
            out.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


# -- A: two hosts, one block ------------------------------------------------------------------


def test_another_host_starting_the_block_leaves_a_restore_under_way_alone(
    open_rt: Callable[..., Runtime], hold_restore: Gate
) -> None:
    data = varied_output(3_000_000, seed=1)
    first = open_rt()
    block = first.blocks.get("agent-1")
    append_in_pieces(block, data)
    block.archive()
    thread, out = in_thread(block.restore)
    assert hold_restore.held.wait(WAIT)
    second = open_rt()  # a second host (the CLI's export does just this)
    assert second.blocks.get("agent-1").read_output().data == data
    hold_restore.open_()
    thread.join(WAIT)
    assert out[0].restored_bytes == len(data)
    assert block.read_output().data == data
    assert second.blocks.get("agent-1").read_output().data == data
    assert restoring_files(first, "agent-1") == []


def test_two_hosts_restoring_one_block_one_wins_and_the_other_sees_conflict(
    open_rt: Callable[..., Runtime], hold_restore: Gate
) -> None:
    data = varied_output(3_000_000, seed=2)
    first, second = open_rt(), open_rt()
    block = first.blocks.get("agent-1")
    append_in_pieces(block, data)
    block.archive()
    thread, out = in_thread(block.restore)
    assert hold_restore.held.wait(WAIT)
    won = second.blocks.get("agent-1").restore()  # restores while the first is held
    assert won.restored_bytes == len(data)
    hold_restore.open_()
    thread.join(WAIT)
    assert isinstance(out[0], Conflict), out
    assert "try again" in str(out[0])
    for rt in (first, second):
        assert rt.blocks.get("agent-1").read_output().data == data
        assert restoring_files(rt, "agent-1") == []


def test_an_archive_that_lost_a_race_writes_nothing_and_the_sweep_counts_it_skipped(
    open_rt: Callable[..., Runtime], hold_archive: Gate, fake_clock: Any
) -> None:
    first, second = open_rt(), open_rt()
    block = first.blocks.get("agent-1")
    block.append_output(b"line one\n")
    block.flush()
    fake_clock.advance(8 * 86_400)
    thread, out = in_thread(first.blocks.sweep)
    assert hold_archive.held.wait(WAIT)
    other = second.blocks.get("agent-1")
    other.append_output(b"line two, from the other host\n")
    other.flush()
    hold_archive.open_()
    thread.join(WAIT)
    stats = out[0]
    assert (stats.archived_count, stats.skipped_count) == (0, 1), stats
    assert first.metrics()["sweep_failures"] == 0
    assert archive_files(first) == []  # the archive it wrote is gone again
    expected = b"line one\nline two, from the other host\n"
    assert block.read_output().data == expected


def test_a_restore_temporary_of_a_runtime_that_is_gone_is_removed_on_start(
    open_rt: Callable[..., Runtime],
) -> None:
    rt = open_rt()
    block = rt.blocks.get("agent-1")
    block.append_output(b"kept\n")
    block.archive()
    live = open_rt()
    live.blocks.get("other").append_output(b"x\n")
    live.blocks.get("other").archive()  # takes its owner lock
    token = next(
        p.name.split(".")[2]
        for p in rt.blocks.archive_dir.iterdir()
        if p.name.startswith(".owner.")
    )
    # What crashes leave: a restore of a runtime that is gone, an old unnamed one, and
    # one of a runtime that still runs (left alone).
    dead, old = "output.restoring.00000000deadbeef.1234", "output.restoring"
    mine = f"output.restoring.{token}.abcd"
    for name in (dead, old, mine):
        rt.store.append_file("block", "agent-1", name, b"partial", create=True)
    rt.close()
    again = open_rt()
    again.blocks.get("agent-1").meta()  # starts the block's actor
    left = restoring_files(again, "agent-1")
    assert left == ([mine] if token in {t.name.split(".")[2] for t in _locks(again)} else [])
    assert again.metrics()["temporaries_removed"] >= 2


def _locks(rt: Runtime) -> list[Path]:
    return [p for p in rt.blocks.archive_dir.iterdir() if p.name.startswith(".owner.")]


def test_archive_temporaries_of_a_crash_are_removed_and_a_live_hosts_kept(
    open_rt: Callable[..., Runtime], fake_clock: Any
) -> None:
    rt = open_rt()
    block = rt.blocks.get("agent-1")
    block.append_output(b"kept\n")
    block.archive()
    folder = rt.blocks.archive_dir
    [lock] = _locks(rt)
    live_token = lock.name.split(".")[2]
    dead = folder / ".agent-1.5.zst.00000000deadbeef.abcd1234.tmp"
    old = folder / ".agent-1.6.zst.abcd1234.tmp"  # an older greenroom's: no owner
    live = folder / f".agent-1.7.zst.{live_token}.abcd1234.tmp"
    for path in (dead, old, live):
        path.write_bytes(b"half an archive")
    second = open_rt()
    second.blocks.get("agent-2").append_output(b"y\n")  # its blocks start: leftovers go
    assert sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp")) == [live.name]
    assert second.metrics()["temporaries_removed"] == 2
    rt.close()  # the owner is gone now: the sweep removes its temporary too
    second.blocks.sweep()
    assert not live.exists()


def test_a_second_process_exporting_never_breaks_a_restore(
    open_rt: Callable[..., Runtime], db_path: Path, hold_restore: Gate
) -> None:
    # The case A with a real second process: `greenroom export` while a
    # restore is under way used to delete its staging file.
    data = varied_output(2_000_000, seed=3)
    rt = open_rt()
    block = rt.blocks.get("agent-1")
    append_in_pieces(block, data)
    block.archive()
    thread, out = in_thread(block.restore)
    assert hold_restore.held.wait(WAIT)
    target = db_path.with_name("export.out")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "greenroom.cli",
            "export",
            str(db_path),
            "agent-1",
            "-o",
            str(target),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert target.read_bytes() == data
    hold_restore.open_()
    thread.join(WAIT)
    assert out[0].restored_bytes == len(data)
    assert block.read_output().data == data


# -- B, B2: flush and close while an archive runs ----------------------------------------------


def test_flush_returns_only_once_output_held_by_an_archive_is_stored(
    rt: Runtime, hold_archive: Gate
) -> None:
    block = rt.blocks.get("agent-1")
    block.append_output(b"before\n")
    archiving, _ = in_thread(block.archive)
    assert hold_archive.held.wait(WAIT)
    block.append_output(b"during the archive\n")
    flushing, flushed = in_thread(block.flush)
    flushing.join(0.2)  # (real time: it must still be waiting for the archive)
    assert flushing.is_alive()
    assert not flushed
    hold_archive.open_()
    flushing.join(WAIT)
    archiving.join(WAIT)
    assert flushed == [None]
    assert rt.store.read_file("block", "agent-1", "output") == b"during the archive\n"


def test_close_during_an_archive_stores_held_output_and_answers_the_caller(
    open_rt: Callable[..., Runtime], hold_archive: Gate, caplog: pytest.LogCaptureFixture
) -> None:
    rt = open_rt()
    block = rt.blocks.get("agent-1")
    block.append_output(b"first line\n")
    block.flush()
    block.append_output(b"an unfinished line")  # and the last stats write is fresh
    archiving, archived = in_thread(block.archive)
    assert hold_archive.held.wait(WAIT)
    block.append_output(b" ends here\nand one more\n")
    closing, _ = in_thread(rt.close)
    archiving.join(WAIT)
    assert archived
    assert isinstance(archived[0], Stopped | GreenroomError), archived
    hold_archive.open_()
    closing.join(WAIT)
    assert not [r for r in caplog.records if "on_stop of actor" in r.getMessage()]
    assert list(rt.blocks.archive_dir.iterdir()) == []  # nor an archive nobody commits
    again = open_rt()
    data = again.blocks.get("agent-1").read_output().data
    assert data == b"first line\nan unfinished line ends here\nand one more\n"
    assert again.blocks.get("agent-1").stats().line_count == 3


# -- H: a line split across a restart ---------------------------------------------------------


def test_a_line_split_across_a_restart_is_counted_once(open_rt: Callable[..., Runtime]) -> None:
    rt = open_rt()
    rt.blocks.get("agent-1").append_output(b"one\ntwo without its end")
    rt.close()
    rt = open_rt()
    block = rt.blocks.get("agent-1")
    block.append_output(b", ended now\nthree\n")
    assert block.stats().line_count == 3
    rt.close()
    assert open_rt().blocks.get("agent-1").stats().line_count == 3


# -- C: archive reads never leave the archive folder ------------------------------------------


def test_an_archive_swapped_for_a_symlink_is_refused(rt: Runtime, tmp_path: Path) -> None:
    block = rt.blocks.get("agent-1")
    block.append_output(b"mine\n")
    path = block.archive().path
    assert path is not None
    secret = tmp_path / "secret.txt"
    secret.write_bytes(path.read_bytes())  # a valid archive, outside the folder
    path.unlink()
    path.symlink_to(secret)
    with pytest.raises(StorageError, match=r"symbolic link|refusing"):
        block.read_output()
    with pytest.raises(StorageError):
        block.restore()


def test_an_archive_swapped_for_a_fifo_is_refused_without_waiting(rt: Runtime) -> None:
    block = rt.blocks.get("agent-1")
    block.append_output(b"mine\n")
    path = block.archive().path
    assert path is not None
    path.unlink()
    os.mkfifo(path)
    with pytest.raises(StorageError, match=r"not a regular file|FIFO|refusing"):
        block.read_output()


# -- E: hostile metadata ----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["a\x00b.zst", 12345, "x" * 5000, "../../etc/passwd"])
def test_a_hostile_archive_path_is_a_storage_error_and_a_dry_run_goes_on(
    rt: Runtime, fake_clock: Any, value: str
) -> None:
    block = rt.blocks.get("agent-1")
    block.append_output(b"line\n")
    block.flush()
    block.update_meta({"session:archive_path": value})
    with pytest.raises(StorageError):
        block.read_output()
    fake_clock.advance(8 * 86_400)
    stats = rt.blocks.sweep(dry_run=True)
    assert stats.archived_count == 1


# -- backpressure -------------------------------------------------------------------------------


def test_append_output_waits_then_times_out_when_the_writer_is_behind(
    open_rt: Callable[..., Runtime], hold_archive: Gate
) -> None:
    rt = open_rt(max_pending_output_bytes=1000, output_wait_timeout_s=0.2)
    block = rt.blocks.get("agent-1")
    block.append_output(b"x\n")
    archiving, _ = in_thread(block.archive)
    assert hold_archive.held.wait(WAIT)
    block.append_output(b"a" * 600 + b"\n")  # held by the archive: pending now
    assert rt.metrics()["pending_output_bytes"] == 601
    with pytest.raises(Timeout, match="max_pending_output_bytes=1000"):
        block.append_output(b"b" * 600 + b"\n")
    assert rt.metrics()["output_waits"] == 1
    hold_archive.open_()
    archiving.join(WAIT)
    block.flush()
    assert rt.metrics()["pending_output_bytes"] == 0
    block.append_output(b"c\n")  # room again
    block.flush()
    assert block.read_output().data == b"x\n" + b"a" * 600 + b"\nc\n"


# -- files are private ---------------------------------------------------------------------------


def test_archives_and_their_folder_are_private(rt: Runtime) -> None:
    old = os.umask(0o022)
    try:
        block = rt.blocks.get("agent-1")
        block.append_output(b"private\n")
        path = block.archive().path
    finally:
        os.umask(old)
    assert path is not None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(rt.blocks.archive_dir.stat().st_mode) == 0o700


def test_file_and_dir_modes_follow_the_config(open_rt: Callable[..., Runtime]) -> None:
    rt = open_rt(file_mode=0o640, dir_mode=0o750)
    block = rt.blocks.get("agent-1")
    block.append_output(b"shared with the group\n")
    path = block.archive().path
    assert path is not None
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert stat.S_IMODE(rt.blocks.archive_dir.stat().st_mode) == 0o750


# -- damaged rows and leftovers the sweep finds ------------------------------------------------


def _damage(db_path: Path, sql: str, *args: Any) -> None:
    with sqlite3.connect(db_path) as conn:
        conn.execute(sql, args)


def test_a_sweep_skips_a_block_whose_row_is_damaged_and_goes_on(
    open_rt: Callable[..., Runtime], db_path: Path, fake_clock: Any
) -> None:
    rt = open_rt()
    for block_id in ("good", "bad"):
        rt.blocks.get(block_id).append_output(b"a line\n")
    rt.close()
    _damage(db_path, "UPDATE objects SET meta = '[1, 2]' WHERE id = 'bad'")
    fake_clock.advance(8 * 86_400)
    rt = open_rt()
    events: list[Any] = []
    stats = rt.blocks.sweep(progress=events.append)
    assert (stats.archived_count, stats.skipped_count) == (1, 1)
    [skip] = [e for e in events if e.outcome == "skipped"]
    assert skip.block_id == "bad"
    assert skip.error
    assert rt.blocks.ids(view="agent") == ["good"]


def test_output_to_a_reopened_block_whose_row_is_damaged_counts_from_zero_and_is_stored(
    open_rt: Callable[..., Runtime], db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rt = open_rt()
    for block_id in ("good", "bad"):
        rt.blocks.get(block_id).append_output(b"a line\n" * 3)
    rt.close()
    _damage(db_path, "UPDATE objects SET meta = '[1, 2]' WHERE id = 'bad'")
    rt = open_rt()
    with caplog.at_level(logging.WARNING, logger="greenroom"):
        for block_id in ("good", "bad"):  # (their rows read with the writer's commit)
            rt.blocks.get(block_id).append_output(b"one more\n")
        rt.settle()
    assert rt.blocks.get("good").stats().line_count == 4
    assert rt.blocks.get("bad").stats().line_count == 1  # (its stored counts unreadable)
    assert rt.store.read_file("block", "bad", "output") == b"a line\n" * 3 + b"one more\n"
    assert any("'bad'" in r.getMessage() and "from zero" in r.getMessage() for r in caplog.records)


def test_a_block_that_cannot_start_is_a_typed_error_naming_it(
    open_rt: Callable[..., Runtime], db_path: Path
) -> None:
    rt = open_rt()
    rt.blocks.get("pane").append_output(b"a line\n")
    rt.close()
    _damage(db_path, "UPDATE files SET size = 'lots' WHERE id = 'pane'")
    rt = open_rt()
    with pytest.raises((Stopped, StorageError), match="pane"):
        rt.blocks.get("pane").meta()


def test_the_sweep_removes_restore_temporaries_of_runtimes_that_are_gone(
    open_rt: Callable[..., Runtime],
) -> None:
    rt = open_rt()
    rt.store.ensure_object("block", "never-started", {"view": "agent"})
    name = "output.restoring.00000000deadbeef.1234"
    rt.store.append_file("block", "never-started", name, b"partial", create=True)
    rt.blocks.sweep()
    assert rt.store.find_files("block", "output.restoring") == []
    assert rt.metrics()["temporaries_removed"] == 1


@pytest.mark.parametrize("timeout", [1e12, float("nan"), float("inf"), "1", True])
def test_a_futures_timeout_is_checked(rt: Runtime, timeout: Any) -> None:
    future = rt.blocks.get("pane").flush_future()
    with pytest.raises(InvalidInput, match="timeout"):
        future.get(timeout=timeout)
    with pytest.raises(InvalidInput, match="timeout"):
        future.wait(timeout)
    assert future.get(timeout=10) is None


def test_a_waiting_append_goes_through_once_the_writer_caught_up(
    open_rt: Callable[..., Runtime], hold_archive: Gate
) -> None:
    rt = open_rt(max_pending_output_bytes=1000, output_wait_timeout_s=WAIT)
    block = rt.blocks.get("agent-1")
    block.append_output(b"x\n")
    archiving, _ = in_thread(block.archive)
    assert hold_archive.held.wait(WAIT)
    block.append_output(b"a" * 600 + b"\n")  # held by the archive
    appending, appended = in_thread(lambda: block.append_output(b"b" * 600 + b"\n"))
    appending.join(0.2)  # (real time: it waits for room)
    assert appending.is_alive()
    hold_archive.open_()  # the held output is stored: room again
    appending.join(WAIT)
    archiving.join(WAIT)
    assert appended == [None]
    block.flush()
    assert block.read_output().data == b"x\n" + b"a" * 600 + b"\n" + b"b" * 600 + b"\n"
    assert rt.metrics()["output_waits"] == 1
