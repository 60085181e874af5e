"""Batches of writes planned together on SQLite: the same outcome in a few statements.

The store plays a batch's creates, appends and metadata updates in Python and writes
what changed as multi-row statements (`greenroom.write_plan`); anything else, or a
write the plan cannot take as it is, runs a write at a time. These tests hold the
store's lock while writes queue, so each batch is one commit, and compare every
outcome and the stored rows with a store that runs every write as it is.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import greenroom.store as store_module
from greenroom.errors import Conflict, InvalidInput, StorageError
from greenroom.store import (
    AppendFile,
    CreateObject,
    DeleteFile,
    ExpectMeta,
    RenameFile,
    Store,
    UpdateMeta,
)
from tests.stores import sqlite_store

WAIT_S = 30
Write = CreateObject | AppendFile | UpdateMeta | DeleteFile | RenameFile


class Told:
    """Submitted writes' outcomes, by their order of submission."""

    def __init__(self, count: int) -> None:
        self.outcomes: list[Any] = [None] * count
        self._left = count
        self._lock = threading.Lock()
        self._all = threading.Event()
        if count == 0:
            self._all.set()

    def callback(self, index: int) -> Any:
        def told(results: Any, error: BaseException | None) -> None:
            with self._lock:
                self.outcomes[index] = (
                    results if error is None else (type(error).__name__, str(error))
                )
                self._left -= 1
                if self._left == 0:
                    self._all.set()

        return told

    def wait(self) -> list[Any]:
        assert self._all.wait(WAIT_S), "not every write was told its outcome"
        return self.outcomes


def one_batch(
    store: Store, groups: list[tuple[list[Write], list[ExpectMeta]]], *, results: bool = True
) -> tuple[list[Any], int]:
    """Submit every group while the store is held, so they commit as one batch: their
    outcomes and the commits it took (`results` as `submit_atomic` takes it)."""
    told = Told(len(groups))
    commits = store.stats()["store_commits"]
    with store._lock:  # (the committer waits for it: everything below queues)
        for index, (writes, expect) in enumerate(groups):
            try:
                store.submit_atomic(
                    writes, told.callback(index), expect=expect, inline=False, results=results
                )
            except InvalidInput as error:  # (refused before it queues)
                told.callback(index)(None, error)
    return told.wait(), store.stats()["store_commits"] - commits


def stored(store: Store) -> list[Any]:
    """Every object of the test's kind, with its files and their bytes."""
    return [
        (
            obj,
            [
                (info, store.read_file(info.kind, info.id, info.name))
                for info in store.list_files("execution", obj.id)
            ],
        )
        for obj in store.list_objects("execution")
    ]


@contextlib.contextmanager
def two_stores(folder: Path) -> Iterator[tuple[Store, Store]]:
    """A store that plans batches and one that runs every write as it is."""
    with (
        sqlite_store(folder / "planned.db", chunk_bytes=16) as planned,
        sqlite_store(folder / "each.db", chunk_bytes=16) as each,
    ):
        each._plan_steps = lambda op: None  # type: ignore[method-assign]
        yield planned, each


def setup(store: Store) -> None:
    """What the batches start from: e0 with a journal, e1 bare, e2 with two files."""
    store.write_atomic(
        [
            CreateObject("execution", "e0", {"state": "running", "n": 0}),
            AppendFile("execution", "e0", "journal", b"start\n", create=True),
            CreateObject("execution", "e1", {}),
            CreateObject("execution", "e2", {"tags": ["a"]}),
            AppendFile("execution", "e2", "journal", b"x" * 10, create=True),
            AppendFile("execution", "e2", "notes", b"", create=True),
        ]
    )


