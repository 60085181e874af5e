"""`Store.submit_atomic`: writes committed with the next batch, their outcome called back.

Real SQLite files in tmp_path; the committer is a real thread, so each test waits for
its callbacks with an event (bounded), never a sleep.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from greenroom import FakeClock
from greenroom.errors import Conflict, InvalidInput, Stopped
from greenroom.store import AppendFile, CreateObject, ExpectMeta, Store, UpdateMeta
from tests.stores import ENGINES, open_test_store

WAIT_S = 30


class Outcomes:
    """Callbacks that record (results, error) in the order they are called."""

    def __init__(self, expected: int) -> None:
        self.calls: list[tuple[Any, BaseException | None]] = []
        self.threads: set[int] = set()
        self._expected = expected
        self._all = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, results: Any, error: BaseException | None) -> None:
        with self._lock:
            self.calls.append((results, error))
            self.threads.add(threading.get_ident())
            if len(self.calls) == self._expected:
                self._all.set()

    def wait(self) -> list[tuple[Any, BaseException | None]]:
        assert self._all.wait(WAIT_S), f"{len(self.calls)} of {self._expected} called back"
        return self.calls


@pytest.fixture(params=ENGINES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    store = open_test_store(request, tmp_path / "s.db", now_ms=FakeClock().now_ms)
    yield store
    store.close()


@contextlib.contextmanager
def a_commit_under_way(store: Store, first: Callable[[], object]) -> Iterator[None]:
    """Inside: a commit under way (the store's lock held on another thread) and `first`
    submitted by a third thread, which waits to commit it; what is submitted meanwhile
    queues behind it, and is committed with it once the block ends."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store._lock:
            held.set()
            release.wait(WAIT_S)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(WAIT_S)
    draining = threading.Event()
    drain = store._drain

    def drain_told(**kwargs: Any) -> None:
        draining.set()  # (the store is marked busy by now: later writes queue)
        drain(**kwargs)

    store._drain = drain_told  # type: ignore[method-assign]
    submitter = threading.Thread(target=first)
    submitter.start()
    assert draining.wait(WAIT_S)
    try:
        yield
    finally:
        release.set()
        holder.join(WAIT_S)
        submitter.join(WAIT_S)
        store._drain = drain  # type: ignore[method-assign]


def journal_writes(n: int) -> list[CreateObject | AppendFile]:
    return [
        CreateObject("execution", f"s{n}", {"n": n}),
        AppendFile("execution", f"s{n}", "journal", b"start\n", create=True, expect_size=0),
    ]


def test_writes_submitted_while_one_commits_share_the_next_commit(store: Store) -> None:
    outcomes = Outcomes(500)
    commits = store.stats()["store_commits"]
    with a_commit_under_way(store, lambda: store.submit_atomic(journal_writes(0), outcomes)):
        for n in range(1, 500):
            store.submit_atomic(journal_writes(n), outcomes)
    calls = outcomes.wait()
    assert store.stats()["store_commits"] - commits == 1
    assert [error for _results, error in calls] == [None] * 500
    assert threading.get_ident() not in outcomes.threads  # called back where committed
    assert store.read_file("execution", "s499", "journal") == b"start\n"
    assert store.get_object("execution", "s7").meta == {"n": 7}


def test_a_failing_write_fails_alone_and_the_order_is_kept(store: Store) -> None:
    store.create_object("execution", "taken", {"state": "paused"})
    outcomes = Outcomes(3)
    with a_commit_under_way(store, lambda: store.submit_atomic(journal_writes(1), outcomes)):
        store.submit_atomic(
            [UpdateMeta("execution", "taken", {"state": "ended"})],
            outcomes,
            expect=[ExpectMeta("execution", "taken", "state", "running")],
        )
        store.submit_atomic(journal_writes(2), outcomes)
    calls = outcomes.wait()
    assert calls[0][1] is None
    assert isinstance(calls[1][1], Conflict)
    assert calls[2][1] is None
    assert store.get_object("execution", "taken").meta == {"state": "paused"}
    assert store.list_ids("execution") == ["s1", "s2", "taken"]


def test_a_sync_write_after_submitted_ones_commits_them_first(store: Store) -> None:
    outcomes = Outcomes(1)
    with a_commit_under_way(store, lambda: store.submit_atomic(journal_writes(1), outcomes)):
        waiter = threading.Thread(
            target=store.append_file, args=("execution", "s1", "journal", b"more\n")
        )
        waiter.start()
    waiter.join(WAIT_S)
    [(results, error)] = outcomes.wait()
    assert error is None
    assert [type(result).__name__ for result in results] == ["StoredObject", "FileInfo"]
    assert store.read_file("execution", "s1", "journal") == b"start\nmore\n"


def test_bad_writes_are_refused_at_once_and_a_closed_store_says_stopped(store: Store) -> None:
    outcomes = Outcomes(1)
    with pytest.raises(InvalidInput):
        store.submit_atomic([AppendFile("execution", "", "journal", b"x")], outcomes)
    store.submit_atomic([], outcomes)  # nothing to write: called back at once
    assert outcomes.wait() == [([], None)]
    store.close()
    with pytest.raises(Stopped):
        store.submit_atomic(journal_writes(1), outcomes)


def test_close_commits_what_was_submitted_and_calls_back(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "c.db", now_ms=FakeClock().now_ms)
    outcomes = Outcomes(100)
    with a_commit_under_way(store, lambda: store.submit_atomic(journal_writes(0), outcomes)):
        for n in range(1, 100):
            store.submit_atomic(journal_writes(n), outcomes)
        closer = threading.Thread(target=store.close)
        closer.start()
    closer.join(WAIT_S)
    assert [error for _results, error in outcomes.wait()] == [None] * 100
    again = Store.open(tmp_path / "c.db", now_ms=FakeClock().now_ms)
    try:
        assert len(again.list_ids("execution")) == 100
    finally:
        again.close()


def test_a_lone_write_is_committed_on_the_submitting_thread(store: Store) -> None:
    outcomes = Outcomes(1)
    store.submit_atomic(journal_writes(1), outcomes)
    assert len(outcomes.calls) == 1  # before submit returned
    assert outcomes.calls[0][1] is None
    assert outcomes.threads == {threading.get_ident()}
