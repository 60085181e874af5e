"""Many rows a statement: `append_many` and `set_meta_values` on SQLite.

Each row a statement reads or writes makes the driver let go of the interpreter's
lock, which a busy process pays up to a switch interval (5 ms) to take back; so the
store writes many blocks' rows with a few multi-row statements. These tests pin the
results (every row written once, in order, failures alone) and the statement count.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import greenroom.store as store_module
from greenroom.errors import NotFound
from greenroom.store import CreateObject, Store
from tests.stores import sqlite_store


def opened(path: Path) -> contextlib.AbstractContextManager[Store]:
    return sqlite_store(path)


@given(count=st.integers(0, 1500), width=st.integers(1, 40))
def test_row_groups_cover_every_row_once_in_order_within_the_parameter_bound(
    count: int, width: int
) -> None:
    rows = [tuple(range(n * width, (n + 1) * width)) for n in range(count)]
    groups = list(store_module._row_groups(rows, width))
    assert [value for _size, flat in groups for value in flat] == list(range(count * width))
    for size, flat in groups:
        assert size in store_module._GROUPS
        assert len(flat) == size * width <= store_module._MAX_PARAMETERS
    assert [size for size, _flat in groups] == sorted((size for size, _ in groups), reverse=True)


@pytest.mark.parametrize("count", [1, 2, 127, 128, 129, 300, 1000])
def test_append_many_writes_every_block_once_and_fails_the_missing_alone(
    tmp_path: Path, count: int
) -> None:
    ids = [f"b{n}" for n in range(count)]
    missing = set(ids[3::7])  # every 7th, from the 4th: never made
    with opened(tmp_path / "store.db") as store:
        store.write_atomic(
            [CreateObject("block", oid, {"view": "agent"}) for oid in ids if oid not in missing]
        )
        for round_ in range(3):
            written = store.append_many(
                "block",
                "output",
                {oid: f"{oid} line {round_}\n".encode() for oid in ids},
                values={
                    oid: {"session:line_count": round_ + 1, "title": f"t{round_}"} for oid in ids
                },
            )
            assert set(written.failed) == missing
            assert all(isinstance(error, NotFound) for error in written.failed.values())
            assert written.values_changed == count - len(missing)
        for oid in ids:
            if oid in missing:
                assert store.find_object("block", oid) is None
                continue
            expected = b"".join(f"{oid} line {n}\n".encode() for n in range(3))
            assert store.read_file("block", oid, "output") == expected
            info = store.stat_file("block", oid, "output")
            assert (info.size, info.chunks) == (len(expected), 3)
            meta = store.get_object("block", oid).meta
            assert meta == {"view": "agent", "session:line_count": 3, "title": "t2"}
            assert store.get_object("block", oid).version == 4  # made, then 3 updates


def test_append_many_makes_new_objects_and_files_many_to_a_statement(tmp_path: Path) -> None:
    with opened(tmp_path / "store.db") as store:
        store.create_object("block", "b0", {"view": "kept"})
        ids = [f"b{n}" for n in range(300)]
        statements: list[str] = []
        store._db.conn.set_trace_callback(statements.append)
        try:
            written = store.append_many(
                "block",
                "output",
                {oid: b"x\n" for oid in [*ids, "nobody"]},
                objects={oid: {"view": "agent"} for oid in ids},
            )
        finally:
            store._db.conn.set_trace_callback(None)
        assert written.created == 299  # b0 was there: left as it was
        assert list(written.failed) == ["nobody"]
        assert isinstance(written.failed["nobody"], NotFound)
        # Objects, files and chunks made and the file rows' counts set, in groups (300 =
        # 128 + 128 + 32 + 8 + 4); the file rows and the objects read as a row of JSON;
        # the transaction's own. (A file a statement: about 900.)
        assert len(statements) <= 30, statements
        assert store.get_object("block", "b0").meta == {"view": "kept"}
        assert all(store.read_file("block", oid, "output") == b"x\n" for oid in ids)


def test_a_batch_of_hundreds_of_blocks_is_a_few_statements_not_a_few_per_block(
    tmp_path: Path,
) -> None:
    ids = [f"b{n}" for n in range(300)]
    with opened(tmp_path / "store.db") as store:
        store.write_atomic([CreateObject("block", oid, {}) for oid in ids])
        store.append_many("block", "output", {oid: b"first\n" for oid in ids})
        statements: list[str] = []
        writer = store._db.conn  # (the store's own write connection, traced)
        writer.set_trace_callback(statements.append)
        try:
            store.append_many(
                "block",
                "output",
                {oid: b"next\n" for oid in ids},
                values={oid: {"session:line_count": 2} for oid in ids},
            )
        finally:
            writer.set_trace_callback(None)
        # The file rows read, the chunks, the file rows and the values written: a few
        # groups each (300 = 128 + 128 + 32 + 8 + 4), and the transaction's own.
        assert len(statements) <= 25, statements


def test_listing_thousands_of_objects_takes_a_few_one_row_statements_in_id_order(
    tmp_path: Path,
) -> None:
    ids = [f"b{n}" for n in range(3000)] + ["é-accent", "Z", "a\u2603", "b0-older"]
    with opened(tmp_path / "store.db") as store:
        store.write_atomic(
            [CreateObject("block", oid, {"n": n, "text": f"τ {oid}"}) for n, oid in enumerate(ids)]
        )
        store.create_object("transcript", "other")
        statements: list[str] = []
        reader = store._rdb.conn  # (the store's own read connection, traced)
        reader.set_trace_callback(statements.append)
        try:
            listed = store.list_objects("block")
            listed_ids = store.list_ids("block")
        finally:
            reader.set_trace_callback(None)
        # Pages of 1,024, each statement handing back at most one row (each row costs
        # the driver a round of the interpreter's lock): run again apart, as traced
        # (values expanded).
        with contextlib.closing(sqlite3.connect(store.path, isolation_level=None)) as conn:
            counts = [len(conn.execute(sql).fetchall()) for sql in statements]
        assert max(counts) == 1
        assert len(statements) <= 20, statements
        assert [obj.id for obj in listed] == sorted(ids) == listed_ids
        by_id = {obj.id: obj for obj in listed}
        assert by_id["é-accent"].meta == {"n": 3000, "text": "τ é-accent"}
        assert (by_id["b7"].version, by_id["b7"].kind) == (1, "block")


@given(sizes=st.lists(st.integers(0, 300), max_size=25))
def test_listings_in_pages_of_a_few_rows_and_bytes_keep_every_object_in_order(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int]
) -> None:
    path = tmp_path_factory.mktemp("pages") / "store.db"
    ids = [f"o{n:03d}{'x' * (n % 3)}" for n in range(len(sizes))]
    with pytest.MonkeyPatch.context() as patch, opened(path) as store:
        patch.setattr(store_module, "_LIST_ROWS", 4)
        patch.setattr(store_module, "_LIST_BYTES", 200)  # metadata of up to 300+ bytes
        if ids:
            pairs = zip(ids, sizes, strict=True)
            store.write_atomic([CreateObject("block", oid, {"pad": "p" * n}) for oid, n in pairs])
        listed = store.list_objects("block")
        assert [obj.id for obj in listed] == sorted(ids) == store.list_ids("block")
        assert [obj.meta["pad"] for obj in listed] == ["p" * size for size in sizes]