IDS = st.sampled_from(["e0", "e1", "e2", "e3", "e4"])  # e3, e4 made by the batch or missing
NAMES = st.sampled_from(["journal", "notes"])
writes = st.one_of(
    st.builds(
        CreateObject,
        st.just("execution"),
        IDS,
        st.dictionaries(st.sampled_from(["state", "n"]), st.integers(0, 3), max_size=2),
    ),
    st.builds(
        AppendFile,
        st.just("execution"),
        IDS,
        NAMES,
        st.binary(max_size=40),  # (chunks of 16 bytes: several pieces at times)
        create=st.booleans(),
        expect_size=st.none() | st.sampled_from([0, 6, 10, 16]),
    ),
    st.builds(
        UpdateMeta,
        st.just("execution"),
        IDS,
        st.dictionaries(
            st.sampled_from(["state", "n", "tags", "x:*"]),
            st.none() | st.integers(0, 5) | st.just(True) | st.sampled_from(["a", "b"]),
            max_size=3,
        ),
    ),
    # Writes the plan does not take: they split a batch into runs.
    st.builds(DeleteFile, st.just("execution"), IDS, NAMES),
    st.builds(RenameFile, st.just("execution"), IDS, NAMES, st.just("old")),
)
groups = st.lists(
    st.tuples(
        st.lists(writes, min_size=1, max_size=3),
        st.lists(
            st.builds(ExpectMeta, st.just("execution"), IDS, st.just("state"), st.just("running")),
            max_size=1,
        ),
    ),
    max_size=12,
)


# Writes that succeed from `setup` on, in any order: the plan takes whole batches.
fine_writes = st.one_of(
    st.builds(
        AppendFile,
        st.just("execution"),
        st.sampled_from(["e0", "e1", "e2"]),
        NAMES,
        st.binary(max_size=40),
    ),
    st.builds(
        UpdateMeta,
        st.just("execution"),
        st.sampled_from(["e0", "e1", "e2"]),
        st.dictionaries(
            st.sampled_from(["state", "n", "tags", "x:1"]),
            st.none() | st.integers(0, 5) | st.sampled_from(["a", "b"]),
            max_size=3,
        ),
    ),
)


# Writes that fail whatever came before them in a batch of `fine_writes`.
FAILING: list[Write] = [
    AppendFile("execution", "e0", "journal", b"late\n", expect_size=5),
    AppendFile("execution", "e1", "gone", b"x", create=False),
    AppendFile("execution", "nobody", "journal", b"x"),
    UpdateMeta("execution", "nobody", {"n": 1}),
    CreateObject("execution", "e2", {}),
]


@st.composite
def fine_groups(draw: st.DrawFn) -> list[tuple[list[Write], list[ExpectMeta]]]:
    """Groups of writes that all succeed, new objects made (once each) among them; and
    maybe one group with a write that fails (it fails alone, the others planned)."""
    batch = draw(st.lists(st.lists(fine_writes, min_size=1, max_size=3), max_size=12))
    for index in draw(st.sets(st.integers(0, max(0, len(batch) - 1)), max_size=3)):
        if index < len(batch):
            batch[index].insert(0, CreateObject("execution", f"new{index}", {"n": index}))
            batch[index].append(AppendFile("execution", f"new{index}", "journal", b"made\n"))
    fails = draw(st.none() | st.sampled_from(FAILING))
    if fails is not None:
        batch.insert(draw(st.integers(0, len(batch))), [fails])
    return [(writes, []) for writes in batch]


def compared(
    folder: Path,
    batch: list[tuple[list[Write], list[ExpectMeta]]],
    plan_steps: int,
    results: bool = True,
) -> int:
    """Run `batch` on a planning store (a plan ends once it has `plan_steps` steps) and
    on one that runs each write as it is: the same outcomes and rows. How many plans
    were stored. (`results=False`: submitted so, metadata updates may be patched.)"""
    with two_stores(folder) as (planned, each), pytest.MonkeyPatch.context() as patch:
        patch.setattr(store_module, "_PLAN_STEPS", plan_steps)
        for store in (planned, each):
            setup(store)
        plans = []
        store_plan = planned._store_plan
        planned._store_plan = lambda plan: plans.append(store_plan(plan))  # type: ignore[method-assign]
        outcomes, commits = one_batch(planned, batch, results=results)
        alone = one_batch(each, batch, results=results)[0]
        assert (outcomes, stored(planned)) == (alone, stored(each))
        assert commits <= 1  # (one batch: none if nothing in it was written)
        assert planned.stats()["store_plan_faults"] == 0  # (a fallback, if any, was due)
        return len(plans)


