"""`Store.append_many`: many objects' file appends and metadata values in one commit.

Real SQLite files in tmp_path. What one call writes must read back exactly as the same
appends made one by one with `append_file` and `set_meta_values` would.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greenroom import FakeClock
from greenroom.errors import Conflict, InvalidInput, NotFound, StorageError
from greenroom.models import AppendedMany
from greenroom.store import Store
from tests.stores import ENGINES, open_test_store


@pytest.fixture(params=ENGINES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    store = open_test_store(request, tmp_path / "s.db", now_ms=FakeClock().now_ms, chunk_bytes=8)
    for n in range(5):
        store.ensure_object("block", f"b{n}", {"view": "agent"})
    yield store
    store.close()


def test_appends_and_values_of_many_objects_take_one_commit(store: Store) -> None:
    store.append_file("block", "b0", "output", b"old ", create=True)
    commits = store.stats()["store_commits"]
    done = store.append_many(
        "block",
        "output",
        {"b0": b"new line\n", "b1": b"first output, longer than a chunk\n", "b2": b""},
        values={"b0": {"session:line_count": 1}, "b3": {"session:line_count": 7}},
    )
    assert store.stats()["store_commits"] == commits + 1
    assert done == AppendedMany({"b0": 13, "b1": 34}, {}, 2)
    assert store.read_file("block", "b0", "output") == b"old new line\n"
    assert store.read_file("block", "b1", "output") == b"first output, longer than a chunk\n"
    assert store.stat_file("block", "b1", "output").chunks == 5  # cut at chunk_bytes
    assert store.list_files("block", "b2") == []  # nothing to append: no file made
    assert store.get_object("block", "b0").meta["session:line_count"] == 1
    assert store.get_object("block", "b3").meta == {"view": "agent", "session:line_count": 7}


def test_an_object_that_does_not_exist_fails_alone(store: Store) -> None:
    done = store.append_many(
        "block", "output", {"gone": b"x\n", "b1": b"y\n"}, values={"gone": {"n": 1}}
    )
    assert done.sizes == {"b1": 2}
    assert isinstance(done.failed["gone"], NotFound)
    assert "create the object before its files" in str(done.failed["gone"])
    assert done.values_changed == 0
    assert store.read_file("block", "b1", "output") == b"y\n"
    assert store.find_object("block", "gone") is None


def test_without_create_a_missing_file_fails_alone(store: Store) -> None:
    store.append_file("block", "b0", "output", b"a", create=True)
    done = store.append_many("block", "output", {"b0": b"b", "b1": b"c"}, create=False)
    assert done.sizes == {"b0": 2}
    assert isinstance(done.failed["b1"], NotFound)
    assert store.list_files("block", "b1") == []


def test_a_damaged_file_row_fails_alone_and_says_what_is_wrong(tmp_path: Path) -> None:
    # SQLite only: PostgreSQL's typed columns cannot hold such a row.
    store = Store.open(tmp_path / "damaged.db", now_ms=FakeClock().now_ms, chunk_bytes=8)
    for n in range(2):
        store.ensure_object("block", f"b{n}", {"view": "agent"})
    store.append_many("block", "output", {"b0": b"a", "b1": b"b"})
    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE files SET size = 'lots' WHERE id = 'b0'")
    done = store.append_many("block", "output", {"b0": b"more", "b1": b"more"})
    assert done.sizes == {"b1": 5}
    assert isinstance(done.failed["b0"], StorageError)
    assert "size" in str(done.failed["b0"])
    assert "'lots'" in str(done.failed["b0"])
    store.close()


@pytest.mark.parametrize(
    ("appends", "values"),
    [
        ({"b0": "text"}, None),
        ({"": b"x"}, None),
        ({"b0": b"x"}, {"b1": {"n": None}}),
        ({"b0": b"x"}, {"b1": {"bad key!": 1}}),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(
    store: Store, appends: dict, values: dict | None
) -> None:
    commits = store.stats()["store_commits"]
    with pytest.raises(InvalidInput):
        store.append_many("block", "output", appends, values=values)
    assert store.stats()["store_commits"] == commits
    assert store.list_files("block", "b0") == []


def test_nothing_to_write_takes_no_commit(store: Store) -> None:
    commits = store.stats()["store_commits"]
    assert store.append_many("block", "output", {"b0": b""}) == AppendedMany({}, {}, 0)
    assert store.stats()["store_commits"] == commits


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batches=st.lists(
        st.dictionaries(
            st.sampled_from([f"b{n}" for n in range(5)]),
            st.binary(max_size=40),
            max_size=5,
        ),
        max_size=6,
    )
)
def test_many_batches_read_back_as_one_append_each(
    tmp_path_factory: pytest.TempPathFactory, batches: list[dict[str, bytes]]
) -> None:
    folder = tmp_path_factory.mktemp("many")
    many = Store.open(folder / "many.db", now_ms=FakeClock().now_ms, chunk_bytes=16)
    one = Store.open(folder / "one.db", now_ms=FakeClock().now_ms, chunk_bytes=16)
    try:
        for store in (many, one):
            for n in range(5):
                store.ensure_object("block", f"b{n}", {})
        for batch in batches:
            many.append_many("block", "output", batch)
            for object_id, data in batch.items():
                if data:
                    one.append_file("block", object_id, "output", data, create=True)
        for n in range(5):
            for store in (many, one):
                assert len(store.list_files("block", f"b{n}")) in (0, 1)
            if one.list_files("block", f"b{n}"):
                expected = one.read_file("block", f"b{n}", "output")
                assert many.read_file("block", f"b{n}", "output") == expected
                assert many.read_file("block", f"b{n}", "output", offset=3) == expected[3:]
                assert many.stat_file("block", f"b{n}", "output").size == len(expected)
            else:
                assert many.list_files("block", f"b{n}") == []
    finally:
        many.close()
        one.close()


def test_objects_owned_by_another_fail_alone_unwritten(store: Store) -> None:
    store.update_meta("block", "b0", {"lease:owner": "host-a"})
    store.update_meta("block", "b1", {"lease:owner": "host-b"})  # taken over
    done = store.append_many(
        "block",
        "output",
        {"b0": b"mine", "b1": b"late"},
        values={"b0": {"n": 1}, "b1": {"n": 1}},
        owned_by=("lease:owner", "host-a"),
    )
    assert done.sizes == {"b0": 4}
    assert isinstance(done.failed["b1"], Conflict)
    assert "another host" in str(done.failed["b1"])
    assert done.values_changed == 1
    assert store.get_object("block", "b1").meta.get("n") is None
    assert store.list_files("block", "b1") == []
    with pytest.raises(InvalidInput, match="plain metadata key"):
        store.append_many("block", "output", {"b0": b"x"}, owned_by=("bad key!", "host-a"))
