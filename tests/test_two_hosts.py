"""Two hosts (real processes) on one database: every pair of block operations at once.

docs/blocks.md says which operations two hosts may run on one block at the same time;
this runs each pair with two processes and checks that nothing is lost or duplicated,
that a race ends only in `Conflict` ("try again", counted as skipped by a sweep), and
that no temporary is left behind.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from greenroom import Runtime, RuntimeConfig
from greenroom.archives import FolderArchives

WORKER = Path(__file__).with_name("two_hosts_worker.py")
OPERATIONS = ("append", "read", "export", "archive", "restore", "sweep")
ROUNDS = 12
SEED = b"".join(f"seed line {n} {n * 7919 % 100003:x}\n".encode() for n in range(100_000))
QUIET = RuntimeConfig(sweep_first_after_s=1e9, sweep_interval_s=1e9)


def _lines(data: bytes) -> list[bytes]:
    return [line for line in data.split(b"\n") if line]


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("first", "second"), list(itertools.combinations_with_replacement(OPERATIONS, 2))
)
def test_two_hosts_running_a_pair_of_operations_lose_nothing(
    tmp_path: Path, first: str, second: str
) -> None:
    db = tmp_path / "shared.db"
    with Runtime.open(db, config=QUIET) as rt:
        block = rt.blocks.get("pane")
        block.append_output(SEED)
        block.archive()  # half the pairs start archived...
        block.append_output(b"live tail\n")  # ...with a live part after the archive
        block.flush()
    hosts = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(db), "pane", op, str(ROUNDS), f"host{n}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n, op in enumerate((first, second))
    ]
    tallies = []
    for host in hosts:
        out, err = host.communicate(timeout=150)
        assert host.returncode == 0, err
        tallies.append(json.loads(out))
    for tally in tallies:
        assert tally["errors"] == [], tallies
    with Runtime.open(db, config=QUIET) as rt:
        data = rt.blocks.get("pane").read_output().data
        leftovers = [
            info.name
            for info in rt.store.list_files("block", "pane")
            if info.name.startswith("output.restoring")
        ]
        temps = [p.name for p in rt.blocks.archive_dir.iterdir() if p.name.endswith(".tmp")]
    expected = [*_lines(SEED), b"live tail"]
    for n, op in enumerate((first, second)):
        if op == "append":
            expected += [f"host{n} line {i}".encode() for i in range(ROUNDS)]
    got = _lines(data)
    assert sorted(got) == sorted(expected)  # nothing lost, nothing twice
    assert got[: len(_lines(SEED)) + 1] == expected[: len(_lines(SEED)) + 1]  # in order
    for n in range(2):
        mine = [line for line in got if line.startswith(f"host{n} ".encode())]
        assert mine == sorted(mine, key=lambda line: int(line.rsplit(b" ", 1)[1]))
    assert leftovers == []
    assert temps == []


class _ArchivedMeanwhile(FolderArchives):
    """Archives whose first existence check lets `meanwhile` run first: another host
    archiving between this host's metadata read and its check of the archive file."""

    def __init__(self, folder: Path, meanwhile: Callable[[], None]) -> None:
        super().__init__(folder)
        self._meanwhile: Callable[[], None] | None = meanwhile

    def resolve(self, stored: object, block_id: str, *, must_exist: bool = False) -> str:
        run, self._meanwhile = self._meanwhile, None
        if must_exist and run is not None:
            # On a thread of its own: this runs inside the reading block's turn.
            other = threading.Thread(target=run)
            other.start()
            other.join()
        return super().resolve(stored, block_id, must_exist=must_exist)


def test_a_read_whose_archive_another_host_replaced_meanwhile_reads_again(
    tmp_path: Path,
) -> None:
    # Seen in CI once as a failed `greenroom export`: the archive named in the
    # metadata was gone (replaced by a newer one) when the read checked it.
    db = tmp_path / "shared.db"
    folder = Path(f"{db}.archives")
    with Runtime.open(db, config=QUIET) as other:
        pane = other.blocks.get("pane")
        pane.append_output(b"one\n")
        pane.archive()

        def archive_twice() -> None:
            for line in (b"two\n", b"three\n"):
                pane.append_output(line)
                pane.archive()

        archives = _ArchivedMeanwhile(folder, archive_twice)
        with Runtime.open(db, config=QUIET, archives=archives) as rt:
            read = rt.blocks.get("pane").read_output()
        assert archives._meanwhile is None  # the other host did archive meanwhile
        assert (read.data, read.archived) == (b"one\ntwo\nthree\n", True)