PLAN_STEPS = st.sampled_from([2, 3, 512])  # (the store's is 512: smaller ones split)


@settings(max_examples=150, deadline=None)
@given(batch=groups, plan_steps=PLAN_STEPS, results=st.booleans())
def test_a_planned_batch_ends_as_every_write_run_alone_would(
    tmp_path_factory: pytest.TempPathFactory,
    batch: list[tuple[list[Write], list[ExpectMeta]]],
    plan_steps: int,
    results: bool,
) -> None:
    compared(tmp_path_factory.mktemp("plan"), batch, plan_steps, results)


@settings(max_examples=150, deadline=None)
@given(batch=fine_groups(), plan_steps=PLAN_STEPS, results=st.booleans())
def test_a_batch_of_writes_that_succeed_is_planned_and_ends_the_same(
    tmp_path_factory: pytest.TempPathFactory,
    batch: list[tuple[list[Write], list[ExpectMeta]]],
    plan_steps: int,
    results: bool,
) -> None:
    planned = compared(tmp_path_factory.mktemp("plan"), batch, plan_steps, results)
    if all(writes[0] not in FAILING for writes, _ in batch):
        # A plan ends once it has `plan_steps` steps; a lone write runs as it is.
        plans, writes, steps = 0, 0, 0
        for group, _ in batch:
            writes, steps = writes + 1, steps + len(group)
            if steps >= plan_steps:
                plans, writes, steps = plans + (writes >= 2), 0, 0
        assert planned == plans + (writes >= 2)


def traced(store: Store) -> contextlib.AbstractContextManager[list[str]]:
    """The statements the store's write connection runs inside the block."""

    @contextlib.contextmanager
    def tracing() -> Iterator[list[str]]:
        statements: list[str] = []
        store._db.conn.set_trace_callback(statements.append)
        try:
            yield statements
        finally:
            store._db.conn.set_trace_callback(None)

    return tracing()


def journal_end(n: int, size: int) -> tuple[list[Write], list[ExpectMeta]]:
    """A durable execution's last write: records appended, its state stored."""
    return (
        [
            AppendFile(
                "execution", f"s{n}", "journal", b'{"k": "end"}\n', create=False, expect_size=size
            ),
            UpdateMeta("execution", f"s{n}", {"state": "completed", "finished_ms": n}),
        ],
        [],
    )


def started(n: int) -> tuple[list[Write], list[ExpectMeta]]:
    """A durable execution's first write: made, its journal begun."""
    return (
        [
            CreateObject("execution", f"s{n}", {"durable": True, "state": "running"}),
            AppendFile("execution", f"s{n}", "journal", b'{"k": "start"}\n', create=True),
        ],
        [],
    )


def test_a_batch_of_500_journal_writes_takes_a_few_statements_of_many_rows(
    tmp_path: Path,
) -> None:
    with sqlite_store(tmp_path / "s.db") as store:
        with traced(store) as statements:
            outcomes, commits = one_batch(store, [started(n) for n in range(500)])
        assert commits == 1
        assert all(isinstance(value, list) for value in outcomes), outcomes[:3]
        # The rows read (one JSON row for the objects, one for the files), then objects,
        # files and chunks inserted in groups (500 = 128 * 3 + 64 + 32 + 16 + 4), and
        # the transaction's own.
        assert len(statements) <= 30, statements
        size = len(b'{"k": "start"}\n')
        with traced(store) as statements:
            outcomes, commits = one_batch(store, [journal_end(n, size) for n in range(500)])
        assert commits == 1
        assert len(statements) <= 30, statements
        assert outcomes[7][0].size == size + len(b'{"k": "end"}\n')
        assert outcomes[7][1][0].meta == {
            "durable": True,
            "state": "completed",
            "finished_ms": 7,
        }
        assert outcomes[7][1][0].version == 2
        assert store.read_file("execution", "s499", "journal") == b'{"k": "start"}\n{"k": "end"}\n'
        # The same batch a write at a time: several statements each.
        store._plan_steps = lambda op: None  # type: ignore[method-assign]
        with traced(store) as statements:
            one_batch(store, [journal_end(n, 2 * size) for n in range(50)])
        assert len(statements) >= 4 * 50


