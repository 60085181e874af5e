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
from pathlib import Path

import pytest

from greenroom import Runtime, RuntimeConfig

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
