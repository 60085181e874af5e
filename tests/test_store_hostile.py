"""The store against other processes and hostile databases.

Two (or more) processes creating the same new database at once all succeed; the
database is created private (0600, its folder 0700, SQLite's side files alike); and
whatever a hand-edited database holds reads back as a `StorageError` naming the row,
never as a bare `ValueError`, `RecursionError`, `TypeError` or `OverflowError`.
Rows are edited with plain sqlite3, as a person with the file would.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greenroom import FakeClock, Runtime, RuntimeConfig, Store
from greenroom.errors import GreenroomError, InvalidInput, NotFound, StorageError
from greenroom.meta import MAX_META_DEPTH
from greenroom.models import UnreadableObject
from tests.stores import sqlite_store

from .conftest import QUIET

# -- helpers ---------------------------------------------------------------------------------


def _sql(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement with plain sqlite3 (no greenroom) and commit."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        rows = conn.execute(sql, params).fetchall()
        conn.commit()
    return rows


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _raised(call: Callable[[], object]) -> Exception | None:
    """What `call` raised, or `None`."""
    try:
        call()
    except Exception as error:
        return error
    return None


def _store(path: Path) -> contextlib.AbstractContextManager[Store]:
    return sqlite_store(path)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A database with block b1 (metadata, an `output` file of three chunks) and b2."""
    path = tmp_path / "hostile.db"
    store = Store.open(path, now_ms=FakeClock().now_ms, chunk_bytes=4)
    store.ensure_object("block", "b1", {"view": "agent", "n": 1})
    store.append_file("block", "b1", "output", b"0123456789", create=True)
    store.ensure_object("block", "b2", {"view": "notes"})
    store.close()
    return path


# -- two processes create one new database ----------------------------------------------------

# Each worker opens the path it reads on stdin, creates its own object and answers one
# line. The parent writes a path to several workers back to back, so they open it at
# the same moment; started once, they serve every round.
_WORKER = """
import sys
from greenroom.store import Store
name = sys.argv[1]
print("ready", flush=True)
for line in sys.stdin:
    try:
        store = Store.open(line.strip())
        try:
            store.ensure_object("block", name)
        finally:
            store.close()
    except Exception as error:
        print("error", type(error).__name__, " ".join(str(error).split()), flush=True)
    else:
        print("ok", flush=True)
"""

ROUNDS = 20
WORKERS = 4


def test_processes_creating_the_same_new_database_at_once_all_succeed(tmp_path: Path) -> None:
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, f"w{index}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for index in range(WORKERS)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == "ready"
        failures: list[str] = []
        for round_ in range(ROUNDS):
            taking = workers[: 2 + round_ % (WORKERS - 1)]  # 2, 3, 4, 2, ... at once
            path = tmp_path / f"round-{round_}" / "new.db"  # neither file nor folder yet
            for worker in taking:
                assert worker.stdin is not None
                worker.stdin.write(f"{path}\n")
            for worker in taking:
                assert worker.stdin is not None
                worker.stdin.flush()
            answers = [worker.stdout.readline().strip() for worker in taking]  # type: ignore[union-attr]
            failures += [f"round {round_}: {answer}" for answer in answers if answer != "ok"]
            if not failures:
                with _store(path) as store:
                    assert store.list_ids("block") == [f"w{i}" for i in range(len(taking))]
        assert failures == []
    finally:
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.close()
        for worker in workers:
            worker.wait(timeout=30)
    assert [worker.returncode for worker in workers] == [0] * WORKERS


# -- private files ------------------------------------------------------------------------------


def test_a_new_database_is_private_and_so_are_its_folder_and_side_files(tmp_path: Path) -> None:
    path = tmp_path / "new" / "deeper" / "app.db"
    with Runtime.open(path, clock=FakeClock(), config=QUIET) as rt:
        rt.store.ensure_object("block", "b1")
        # (SQLite makes -wal and -shm while the database is open, with the file's mode.)
        assert _mode(path) == 0o600
        assert _mode(path.with_name("app.db-wal")) == 0o600
        assert _mode(path.with_name("app.db-shm")) == 0o600
    assert _mode(path.parent) == _mode(path.parent.parent) == 0o700


