"""The `greenroom` command line, driven as a subprocess against real databases.

Databases are made by the runtime in tmp_path with a `FakeClock`, so activity times are
known; the CLI then opens them with the real clock in its own process. Databases that
no command changes are shared by the module; every command that changes one gets its
own. The options `Runtime.sweep` gained for the CLI (overrides, dry run, progress) are
tested in-process at the end.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pty
import resource
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

import greenroom.actors.block
from greenroom import (
    AssistantMessage,
    FakeClock,
    Runtime,
    Store,
    SweepStats,
    SystemClock,
    ToolCall,
    ToolResult,
    Usage,
    UserMessage,
)
from greenroom.blocks.handle import Block
from greenroom.blocks.namespace import Blocks
from greenroom.blocks.records import ArchiveResult, SweepProgress
from greenroom.cli import main
from greenroom.clock import stopwatch
from greenroom.errors import InvalidInput
from greenroom.transcripts.logformat import iso_utc

from .conftest import QUIET, START_MS

DAY_MS = 86_400_000
COMMANDS = ["blocks", "show", "export", "archive", "restore", "sweep", "transcript"]
PANE_OUTPUT = b'{"type":"text","text":"hello"}\n{"type":"done"}\n'
BINARY_OUTPUT = bytes(b for b in range(256) if b != 10) + b"\n\x00\xff tail\n"
MODEL = "anthropic:claude-sonnet-4-5"


def cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run `python -m runtime.cli ARGS` in a child process; its exit status and output."""
    return subprocess.run(
        [sys.executable, "-m", "greenroom.cli", *map(str, args)],
        capture_output=True,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        timeout=50,
        check=False,
    )


def text(result: subprocess.CompletedProcess[bytes]) -> str:
    return result.stdout.decode()


def one_error_line(result: subprocess.CompletedProcess[bytes]) -> str:
    """The sole stderr line of a failed command (no traceback), without its prefix."""
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, result.stderr.decode()
    assert lines[0].startswith("greenroom: error: "), lines[0]
    assert "Traceback" not in lines[0]
    return lines[0].removeprefix("greenroom: error: ")


# -- shared, read-only databases ----------------------------------------------------------


@attrs.frozen
class World:
    db: Path
    transcript: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """pane-1 (agent, live), notes (view notes, live), bin (agent, binary, archived),
    a transcript of one turn with a tool call; activity a minute apart."""
    folder = tmp_path_factory.mktemp("world")
    clock = FakeClock(start_ms=START_MS)
    with Runtime.open(folder / "app.db", clock=clock, config=QUIET) as rt:
        pane = rt.blocks.get("pane-1")
        pane.append_output(PANE_OUTPUT)
        pane.update_meta({"title": "build"})
        pane.flush()
        clock.advance(60)
        notes = rt.blocks.get("notes", view="notes")
        notes.append_output(b"a note\n")
        notes.flush()
        clock.advance(60)
        binary = rt.blocks.get("bin")
        binary.append_output(BINARY_OUTPUT)
        binary.flush()
        assert binary.archive().archived_bytes == len(BINARY_OUTPUT)
        t = rt.transcripts.create(directory=folder, cwd="/repo", model=MODEL)
        t.on_turn_end(
            [
                UserMessage("list the files"),
                AssistantMessage(
                    "", tool_calls=[ToolCall("c1", "bash", {"cmd": "ls"})], usage=Usage(1_000, 20)
                ),
                ToolResult("c1", "README.md\nruntime/\n"),
                AssistantMessage("Two entries.", usage=Usage(1_050, 5)),
            ]
        )
        t.close()
    return World(folder / "app.db", Path(t.path))


def iso(ms: int) -> str:
    return iso_utc(ms)


# -- help and usage -----------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_json_and_an_example(command: str) -> None:
    result = cli(command, "--help")
    assert result.returncode == 0
    out = text(result)
    assert out.startswith(f"usage: greenroom {command} ")
    assert "--json" in out
    assert f"greenroom {command} " in out.split("example:")[1]
    assert "exit status:" in out
    assert result.stderr == b""
    # --json's help says which of the two shapes the command prints.
    json_help = " ".join(out.split("\n  --json")[1].split("\n  -")[0].split("\n\n")[0].split())
    if command == "blocks":
        assert json_help.startswith("print one JSON array of row objects on stdout")
    else:
        assert json_help.startswith("print one JSON object on stdout")


def test_top_level_help_lists_the_commands_and_exit_statuses() -> None:
    result = cli("--help")
    assert result.returncode == 0
    out = text(result)
    for command in COMMANDS:
        assert f"    {command}" in out
    assert "130  interrupted" in out
    assert "json output (--json):\n  blocks               one JSON array of row objects" in out


@pytest.mark.parametrize(
    ("args", "prog", "complaint"),
    [
        ((), "greenroom", "the following arguments are required: COMMAND"),
        (("frobnicate", "x.db"), "greenroom", "invalid choice: 'frobnicate'"),
        (("--bogus", "blocks", "x.db"), "greenroom", "unrecognized arguments: --bogus"),
        (("show", "x.db"), "greenroom show", "the following arguments are required: BLOCK"),
        (
            ("sweep", "x.db", "--inactive-days", "-1"),
            "greenroom sweep",
            "expected a number of days >= 0",
        ),
        (
            ("sweep", "x.db", "--inactive-days", "nan"),
            "greenroom sweep",
            "expected a number of days >= 0",
        ),
        (
            ("sweep", "x.db", "--inactive-days", "1e400"),  # inf
            "greenroom sweep",
            "expected a number of days >= 0",
        ),
        (
            ("sweep", "x.db", "--max-archive-bytes", "lots"),
            "greenroom sweep",
            "expected a byte count",
        ),
        # Unknown arguments after a command are that command's usage error.
        (("blocks", "x.db", "--bogus"), "greenroom blocks", "unrecognized arguments: --bogus"),
        (("blocks", "--bogus", "x.db"), "greenroom blocks", "unrecognized arguments: --bogus"),
        (("show", "x.db", "b", "more"), "greenroom show", "unrecognized arguments: more"),
        (("transcript", "t.jsonl", "-x"), "greenroom transcript", "unrecognized arguments: -x"),
    ],
)
def test_bad_usage_exits_2_with_argparse_usage(
    args: tuple[str, ...], prog: str, complaint: str, tmp_path: Path
) -> None:
    result = cli(*args, cwd=tmp_path)
    assert result.returncode == 2
    err = result.stderr.decode()
    assert err.startswith(f"usage: {prog} "), err  # the usage of the parser that complains
    assert f"\n{prog}: error: " in err
    assert complaint in err
    assert "Traceback" not in err
    assert not (tmp_path / "x.db").exists()