def test_a_write_the_plan_cannot_take_fails_alone_and_the_others_commit(tmp_path: Path) -> None:
    with sqlite_store(tmp_path / "s.db") as store:
        one_batch(store, [started(n) for n in range(20)])
        size = len(b'{"k": "start"}\n')
        batch = [journal_end(n, size) for n in range(20)]
        batch[5] = journal_end(5, size + 1)  # another size than the stored one
        batch[9] = ([UpdateMeta("execution", "nobody", {"state": "x"})], [])
        outcomes, commits = one_batch(store, batch)
        assert commits == 1
        assert outcomes[5][0] == "Conflict"
        assert "not the 16 expected" in outcomes[5][1]
        assert outcomes[9][0] == "NotFound"
        for n in (0, 6, 19):
            assert store.get_object("execution", f"s{n}").meta["state"] == "completed"
        assert store.get_object("execution", "s5").meta["state"] == "running"
        assert store.stat_file("execution", "s5", "journal").size == size


def test_a_batch_that_runs_again_a_write_at_a_time_says_why_in_the_debug_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with sqlite_store(tmp_path / "s.db") as store:
        one_batch(store, [started(n) for n in range(3)])
        with caplog.at_level(logging.DEBUG, logger="greenroom.store"):
            one_batch(store, [started(3), ([UpdateMeta("execution", "nobody", {"a": 1})], [])])
        [record] = [r for r in caplog.records if "failed together" in r.getMessage()]
        assert "a batch of 2 writes" in record.getMessage()
        assert "Replan: no execution 'nobody'" in record.getMessage()


def test_a_fault_in_planning_loses_no_write_and_is_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    with sqlite_store(tmp_path / "s.db") as store:
        one_batch(store, [started(n) for n in range(4)])
        # A plan that breaks (a programming error, not a write that cannot be taken):
        # the batch runs again a write at a time, and every write is stored.
        monkeypatch.setattr(store_module.WritePlan, "update", _broken_plan_step)
        size = len(b'{"k": "start"}\n')
        with caplog.at_level(logging.WARNING, logger="greenroom.store"):
            outcomes, commits = one_batch(store, [journal_end(n, size) for n in range(4)])
        assert commits == 1
        assert all(isinstance(value, list) for value in outcomes), outcomes
        for n in range(4):
            assert store.get_object("execution", f"s{n}").meta["state"] == "completed"
        assert store.stats()["store_plan_faults"] == 1
        [record] = [r for r in caplog.records if "store_plan_faults" in r.getMessage()]
        assert record.levelno == logging.WARNING
        assert "a batch of 4 writes" in record.getMessage()
        assert "RuntimeError: broken plan" in record.getMessage()


def _broken_plan_step(*_args: Any) -> Any:
    raise RuntimeError("broken plan")


def test_a_batch_split_by_a_write_that_fails_is_no_planning_fault(tmp_path: Path) -> None:
    with sqlite_store(tmp_path / "s.db") as store:
        one_batch(store, [started(n) for n in range(3)])
        outcomes, _ = one_batch(store, [started(3), ([UpdateMeta("execution", "x", {})], [])])
        assert outcomes[1][0] == "NotFound"
        assert store.stats()["store_plan_faults"] == 0