def test_the_modes_follow_the_config_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "shared" / "app.db"
    previous = os.umask(0o077)
    try:
        config = RuntimeConfig(file_mode=0o640, dir_mode=0o750)
        with Runtime.open(path, clock=FakeClock(), config=config) as rt:
            rt.store.ensure_object("block", "b1")
            assert _mode(path.with_name("app.db-wal")) == 0o640
    finally:
        os.umask(previous)
    assert (_mode(path), _mode(path.parent)) == (0o640, 0o750)


def test_an_existing_database_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    Runtime.open(path, clock=FakeClock(), config=QUIET).close()
    path.chmod(0o644)
    with Runtime.open(path, clock=FakeClock(), config=QUIET) as rt:
        rt.store.ensure_object("block", "b1")
    assert _mode(path) == 0o644


def test_bad_modes_are_refused_before_anything_is_made(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "app.db"
    for options in ({"file_mode": -1}, {"file_mode": 0o10000}, {"dir_mode": "700"}):
        with pytest.raises(InvalidInput, match="mode"):
            Store.open(path, now_ms=FakeClock().now_ms, **options)
    assert not path.parent.exists()


# -- hostile metadata -------------------------------------------------------------------------

HOSTILE_META = [
    pytest.param("not json", "not valid JSON", id="not-json"),
    pytest.param("[1, 2]", "a JSON array, not an object", id="array"),
    pytest.param("5", "a JSON number, not an object", id="number"),
    pytest.param('"text"', "a JSON string, not an object", id="string"),
    pytest.param("null", "a JSON null, not an object", id="null"),
    pytest.param('{"a": ' + "[" * 5000 + "]" * 5000 + "}", "nests too deep", id="deep-5000"),
    pytest.param('{"a": ' + "[" * 150 + "]" * 150 + "}", "deeper than 100", id="deep-150"),
    pytest.param('{"n": ' + "9" * 5000 + "}", "digits", id="int-5000-digits"),
    pytest.param('{"n": ' + "9" * 4001 + "}", "digits", id="int-4001-digits"),
    pytest.param('{"a": NaN}', "NaN", id="nan"),
    pytest.param('{"a": -Infinity}', "Infinity", id="infinity"),
    pytest.param('{"a": 1e999}', "out of range", id="float-overflow"),
    pytest.param('{"a": "\\ud800"}', "lone surrogate", id="lone-surrogate"),
    pytest.param(b"{}", "bytes, not text", id="blob"),
]


# What SQLite's JSON functions refuse too (the others are JSON objects to SQLite).
NOT_AN_OBJECT = {
    "not valid JSON",
    "a JSON array, not an object",
    "a JSON number, not an object",
    "a JSON string, not an object",
    "a JSON null, not an object",
    "nests too deep",
    "NaN",
    "Infinity",
}


@pytest.mark.parametrize(("meta", "match"), HOSTILE_META)
def test_hostile_metadata_reads_as_a_storage_error_naming_the_object(
    db: Path, meta: str | bytes, match: str
) -> None:
    _sql(db, "UPDATE objects SET meta = ? WHERE id = 'b1'", (meta,))
    with _store(db) as store:
        for read in (
            lambda: store.get_object("block", "b1"),
            lambda: store.find_object("block", "b1"),
            lambda: store.list_objects("block"),
            lambda: store.update_meta("block", "b1", {"x": 1}),
            lambda: store.ensure_object("block", "b1"),
        ):
            with pytest.raises(StorageError, match=match) as info:
                read()
            assert "block 'b1'" in str(info.value)
        # A listing that asks to go on leaves it out and says why; the rest is intact.
        unreadable: list[UnreadableObject] = []
        assert [obj.id for obj in store.list_objects("block", unreadable=unreadable)] == ["b2"]
        assert [(u.kind, u.id) for u in unreadable] == [("block", "b1")]
        assert match in unreadable[0].error
        # Block stats are still written for the others (one that SQLite cannot edit as
        # a JSON object is skipped, and the count says so).
        changed = store.set_meta_values("block", {"b1": {"n": 2}, "b2": {"n": 2}})
        assert changed == (1 if match in NOT_AN_OBJECT else 2)
        assert store.get_object("block", "b2").meta["n"] == 2
        # Its files still read, and the object can be deleted.
        assert store.read_file("block", "b1", "output") == b"0123456789"
        store.delete_object("block", "b1")
        assert store.list_ids("block") == ["b2"]


def test_metadata_as_deep_as_allowed_round_trips_and_one_level_more_is_refused(db: Path) -> None:
    value: Any = 1
    for _ in range(MAX_META_DEPTH - 1):  # the metadata object is the last level
        value = [value]
    with _store(db) as store:
        store.update_meta("block", "b1", {"deep": value})
        assert store.get_object("block", "b1").meta["deep"] == value
        with pytest.raises(InvalidInput, match="nests deeper"):
            store.update_meta("block", "b1", {"deep": [value]})
        with pytest.raises(InvalidInput, match="nests deeper"):
            store.ensure_object("block", "b3", {"deep": [value]})
        assert store.get_object("block", "b1").meta["deep"] == value
        assert store.find_object("block", "b3") is None


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("version", "x"),
        ("version", 1.5),
        ("version", 2**63 - 1),  # an update would overflow SQLite's integers
        ("version", -1),
        ("created_ms", "yesterday"),
        ("updated_ms", b"\x00"),
    ],
)
def test_hostile_object_columns_read_as_storage_errors(db: Path, column: str, value: Any) -> None:
    _sql(db, f"UPDATE objects SET {column} = ? WHERE id = 'b1'", (value,))
    with _store(db) as store:
        for read in (
            lambda: store.get_object("block", "b1"),
            lambda: store.update_meta("block", "b1", {"x": 1}),
        ):
            with pytest.raises(StorageError, match=column):
                read()
        store.delete_object("block", "b1")


