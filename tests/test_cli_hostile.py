"""The `greenroom` command line never prints a traceback, whatever the database holds.

Metadata a public call can write (`session:last_activity_ms = 10**17`, a string, -1)
is shown as it is, or as `unknown (...)`, and the listing goes on; rows a person edited
by hand (metadata that is not JSON, file rows of the wrong type, damaged chunks) are
one `greenroom: error: ...` line and exit status 1, or, in a listing, an `unreadable`
row and a warning. A Hypothesis test mutates a real database with random SQL and runs
every command on it. Commands run in-process through `greenroom.cli.main`.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import greenroom.cli.common
from greenroom import FakeClock, Runtime
from greenroom.cli import main

from .conftest import QUIET, START_MS

BLOCKS = ("live", "arch", "both", "empty")


@attrs.frozen
class Run:
    """One command's exit status and output."""

    status: int
    out: bytes
    err: str

    @property
    def text(self) -> str:
        return self.out.decode("utf-8", "replace")


def run(*argv: str | Path) -> Run:
    """`greenroom ARGV` in this process, stdout and stderr captured."""
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True)
    err = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(arg) for arg in argv])
    return Run(status, out.buffer.getvalue(), err.getvalue())  # type: ignore[attr-defined]


def assert_no_traceback(result: Run, argv: tuple[str | Path, ...] = ()) -> None:
    """Exit 0 or 1; stderr only `greenroom: error:` / `warning:` lines, none the guard's."""
    assert result.status in (0, 1), (argv, result)
    for line in result.err.splitlines():
        assert line.startswith(("greenroom: error: ", "greenroom: warning: ")), (argv, line)
        # The last-resort guard is for bugs; every hostile database has a real answer.
        assert not line.startswith("greenroom: error: unexpected "), (argv, line)
        assert "an actor stopped" not in line, (argv, line)
    assert "Traceback" not in result.err


def one_error(result: Run) -> str:
    assert result.status == 1, result
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("greenroom: error: "), lines
    return lines[0].removeprefix("greenroom: error: ")


def _sql(db: Path, sql: str, params: tuple[Any, ...] = ()) -> None:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute(sql, params)
        conn.commit()


