"""The `greenroom.archives.Archives` interface: one contract, two implementations.

`FolderArchives` (the default: a folder, real files in tmp_path) and `BucketArchives`
below, a second implementation written only against the interface, as an object-store
one would be (objects under keys, an upload that becomes visible whole or not at all,
uploads a crash left behind aborted once their owner is gone). The same contract tests
run on both, and a runtime runs archive, read, restore and a pruning sweep on the
second, so the interface is known to be enough for object storage.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from greenroom import FakeClock, Runtime
from greenroom.archives import (
    ArchiveEntry,
    Archives,
    FolderArchives,
    archive_name,
    check_archive_name,
    next_archive_name,
)
from greenroom.blocks.records import ARCHIVE_PATH
from greenroom.errors import InvalidInput, InvalidTransition, StorageError

from .conftest import QUIET

DAY = 86_400.0


class BucketArchives:
    """Archives as objects in a bucket (a dict), uploaded whole: an object store's way."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.uploads: dict[str, str] = {}  # upload id -> owner: begun, never completed
        self._lock = threading.Lock()

    def describe(self) -> str:
        return "bucket test-archives"

    def save(self, name: str, write: Callable[[BinaryIO], None], *, owner: str) -> str:
        upload = f"{name}:{owner}:{len(self.uploads)}"
        with self._lock:
            self.uploads[upload] = owner
        body = io.BytesIO()
        write(body)  # an error here leaves the upload for remove_leftovers, no object
        with self._lock:
            while name in self.objects:  # never replace one
                name = next_archive_name(name)
            self.objects[name] = body.getvalue()
            del self.uploads[upload]
        return name

    def open(self, name: str) -> BinaryIO:
        with self._lock:
            if name not in self.objects:
                raise StorageError(f"no archive {name!r} in {self.describe()}")
            return io.BytesIO(self.objects[name])

    def size(self, name: str) -> int | None:
        with self._lock:
            body = self.objects.get(name)
        return None if body is None else len(body)

    def delete(self, name: str) -> int:
        with self._lock:
            return len(self.objects.pop(name, b""))

    def entries(self) -> list[ArchiveEntry]:
        with self._lock:
            return [ArchiveEntry(name, len(body)) for name, body in self.objects.items()]

    def remove_leftovers(self, is_alive: Callable[[str], bool]) -> list[str]:
        with self._lock:
            gone = [upload for upload, owner in self.uploads.items() if not is_alive(owner)]
            for upload in gone:
                del self.uploads[upload]
        return gone

    def resolve(self, stored: object, block_id: str, *, must_exist: bool = False) -> str:
        name = check_archive_name(stored, block_id)
        if must_exist and self.size(name) is None:
            raise StorageError(f"no archive {name!r} in {self.describe()}")
        return name

    def location(self, name: str) -> Path:
        return Path("test-archives") / name


@pytest.fixture(params=["folder", "bucket"])
def archives(request: pytest.FixtureRequest, tmp_path: Path) -> Archives:
    """Each implementation in turn."""
    if request.param == "folder":
        return FolderArchives(tmp_path / "archives")
    return BucketArchives()


def _writes(data: bytes) -> Callable[[BinaryIO], None]:
    def write(out: BinaryIO) -> None:
        out.write(data)

    return write


def _read(archives: Archives, name: str) -> bytes:
    with archives.open(name) as handle:
        return handle.read()


# -- the contract -----------------------------------------------------------------------------


def test_both_implement_the_interface(archives: Archives) -> None:
    assert isinstance(archives, Archives)


def test_a_saved_archive_reads_back_and_is_listed(archives: Archives) -> None:
    name = archive_name("pane-1", 1_000, "zstd")
    assert archives.save(name, _writes(b"bytes"), owner="0" * 16) == name
    assert _read(archives, name) == b"bytes"
    assert archives.size(name) == 5
    assert archives.entries() == [ArchiveEntry(name, 5)]
    assert archives.entries()[0].archived_at_ms == 1_000


def test_a_name_taken_is_never_replaced(archives: Archives) -> None:
    name = archive_name("pane-1", 1_000, "zstd")
    archives.save(name, _writes(b"first"), owner="")
    second = archives.save(name, _writes(b"second"), owner="")
    assert second == next_archive_name(name) == archive_name("pane-1", 1_001, "zstd")
    assert (_read(archives, name), _read(archives, second)) == (b"first", b"second")


