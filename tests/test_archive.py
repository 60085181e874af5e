"""Block archives: archive / restore / read round trips in both codecs, corrupt and
missing archives, crash safety between the steps, and path safety.

Real SQLite files and real compressed files in tmp_path; monkeypatching is used only
to inject failures (and, once, to hold a compression job until the test says go).
"""

from __future__ import annotations

import errno
import functools
import gzip
import io
import random
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import attrs
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

import greenroom.actors.block
import greenroom.archives
from greenroom import (
    ArchiveResult,
    Block,
    FakeClock,
    OutputRead,
    RestoreResult,
    Runtime,
)
from greenroom.actors.block import BlockActor
from greenroom.archives import FolderArchives, checked_archive_path
from greenroom.blocks.archive import _read_ahead, read_archive, write_archive
from greenroom.errors import InvalidTransition, NotFound, Stopped, StorageError
from greenroom.store import Store

from .conftest import QUIET

ARCHIVED_AT = "session:archived_at"
ARCHIVED_BYTES = "session:archived_bytes"
ARCHIVE_PATH = "session:archive_path"
BACKUP = "session:archive_backup_path"
PRUNED_AT = "session:archive_pruned_at"
ARCHIVE_KEYS = (ARCHIVED_AT, ARCHIVED_BYTES, ARCHIVE_PATH)
MAGIC = {"zstd": b"\x28\xb5\x2f\xfd", "gzip": b"\x1f\x8b"}
SUFFIX = {"zstd": ".zst", "gzip": ".gz"}
CODECS = ["zstd", "gzip"]


@functools.cache
def varied_output(size: int, seed: int = 0) -> bytes:
    """About `size` bytes of agent-like output: JSON-ish text, hex, UTF-8, blank lines."""
    rng = random.Random(seed)
    words = [
        '{"type":"text",',
        '"tool_use"',
        "read_file",
        "assistant:",
        "ok",
        "error",
        "déjà vu",
        "日本語",
        "🙂",
        "\t",
        "0x7fff",
        "}",
        "the",
        "stream",
    ]
    lines: list[bytes] = []
    total = 0
    while total < size:
        roll = rng.random()
        if roll < 0.05:
            line = b""
        elif roll < 0.08:
            line = b"   \t "
        elif roll < 0.25:
            line = rng.randbytes(rng.randint(1, 120)).hex().encode()
        else:
            line = " ".join(rng.choice(words) for _ in range(rng.randint(1, 40))).encode()
        lines.append(line)
        total += len(line) + 1
    return b"\n".join(lines) + b"\n"


def non_blank_lines(data: bytes) -> int:
    return sum(1 for line in data.split(b"\n") if line.strip())


def append_in_pieces(block: Block, data: bytes, piece: int = 65_521) -> None:
    """Append `data` in pieces that do not line up with its lines, then flush."""
    for start in range(0, len(data), piece):
        block.append_output(data[start : start + piece])
    block.flush()


def live_output(rt: Runtime, block_id: str) -> bytes | None:
    try:
        rt.store.stat_file("block", block_id, "output")
    except NotFound:
        return None
    return rt.store.read_file("block", block_id, "output")


def snapshot(rt: Runtime, block_id: str) -> tuple[Any, ...]:
    """Everything stored about a block: metadata, version, and every file's bytes."""
    obj = rt.store.get_object("block", block_id)
    files = {
        info.name: rt.store.read_file("block", block_id, info.name)
        for info in rt.store.list_files("block", block_id)
    }
    return obj.meta, obj.version, files


def _path(result: ArchiveResult) -> Path:
    """The archive file an `ArchiveResult` names (a `Path`; there must be one)."""
    assert isinstance(result.path, Path), result.path
    return result.path


def folder(path: Path) -> list[str]:
    """Every name in the archive folder, hidden temporary files included (not the
    folder of runtimes' owner locks)."""
    if not path.exists():
        return []
    return sorted(p.name for p in path.iterdir() if not p.name.startswith(".owner."))


def archived_block(rt: Runtime, block_id: str, data: bytes) -> tuple[Block, ArchiveResult]:
    block = rt.blocks.get(block_id)
    append_in_pieces(block, data)
    result = block.archive()
    assert result.archived_bytes == len(data)
    return block, result


# -- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS)
def test_archive_restore_read_round_trip_of_a_multi_megabyte_output(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock, codec: str
) -> None:
    data = varied_output(4_000_000)
    rt = open_rt(archive_codec=codec)
    block = rt.blocks.get("agent-1")
    append_in_pieces(block, data)
    stats = block.stats()
    assert stats.line_count == sum(1 for line in data.split(b"\n") if line)

    result = block.archive()
    now = fake_clock.now_ms()
    assert result == ArchiveResult("agent-1", len(data), now, result.path)
    assert result.path is not None
    path = Path(result.path)
    assert path.parent == rt.blocks.archive_dir
    assert path.name == f"agent-1.{now}{SUFFIX[codec]}"
    assert folder(rt.blocks.archive_dir) == [path.name]  # no temporary file left behind
    assert path.read_bytes()[: len(MAGIC[codec])] == MAGIC[codec]
    assert path.stat().st_size < len(data) // 2
    # The live copy is gone; the metadata points at the archive.
    with pytest.raises(NotFound):
        rt.store.stat_file("block", "agent-1", "output")
    meta = block.meta()
    assert meta[ARCHIVED_AT] == now
    assert meta[ARCHIVED_BYTES] == len(data)
    assert meta[ARCHIVE_PATH] == Path(result.path).name  # relative to the folder
    assert BACKUP not in meta
    assert meta["session:line_count"] == stats.line_count
    assert block.stats() == stats

    read = block.read_output()
    assert read == OutputRead(data, non_blank_lines(data), archived=True)

    fake_clock.advance(1)
    restored = block.restore()
    assert restored == RestoreResult("agent-1", len(data))
    assert rt.store.read_file("block", "agent-1", "output") == data
    meta = block.meta()
    assert not set(ARCHIVE_KEYS) & set(meta)
    assert meta[BACKUP] == path.name  # kept as a backup...
    assert path.read_bytes()[: len(MAGIC[codec])] == MAGIC[codec]
    assert block.read_output() == OutputRead(data, non_blank_lines(data), archived=False)
    assert block.stats() == stats  # a restore does not count the lines again
    with pytest.raises(InvalidTransition, match="not archived"):
        block.restore()

    block.append_output(b"one more line\n")
    fake_clock.advance(1)
    again = block.archive()
    assert again.archived_bytes == len(data) + 14
    assert again.path != result.path
    assert not path.exists()  # ...until the next successful archive
    assert folder(rt.blocks.archive_dir) == [_path(again).name]
    assert BACKUP not in block.meta()
    assert block.read_output().data == data + b"one more line\n"