def _build(folder: Path) -> Path:
    """live (agent, live output, metadata), arch (archived), both (archived, then new
    output), empty (notes, no output)."""
    clock = FakeClock(start_ms=START_MS)
    db = folder / "app.db"
    with Runtime.open(db, clock=clock, config=QUIET) as rt:
        live = rt.blocks.get("live")
        live.append_output(b"line one\nline two\n")
        live.update_meta({"title": "t", "nested": [1, {"x": 2}]})
        live.flush()
        arch = rt.blocks.get("arch")
        arch.append_output(b"archived\n" * 50)
        arch.flush()
        arch.archive()
        both = rt.blocks.get("both")
        both.append_output(b"old\n" * 20)
        both.flush()
        both.archive()
        both.append_output(b"new\n")
        both.flush()
        rt.blocks.get("empty", view="notes")
    return db


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of a database (and its archives) that tests copy, never change."""
    folder = tmp_path_factory.mktemp("base")
    _build(folder)
    return folder


@contextlib.contextmanager
def copy_of(base: Path) -> Iterator[Path]:
    """A fresh copy of the base database (with its archive folder); its path."""
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work) / "db"
        shutil.copytree(base, folder)
        yield folder / "app.db"


def _update_meta(db: Path, block: str, update: dict[str, Any]) -> None:
    with Runtime.open(db, clock=FakeClock(start_ms=START_MS), config=QUIET) as rt:
        rt.blocks.get(block).update_meta(update)


# -- metadata a public call can write ----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        pytest.param(10**17, "unknown (100000000000000000)", id="1e17"),
        pytest.param(-(10**17), "unknown (-100000000000000000)", id="-1e17"),
        pytest.param(10**3000, "unknown (an int of 3,001 digits)", id="3001-digits"),
        pytest.param("yesterday", "unknown ('yesterday')", id="text"),
        pytest.param(1.5, "unknown (1.5)", id="float"),
        pytest.param([1, [2]], "unknown ([1, [2]])", id="list"),
        pytest.param(-1, "1969-12-31T23:59:59.999Z", id="-1"),
    ],
)
def test_times_no_date_can_show_are_unknown_and_the_listing_goes_on(
    base: Path, value: Any, shown: str
) -> None:
    with copy_of(base) as db:
        _update_meta(db, "live", {"session:last_activity_ms": value, "session:start_ts_ms": value})
        listing = run("blocks", db)
        assert (listing.status, listing.err) == (0, "")
        rows = {line.split()[0]: line for line in listing.text.splitlines()[1:]}
        assert set(rows) == set(BLOCKS)
        assert shown in rows["live"]
        rows_json = {row["id"]: row for row in json.loads(run("blocks", db, "--json").out)}
        expected_ms = value if type(value) is int and value else None
        assert rows_json["live"]["last_activity_ms"] == expected_ms
        assert rows_json["live"]["last_activity"] == (None if "unknown" in shown else shown)
        show = run("show", db, "live")
        assert (show.status, show.err) == (0, "")
        assert f"last activity  {shown}\n" in show.text
        assert f"started        {shown}\n" in show.text
        document = json.loads(run("show", db, "live", "--json").out)
        assert document["meta"]["session:last_activity_ms"] == value
        for command in (("export", "live"), ("sweep", "--dry-run", "--inactive-days", "0")):
            assert_no_traceback(run(command[0], db, *command[1:]))


def test_archive_times_and_the_pruned_time_no_date_can_show(base: Path) -> None:
    with copy_of(base) as db:
        _update_meta(db, "arch", {"session:archived_at": 10**17})
        _update_meta(db, "empty", {"session:archive_pruned_at": 10**18})
        show = run("show", db, "arch")
        assert show.status == 0, show
        assert "archived at    unknown (100000000000000000)\n" in show.text
        pruned = run("show", db, "empty")
        assert "archive pruned  unknown (1000000000000000000)\n" in pruned.text
        assert "unknown (1000000000000000000)" in one_error(run("export", db, "empty"))
        assert "unknown (1000000000000000000)" in one_error(run("restore", db, "empty"))


def test_control_characters_in_metadata_do_not_reach_the_terminal(base: Path) -> None:
    with copy_of(base) as db:
        _update_meta(db, "live", {"view": "agent\n\x1b[2Jfake row", "k\x1b]0;title\x07": 1})
        listing = run("blocks", db)
        assert "\x1b" not in listing.text
        assert len(listing.text.splitlines()) == 1 + len(BLOCKS)
        assert "agent\\n\\x1b[2Jfake" in listing.text
        show = run("show", db, "live")
        assert "\x1b" not in show.text
        assert "\x07" not in show.text


# -- rows edited by hand ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "error"),
    [
        ("UPDATE objects SET meta = 'not json' WHERE id = 'live'", "not valid JSON"),
        ("UPDATE objects SET meta = '[1]' WHERE id = 'live'", "not an object"),
        ("UPDATE objects SET meta = '{\"a\": NaN}' WHERE id = 'live'", "NaN"),
        ("UPDATE objects SET version = 'x' WHERE id = 'live'", "version"),
        ("UPDATE files SET size = -5 WHERE id = 'live'", "size"),
        ("UPDATE files SET name = x'01' WHERE id = 'live'", "name"),
    ],
)
def test_a_hand_edited_block_is_one_error_line_and_a_listing_shows_it_unreadable(
    base: Path, sql: str, error: str
) -> None:
    with copy_of(base) as db:
        _sql(db, sql)
        for command in ("show", "export", "archive", "restore"):
            message = one_error(run(command, db, "live"))
            assert "live" in message
            assert error in message
        listing = run("blocks", db)
        assert listing.status == 1
        [warning] = listing.err.splitlines()
        assert warning.startswith("greenroom: warning: block live cannot be read: ")
        assert error in warning
        rows = [line.split() for line in listing.text.splitlines()[1:]]
        assert [row[0] for row in rows if row[-2:] != ["unreadable", "?"]] == [
            "arch",
            "both",
            "empty",
        ]
        assert ["live", "?", "?", "?", "?", "unreadable", "?"] in rows
        rows_json = json.loads(run("blocks", db, "--json").out)
        [bad] = [row for row in rows_json if row["state"] == "unreadable"]
        assert bad["id"] == "live"
        assert error in bad["error"]
        assert {row["id"] for row in rows_json} == set(BLOCKS)
        # The others are served as ever.
        assert run("export", db, "arch").out == b"archived\n" * 50


def test_a_damaged_chunk_is_one_error_line(base: Path) -> None:
    with copy_of(base) as db:
        _sql(db, "UPDATE file_chunks SET data = 'text' WHERE id = 'live'")
        for command in ("export", "archive"):
            assert "damaged" in one_error(run(command, db, "live"))
        assert_no_traceback(run("sweep", db, "--dry-run", "--inactive-days", "0"))


# -- the last resort ----------------------------------------------------------------------------


def test_an_unexpected_failure_is_one_line_and_its_traceback_is_logged_at_debug(
    base: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A bug stands in for whatever nobody foresaw: formatting a time raises.
    def broken(ms: int) -> str:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(greenroom.cli.common, "iso_utc", broken)
    with copy_of(base) as db, caplog.at_level(logging.DEBUG, logger="greenroom.cli"):
        result = run("blocks", db)
    assert one_error(result) == ("unexpected ZeroDivisionError: a bug (run with -vv for details)")
    [record] = [r for r in caplog.records if r.name == "greenroom.cli"]
    assert record.levelno == logging.DEBUG
    assert record.exc_info is not None
    assert record.exc_info[0] is ZeroDivisionError


# -- any mutation of a real database -------------------------------------------------------------

VALUES = st.sampled_from(
    [
        10**17,
        -1,
        0,
        2**63 - 1,
        -(2**63),
        1.5,
        1e308,
        "x",
        "",
        "\x00",
        "../../etc/passwd",
        "/etc/passwd",
        "a\x00b",
        None,
        True,
        [],
        {},
        [1, [2]],
        b"\x00\xff",
        "z" * 3000,
    ]
)
META_KEYS = st.sampled_from(
    [
        "session:last_activity_ms",
        "session:start_ts_ms",
        "session:line_count",
        "session:token_estimate",
        "session:archive_path",
        "session:archive_backup_path",
        "session:archived_at",
        "session:archived_bytes",
        "session:archive_pruned_at",
        "session:open_line_counted",
        "view",
        "title",
    ]
)
META_TEXT = st.sampled_from(
    [
        "not json",
        "[1, 2]",
        "5",
        "null",
        '{"a": NaN}',
        '{"a": 1e999}',
        '{"a": "\\ud800"}',
        '{"n": ' + "9" * 5000 + "}",
        '{"a": ' + "[" * 3000 + "]" * 3000 + "}",
        '{"a": ' + "[" * 150 + "]" * 150 + "}",
    ]
)


def _json_value(value: Any) -> str:
    # (bytes stand for a value json cannot hold: a hex string instead.)
    return json.dumps(value.hex() if isinstance(value, bytes) else value)


@st.composite
def mutations(draw: st.DrawFn) -> list[tuple[str, tuple[Any, ...]]]:
    """A few SQL statements that edit a block's rows as a person with the file could."""
    statements: list[tuple[str, tuple[Any, ...]]] = []
    for _ in range(draw(st.integers(1, 3))):
        block = draw(st.sampled_from(BLOCKS))
        kind = draw(st.sampled_from(["key", "meta", "object", "file", "chunk", "drop"]))
        if kind == "key":
            key, value = draw(META_KEYS), draw(VALUES)
            statements.append(
                (
                    "UPDATE objects SET meta = json_set(meta, ?, json(?)) WHERE id = ?",
                    (f'$."{key}"', _json_value(value), block),
                )
            )
        elif kind == "meta":
            statements.append(
                ("UPDATE objects SET meta = ? WHERE id = ?", (draw(META_TEXT), block))
            )
        elif kind == "object":
            column = draw(st.sampled_from(["version", "created_ms", "updated_ms"]))
            statements.append(
                (f"UPDATE objects SET {column} = ? WHERE id = ?", (draw(VALUES), block))
            )
        elif kind == "file":
            column = draw(
                st.sampled_from(["size", "chunks", "next_seq", "created_ms", "updated_ms", "name"])
            )
            value = draw(st.one_of(VALUES, st.sampled_from(["output.restoring", "output"])))
            statements.append((f"UPDATE files SET {column} = ? WHERE id = ?", (value, block)))
        elif kind == "chunk":
            column = draw(st.sampled_from(["data", "start", "seq"]))
            value = draw(st.one_of(VALUES, st.sampled_from([b"", b"xx\n"])))
            statements.append((f"UPDATE file_chunks SET {column} = ? WHERE id = ?", (value, block)))
        else:
            statements.append(
                (
                    "DELETE FROM file_chunks WHERE rowid IN "
                    "(SELECT rowid FROM file_chunks WHERE id = ? LIMIT 1)",
                    (block,),
                )
            )
    return statements