def test_an_id_that_is_not_text_is_a_storage_error(db: Path) -> None:
    _sql(db, "UPDATE objects SET id = ? WHERE id = 'b2'", (b"\xff",))
    with _store(db) as store:
        with pytest.raises(StorageError, match="not text"):
            store.list_ids("block")
        unreadable: list[UnreadableObject] = []
        assert [o.id for o in store.list_objects("block", unreadable=unreadable)] == ["b1"]
        assert unreadable[0].id == repr(b"\xff")


@pytest.fixture(scope="module")
def one_block(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database of block b1 alone, whose metadata a test overwrites."""
    path = tmp_path_factory.mktemp("meta") / "m.db"
    with _store(path) as store:
        store.ensure_object("block", "b1")
    return path


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    meta=st.one_of(
        st.text(max_size=60),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=5), inner, max_size=3)
            ),
            max_leaves=12,
        ).map(lambda value: json.dumps(value, allow_nan=True)),
    )
)
def test_any_stored_metadata_text_reads_back_as_a_dict_or_a_storage_error(
    one_block: Path, meta: str
) -> None:
    path = one_block
    _sql(path, "UPDATE objects SET meta = '{}' WHERE id = 'b1'")
    with contextlib.suppress(sqlite3.Error, UnicodeEncodeError):  # (a lone surrogate)
        _sql(path, "UPDATE objects SET meta = ? WHERE id = 'b1'", (meta,))
    with _store(path) as store:
        error = _raised(lambda: store.get_object("block", "b1"))
        if error is None:
            assert isinstance(store.get_object("block", "b1").meta, dict)
            obj = store.update_meta("block", "b1", {"k": 1})  # what reads back, writes
            assert obj.meta["k"] == 1
        else:
            assert isinstance(error, StorageError), repr(error)
            assert "block 'b1'" in str(error)


# -- hostile file rows ------------------------------------------------------------------------


def _loosen_chunks(path: Path) -> None:
    """Rebuild `file_chunks` without its NOT NULL constraints, as a hand edit could."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.executescript(
            "CREATE TABLE loose (kind TEXT, id TEXT, name TEXT, seq INTEGER, start INTEGER, "
            "data BLOB, PRIMARY KEY (kind, id, name, seq));"
            "INSERT INTO loose SELECT * FROM file_chunks;"
            "DROP TABLE file_chunks; ALTER TABLE loose RENAME TO file_chunks;"
        )


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("size", -1),
        ("size", "ten"),
        ("size", 1.5),
        ("size", 2**63 - 1),  # an append would overflow
        ("chunks", -3),
        ("next_seq", "x"),
        ("next_seq", 2**63 - 1),
        ("created_ms", b"\x01"),
        ("name", b"output"),
    ],
)
def test_hostile_file_rows_are_storage_errors(db: Path, column: str, value: Any) -> None:
    _sql(db, f"UPDATE files SET {column} = ? WHERE id = 'b1'", (value,))
    with _store(db) as store:
        calls = [lambda: store.append_file("block", "b1", "output", b"more")]
        if column != "next_seq":  # (only an append reads it)
            calls.append(lambda: store.list_files("block", "b1"))
        if column not in ("name", "next_seq"):  # (renamed: `output` is gone)
            calls += [
                lambda: store.stat_file("block", "b1", "output"),
                lambda: store.read_file("block", "b1", "output"),
            ]
        for call in calls:
            error = _raised(call)
            if isinstance(error, NotFound):
                assert column == "name"  # the append looks for `output`, which is gone
            else:
                assert isinstance(error, StorageError), repr(error)
                assert "b1" in str(error)
        store.delete_object("block", "b1")  # hostile rows can still be deleted
        assert store.list_ids("block") == ["b2"]