@pytest.mark.parametrize(("first", "second"), [("zstd", "gzip"), ("gzip", "zstd")])
def test_reads_recognise_either_codec_whatever_the_config_says(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock, first: str, second: str
) -> None:
    data = varied_output(300_000, seed=1)
    rt = open_rt(archive_codec=first)
    _block, result = archived_block(rt, "agent-1", data)
    assert str(result.path).endswith(SUFFIX[first])
    rt.close()

    rt = open_rt(archive_codec=second)
    block = rt.blocks.get("agent-1")
    assert block.read_output() == OutputRead(data, non_blank_lines(data), archived=True)
    block.append_output(b"tail\n")
    fake_clock.advance(1)
    joined = block.archive()  # reads the old codec, writes the new one
    assert joined.archived_bytes == len(data) + 5
    assert str(joined.path).endswith(SUFFIX[second])
    assert _path(joined).read_bytes()[: len(MAGIC[second])] == MAGIC[second]
    assert not _path(result).exists()
    rt.close()

    rt = open_rt(archive_codec=first)
    block = rt.blocks.get("agent-1")
    assert block.read_output().data == data + b"tail\n"
    assert block.restore().restored_bytes == len(data) + 5
    assert live_output(rt, "agent-1") == data + b"tail\n"


def test_the_archive_folder_defaults_beside_the_database_or_follows_the_config(
    open_rt: Callable[..., Runtime], db_path: Path, tmp_path: Path
) -> None:
    rt = open_rt()
    assert rt.blocks.archive_dir == db_path.resolve().with_name(db_path.name + ".archives")
    rt.close()
    elsewhere = tmp_path / "archives" / "here"
    rt = open_rt(archive_dir=str(elsewhere))
    assert rt.blocks.archive_dir == elsewhere.resolve()
    _block, result = archived_block(rt, "agent-1", b"some output\n")
    assert _path(result).parent == elsewhere.resolve()
    assert rt.blocks.get("agent-1").read_output().data == b"some output\n"


# -- nothing to archive, nothing to restore ---------------------------------------------------


def test_archiving_an_empty_or_missing_output_changes_nothing(rt: Runtime) -> None:
    fresh = rt.blocks.get("fresh")
    counted = rt.blocks.get("counted-elsewhere")
    counted.record_line(80)  # lines, but no output here
    blank = rt.blocks.get("blank")
    blank.append_output(b"")
    rt.settle()
    for block in (fresh, counted, blank):
        before = snapshot(rt, block.block_id)
        result = block.archive()
        assert result.archived_bytes == 0
        assert result.path is None
        assert snapshot(rt, block.block_id) == before
        assert block.read_output() == OutputRead(b"", 0, archived=False)
    assert folder(rt.blocks.archive_dir) == []


def test_archiving_an_archived_block_without_new_output_changes_nothing(
    rt: Runtime, fake_clock: FakeClock
) -> None:
    block, result = archived_block(rt, "agent-1", b"line one\nline two\n")
    before = snapshot(rt, "agent-1")
    file_bytes = _path(result).read_bytes()
    fake_clock.advance(5)
    again = block.archive()
    assert again.archived_bytes == 0
    assert again.path == result.path
    assert snapshot(rt, "agent-1") == before
    assert _path(result).read_bytes() == file_bytes
    assert folder(rt.blocks.archive_dir) == [_path(result).name]


def test_restoring_a_block_that_is_not_archived_is_an_invalid_transition(rt: Runtime) -> None:
    block = rt.blocks.get("agent-1")
    with pytest.raises(InvalidTransition, match="not archived"):
        block.restore()
    block.append_output(b"live only\n")
    block.flush()
    with pytest.raises(InvalidTransition, match="not archived"):
        block.restore()
    assert live_output(rt, "agent-1") == b"live only\n"


def fail_final_transaction(patch: pytest.MonkeyPatch, message: str) -> None:
    """Make the store fail the final transaction of an archive or restore."""
    real = Store.write_atomic

    def failing(self: Store, writes: Any, *, expect: Any = ()) -> Any:
        if expect:  # only the final, conditional transaction
            raise StorageError(message)
        return real(self, writes, expect=expect)

    patch.setattr(Store, "write_atomic", failing)


# -- missing and corrupt archives -------------------------------------------------------------


def _delete(path: Path) -> None:
    path.unlink()


def _garbage(path: Path) -> None:
    path.write_bytes(random.Random(5).randbytes(path.stat().st_size))


def _garbage_after_magic(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:4] + random.Random(6).randbytes(len(data) - 4))


def _truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _empty(path: Path) -> None:
    path.write_bytes(b"")