def test_a_failed_write_leaves_no_archive(archives: Archives) -> None:
    def failing(out: BinaryIO) -> None:
        out.write(b"half")
        raise StorageError("the output could not be read")

    with pytest.raises(StorageError, match="could not be read"):
        archives.save(archive_name("pane-1", 1, "zstd"), failing, owner="a" * 16)
    assert archives.entries() == []
    assert archives.size(archive_name("pane-1", 1, "zstd")) is None


def test_delete_says_what_it_freed(archives: Archives) -> None:
    name = archives.save(archive_name("pane-1", 1, "gzip"), _writes(b"12345"), owner="")
    assert archives.delete(name) == 5
    assert archives.delete(name) == 0
    assert archives.entries() == []
    with pytest.raises(StorageError):
        archives.open(name)


def test_resolve_refuses_another_blocks_archive(archives: Archives) -> None:
    name = archives.save(archive_name("pane-1", 1, "zstd"), _writes(b"x"), owner="")
    assert archives.resolve(name, "pane-1", must_exist=True) == name
    with pytest.raises(StorageError, match="not an archive of block 'pane-2'"):
        archives.resolve(name, "pane-2")
    with pytest.raises(StorageError):
        archives.resolve(archive_name("pane-1", 2, "zstd"), "pane-1", must_exist=True)


@given(stored=st.one_of(st.text(max_size=80), st.integers(), st.none(), st.binary(max_size=20)))
def test_check_archive_name_gives_a_name_of_the_block_or_storage_error(stored: object) -> None:
    try:
        name = check_archive_name(stored, "pane-1")
    except StorageError:
        return
    assert name.startswith("pane-1.")
    assert "/" not in name


# -- a runtime on an archive store of its own ---------------------------------------------------


@pytest.fixture
def bucket_rt(tmp_path: Path) -> Iterator[tuple[Runtime, BucketArchives, FakeClock]]:
    """A runtime on a SQLite file whose archives go to a `BucketArchives`."""
    bucket = BucketArchives()
    clock = FakeClock(1_767_225_600_000)
    rt = Runtime.open(tmp_path / "db.sqlite", clock=clock, config=QUIET, archives=bucket)
    yield rt, bucket, clock
    rt.close()


def test_blocks_archive_read_and_restore_through_another_archive_store(
    bucket_rt: tuple[Runtime, BucketArchives, FakeClock], tmp_path: Path
) -> None:
    rt, bucket, _clock = bucket_rt
    pane = rt.blocks.get("pane-1")
    pane.append_output(b"one\ntwo\n")
    result = pane.archive()
    assert result.path is not None
    assert result.path.parent == Path("test-archives")
    assert [entry.name for entry in bucket.entries()] == [result.path.name]
    pane.append_output(b"three\n")
    assert pane.read_output().data == b"one\ntwo\nthree\n"  # the archive, then the live part
    assert pane.restore().restored_bytes == len(b"one\ntwo\nthree\n")
    assert pane.read_output().data == b"one\ntwo\nthree\n"
    assert rt.blocks.archives is bucket
    beside = tmp_path / "db.sqlite.archives"  # only the owner locks: no archive
    assert [path.name.startswith(".owner.") for path in beside.iterdir()] == [True]
    with pytest.raises(InvalidTransition, match="kept by bucket test-archives"):
        _ = rt.blocks.archive_dir


def test_a_sweep_archives_and_prunes_another_archive_store(
    bucket_rt: tuple[Runtime, BucketArchives, FakeClock],
) -> None:
    rt, bucket, clock = bucket_rt
    rt.blocks.get("old").append_output(b"output of old\n" * 100)
    rt.blocks.get("old").flush()
    clock.advance(8 * DAY)
    rt.blocks.get("new").append_output(b"output of new\n" * 100)
    rt.blocks.get("new").flush()
    assert rt.blocks.sweep().archived_count == 1  # old only: new is not idle yet
    [old] = bucket.entries()
    clock.advance(8 * DAY)
    stats = rt.blocks.sweep(max_archive_bytes=old.size)  # room for one: the oldest goes
    assert (stats.archived_count, stats.pruned_count) == (1, 1)
    assert [entry.name.split(".")[0] for entry in bucket.entries()] == ["new"]
    assert rt.store.get_object("block", "old").meta.get(ARCHIVE_PATH) is None
    assert rt.blocks.get("new").read_output().data == b"output of new\n" * 100