def test_a_damaged_row_fails_the_write_that_meets_it_with_what_is_wrong(tmp_path: Path) -> None:
    with sqlite_store(tmp_path / "s.db") as store:
        one_batch(store, [started(n) for n in range(10)])
        with contextlib.closing(sqlite3.connect(store.path)) as conn, conn:
            conn.execute("UPDATE objects SET meta = 'not json' WHERE id = 's3'")
            conn.execute("UPDATE files SET size = 'big' WHERE id = 's4'")
        size = len(b'{"k": "start"}\n')
        outcomes, _ = one_batch(store, [journal_end(n, size) for n in range(10)])
        assert outcomes[3][0] == StorageError.__name__
        assert "s3" in outcomes[3][1]
        assert outcomes[4][0] == StorageError.__name__
        assert "size" in outcomes[4][1]
        fine = [n for n, value in enumerate(outcomes) if isinstance(value, list)]
        assert fine == [0, 1, 2, 5, 6, 7, 8, 9]


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        ("meta = 'not json'", "s3"),
        ("meta = '[1]'", "s3"),  # (JSON, but not an object)
        ("version = 4611686018427387905", "version"),  # (past the highest version)
        ("version = 'v'", "version"),
    ],
)
def test_updates_nobody_reads_are_patched_in_place_and_a_bad_one_fails_alone(
    tmp_path: Path, damage: str, says: str
) -> None:
    with sqlite_store(tmp_path / "s.db") as store:
        one_batch(store, [started(n) for n in range(6)])
        with contextlib.closing(sqlite3.connect(store.path)) as conn, conn:
            conn.execute(f"UPDATE objects SET {damage} WHERE id = 's3'")
        size = len(b'{"k": "start"}\n')
        # (s3 alone is bad, so only the statement's own checks can tell.)
        outcomes, commits = one_batch(
            store, [journal_end(n, size) for n in range(6)], results=False
        )
        assert commits == 1
        assert outcomes[3][0] == StorageError.__name__
        assert says in outcomes[3][1]
        for n in (0, 1, 2, 4, 5):
            assert outcomes[n][1] == [None], outcomes[n]  # (the update: no result read)
            obj = store.get_object("execution", f"s{n}")
            assert obj.meta == {"durable": True, "state": "completed", "finished_ms": n}
            assert obj.version == 2
        assert store.stats()["store_plan_faults"] == 0


def test_updates_nobody_reads_are_written_with_json_set_without_reading_the_rows(
    tmp_path: Path,
) -> None:
    with sqlite_store(tmp_path / "s.db") as store:
        one_batch(store, [started(n) for n in range(4)])
        size = len(b'{"k": "start"}\n')
        with traced(store) as statements:
            outcomes, _ = one_batch(store, [journal_end(n, size) for n in range(4)], results=False)
        assert all(outcome[1] == [None] for outcome in outcomes)
        assert any("json_set" in sql for sql in statements)
        assert not any("FROM objects" in sql for sql in statements)  # (no row read)
        assert store.get_object("execution", "s2").meta["state"] == "completed"


def test_writes_between_others_the_plan_does_not_take_keep_their_order(tmp_path: Path) -> None:
    with sqlite_store(tmp_path / "s.db") as store:
        one_batch(store, [started(n) for n in range(3)])
        outcomes, commits = one_batch(
            store,
            [
                ([AppendFile("execution", "s0", "journal", b"a\n")], []),
                ([AppendFile("execution", "s1", "journal", b"a\n")], []),
                ([RenameFile("execution", "s0", "journal", "old")], []),
                ([AppendFile("execution", "s0", "journal", b"b\n", create=True)], []),
                ([AppendFile("execution", "s0", "old", b"c\n", create=False)], []),
                ([DeleteFile("execution", "s1", "journal")], []),
                ([AppendFile("execution", "s1", "journal", b"d\n")], []),
                ([AppendFile("execution", "s2", "journal", b"e\n")], []),
            ],
        )
        assert commits == 1
        assert all(isinstance(value, list | bool) for value in outcomes), outcomes
        assert store.read_file("execution", "s0", "old") == b'{"k": "start"}\na\nc\n'
        assert store.read_file("execution", "s0", "journal") == b"b\n"
        assert store.read_file("execution", "s1", "journal") == b"d\n"