@pytest.mark.parametrize(
    ("sql", "params"),
    [
        pytest.param("UPDATE file_chunks SET data = NULL WHERE seq = 1", (), id="null-data"),
        pytest.param("UPDATE file_chunks SET data = 'text' WHERE seq = 1", (), id="text-data"),
        pytest.param("UPDATE file_chunks SET data = 7 WHERE seq = 1", (), id="int-data"),
        pytest.param("UPDATE file_chunks SET start = -4 WHERE seq = 0", (), id="negative-start"),
        pytest.param("UPDATE file_chunks SET start = 'x' WHERE seq = 1", (), id="text-start"),
        pytest.param("UPDATE file_chunks SET start = 0 WHERE seq = 2", (), id="overlapping"),
        pytest.param("DELETE FROM file_chunks WHERE seq = 1", (), id="missing-chunk"),
        pytest.param("UPDATE file_chunks SET seq = 'z' WHERE seq = 1", (), id="text-seq"),
    ],
)
def test_hostile_chunks_are_storage_errors(db: Path, sql: str, params: tuple[Any, ...]) -> None:
    _loosen_chunks(db)
    _sql(db, sql, params)
    with _store(db) as store:
        for read in (
            lambda: store.read_file("block", "b1", "output"),
            lambda: b"".join(store.iter_file("block", "b1", "output")),
        ):
            with pytest.raises(StorageError, match="'output' of block 'b1'"):
                read()
        store.delete_file("block", "b1", "output")
        with pytest.raises(NotFound):
            store.read_file("block", "b1", "output")


def test_every_error_a_hostile_database_gives_is_a_greenroom_error(db: Path) -> None:
    # All at once: whatever is read first fails typed, and the store stays usable.
    _loosen_chunks(db)
    _sql(db, "UPDATE objects SET meta = '[]' WHERE id = 'b2'")
    _sql(db, "UPDATE file_chunks SET data = NULL")
    _sql(db, "UPDATE files SET size = -1")
    with _store(db) as store:
        for call in (
            lambda: store.list_objects("block"),
            lambda: store.get_object("block", "b2"),
            lambda: store.read_file("block", "b1", "output"),
            lambda: store.stat_file("block", "b1", "output"),
            lambda: store.list_files("block", "b1"),
        ):
            with pytest.raises(GreenroomError):
                call()
        store.ensure_object("block", "b3", {"fine": True})
        assert store.get_object("block", "b3").meta == {"fine": True}