# -- databases that are not there or not greenroom's ------------------------------------------


def test_a_missing_database_is_one_line_exit_1_and_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    for command in (("blocks", missing), ("sweep", missing), ("show", missing, "pane-1")):
        result = cli(*command)
        assert result.returncode == 1
        assert one_error_line(result) == (
            f"no database at {str(missing)!r} (the command line never creates one)"
        )
        assert result.stdout == b""
    assert list(tmp_path.iterdir()) == []


def test_files_that_are_not_greenroom_databases_are_refused_untouched(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all\n" * 100)
    result = cli("blocks", empty)
    assert result.returncode == 1
    assert "is not a greenroom database" in one_error_line(result)
    assert empty.read_bytes() == b""  # no schema was written into it
    result = cli("blocks", junk, "--json")
    assert result.returncode == 1
    assert "file is not a database" in one_error_line(result)
    result = cli("blocks", tmp_path)
    assert result.returncode == 1
    assert "is a folder" in one_error_line(result)


def test_a_foreign_sqlite_database_with_a_schema_version_is_refused_untouched(
    tmp_path: Path,
) -> None:
    foreign = tmp_path / "foreign.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE objects (name TEXT)")  # one name alike is not enough
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    before = foreign.read_bytes()
    for command in (("blocks", foreign), ("sweep", foreign), ("export", foreign, "pane")):
        result = cli(*command)
        assert result.returncode == 1
        assert one_error_line(result) == (
            f"{str(foreign)!r} is not a greenroom database (it lacks greenroom's tables: "
            "files, file_chunks); nothing was changed in it"
        )
    assert foreign.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign.db"]  # no -wal, no -shm
    conn = sqlite3.connect(foreign)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (("blocks", ""), "DB must not be empty"),
        (("sweep", "x.db", "--archive-dir", ""), "--archive-dir must not be empty"),
        (("export", "x.db", "pane", "-o", ""), "--output must not be empty"),
        (("transcript", ""), "PATH must not be empty"),
    ],
)
def test_an_empty_path_is_one_line_exit_1_and_makes_nothing(
    args: tuple[str, ...], complaint: str, tmp_path: Path
) -> None:
    result = cli(*args, cwd=tmp_path)
    assert result.returncode == 1
    assert one_error_line(result) == complaint
    assert result.stdout == b""
    assert list(tmp_path.iterdir()) == []


# -- blocks and show ----------------------------------------------------------------------


def test_blocks_lists_every_block_as_a_table(world: World) -> None:
    result = cli("blocks", world.db)
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in text(result).splitlines()]
    assert rows == [
        ["ID", "VIEW", "LINES", "TOKENS", "LAST", "ACTIVITY", "STATE", "BYTES"],
        ["bin", "agent", "2", "64", iso(START_MS + 120_000), "archived", "264"],
        ["notes", "notes", "1", "1", iso(START_MS + 60_000), "live", "7"],
        ["pane-1", "agent", "2", "10", iso(START_MS), "live", "47"],
    ]
    assert result.stderr == b""


def test_blocks_json_is_one_array_of_rows_and_the_view_filter(world: World) -> None:
    result = cli("blocks", world.db, "--view", "agent", "--json")
    assert result.returncode == 0
    rows = json.loads(result.stdout)
    assert [block["id"] for block in rows] == ["bin", "pane-1"]
    # One row a line, as sqlite-utils prints them: `[{...},\n {...}]`.
    lines = text(result).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith('[{"id": "bin", ')
    assert lines[0].endswith("},")
    assert lines[1].startswith(' {"id": "pane-1", ')
    assert lines[1].endswith("}]")
    binary, pane = rows
    assert pane == {
        "id": "pane-1",
        "view": "agent",
        "state": "live",
        "archived": False,
        "line_count": 2,
        "token_estimate": 10,
        "start_ts_ms": START_MS,
        "started": "2026-01-01T00:00:00.000Z",
        "last_activity_ms": START_MS,
        "last_activity": "2026-01-01T00:00:00.000Z",
        "bytes": 47,
        "live_bytes": 47,
        "archived_bytes": 0,
        "archive_path": None,
        "archived_at_ms": None,
        "archived_at": None,
        "archive_pruned_at_ms": None,
        "archive_pruned_at": None,
    }
    assert binary["archived"] is True
    assert binary["archived_bytes"] == len(BINARY_OUTPUT)
    assert binary["live_bytes"] == 0
    assert Path(binary["archive_path"]).parent == world.db.with_name("app.db.archives")
    assert binary["archived_at_ms"] == START_MS + 120_000
    result = cli("blocks", world.db, "--view", "shell")
    assert text(result) == "no blocks with view 'shell'\n"
    result = cli("blocks", world.db, "--view", "shell", "--json")
    assert result.returncode == 0
    assert result.stdout == b"[]\n"


def test_show_prints_stats_state_and_every_metadata_key(world: World) -> None:
    result = cli("show", world.db, "pane-1")
    assert result.returncode == 0
    out = text(result)
    assert "block          pane-1\n" in out
    assert "state          live\n" in out
    assert "lines          2\n" in out
    assert f"last activity  {iso(START_MS)}\n" in out
    assert "output         47 bytes (0 archived, 47 live)\n" in out
    assert "files          output (47 bytes)\n" in out
    assert '  title = "build"\n' in out
    assert "  session:line_count = 2\n" in out
    archived = text(cli("show", world.db, "bin"))
    assert "state          archived\n" in archived
    assert "archive        " in archived
    assert "bytes compressed)" in archived