def test_a_conflict_on_a_condition_still_fails_alone(tmp_path: Path) -> None:
    with sqlite_store(tmp_path / "s.db") as store:
        one_batch(store, [started(n) for n in range(4)])
        outcomes, _ = one_batch(
            store,
            [
                ([UpdateMeta("execution", "s0", {"n": 1})], []),
                (
                    [UpdateMeta("execution", "s1", {"n": 1})],
                    [ExpectMeta("execution", "s1", "state", "paused")],
                ),
                ([UpdateMeta("execution", "s2", {"n": 1})], []),
            ],
        )
        assert outcomes[1][0] == Conflict.__name__
        values = [store.get_object("execution", f"s{n}").meta.get("n") for n in range(3)]
        assert values == [1, None, 1]


def test_each_result_holds_metadata_of_its_own(tmp_path: Path) -> None:
    with sqlite_store(tmp_path / "s.db") as store:
        store.create_object("execution", "e1", {"tags": ["a"]})
        outcomes, _ = one_batch(
            store,
            [
                ([UpdateMeta("execution", "e1", {"n": 1})], []),
                ([UpdateMeta("execution", "e1", {"n": 2})], []),
                ([CreateObject("execution", "e2", {"tags": ["b"]})], []),
                ([UpdateMeta("execution", "e2", {"n": 3})], []),
            ],
        )
        first, second = outcomes[0][0][0], outcomes[1][0][0]
        first.meta["tags"].append("changed by the first caller")
        assert second.meta == {"tags": ["a"], "n": 2}
        made, updated = outcomes[2][0], outcomes[3][0][0]
        made.meta["tags"].append("changed")
        assert updated.meta == {"tags": ["b"], "n": 3}
        assert store.get_object("execution", "e2").meta == {"tags": ["b"], "n": 3}


def test_versions_and_sizes_past_their_bound_fail_as_a_write_alone_would(
    tmp_path: Path,
) -> None:
    with two_stores(tmp_path) as (planned, each):
        for store in (planned, each):
            setup(store)
            with contextlib.closing(sqlite3.connect(store.path)) as conn, conn:
                conn.execute(f"UPDATE objects SET version = {2**62} WHERE id = 'e1'")
                conn.execute(f"UPDATE files SET size = {2**62} WHERE id = 'e0'")
        batch: list[tuple[list[Write], list[ExpectMeta]]] = [
            ([UpdateMeta("execution", "e1", {"n": n})], []) for n in range(3)
        ] + [([AppendFile("execution", "e0", "journal", b"x")], []) for _ in range(2)]
        outcomes, _ = one_batch(planned, batch)
        assert outcomes == one_batch(each, batch)[0]
        assert [type(value) for value in outcomes] == [list, tuple, tuple, list, tuple]
        assert outcomes[1][0] == StorageError.__name__


def test_appends_to_existing_files_read_no_object(tmp_path: Path) -> None:
    with sqlite_store(tmp_path / "s.db") as store:
        one_batch(store, [started(n) for n in range(50)])
        big = {"notes": "x" * 50_000}  # (large metadata: not read for an append)
        one_batch(store, [([UpdateMeta("execution", f"s{n}", big)], []) for n in range(50)])
        with traced(store) as statements:
            outcomes, _ = one_batch(
                store,
                [([AppendFile("execution", f"s{n}", "journal", b"more\n")], []) for n in range(50)]
                + [([AppendFile("execution", f"s{n}", "other", b"new\n")], []) for n in range(3)],
            )
        assert all(isinstance(value, list) for value in outcomes), outcomes
        reads = [sql for sql in statements if "FROM objects" in sql]
        # Only whether the 3 objects of the new files exist: one statement, ids only.
        assert len(reads) == 1, reads
        assert "json_group_array(id)" in reads[0]