def test_a_failing_archive_store_changes_nothing(
    bucket_rt: tuple[Runtime, BucketArchives, FakeClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    rt, bucket, _clock = bucket_rt
    pane = rt.blocks.get("pane-1")
    pane.append_output(b"kept\n")

    def refused(name: str, write: Callable[[BinaryIO], None], *, owner: str) -> str:
        raise StorageError("the bucket refused the upload (403)")

    monkeypatch.setattr(bucket, "save", refused)
    with pytest.raises(StorageError, match="403"):
        pane.archive()
    assert pane.read_output().data == b"kept\n"
    assert rt.store.get_object("block", "pane-1").meta.get(ARCHIVE_PATH) is None


def test_an_upload_a_crash_left_is_removed_once_its_owner_is_gone(tmp_path: Path) -> None:
    bucket = BucketArchives()
    bucket.uploads["pane-1.1.zst:" + "f" * 16 + ":0"] = "f" * 16  # a runtime that died
    config = attrs.evolve(QUIET, archive_dir=tmp_path / "owners")  # (owner locks: here)
    with Runtime.open(tmp_path / "db.sqlite", config=config, archives=bucket) as rt:
        rt.blocks.get("pane-1").append_output(b"x\n")
        rt.blocks.sweep()
        assert bucket.uploads == {}
        assert rt.metrics()["temporaries_removed"] == 1


def test_open_refuses_what_is_not_an_archive_store(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"archives must be a greenroom\.archives\.Archives"):
        Runtime.open(tmp_path / "db.sqlite", archives=tmp_path)  # type: ignore[arg-type]


@pytest.mark.postgres
def test_a_postgres_runtime_needs_no_folder_with_an_archive_store(pg_url: str) -> None:
    bucket = BucketArchives()
    with Runtime.open(pg_url, clock=FakeClock(1_767_225_600_000), archives=bucket) as rt:
        pane = rt.blocks.get("pane-1")
        pane.append_output(b"on postgres\n")
        pane.archive()
        assert len(bucket.entries()) == 1
        assert pane.read_output().data == b"on postgres\n"


def test_a_folder_given_by_hand_keeps_owner_locks_and_removes_a_crashs_leftovers(
    tmp_path: Path,
) -> None:
    archives = FolderArchives(tmp_path / "shared")
    with Runtime.open(tmp_path / "db.sqlite", config=QUIET, archives=archives) as rt:
        rt.blocks.get("pane-1").append_output(b"x\n")
        rt.blocks.get("pane-1").archive()
        assert list(archives.folder.glob(".owner.*.lock"))  # this runtime's token
        leftover = archives.folder / f".pane-2.1.zst.{'e' * 16}.0000.tmp"  # a dead runtime's
        leftover.write_bytes(b"partial")
        rt.blocks.sweep()
        assert not leftover.exists()


def test_a_stray_file_shaped_like_an_archive_does_not_stop_pruning(tmp_path: Path) -> None:
    archives = FolderArchives(tmp_path / "archives")
    clock = FakeClock(1_767_225_600_000)
    with Runtime.open(tmp_path / "db.sqlite", clock=clock, config=QUIET, archives=archives) as rt:
        rt.blocks.get("pane-1").append_output(b"x\n" * 100)
        rt.blocks.get("pane-1").archive()
        archives.folder.joinpath("pane-1.\u00b2.zst").write_bytes(b"not one of ours")
        stats = rt.blocks.sweep(max_archive_bytes=0)
        assert stats.pruned_count == 1
        assert archives.folder.joinpath("pane-1.\u00b2.zst").exists()  # never deleted


def test_an_old_archive_that_cannot_be_deleted_does_not_fail_the_new_one(
    bucket_rt: tuple[Runtime, BucketArchives, FakeClock],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    rt, bucket, clock = bucket_rt
    pane = rt.blocks.get("pane-1")
    pane.append_output(b"one\n")
    first = pane.archive()
    clock.advance(1.0)
    pane.append_output(b"two\n")

    def unavailable(name: str) -> int:
        raise StorageError("the bucket is unavailable (503)")

    monkeypatch.setattr(bucket, "delete", unavailable)
    second = pane.archive()  # committed: the old archive's deletion is best effort
    assert second.archived_bytes == len(b"one\ntwo\n")
    assert pane.read_output().data == b"one\ntwo\n"
    assert first.path is not None
    assert first.path.name in [entry.name for entry in bucket.entries()]  # left to prune
    assert "could not delete an archive replaced" in caplog.text