def test_show_json_has_the_metadata_and_the_archive_file(world: World) -> None:
    document = json.loads(cli("show", world.db, "bin", "--json").stdout)
    assert document["id"] == "bin"
    assert document["meta"]["view"] == "agent"
    assert document["meta"]["session:archived_bytes"] == len(BINARY_OUTPUT)
    assert document["files"] == []
    assert document["archive_file_bytes"] == Path(document["archive_path"]).stat().st_size
    assert document["archive_error"] is None
    assert document["version"] >= 1


def look(db: Path) -> Store:
    """The database's store, opened for a look (the caller closes it)."""
    return Store.open(db)


def test_a_missing_block_is_an_error_and_is_not_created(world: World) -> None:
    for command in ("show", "export", "archive", "restore"):
        result = cli(command, world.db, "ghost")
        assert result.returncode == 1
        assert one_error_line(result) == f"no block 'ghost' in {str(world.db)!r}"
        assert result.stdout == b""
    result = cli("show", world.db, "bad id!")
    assert result.returncode == 1
    assert "block id must be 1-200 characters" in one_error_line(result)
    store = look(world.db)
    try:
        assert store.find_object("block", "ghost") is None
    finally:
        store.close()


# -- export --------------------------------------------------------------------------------


def test_export_writes_the_exact_bytes_from_the_archive_or_live(
    world: World, tmp_path: Path
) -> None:
    result = cli("export", world.db, "bin")  # archived: read back from the archive
    assert result.returncode == 0
    assert result.stdout == BINARY_OUTPUT
    assert result.stderr == b""
    assert cli("export", world.db, "pane-1", "-o", "-").stdout == PANE_OUTPUT
    target = tmp_path / "bin.out"
    result = cli("export", world.db, "bin", "-o", target)
    assert result.returncode == 0
    assert result.stdout == b""
    assert target.read_bytes() == BINARY_OUTPUT


def test_export_json_describes_the_file_or_carries_the_bytes(world: World, tmp_path: Path) -> None:
    target = tmp_path / "pane.jsonl"
    document = json.loads(cli("export", world.db, "pane-1", "-o", target, "--json").stdout)
    assert document == {
        "block_id": "pane-1",
        "bytes": 47,
        "line_count": 2,
        "archived": False,
        "output": str(target),
    }
    assert target.read_bytes() == PANE_OUTPUT
    document = json.loads(cli("export", world.db, "bin", "--json").stdout)
    assert document["archived"] is True
    assert document["output"] is None
    assert base64.b64decode(document["data_base64"]) == BINARY_OUTPUT


def test_export_refuses_to_write_over_the_database(world: World) -> None:
    before = world.db.read_bytes()
    result = cli("export", world.db, "pane-1", "-o", world.db)
    assert result.returncode == 1
    assert "refusing to export over the database itself" in one_error_line(result)
    assert world.db.read_bytes() == before


def test_export_to_an_unwritable_place_is_one_line_exit_1(world: World, tmp_path: Path) -> None:
    result = cli("export", world.db, "pane-1", "-o", tmp_path / "no" / "such" / "folder" / "x")
    assert result.returncode == 1
    assert "No such file or directory" in one_error_line(result)


def own_files_db(folder: Path) -> tuple[Path, Path, Path]:
    """A database with pane (live), bin (archived) and a transcript in its own folder;
    (database, bin's archive, the transcript)."""
    db = folder / "own.db"
    with Runtime.open(db, clock=FakeClock(start_ms=START_MS), config=QUIET) as rt:
        pane = rt.blocks.get("pane")
        pane.append_output(PANE_OUTPUT)
        pane.flush()
        binary = rt.blocks.get("bin")
        binary.append_output(BINARY_OUTPUT)
        archived = Path(binary.archive().path)
        t = rt.transcripts.create(cwd="/repo", model=MODEL)
        t.on_turn_end([UserMessage("hi"), AssistantMessage("hello", usage=Usage(10, 2))])
        t.close()
    return db, archived, Path(t.path)


def test_export_refuses_targets_in_the_archive_and_transcript_folders(tmp_path: Path) -> None:
    db, archived, transcript = own_files_db(tmp_path)
    archive_bytes, transcript_bytes = archived.read_bytes(), transcript.read_bytes()
    link = tmp_path / "innocent.jsonl"
    link.symlink_to(archived)  # a link into the folder is the folder
    before = files_under(tmp_path)
    for target, folder in (
        (archived, "archive"),  # the block's own archive
        (archived.with_name("new.jsonl"), "archive"),
        (archived.parent, "archive"),
        (link, "archive"),
        (transcript, "transcript"),
        (tmp_path / "own.db.transcripts" / "sub" / ".." / "x.jsonl", "transcript"),
    ):
        result = cli("export", db, "pane", "-o", target)
        assert result.returncode == 1, target
        assert f"refusing to export into the database's {folder} folder" in one_error_line(result)
    for target in (db, db.with_name("own.db-wal"), db.with_name("own.db-shm")):
        result = cli("export", db, "pane", "-o", target)
        assert result.returncode == 1
        assert "refusing to export over the database itself" in one_error_line(result)
    assert archived.read_bytes() == archive_bytes
    assert transcript.read_bytes() == transcript_bytes
    assert files_under(tmp_path) == before
    assert cli("export", db, "bin").stdout == BINARY_OUTPUT  # the archive still reads


def test_a_failed_export_leaves_the_existing_target_as_it_was(tmp_path: Path) -> None:
    db = tmp_path / "big.db"
    big = b"x" * 1023 + b"\n"
    with Runtime.open(db, clock=FakeClock(start_ms=START_MS), config=QUIET) as rt:
        block = rt.blocks.get("big")
        block.append_output(big * 1024)  # 1 MiB
        block.flush()
    target = tmp_path / "out" / "big.jsonl"
    target.parent.mkdir()
    target.write_bytes(b"an earlier export\n")

    def small_files() -> None:
        # Files in the child may not grow past 256 KiB: the export's write fails (EFBIG)
        # part way through. Ignored SIGXFSZ stays ignored across exec.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))

    result = subprocess.run(
        [sys.executable, "-m", "greenroom.cli", "export", str(db), "big", "-o", str(target)],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=50,
        check=False,
        preexec_fn=small_files,
    )
    assert result.returncode == 1
    assert "File too large" in one_error_line(result)
    assert target.read_bytes() == b"an earlier export\n"
    assert list(target.parent.iterdir()) == [target]  # no temporary file left behind
    result = cli("export", db, "big", "-o", target)  # without the limit: replaced whole
    assert result.returncode == 0
    assert target.read_bytes() == big * 1024
    assert list(target.parent.iterdir()) == [target]