CORRUPTIONS = {
    "deleted": _delete,
    "garbage": _garbage,
    "garbage-after-magic": _garbage_after_magic,
    "truncated": _truncated,
    "empty": _empty,
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
@pytest.mark.parametrize("codec", CODECS)
def test_a_missing_or_corrupt_archive_raises_and_changes_nothing(
    open_rt: Callable[..., Runtime], codec: str, corruption: str
) -> None:
    data = varied_output(600_000, seed=2)
    rt = open_rt(archive_codec=codec)
    block, result = archived_block(rt, "agent-1", data)
    block.append_output(b"live tail\n")  # new output after the archive stays live
    block.flush()
    path = _path(result)
    CORRUPTIONS[corruption](path)
    before = snapshot(rt, "agent-1")
    damaged = path.read_bytes() if path.exists() else None

    with pytest.raises(StorageError):
        block.restore()
    assert snapshot(rt, "agent-1") == before  # no temporary store file, no meta change
    assert live_output(rt, "agent-1") == b"live tail\n"
    with pytest.raises(StorageError):
        block.read_output()
    with pytest.raises(StorageError):
        block.archive()  # re-archiving must read the old archive: refused as well
    assert snapshot(rt, "agent-1") == before
    assert (path.read_bytes() if path.exists() else None) == damaged
    assert folder(rt.blocks.archive_dir) == ([path.name] if damaged is not None else [])


@pytest.mark.parametrize("codec", CODECS)
def test_flipped_bytes_are_never_read_back_as_output(
    open_rt: Callable[..., Runtime], codec: str
) -> None:
    data = varied_output(300_000, seed=3)
    rt = open_rt(archive_codec=codec)
    block, result = archived_block(rt, "agent-1", data)
    path = _path(result)
    original = path.read_bytes()
    silently_wrong = []
    for position in range(64, len(original) - 16, (len(original) - 80) // 24):
        damaged = bytearray(original)
        damaged[position] ^= 0x55
        path.write_bytes(bytes(damaged))
        try:
            read = block.read_output()
        except StorageError:
            continue
        if read.data != data:
            silently_wrong.append(position)
    path.write_bytes(original)
    assert block.read_output().data == data
    assert silently_wrong == [], f"{codec}: corrupt archive read back as output"


# -- crash safety -----------------------------------------------------------------------------


def _fail(*_args: Any, **_kwargs: Any) -> Any:
    raise OSError(errno.EIO, "injected failure")


@pytest.mark.parametrize("step", ["fsync", "link"])
def test_a_failure_while_writing_the_archive_file_loses_nothing(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    data = varied_output(500_000, seed=4)
    block = rt.blocks.get("agent-1")
    append_in_pieces(block, data)
    before = snapshot(rt, "agent-1")
    with monkeypatch.context() as patch:
        patch.setattr(greenroom.archives.os, step, _fail)
        with pytest.raises(StorageError, match="injected failure"):
            block.archive()
    assert snapshot(rt, "agent-1") == before
    assert live_output(rt, "agent-1") == data
    assert folder(rt.blocks.archive_dir) == []  # neither the temporary file nor a final one
    assert block.read_output() == OutputRead(data, non_blank_lines(data), archived=False)
    # Afterwards a normal archive and restore work.
    result = block.archive()
    assert result.archived_bytes == len(data)
    assert block.read_output().data == data
    assert block.restore().restored_bytes == len(data)
    assert live_output(rt, "agent-1") == data


def test_a_failure_of_the_metadata_transaction_after_archiving_loses_nothing(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = varied_output(500_000, seed=5)
    block = rt.blocks.get("agent-1")
    append_in_pieces(block, data)
    before = snapshot(rt, "agent-1")

    with monkeypatch.context() as patch:
        fail_final_transaction(patch, "injected: the disk is full")
        with pytest.raises(StorageError, match="injected"):
            block.archive()
    assert snapshot(rt, "agent-1") == before
    assert folder(rt.blocks.archive_dir) == []  # the archive nobody points to was removed
    assert block.read_output() == OutputRead(data, non_blank_lines(data), archived=False)
    result = block.archive()
    assert block.meta()[ARCHIVE_PATH] == _path(result).name
    assert block.read_output().data == data


def test_a_failed_re_archive_keeps_the_old_archive_and_the_new_output(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = varied_output(200_000, seed=6)
    block, first = archived_block(rt, "agent-1", data)
    block.append_output(b"written after the archive\n")
    block.flush()
    before = snapshot(rt, "agent-1")

    with monkeypatch.context() as patch:
        fail_final_transaction(patch, "injected")
        with pytest.raises(StorageError, match="injected"):
            block.archive()
    assert snapshot(rt, "agent-1") == before
    assert folder(rt.blocks.archive_dir) == [_path(first).name]
    assert block.read_output().data == data + b"written after the archive\n"
    second = block.archive()  # same fake millisecond: a new name, never an overwrite
    assert second.path != first.path
    assert second.archived_bytes == len(data) + 26
    assert folder(rt.blocks.archive_dir) == [_path(second).name]
    assert live_output(rt, "agent-1") is None
    assert block.read_output().data == data + b"written after the archive\n"


def test_a_failure_of_the_restore_transaction_changes_nothing(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = varied_output(500_000, seed=7)
    block, result = archived_block(rt, "agent-1", data)
    before = snapshot(rt, "agent-1")

    with monkeypatch.context() as patch:
        fail_final_transaction(patch, "injected")
        with pytest.raises(StorageError, match="injected"):
            block.restore()
    # Still archived, output not replaced, the temporary store file removed.
    assert snapshot(rt, "agent-1") == before
    assert [info.name for info in rt.store.list_files("block", "agent-1")] == []
    assert _path(result).exists()
    assert block.read_output() == OutputRead(data, non_blank_lines(data), archived=True)
    assert block.restore().restored_bytes == len(data)
    assert live_output(rt, "agent-1") == data


def test_a_failure_while_decompressing_into_the_store_changes_nothing(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = varied_output(3_200_000, seed=8)  # several pieces of the restore
    block, _result = archived_block(rt, "agent-1", data)
    before = snapshot(rt, "agent-1")
    original = Store.append_file
    calls = []

    def failing_second(self: Store, kind: str, object_id: str, name: str, *a: Any, **k: Any) -> Any:
        if name.startswith("output.restoring."):
            calls.append(name)
            if len(calls) == 2:
                raise StorageError("injected: out of space")
        return original(self, kind, object_id, name, *a, **k)

    with monkeypatch.context() as patch:
        patch.setattr(Store, "append_file", failing_second)
        with pytest.raises(StorageError, match="injected"):
            block.restore()
    assert len(calls) == 2
    assert snapshot(rt, "agent-1") == before
    assert block.restore().restored_bytes == len(data)
    assert live_output(rt, "agent-1") == data


def test_output_appended_while_an_archive_runs_is_kept_in_order(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = varied_output(200_000, seed=9)
    block = rt.blocks.get("agent-1")
    append_in_pieces(block, data)
    entered, go = threading.Event(), threading.Event()
    original = greenroom.actors.block.write_archive

    def held(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        assert go.wait(10)
        return original(*args, **kwargs)

    monkeypatch.setattr(greenroom.actors.block, "write_archive", held)
    results: list[Any] = []
    worker = threading.Thread(target=lambda: results.append(block.archive()))
    worker.start()
    assert entered.wait(10)
    later = [f"during the archive {n}\n".encode() for n in range(50)]
    for piece in later:
        block.append_output(piece)
    go.set()
    worker.join(10)
    assert not worker.is_alive()
    assert results[0].archived_bytes == len(data)
    rt.settle()
    assert live_output(rt, "agent-1") == b"".join(later)
    assert block.read_output().data == data + b"".join(later)
    assert block.stats().line_count == sum(1 for line in data.split(b"\n") if line) + 50


def test_closing_the_runtime_during_an_archive_answers_the_caller(
    db_path: Path, fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = Runtime.open(db_path, clock=fake_clock, config=attrs.evolve(QUIET, stop_timeout_s=5.0))
    block = rt.blocks.get("agent-1")
    block.append_output(b"some output\n")
    block.flush()
    entered, go = threading.Event(), threading.Event()
    original_write, original_stop = greenroom.actors.block.write_archive, BlockActor.on_stop

    def held(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        assert go.wait(10)
        return original_write(*args, **kwargs)

    def on_stop(self: BlockActor) -> None:
        original_stop(self)
        go.set()  # the archive job finishes only once its block has stopped

    monkeypatch.setattr(greenroom.actors.block, "write_archive", held)
    monkeypatch.setattr(BlockActor, "on_stop", on_stop)
    outcome: list[Any] = []

    def archive() -> None:
        try:
            outcome.append(block.archive())
        except Exception as error:
            outcome.append(error)

    worker = threading.Thread(target=archive, daemon=True)
    worker.start()
    assert entered.wait(10)
    rt.close()
    worker.join(3)  # close() has returned: the answer is due by now
    assert not worker.is_alive(), "Block.archive() still waits after Runtime.close() returned"
    assert isinstance(outcome[0], ArchiveResult | Stopped)
    # Whatever happened, the output is not lost.
    with Runtime.open(db_path, clock=fake_clock, config=QUIET) as again:
        assert again.blocks.get("agent-1").read_output().data == b"some output\n"


# -- new output after an archive --------------------------------------------------------------


def test_new_output_after_an_archive_is_read_after_it_and_joined_by_the_next_archive(
    rt: Runtime, fake_clock: FakeClock
) -> None:
    old = varied_output(400_000, seed=10)
    block, first = archived_block(rt, "agent-1", old)
    new = b"new line 1\n\nnew line 2\n"
    block.append_output(new)
    block.flush()
    assert live_output(rt, "agent-1") == new
    assert block.read_output() == OutputRead(old + new, non_blank_lines(old) + 2, archived=True)
    fake_clock.advance(1)
    second = block.archive()
    assert second.archived_bytes == len(old) + len(new)
    assert not _path(first).exists()
    assert live_output(rt, "agent-1") is None
    assert block.meta()[ARCHIVE_PATH] == _path(second).name
    assert block.read_output() == OutputRead(old + new, non_blank_lines(old) + 2, archived=True)


def test_restoring_an_archived_block_with_new_output_restores_both_in_order(
    rt: Runtime,
) -> None:
    old = varied_output(300_000, seed=11)
    block, _first = archived_block(rt, "agent-1", old)
    block.append_output(b"after\n")
    block.flush()
    assert block.restore().restored_bytes == len(old) + 6
    assert live_output(rt, "agent-1") == old + b"after\n"
    assert block.read_output().archived is False
    block.append_output(b"and more\n")
    assert block.read_output().data == old + b"after\nand more\n"


# -- path safety ------------------------------------------------------------------------------


@pytest.mark.parametrize("block_id", [".", "..", "...", "..a", "a..", ":@-_"])
def test_odd_but_valid_block_ids_archive_inside_the_archive_folder(
    rt: Runtime, block_id: str
) -> None:
    block, result = archived_block(rt, block_id, b"output\n")
    assert _path(result).parent == rt.blocks.archive_dir
    assert _path(result).resolve().parent == rt.blocks.archive_dir
    assert block.read_output().data == b"output\n"
    assert block.restore().restored_bytes == 7


def _zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


def _tampered(kind: str, rt: Runtime, tmp_path: Path) -> tuple[object, Path | None]:
    """A tampered archive path of the given kind and the (readable) file it names."""
    outside = tmp_path / "outside.zst"
    outside.write_bytes(_zstd(b"secret from outside\n"))
    if kind == "etc-passwd":
        return "/etc/passwd", None
    if kind == "relative-parent":
        return "../outside.zst", outside
    if kind == "absolute-with-dotdot":
        return str(rt.blocks.archive_dir / ".." / "outside.zst"), outside
    if kind == "other-folder":
        other = tmp_path / "other"
        other.mkdir()
        target = other / "agent-1.1.zst"
        target.write_bytes(_zstd(b"secret from another folder\n"))
        return str(target), target
    if kind == "symlink-out":
        link = rt.blocks.archive_dir / "agent-1.1.zst"
        link.symlink_to(outside)
        return str(link), outside
    if kind == "not-an-archive-name":
        inside = rt.blocks.archive_dir / "notes.txt"
        inside.write_bytes(_zstd(b"not an archive name\n"))
        return str(inside), inside
    if kind == "not-a-string":
        return 12345, None
    if kind == "another-blocks-archive":
        _other, result = archived_block(rt, "agent-2", b"another block's output\n")
        return str(_path(result)), _path(result)
    raise AssertionError(kind)


TAMPERED = [
    "etc-passwd",
    "relative-parent",
    "absolute-with-dotdot",
    "other-folder",
    "symlink-out",
    "not-an-archive-name",
    "not-a-string",
    "another-blocks-archive",
]


@pytest.mark.parametrize("kind", TAMPERED)
def test_a_tampered_archive_path_is_refused_not_read(
    rt: Runtime, tmp_path: Path, kind: str
) -> None:
    block, _result = archived_block(rt, "agent-1", b"the real output\n")
    tampered, target = _tampered(kind, rt, tmp_path)
    rt.store.update_meta("block", "agent-1", {ARCHIVE_PATH: tampered})
    target_bytes = target.read_bytes() if target is not None else None
    before = snapshot(rt, "agent-1")

    with pytest.raises(StorageError, match=r"refusing|not a path"):
        block.read_output()
    with pytest.raises(StorageError, match=r"refusing|not a path"):
        block.restore()
    block.append_output(b"new output\n")
    block.flush()
    with pytest.raises(StorageError, match=r"refusing|not a path"):
        block.archive()
    assert live_output(rt, "agent-1") == b"new output\n"
    meta, _version, _files = snapshot(rt, "agent-1")
    for key in (*ARCHIVE_KEYS, BACKUP):
        assert meta.get(key) == before[0].get(key)
    if target is not None:
        assert target.exists()
        assert target.read_bytes() == target_bytes


def test_a_tampered_backup_path_is_never_deleted(
    rt: Runtime, tmp_path: Path, fake_clock: FakeClock
) -> None:
    block, _result = archived_block(rt, "agent-1", b"output\n")
    block.restore()
    outside = tmp_path / "precious.zst"
    outside.write_bytes(_zstd(b"precious\n"))
    rt.store.update_meta("block", "agent-1", {BACKUP: str(outside)})
    block.append_output(b"more\n")
    fake_clock.advance(1)
    result = block.archive()  # would delete the backup: refuses to touch the outside file
    assert result.archived_bytes == len(b"output\nmore\n")
    assert outside.read_bytes() == _zstd(b"precious\n")
    assert BACKUP not in block.meta()


@pytest.mark.parametrize("path", ["/etc/passwd", "../precious.zst", Path("../precious.zst")])
def test_prune_archive_refuses_a_path_outside_the_archive_folder(
    rt: Runtime, tmp_path: Path, path: str | Path
) -> None:
    block, _result = archived_block(rt, "agent-1", b"output\n")
    precious = tmp_path / "precious.zst"
    precious.write_bytes(_zstd(b"precious\n"))
    with pytest.raises(StorageError, match="refusing"):
        block.prune_archive(path)
    assert precious.exists()
    assert block.read_output().data == b"output\n"


def test_gzip_and_zstd_files_written_by_others_are_read_by_magic(
    rt: Runtime, fake_clock: FakeClock
) -> None:
    # Archives named with either suffix are read by their content, not their name.
    block, result = archived_block(rt, "agent-1", b"original\n")
    path = _path(result)
    path.write_bytes(gzip.compress(b"gzipped!\n"))  # (as long as what was recorded)
    assert block.read_output().data == b"gzipped!\n"
    assert block.restore().restored_bytes == len(b"gzipped!\n")


@pytest.mark.parametrize("codec", ["zstd", "gzip"])
def test_an_archive_holding_more_than_was_recorded_is_refused(
    open_rt: Callable[..., Runtime], codec: str
) -> None:
    # A file swapped in (or crafted) to be far bigger than what greenroom wrote is
    # refused as it passes the recorded size, never read whole into memory.
    rt = open_rt(archive_codec=codec)
    block, result = archived_block(rt, "agent-1", b"original\n")
    big = b"x" * 100_000
    compress = zstandard.compress if codec == "zstd" else gzip.compress
    _path(result).write_bytes(compress(big))
    for call in (block.read_output, block.restore):
        with pytest.raises(StorageError, match=r"more than the 9 (bytes )?recorded"):
            call()
    assert block.meta()["session:archived_bytes"] == 9


# -- bounded reads of highly compressible archives -------------------------------------------


def test_reading_a_highly_compressed_archive_hands_out_bounded_pieces(tmp_path: Path) -> None:
    # 64 MiB of one repeated line shrinks to a few KB; one decompress call would hand
    # it all back at once. Reads must stay in pieces of at most 1 MiB.
    line = b'{"type":"progress","pct":50}\n'
    piece = line * (1 << 15)
    total = 64 << 20
    pieces = (piece for _ in range(total // len(piece)))
    archives = FolderArchives(tmp_path)
    raw, name = write_archive(pieces, archives, "agent-1.1.zst", "zstd")
    assert (archives.size(name) or 0) < raw // 1000
    sizes = [len(out) for out in read_archive(archives, name)]
    assert sum(sizes) == raw
    assert max(sizes) <= 1 << 20


@pytest.mark.parametrize("extra", [b"garbage", zstandard.compress(b"a second frame\n")])
def test_data_after_the_zstd_frame_is_refused(tmp_path: Path, extra: bytes) -> None:
    archives = FolderArchives(tmp_path)
    _raw, name = write_archive([b"output\n"], archives, "agent-1.1.zst", "zstd")
    path = archives.location(name)
    path.write_bytes(path.read_bytes() + extra)
    with pytest.raises(StorageError, match="after its end"):
        b"".join(read_archive(archives, name))


def test_a_truncated_zstd_frame_is_refused_before_any_byte(tmp_path: Path) -> None:
    data = bytes(random.Random(7).getrandbits(8) for _ in range(300_000))
    archives = FolderArchives(tmp_path)
    _raw, name = write_archive([data], archives, "agent-1.1.zst", "zstd")
    path = archives.location(name)
    path.write_bytes(path.read_bytes()[:-5])
    pieces = read_archive(archives, name)
    with pytest.raises(StorageError, match="truncated"):
        next(pieces)


# -- the output is read ahead of the compressor, by a thread of its own -------------------


def _read_ahead_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "greenroom-archive-read"]


@pytest.mark.parametrize("codec", CODECS)
def test_an_error_reading_the_output_fails_the_archive_after_what_was_read(
    tmp_path: Path, codec: str
) -> None:
    read: list[int] = []

    def pieces() -> Iterator[bytes]:
        for n in range(5):
            read.append(n)
            yield bytes([65 + n]) * (3 << 20)  # (gathered into 4 MiB pieces)
        raise StorageError("injected read failure")

    with pytest.raises(StorageError, match="injected read failure") as failed:
        write_archive(pieces(), FolderArchives(tmp_path), "agent-1.1.zst", codec)
    assert failed.value.__traceback__ is not None  # (kept while the rest is checked)
    assert read == [0, 1, 2, 3, 4]
    assert folder(tmp_path) == []  # no archive, no temporary file
    assert _read_ahead_threads() == []


class _FullDisk(FolderArchives):
    """Archives whose files take `room` bytes, then fail as a full disk does."""

    def __init__(self, folder: Path, room: int) -> None:
        super().__init__(folder)
        self.room = room

    def save(self, name: str, write: Callable[[BinaryIO], None], *, owner: str) -> str:
        def limited(out: BinaryIO) -> None:
            write(_Limited(out, self.room))

        return super().save(name, limited, owner=owner)


class _Limited(io.RawIOBase):
    def __init__(self, out: BinaryIO, room: int) -> None:
        self.out, self.room = out, room

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "injected: no space left on device")
        self.room -= len(data)
        return self.out.write(data)


@pytest.mark.parametrize("codec", CODECS)
def test_a_failure_writing_the_archive_stops_reading_the_output_and_closes_it(
    tmp_path: Path, codec: str
) -> None:
    read = [0]
    closed = threading.Event()

    def endless() -> Iterator[bytes]:
        rng = random.Random(3)
        try:
            while True:
                read[0] += 1
                yield rng.randbytes(1 << 20)  # (incompressible: the disk fills)
        finally:
            closed.set()

    # (The error is kept, as a future keeps it: its frames do not keep the reading on.)
    with pytest.raises(StorageError, match="no space left") as failed:
        write_archive(endless(), _FullDisk(tmp_path, 8 << 20), "agent-1.1.zst", codec)
    assert closed.is_set()  # its reader's `finally` ran (in the thread that read it)
    assert _read_ahead_threads() == []
    # It read what was compressed and what it may read ahead, no more: 4 MiB pieces.
    assert read[0] <= 4 * 5
    assert folder(tmp_path) == []
    assert failed.value.__cause__ is not None


@given(st.lists(st.binary(max_size=64), max_size=40), st.integers(1, 3))
@settings(max_examples=50, deadline=None)
def test_reading_ahead_hands_out_every_piece_in_order(pieces: list[bytes], ahead: int) -> None:
    assert list(_read_ahead(iter(pieces), ahead)) == pieces
    assert _read_ahead_threads() == []


def test_leaving_a_read_ahead_early_closes_what_it_reads(tmp_path: Path) -> None:
    closed = threading.Event()

    def pieces() -> Iterator[bytes]:
        try:
            yield from (bytes([n]) for n in range(100))
        finally:
            closed.set()

    reading = _read_ahead(pieces(), 2)
    assert [next(reading), next(reading)] == [b"\x00", b"\x01"]
    reading.close()
    assert closed.is_set()
    assert _read_ahead_threads() == []


def test_another_blocks_archive_name_is_refused(tmp_path: Path) -> None:
    folder = tmp_path.resolve()
    assert checked_archive_path(folder, "agent-1.5.zst", "agent-1") == folder / "agent-1.5.zst"
    for name in ["agent-2.5.zst", "agent-1x.5.zst", "agent.5.zst", "agent-1.5.zst.zst"]:
        with pytest.raises(StorageError, match="refusing"):
            checked_archive_path(folder, name, "agent-1")


def test_a_restore_cut_short_leaves_no_partial_copy_behind(
    open_rt: Callable[..., Runtime],
) -> None:
    # As a crash mid-restore leaves it: the archive in place, a partial copy beside.
    rt = open_rt()
    archived_block(rt, "agent-1", b"output\n")
    rt.store.append_file("block", "agent-1", "output.restoring", b"outp", create=True)
    rt.close()
    rt = open_rt()
    read = rt.blocks.get("agent-1").read_output()  # after the block's start
    assert (read.data, read.archived) == (b"output\n", True)
    assert [f.name for f in rt.store.list_files("block", "agent-1")] == []


# -- another process on the same database -----------------------------------------------------


def numbered(first: int, last: int) -> bytes:
    return b"".join(b"line %06d\n" % n for n in range(first, last))


def append_elsewhere_after_reading(
    patch: pytest.MonkeyPatch, other: Runtime, block_id: str, data: bytes
) -> threading.Event:
    """Once an archive or restore has read the whole output (and before its final
    transaction), `other` (as another process would) appends `data` to the block.
    """
    real = BlockActor._pieces
    done = threading.Event()

    def pieces(self: BlockActor, *args: Any, **kwargs: Any) -> Any:
        yield from real(self, *args, **kwargs)
        if not done.is_set() and self.block_id == block_id:
            done.set()
            elsewhere = other.blocks.get(block_id)  # its own block actor, its own writer
            elsewhere.append_output(data)
            elsewhere.flush()

    patch.setattr(BlockActor, "_pieces", pieces)
    return done


def test_output_another_process_appends_while_archiving_is_never_dropped(
    open_rt: Callable[..., Runtime],
) -> None:
    rt, other = open_rt(), open_rt()  # two runtimes: two actors for the same block
    block = rt.blocks.get("pane-1")
    block.append_output(numbered(0, 5000))
    block.flush()
    with pytest.MonkeyPatch.context() as patch:
        appended = append_elsewhere_after_reading(patch, other, "pane-1", numbered(5000, 5100))
        with pytest.raises(InvalidTransition, match=r"changed while this ran.*holds.*try again"):
            block.archive()
        assert appended.is_set()
    # Nothing changed: still live, every line there, no archive file left behind.
    assert folder(rt.blocks.archive_dir) == []
    assert ARCHIVE_PATH not in block.meta()
    assert live_output(rt, "pane-1") == numbered(0, 5100)
    # Tried again, it archives every line.
    result = block.archive()
    assert result.archived_bytes == len(numbered(0, 5100))
    assert block.read_output().data == numbered(0, 5100)
    assert other.blocks.get("pane-1").read_output().data == numbered(0, 5100)


def test_output_another_process_appends_while_restoring_is_never_dropped(
    open_rt: Callable[..., Runtime],
) -> None:
    rt, other = open_rt(), open_rt()
    block, result = archived_block(rt, "pane-1", numbered(0, 3000))
    with pytest.MonkeyPatch.context() as patch:
        append_elsewhere_after_reading(patch, other, "pane-1", numbered(3000, 3010))
        with pytest.raises(InvalidTransition, match=r"changed while this ran.*holds.*try again"):
            block.restore()
    # Still archived, with the new lines live after it; no partial copy left.
    assert block.meta()[ARCHIVE_PATH] == _path(result).name
    assert live_output(rt, "pane-1") == numbered(3000, 3010)
    assert [info.name for info in rt.store.list_files("block", "pane-1")] == ["output"]
    assert block.read_output().data == numbered(0, 3010)
    assert block.restore().restored_bytes == len(numbered(0, 3010))
    assert live_output(rt, "pane-1") == numbered(0, 3010)


def test_a_sweep_skips_a_block_another_process_appends_to_while_it_is_archived(
    open_rt: Callable[..., Runtime],
) -> None:
    rt, other = open_rt(), open_rt()
    block = rt.blocks.get("pane-1")
    block.append_output(numbered(0, 100))
    block.flush()
    events: list[Any] = []
    with pytest.MonkeyPatch.context() as patch:
        append_elsewhere_after_reading(patch, other, "pane-1", numbered(100, 110))
        stats = rt.blocks.sweep(inactive_days=0, progress=events.append)
    assert (stats.archived_count, stats.skipped_count) == (0, 1)
    [skipped] = [event for event in events if event.phase == "archive" and event.done]
    assert skipped.outcome == "skipped"
    assert "try again" in (skipped.error or "")
    assert live_output(rt, "pane-1") == numbered(0, 110)
    stats = rt.blocks.sweep(inactive_days=0)  # the next sweep archives it all
    assert (stats.archived_count, stats.skipped_count) == (1, 0)
    assert block.read_output().data == numbered(0, 110)


# -- moving the database with its archive folder ----------------------------------------------


def _open_at(db: Path, clock: FakeClock, **config: Any) -> Runtime:
    return Runtime.open(db, clock=clock, config=attrs.evolve(QUIET, **config))


def _move(tmp_path: Path) -> Path:
    """Move the folder holding the database and its archives; the new database path."""
    (tmp_path / "before").rename(tmp_path / "after")
    return tmp_path / "after" / "app.db"


def _consistent(rt: Runtime, block_id: str) -> None:
    """Every archive the metadata names exists, and every archive file is named by it."""
    meta = rt.store.get_object("block", block_id).meta
    named = set()
    for key in (ARCHIVE_PATH, BACKUP):
        if meta.get(key):
            path = checked_archive_path(rt.blocks.archive_dir, meta[key], block_id)
            assert path.is_file(), f"{key} names {path}, which is gone"
            named.add(path.name)
    assert set(folder(rt.blocks.archive_dir)) == named


@pytest.mark.parametrize("stored", ["names", "absolute-paths-of-older-versions"])
def test_a_database_moved_with_its_archive_folder_keeps_its_archives(
    tmp_path: Path, fake_clock: FakeClock, stored: str
) -> None:
    first, second = numbered(0, 2000), numbered(2000, 2100)
    with _open_at(tmp_path / "before" / "app.db", fake_clock) as rt:
        block = rt.blocks.get("pane-1")
        block.append_output(first)
        old = block.archive()
        fake_clock.advance(1)
        block.restore()  # the first archive stays as the backup...
        block.append_output(second)
        fake_clock.advance(1)
        block.archive()  # ...until this one replaces it
        fake_clock.advance(1)
        block.restore()
        fake_clock.advance(1)
        block.archive()
        assert _path(old).parent == rt.blocks.archive_dir
        if stored != "names":
            # As older versions stored them: absolute paths into the old folder.
            meta = block.meta()
            absolute = {key: str(rt.blocks.archive_dir / meta[key]) for key in (ARCHIVE_PATH,)}
            block.update_meta(absolute)
            assert Path(block.meta()[ARCHIVE_PATH]).is_absolute()
    db = _move(tmp_path)
    with _open_at(db, fake_clock) as rt:
        assert rt.blocks.archive_dir == db.with_name("app.db.archives")
        block = rt.blocks.get("pane-1")
        assert block.read_output() == OutputRead(first + second, 2100, archived=True)
        _consistent(rt, "pane-1")
        block.restore()
        assert live_output(rt, "pane-1") == first + second
        _consistent(rt, "pane-1")
        fake_clock.advance(1)
        block.archive()
        _consistent(rt, "pane-1")
    # A sweep of an over-full folder after another move (absolute names again).
    if stored != "names":
        with _open_at(db, fake_clock) as rt:
            meta = rt.store.get_object("block", "pane-1").meta
            rt.store.update_meta(
                "block", "pane-1", {ARCHIVE_PATH: str(rt.blocks.archive_dir / meta[ARCHIVE_PATH])}
            )
        (tmp_path / "after").rename(tmp_path / "before")
        db = tmp_path / "before" / "app.db"
    with _open_at(db, fake_clock) as rt:
        stats = rt.blocks.sweep(max_archive_bytes=0)
        assert stats.pruned_count == 1
        meta = rt.store.get_object("block", "pane-1").meta
        assert PRUNED_AT in meta
        assert ARCHIVE_PATH not in meta
        _consistent(rt, "pane-1")
        with pytest.raises(NotFound, match="pruned"):
            rt.blocks.get("pane-1").read_output()


def test_a_legacy_absolute_path_is_still_refused_outside_the_folder(tmp_path: Path) -> None:
    folder_ = tmp_path / "archives"
    folder_.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "agent-1.5.zst").write_bytes(_zstd(b"outside\n"))
    with pytest.raises(StorageError, match="refusing"):
        checked_archive_path(folder_, str(elsewhere / "agent-1.5.zst"), "agent-1")
    (folder_ / "agent-1.5.zst").write_bytes(_zstd(b"inside\n"))
    moved = checked_archive_path(folder_, str(elsewhere / "agent-1.5.zst"), "agent-1")
    assert moved == (folder_ / "agent-1.5.zst").resolve()
    with pytest.raises(StorageError, match="not an archive of block"):
        checked_archive_path(folder_, str(elsewhere / "agent-1.5.zst"), "agent-2")


# -- one heavy operation at a time -------------------------------------------------------------


def _hold_archives(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    entered, go = threading.Event(), threading.Event()
    original = greenroom.actors.block.write_archive

    def held(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        assert go.wait(10)
        return original(*args, **kwargs)

    monkeypatch.setattr(greenroom.actors.block, "write_archive", held)
    return entered, go


def test_calls_arriving_during_an_archive_wait_for_it_in_order(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    block = rt.blocks.get("agent-1")
    block.append_output(b"before\n")
    entered, go = _hold_archives(monkeypatch)
    archived = block.archive_future()
    assert entered.wait(10)
    read = block.read_output_future()
    restored = block.restore_future()
    block.append_output(b"during\n")  # held back until the archive ends
    stats = block.stats_future()  # not an archive-like call: answered at once
    assert stats.get(timeout=10).line_count == 2
    assert [archived.done, read.done, restored.done] == [False, False, False]
    go.set()
    assert archived.get(timeout=10).archived_bytes == len(b"before\n")
    assert read.get(timeout=10) == OutputRead(b"before\nduring\n", 2, archived=True)
    assert restored.get(timeout=10).restored_bytes == len(b"before\nduring\n")
    assert live_output(rt, "agent-1") == b"before\nduring\n"


def test_stopping_a_block_answers_the_call_under_way_and_those_waiting(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    block = rt.blocks.get("agent-1")
    block.append_output(b"kept\n")
    entered, go = _hold_archives(monkeypatch)
    archived = block.archive_future()
    assert entered.wait(10)
    waiting = [block.read_output_future(), block.restore_future()]
    block.append_output(b"held while archiving\n")
    rt.get_actor("block", "agent-1").stop()
    for future in [archived, *waiting]:
        with pytest.raises(Stopped, match="stopped before this call finished"):
            future.get(timeout=10)
    go.set()
    rt.settle()
    # The held output was handed to the writer at the stop; nothing is lost.
    assert block.read_output().data == b"kept\nheld while archiving\n"


@pytest.mark.parametrize("race", ["restore", "archive"])
def test_a_read_that_meets_another_processs_archive_or_restore_reads_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, race: str
) -> None:
    db = tmp_path / "shared.db"
    data = varied_output(200_000, seed=11)
    with Runtime.open(db, config=QUIET) as one, Runtime.open(db, config=QUIET) as other:
        mine = one.blocks.get("agent-1")
        append_in_pieces(mine, data)
        if race == "restore":
            mine.archive()
        else:
            mine.flush()
        theirs = other.blocks.get("agent-1")
        original = BlockActor._live_size
        raced: list[object] = []

        def racing(actor: BlockActor) -> int:
            # Between the reader's metadata read and its live size, the other host
            # (here: the other runtime, on another thread) restores or archives.
            if not raced and actor.ctx.store is other.store:
                raced.append(race)
                worker = threading.Thread(target=getattr(mine, race))
                worker.start()
                worker.join(30)
            return original(actor)

        monkeypatch.setattr(BlockActor, "_live_size", racing)
        read = theirs.read_output()
        assert raced == [race]
        assert read.data == data  # not the output twice, nor an archive without its part