def _mutate(db: Path, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        for sql, params in statements:
            # (A value SQLite refuses, such as a NOT NULL column set to NULL, is no edit.)
            with contextlib.suppress(sqlite3.Error, OverflowError):
                conn.execute(sql, params)
        conn.commit()


COMMANDS: list[tuple[str, ...]] = [
    ("blocks",),
    ("show", "{block}"),
    ("export", "{block}"),
    ("archive", "{block}"),
    ("restore", "{block}"),
    ("sweep", "--dry-run"),
]
# A sweep that plans everything: every block idle enough, every archive over budget.
EAGER_SWEEP = ("--inactive-days", "0", "--max-archive-bytes", "0")


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    statements=mutations(),
    block=st.sampled_from(BLOCKS),
    as_json=st.booleans(),
    eager=st.booleans(),
)
def test_every_command_on_a_mutated_database_is_an_answer_never_a_traceback(
    base: Path,
    statements: list[tuple[str, tuple[Any, ...]]],
    block: str,
    as_json: bool,
    eager: bool,
) -> None:
    with copy_of(base) as db:
        _mutate(db, statements)
        for command in COMMANDS:
            argv: tuple[str | Path, ...] = (
                command[0],
                db,
                *(part.format(block=block) for part in command[1:]),
            )
            if as_json and command[0] != "export":  # (export --json: base64 of the bytes)
                argv += ("--json",)
            if eager and command[0] == "sweep":
                argv += EAGER_SWEEP
            assert_no_traceback(run(*argv), (*argv, statements))