def test_export_to_a_device_writes_through_it(world: World) -> None:
    result = cli("export", world.db, "pane-1", "-o", "/dev/stdout")
    assert result.returncode == 0, result.stderr
    assert result.stdout == PANE_OUTPUT


_FILES_UNDER = """
import hashlib, json, sys
from pathlib import Path
folder = Path(sys.argv[1])
found = {}
for path in sorted(folder.rglob("*")):
    key = str(path.relative_to(folder))
    if path.is_symlink() or path.is_dir():
        found[key] = "link" if path.is_symlink() else "folder"
    elif key.endswith("-shm"):
        found[key] = "shm"  # shared memory: readers take their marks in it, by design
    else:
        found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
print(json.dumps(found))
"""


def files_under(folder: Path) -> dict[str, str]:
    """Every file and folder under `folder`: its relative path and, for a file, the
    SHA-256 of its bytes.

    Read in a child process: closing a file in this process would drop the SQLite
    locks a runtime in this process holds on it (POSIX locks are per process), and a
    CLI would then take itself for the last user and checkpoint the host's -wal.
    """
    run = [sys.executable, "-c", _FILES_UNDER, str(folder)]
    done = subprocess.run(run, capture_output=True, timeout=50, check=True)
    found: dict[str, str] = json.loads(done.stdout)
    return found


@pytest.mark.parametrize("host_open", [False, True], ids=["closed", "host-open"])
def test_reading_commands_change_no_byte_and_make_no_file(tmp_path: Path, host_open: bool) -> None:
    db, _archived, transcript = own_files_db(tmp_path)
    out = tmp_path / "exports"
    out.mkdir()
    commands = [
        ("blocks", db),
        ("blocks", db, "--json"),
        ("show", db, "pane"),
        ("show", db, "bin", "--json"),
        ("export", db, "pane"),
        ("export", db, "bin"),
        ("export", db, "bin", "--json"),
        ("export", db, "pane", "-o", out / "pane.jsonl"),
        ("export", db, "bin", "-o", out / "bin.jsonl", "--json"),
        ("transcript", transcript),
        ("transcript", transcript, "--json"),
    ]
    with contextlib.ExitStack() as stack:
        if host_open:
            # A host holds the database open with writes still in its -wal.
            rt = stack.enter_context(
                Runtime.open(db, clock=FakeClock(start_ms=START_MS), config=QUIET)
            )
            rt.store.update_meta("block", "pane", {"title": "from the host"})
            assert db.with_name("own.db-wal").stat().st_size > 0
        before = files_under(tmp_path)
        for command in commands:
            result = cli(*command)
            assert result.returncode == 0, (command, result.stderr)
        after = files_under(tmp_path)
    made = {"exports/pane.jsonl", "exports/bin.jsonl"}
    assert {k: v for k, v in after.items() if k not in made} == before
    assert set(after) - set(before) == made


# -- archive and restore --------------------------------------------------------------------


@pytest.fixture
def small_db(tmp_path: Path) -> Path:
    """A database of its own: pane (agent, live) and bin (agent, binary, live)."""
    with Runtime.open(
        tmp_path / "small.db", clock=FakeClock(start_ms=START_MS), config=QUIET
    ) as rt:
        for name, data in (("pane", PANE_OUTPUT), ("bin", BINARY_OUTPUT)):
            block = rt.blocks.get(name)
            block.append_output(data)
            block.flush()
    return tmp_path / "small.db"


