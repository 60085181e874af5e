"""Reading files back in pages: small chunks joined a page to a row, large ones a row each.

The page sizes are shrunk here (module constants of `greenroom.store`) so that a few
dozen chunks cross every kind of page boundary: small chunks joined, a large chunk
next, small ones after large ones, a damaged chunk inside a joined page.
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import greenroom.store as store_module
from greenroom.errors import StorageError
from greenroom.store import AppendFile, Store
from tests.stores import sqlite_store


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages of at most 3 chunks joined; a chunk of more than 8 bytes is large; the
    large ones are read 2 rows to a statement."""
    monkeypatch.setattr(store_module, "_PAGE_CHUNKS", 3)
    monkeypatch.setattr(store_module, "_SMALL_CHUNK", 8)
    monkeypatch.setattr(store_module, "_PAGE_ROWS", 2)


def opened(path: Path) -> contextlib.AbstractContextManager[Store]:
    return sqlite_store(path, chunk_bytes=64)


def write_chunks(store: Store, sizes: list[int]) -> bytes:
    """A file "out" of block "b" made of one chunk per size; its bytes."""
    store.create_object("block", "b")
    store.create_file("block", "b", "out")
    data = bytes((n * 7 + 3) % 256 for n in range(sum(sizes)))  # NULs and high bytes too
    writes, at = [], 0
    for size in sizes:
        writes.append(AppendFile("block", "b", "out", data[at : at + size]))
        at += size
    if writes:
        store.write_batch(writes)
    return data


chunk_sizes = st.lists(st.one_of(st.integers(1, 8), st.integers(9, 64)), max_size=40)


@pytest.mark.usefixtures("small_pages")
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sizes=chunk_sizes, offset=st.integers(0, 800), size=st.none() | st.integers(0, 800))
@example(sizes=[1] * 7 + [40, 40, 40] + [2] * 5 + [64], offset=0, size=None)
@example(sizes=[3] * 9, offset=4, size=11)
def test_any_mix_of_chunks_reads_back_exactly_chunk_by_chunk(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int], offset: int, size: int | None
) -> None:
    path = tmp_path_factory.mktemp("pages") / "store.db"
    with opened(path) as store:
        data = write_chunks(store, sizes)
        pieces = list(store.iter_file("block", "b", "out"))
        assert [len(piece) for piece in pieces] == sizes  # one piece a chunk, as stored
        assert b"".join(pieces) == data
        end = None if size is None else offset + size
        assert store.read_file("block", "b", "out", offset=offset, size=size) == data[offset:end]


@pytest.mark.usefixtures("small_pages")
@pytest.mark.parametrize("where", [0, 1, 2, 4])
def test_a_damaged_small_chunk_is_named_as_when_read_a_row_each(tmp_path: Path, where: int) -> None:
    path = tmp_path / "store.db"
    with opened(path) as store:
        write_chunks(store, [2] * 6)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        seq = conn.execute(
            "SELECT seq FROM file_chunks ORDER BY seq LIMIT 1 OFFSET ?", [where]
        ).fetchone()[0]
        conn.execute("UPDATE file_chunks SET start = start + 1 WHERE seq = ?", [seq])
        conn.commit()
    with opened(path) as store, pytest.raises(StorageError, match=f"its chunk {seq} is damaged"):
        b"".join(store.iter_file("block", "b", "out"))


@pytest.mark.usefixtures("small_pages")
def test_a_chunk_stored_as_text_is_refused_not_joined(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    with opened(path) as store:
        write_chunks(store, [2] * 5)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute(
            "UPDATE file_chunks SET data = CAST(data AS TEXT) WHERE seq = "
            "(SELECT seq FROM file_chunks ORDER BY seq LIMIT 1 OFFSET 1)"
        )
        conn.commit()
    with opened(path) as store, pytest.raises(StorageError, match="holds str"):
        store.read_file("block", "b", "out")


def test_a_file_of_thousands_of_lines_reads_back_in_a_few_statements(tmp_path: Path) -> None:
    """The point of joining: 5,000 one-line chunks cost a handful of statements on the
    read connection, not one row each (each row lets go of the interpreter's lock)."""
    path = tmp_path / "store.db"
    with opened(path) as store:
        lines = [b"line %d\n" % n for n in range(5000)]
        store.create_object("block", "b")
        store.write_batch([AppendFile("block", "b", "out", line, create=True) for line in lines])
        steps: list[str] = []
        reader = store._rdb.conn  # (the store's own read connection, traced)
        reader.set_trace_callback(steps.append)
        try:
            assert store.read_file("block", "b", "out") == b"".join(lines)
        finally:
            reader.set_trace_callback(None)
        assert len(steps) <= 10, steps


def test_a_database_made_utf16_elsewhere_reads_its_bytes_back_exactly(tmp_path: Path) -> None:
    """Chunks are joined as text only where text is UTF-8: in UTF-16, binary that is
    not valid UTF-16 would come back changed (and as long), so it is read a row each."""
    path = tmp_path / "store.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA encoding = 'UTF-16le'")
        conn.execute("CREATE TABLE made_elsewhere (x)")  # (the encoding is fixed now)
        conn.commit()
    rng = random.Random(0)
    chunks = [rng.randbytes(2 * rng.randint(1, 32)) for _ in range(50)]  # (one chunk each)
    with opened(path) as store:
        store.create_object("block", "b")
        store.write_batch([AppendFile("block", "b", "out", chunk, create=True) for chunk in chunks])
        assert store.read_file("block", "b", "out") == b"".join(chunks)
        assert list(store.iter_file("block", "b", "out")) == chunks


@pytest.mark.usefixtures("small_pages")
def test_a_short_file_is_read_in_one_statement(tmp_path: Path) -> None:
    with opened(tmp_path / "store.db") as store:
        data = write_chunks(store, [2] * 3)  # one joined page, its last chunk the file's
        statements: list[str] = []
        reader = store._rdb.conn  # (the store's own read connection, traced)
        reader.set_trace_callback(statements.append)
        try:
            assert b"".join(store.iter_file("block", "b", "out")) == data
        finally:
            reader.set_trace_callback(None)
        assert len([sql for sql in statements if "file_chunks" in sql]) == 1, statements