def test_archive_then_restore_round_trips_the_output(small_db: Path) -> None:
    result = cli("archive", small_db, "bin")
    assert result.returncode == 0, result.stderr
    archive = small_db.with_name("small.db.archives")
    [made] = archive.iterdir()
    assert text(result) == f"archived block 'bin': 264 bytes to {made}\n"
    listed = {b["id"]: b for b in json.loads(cli("blocks", small_db, "--json").stdout)}
    assert listed["bin"]["state"] == "archived"
    assert listed["pane"]["state"] == "live"
    assert cli("export", small_db, "bin").stdout == BINARY_OUTPUT  # from the archive

    again = cli("archive", small_db, "bin")  # nothing new: nothing changes
    assert again.returncode == 0
    assert text(again) == f"block 'bin' has no new output: it is archived already ({made})\n"

    result = cli("restore", small_db, "bin", "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout) == {"block_id": "bin", "restored_bytes": 264}
    listed = {b["id"]: b for b in json.loads(cli("blocks", small_db, "--json").stdout)}
    assert listed["bin"]["state"] == "live"
    assert listed["bin"]["live_bytes"] == 264
    assert cli("export", small_db, "bin").stdout == BINARY_OUTPUT

    result = cli("restore", small_db, "pane")  # never archived
    assert result.returncode == 1
    assert one_error_line(result) == "block 'pane' is not archived; nothing to restore"


def test_archive_json(small_db: Path) -> None:
    document = json.loads(cli("archive", small_db, "pane", "--json").stdout)
    assert document["block_id"] == "pane"
    assert document["archived"] is True
    assert document["archived_bytes"] == 47
    assert Path(document["path"]).exists()
    assert document["archived_at"].endswith("Z")


def test_archives_kept_in_another_folder_need_archive_dir(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    config = attrs.evolve(QUIET, archive_dir=str(elsewhere))
    with Runtime.open(tmp_path / "app.db", clock=FakeClock(start_ms=START_MS), config=config) as rt:
        block = rt.blocks.get("pane")
        block.append_output(PANE_OUTPUT)
        block.archive()
    result = cli("export", tmp_path / "app.db", "pane")
    assert result.returncode == 1
    message = one_error_line(result)
    assert "refusing archive path" in message
    assert message.endswith("(if the host keeps its archives elsewhere, pass --archive-dir)")
    result = cli("export", tmp_path / "app.db", "pane", "--archive-dir", elsewhere)
    assert result.returncode == 0
    assert result.stdout == PANE_OUTPUT


def pruned_db(folder: Path) -> Path:
    """`gone` (agent): archived, then its archive pruned at START_MS + 1 day."""
    clock = FakeClock(start_ms=START_MS)
    db = folder / "pruned.db"
    with Runtime.open(db, clock=clock, config=QUIET) as rt:
        block = rt.blocks.get("gone")
        block.append_output(PANE_OUTPUT)
        block.archive()
        clock.advance(86_400)
        assert rt.blocks.sweep(max_archive_bytes=0).pruned_count == 1
    return db


def test_a_pruned_block_is_reported_with_an_iso_time(tmp_path: Path) -> None:
    db = pruned_db(tmp_path)
    when = iso(START_MS + DAY_MS)
    result = cli("export", db, "gone")
    assert result.returncode == 1
    assert one_error_line(result) == (
        f"block 'gone' has no output: its archive was pruned at {when} to keep the archive "
        "folder within max_archive_bytes"
    )
    result = cli("restore", db, "gone")
    assert result.returncode == 1
    assert one_error_line(result) == (
        f"block 'gone' cannot be restored: its archive was pruned at {when} to keep the "
        "archive folder within max_archive_bytes"
    )


def test_the_archive_dir_hint_is_given_only_where_it_could_help(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    with Runtime.open(db, clock=FakeClock(start_ms=START_MS), config=QUIET) as rt:
        for name in ("pane", "other"):
            block = rt.blocks.get(name)
            block.append_output(PANE_OUTPUT)
            block.archive()
        others = rt.blocks.get("other").meta()["session:archive_path"]
    store = look(db)
    try:  # pane's metadata now names other's archive: no folder would make it right
        store.update_meta("block", "pane", {"session:archive_path": others})
    finally:
        store.close()
    result = cli("export", db, "pane")
    assert result.returncode == 1
    message = one_error_line(result)
    assert "it is not an archive of block 'pane'" in message
    assert "--archive-dir" not in message


# -- sweep ----------------------------------------------------------------------------------


def real_now_ms() -> int:
    return SystemClock().now_ms()  # no timer: no thread started


def build_sweep_db(folder: Path) -> Path:
    """Relative to the real clock (the CLI's): old-1, old-2 (agent) and old-notes
    (notes) idle 10 days, pre (agent) archived 10 days ago, recent (agent) idle 1 day."""
    clock = FakeClock(start_ms=real_now_ms() - 10 * DAY_MS)
    db = folder / "sweep.db"
    with Runtime.open(db, clock=clock, config=QUIET) as rt:
        for name, view in (("old-1", "agent"), ("old-2", "agent"), ("old-notes", "notes")):
            block = rt.blocks.get(name, view=view)
            block.append_output(f"output of {name}\n".encode()[:16] * 50)
            block.flush()
        pre = rt.blocks.get("pre")
        pre.append_output(b"archived long ago\n" * 10)
        pre.archive()
        clock.advance(9 * 86_400)
        recent = rt.blocks.get("recent")
        recent.append_output(b"still here\n")
        recent.flush()
    return db


def snapshot(db: Path) -> tuple[Any, ...]:
    """Everything a sweep could change: metadata, files, the archive folder."""
    store = look(db)
    try:
        objects = [(o.id, o.meta, o.version) for o in store.list_objects("block")]
        files = [[(f.name, f.size) for f in store.list_files("block", o[0])] for o in objects]
    finally:
        store.close()
    archives = db.with_name(db.name + ".archives")
    return objects, files, sorted((p.name, p.stat().st_size) for p in archives.iterdir())


def test_sweep_dry_run_reports_and_changes_nothing(tmp_path: Path) -> None:
    db = build_sweep_db(tmp_path)
    before = snapshot(db)
    [(pre_name, pre_size)] = before[2]
    result = cli("sweep", db, "--dry-run", "--inactive-days", "5", "--max-archive-bytes", "0")
    assert result.returncode == 0, result.stderr
    assert text(result).splitlines() == [
        "would archive old-1 (800 bytes)",
        "would archive old-2 (800 bytes)",
        f"would prune {pre_name} (block pre, {pre_size} bytes)",
        "settings: agent blocks idle 5 days or more; archive budget 0 bytes",
        f"dry run, nothing changed: would archive 2 blocks, prune 1 archive, free "
        f"{1600 + pre_size:,} bytes",
    ]
    assert result.stderr == b""  # no terminal: no progress bar
    document = json.loads(
        cli(
            "sweep", db, "--dry-run", "--inactive-days", "5", "--max-archive-bytes", "0", "--json"
        ).stdout
    )
    assert document["dry_run"] is True
    assert [item["block_id"] for item in document["archived"]] == ["old-1", "old-2"]
    assert [item["block_id"] for item in document["pruned"]] == ["pre"]
    assert document["bytes_freed"] == 1600 + pre_size
    assert snapshot(db) == before


def test_sweep_with_the_defaults_archives_agent_blocks_idle_a_week(tmp_path: Path) -> None:
    db = build_sweep_db(tmp_path)
    result = cli("sweep", db)
    assert result.returncode == 0, result.stderr
    assert text(result).splitlines() == [
        "archived old-1 (800 bytes)",
        "archived old-2 (800 bytes)",
        "settings: agent blocks idle 7 days or more; archive budget 2,147,483,648 bytes",
        "swept: archived 2 blocks, pruned 0 archives, freed 1,600 bytes",
    ]
    assert result.stderr == b""
    assert cli("export", db, "old-1").stdout == b"output of old-1\n" * 50


def test_sweep_with_overrides_archives_then_prunes(tmp_path: Path) -> None:
    db2 = build_sweep_db(tmp_path)
    result = cli("sweep", db2, "--inactive-days", "0.5", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["inactive_days"] == 0.5
    assert document["max_archive_bytes"] == 2 * 1024**3
    assert [item["block_id"] for item in document["archived"]] == ["old-1", "old-2", "recent"]
    assert all(Path(item["path"]).exists() for item in document["archived"])
    assert document["pruned"] == document["failed"] == []
    assert document["archived_count"] == 3

    result = cli("sweep", db2, "--max-archive-bytes", "0", "--json")
    document = json.loads(result.stdout)
    pruned = [item["block_id"] for item in document["pruned"]]
    assert pruned[0] == "pre"  # oldest first
    assert sorted(pruned) == ["old-1", "old-2", "pre", "recent"]
    states = {b["id"]: b["state"] for b in json.loads(cli("blocks", db2, "--json").stdout)}
    assert states == {
        "old-1": "pruned",
        "old-2": "pruned",
        "old-notes": "live",
        "pre": "pruned",
        "recent": "pruned",
    }
    result = cli("export", db2, "old-1")
    assert result.returncode == 1
    assert "its archive was pruned" in one_error_line(result)


def test_a_sweep_item_that_fails_is_a_warning_and_exit_1(tmp_path: Path) -> None:
    db = build_sweep_db(tmp_path)
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("in the way\n")
    result = cli("sweep", db, "--inactive-days", "5", "--archive-dir", not_a_folder)
    assert result.returncode == 1
    warnings = result.stderr.decode().splitlines()
    assert [line.split(":")[:2] for line in warnings] == [["greenroom", " warning"]] * 2
    assert "could not archive block 'old-1'" in warnings[0]
    assert "swept: archived 0 blocks" in text(result)
    document = json.loads(
        cli("sweep", db, "--inactive-days", "5", "--archive-dir", not_a_folder, "--json").stdout
    )
    assert [(f["phase"], f["block_id"]) for f in document["failed"]] == [
        ("archive", "old-1"),
        ("archive", "old-2"),
    ]


def test_sweep_draws_a_progress_bar_when_stderr_is_a_terminal(tmp_path: Path) -> None:
    db = build_sweep_db(tmp_path)
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "greenroom.cli", "sweep", str(db), "--inactive-days", "5"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=terminal,
    )
    os.close(terminal)
    drawn = bytearray()
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        drawn += chunk
    os.close(controller)
    out, _ = proc.communicate(timeout=50)
    assert proc.returncode == 0
    assert b"archiving [" in drawn
    assert b"] 2/2 old-2" in drawn
    assert drawn.startswith(b"\r")
    assert drawn.rstrip(b" ").endswith(b"\r")  # the line is cleared at the end
    assert b"swept: archived 2 blocks" in out  # the report itself goes to stdout


# -- the two JSON shapes ----------------------------------------------------------------------


def test_json_is_one_array_of_rows_for_a_listing_and_one_object_otherwise(
    world: World, tmp_path: Path
) -> None:
    db = build_sweep_db(tmp_path)
    runs = {
        "blocks": cli("blocks", db, "--json"),
        "show": cli("show", db, "old-1", "--json"),
        "export": cli("export", db, "old-1", "--json"),
        "archive": cli("archive", db, "old-1", "--json"),
        "restore": cli("restore", db, "old-1", "--json"),
        "sweep": cli("sweep", db, "--dry-run", "--inactive-days", "5", "--json"),
        "transcript": cli("transcript", world.transcript, "--json"),
    }
    assert set(runs) == set(COMMANDS)
    for command, result in runs.items():
        assert result.returncode == 0, (command, result.stderr)
        document = json.loads(result.stdout)  # the whole of stdout is one document
        if command == "blocks":
            assert isinstance(document, list)
            assert [row["id"] for row in document] == [
                "old-1",
                "old-2",
                "old-notes",
                "pre",
                "recent",
            ]
            assert len(text(result).splitlines()) == len(document)  # a row a line
        else:
            assert isinstance(document, dict), command
    sweep = json.loads(runs["sweep"].stdout)
    assert [item["block_id"] for item in sweep["archived"]] == ["old-1", "old-2"]
    for key in ("archived", "pruned", "skipped", "failed"):
        assert all(set(item) >= {"block_id", "path", "bytes"} for item in sweep[key]), key


def test_paths_that_come_back_as_path_objects_are_written_as_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Runtime.path, ArchiveResult.path and SweepProgress.path as `pathlib.Path`s (the
    # target design) rather than the `str`s of today: the output is the same.
    db = build_sweep_db(tmp_path)
    original_path = Runtime.path
    original_archive = Block.archive
    original_sweep = Blocks.sweep
    assert isinstance(original_path, property)
    assert original_path.fget is not None
    fget = original_path.fget

    def archive(self: Block) -> ArchiveResult:
        result = original_archive(self)
        return attrs.evolve(result, path=None if result.path is None else Path(result.path))

    def sweep(self: Blocks, *, progress: Any = None, **options: Any) -> SweepStats:
        def as_paths(event: SweepProgress) -> None:
            progress(attrs.evolve(event, path=None if event.path is None else Path(event.path)))

        return original_sweep(self, progress=as_paths, **options)

    monkeypatch.setattr(Runtime, "path", property(lambda self: Path(fget(self))))
    monkeypatch.setattr(Block, "archive", archive)
    monkeypatch.setattr(Blocks, "sweep", sweep)

    assert main(["show", str(db), "ghost"]) == 1
    assert capsys.readouterr().err == f"greenroom: error: no block 'ghost' in {str(db)!r}\n"
    assert main(["archive", str(db), "old-1", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert isinstance(document["path"], str)
    assert Path(document["path"]).parent == db.with_name("sweep.db.archives")
    assert main(["archive", str(db), "old-1"]) == 0
    assert capsys.readouterr().out == (
        f"block 'old-1' has no new output: it is archived already ({document['path']})\n"
    )
    sweep_args = ["sweep", str(db), "--inactive-days", "5", "--max-archive-bytes", "0", "--json"]
    assert main(sweep_args) == 0
    swept = json.loads(capsys.readouterr().out)
    assert [item["block_id"] for item in swept["archived"]] == ["old-2"]
    assert all(isinstance(item["path"], str) for item in swept["archived"] + swept["pruned"])
    assert document["path"] in [item["path"] for item in swept["pruned"]]


# -- transcript -------------------------------------------------------------------------------


def test_transcript_shows_context_usage_cost_and_a_clean_recovery(world: World) -> None:
    result = cli("transcript", world.transcript)
    assert result.returncode == 0, result.stderr
    out = text(result)
    assert f"transcript  {world.transcript}\n" in out
    assert f"model       {MODEL}\n" in out
    assert "cwd         /repo\n" in out
    assert "context     4 messages, ~1,055 tokens\n" in out
    assert "usage       2,050 input, 25 output, 0 cache read, 0 cache write (2,075 tokens)\n" in out
    assert "cost        $0.0065 (input $0.0062, output $0.0004," in out
    assert "recovery    clean\n" in out
    assert out.endswith(
        "active context:\n"
        "  #1     user        list the files\n"
        '  #2     assistant   [calls bash({"cmd": "ls"})]\n'
        "  #3     tool_result README.md\\nruntime/\\n\n"
        "  #4     assistant   Two entries.\n"
    )


def test_transcript_json(world: World) -> None:
    document = json.loads(cli("transcript", world.transcript, "--json").stdout)
    assert document["model"] == MODEL
    assert document["cwd"] == "/repo"
    assert document["entries"] == 4
    assert document["next_entry_id"] == "6"
    assert document["leaf_id"] == "4"
    assert document["usage"] == {
        "input_tokens": 2_050,
        "output_tokens": 25,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "total_tokens": 2_075,
    }
    assert document["cost"]["total"] == pytest.approx(2_050 * 3 / 1e6 + 25 * 15 / 1e6)
    assert document["cost"]["currency"] == "USD"
    context = document["context"]
    assert context["messages"] == 4
    assert context["tokens"] == 1_055
    assert [item["role"] for item in context["items"]] == [
        "user",
        "assistant",
        "tool_result",
        "assistant",
    ]
    assert context["items"][1]["tool_calls"] == [
        {"id": "c1", "name": "bash", "arguments": {"cmd": "ls"}}
    ]
    assert document["recovery"]["clean"] is True
    assert document["recovery"]["notes"] == []
    unpriced = json.loads(cli("transcript", world.transcript, "--model", "acme:x", "--json").stdout)
    assert unpriced["cost"] is None
    assert "cost        unknown (no price for model 'acme:x')" in text(
        cli("transcript", world.transcript, "--model", "acme:x")
    )


def test_a_damaged_transcript_is_reported_and_left_as_it_is(world: World, tmp_path: Path) -> None:
    original = world.transcript.read_bytes()
    lines = original.count(b"\n")
    damaged = tmp_path / "damaged.jsonl"
    partial = b'{"type":"message","id":"9","parent_id":"4","timest'
    damaged.write_bytes(original + b"this is not json\n" + partial)
    result = cli("transcript", damaged, "--json")
    assert result.returncode == 0, result.stderr
    recovery = json.loads(result.stdout)["recovery"]
    assert recovery["clean"] is False
    assert recovery["corrupt_lines"] == [lines + 1]
    assert recovery["truncated_line"] == lines + 2
    assert recovery["truncated_bytes"] == len(partial)
    assert recovery["repair"] == "cut_off"
    assert recovery["notes"][0] == (
        f"line {lines + 2}: cut short by a crash mid-write ({len(partial)} bytes); a resume "
        "would cut it off (the file would end at the last whole line)"
    )
    assert f"line {lines + 1}: skipped" in recovery["notes"][1]
    assert len(recovery["notes"]) == 2
    out = text(cli("transcript", damaged))
    assert "recovery    findings below (the file was not changed)\n" in out
    assert "context     4 messages" in out  # the intact entries are all read
    assert damaged.read_bytes() == original + b"this is not json\n" + partial  # not repaired

    whole = tmp_path / "no-newline.jsonl"
    whole.write_bytes(original.rstrip(b"\n"))
    recovery = json.loads(cli("transcript", whole, "--json").stdout)["recovery"]
    assert recovery["repair"] == "add_newline"
    assert recovery["notes"] == [
        f"line {lines}: a whole entry missing its newline; a resume would add it"
    ]
    assert whole.read_bytes() == original.rstrip(b"\n")


def test_transcript_errors_are_one_line(tmp_path: Path) -> None:
    result = cli("transcript", tmp_path / "none.jsonl")
    assert result.returncode == 1
    assert one_error_line(result).startswith("no transcript file at ")
    other = tmp_path / "other.jsonl"
    other.write_text('{"hello": "world"}\n')
    result = cli("transcript", other)
    assert result.returncode == 1
    assert "is not a transcript" in one_error_line(result)


# -- the console script and interruptions --------------------------------------------------


def test_the_installed_console_script_exits_with_mains_status(world: World) -> None:
    script = Path(sys.executable).parent / "greenroom"
    if not script.exists():
        pytest.skip("greenroom is not installed beside this interpreter")
    run = [str(script), "blocks", str(world.db)]
    assert subprocess.run(run, capture_output=True, timeout=50, check=False).returncode == 0
    run = [str(script), "show", str(world.db), "ghost"]
    failed = subprocess.run(run, capture_output=True, timeout=50, check=False)
    assert failed.returncode == 1
    assert failed.stderr.decode().startswith("greenroom: error: no block 'ghost'")
    run = [str(script), "show"]
    assert subprocess.run(run, capture_output=True, timeout=50, check=False).returncode == 2


@pytest.mark.parametrize(
    "command",
    [("blocks",), ("blocks", "--json"), ("show", "pane-1"), ("export", "bin")],
    ids=["blocks", "blocks-json", "show", "export"],
)
def test_a_reader_that_goes_away_is_exit_0_quietly(world: World, command: tuple[str, ...]) -> None:
    # `greenroom blocks app.db | head -1`, made certain: the reader is gone before the
    # first write.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "greenroom.cli", command[0], str(world.db), *command[1:]],
            stdin=subprocess.DEVNULL,
            stdout=write_end,
            stderr=subprocess.PIPE,
        )
    finally:
        os.close(write_end)
    _out, err = proc.communicate(timeout=50)
    assert proc.returncode == 0
    assert err == b""


def test_ctrl_c_exits_130_quietly(tmp_path: Path) -> None:
    # (A FIFO as the transcript would be refused now: the read is made slow instead.)
    ready = tmp_path / "ready"
    os.mkfifo(ready)
    child = textwrap.dedent(
        f"""
        import sys
        import threading
        import greenroom.cli.transcript as command
        from greenroom.cli import main

        def load(path):  # a read that takes long: the command is under way, waiting
            open({str(ready)!r}, "wb").close()
            threading.Event().wait()

        command.load = load
        sys.exit(main(["transcript", "any.jsonl"]))
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", child],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    with open(ready, "rb"):  # returns once the child is inside the command
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=50)
    assert proc.returncode == 130
    assert out == err == b""


def test_ctrl_c_during_a_sweep_closes_the_runtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = build_sweep_db(tmp_path)
    closed: list[Runtime] = []
    original_close = Runtime.close

    def interrupted(self: Blocks, **_options: Any) -> SweepStats:
        raise KeyboardInterrupt

    def close(self: Runtime) -> None:
        closed.append(self)
        original_close(self)

    monkeypatch.setattr(Blocks, "sweep", interrupted)
    monkeypatch.setattr(Runtime, "close", close)
    assert main(["sweep", str(db)]) == 130
    assert capsys.readouterr() == ("", "")
    assert len(closed) == 1
    assert closed[0].closed


def test_main_returns_usage_and_help_statuses_instead_of_raising(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("greenroom ")
    assert main(["show"]) == 2
    assert "required: DB, BLOCK" in capsys.readouterr().err


# -- Runtime.sweep options (what the CLI's sweep uses) -------------------------------------

DAY = 86_400.0


def _idle_blocks(rt: Runtime, clock: FakeClock) -> None:
    for name in ("a", "b"):
        block = rt.blocks.get(name)
        block.append_output(name.encode() * 99 + b"\n")
        block.flush()
    clock.advance(3 * DAY)


def test_a_dry_run_plans_what_the_sweep_then_does(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock
) -> None:
    rt = open_rt()
    _idle_blocks(rt, fake_clock)
    events: list[Any] = []
    dry = rt.blocks.sweep(inactive_days=2, dry_run=True, progress=events.append)
    assert dry == SweepStats(2, 0, 200)
    assert [(e.phase, e.done, e.total, e.outcome, e.block_id, e.bytes) for e in events] == [
        ("archive", 0, 2, "started", None, 0),
        ("archive", 1, 2, "would_archive", "a", 100),
        ("archive", 2, 2, "would_archive", "b", 100),
        ("prune", 0, 0, "started", None, 0),
    ]
    assert all(e.dry_run for e in events)
    assert not rt.blocks.archive_dir.exists()
    assert rt.metrics()["sweeps"] == 0  # a dry run is not a sweep
    assert rt.blocks.sweep() == SweepStats()  # the config's 7 days: nothing yet
    events.clear()
    assert rt.blocks.sweep(inactive_days=2, progress=events.append) == dry
    assert [e.outcome for e in events] == ["started", "archived", "archived", "started"]
    assert all(Path(e.path).exists() for e in events if e.outcome == "archived")


def test_a_dry_run_prune_leaves_out_the_archives_an_archive_would_replace(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock
) -> None:
    rt = open_rt()
    block = rt.blocks.get("a")
    block.append_output(b"first\n")
    block.archive()
    block.append_output(b"then more\n")  # live again: the next archive replaces the file
    block.flush()
    fake_clock.advance(3 * DAY)
    dry = rt.blocks.sweep(inactive_days=1, max_archive_bytes=0, dry_run=True)
    assert dry == SweepStats(1, 0, len(b"first\nthen more\n"))
    real = rt.blocks.sweep(inactive_days=1, max_archive_bytes=0)
    assert (real.archived_count, real.pruned_count) == (1, 1)  # its new archive, pruned


@pytest.mark.parametrize(
    "options",
    [
        {"inactive_days": -1},
        {"inactive_days": float("nan")},
        {"inactive_days": True},
        {"max_archive_bytes": -1},
        {"max_archive_bytes": 1.5},
        {"dry_run": "yes"},
        {"progress": "not callable"},
    ],
)
def test_bad_sweep_options_are_invalid_input(
    open_rt: Callable[..., Runtime], options: dict[str, Any]
) -> None:
    rt = open_rt()
    with pytest.raises(InvalidInput):
        rt.blocks.sweep(**options)


def test_a_progress_callback_that_raises_does_not_stop_the_sweep(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock
) -> None:
    rt = open_rt()
    _idle_blocks(rt, fake_clock)
    calls: list[Any] = []

    def broken(event: Any) -> None:
        calls.append(event)
        raise RuntimeError("display gone")

    assert rt.blocks.sweep(inactive_days=1, progress=broken).archived_count == 2
    assert len(calls) == 1  # not called again after it raised


def test_a_sweep_with_options_waits_for_the_running_one_and_gets_its_own_result(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = open_rt()
    old = rt.blocks.get("old")
    old.append_output(b"old output\n")
    old.flush()
    fake_clock.advance(8 * DAY)
    fresh = rt.blocks.get("fresh")
    fresh.append_output(b"fresh output\n")
    fresh.flush()
    entered, go = threading.Event(), threading.Event()
    original = greenroom.actors.block.write_archive

    def held(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        assert go.wait(20)
        return original(*args, **kwargs)

    monkeypatch.setattr(greenroom.actors.block, "write_archive", held)
    results: dict[str, Any] = {}

    def run(name: str, **options: Any) -> threading.Thread:
        def target() -> None:
            results[name] = rt.blocks.sweep(**options)

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        return thread

    threads = [run("plain")]
    assert entered.wait(20)  # the plain sweep is archiving "old"
    handled = rt.metrics()["messages_handled"]  # nothing else runs while "old" is held
    threads.append(run("everything", inactive_days=0))
    threads.append(run("joined"))
    # Both asks must have reached the sweeper (queued, joined) before the first ends.
    deadline = stopwatch() + 20
    while rt.metrics()["messages_handled"] < handled + 2:
        assert stopwatch() < deadline, "the sweeper did not take the two sweep() calls"
    go.set()
    for thread in threads:
        thread.join(20)
    assert results["plain"] == results["joined"] == SweepStats(1, 0, len(b"old output\n"))
    assert results["everything"] == SweepStats(1, 0, len(b"fresh output\n"))
    assert fresh.meta().get("session:archive_path")


def test_verbose_shows_the_runtimes_log_on_stderr(world: World) -> None:
    quiet = cli("blocks", world.db)
    assert quiet.stderr == b""
    loud = cli("blocks", world.db, "-v")
    assert loud.returncode == 0
    assert loud.stdout == quiet.stdout
    assert "greenroom: log: INFO greenroom.runtime: runtime opened on" in loud.stderr.decode()
