"""Group commit in the store: concurrent writes share a transaction, errors stay apart."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from greenroom import FakeClock
from greenroom.errors import NotFound, Stopped, StorageError
from greenroom.store import Store
from tests.stores import ENGINES, open_test_store, reopen_test_store


def _queue_then_release(store: Store, calls: list[Callable[[], object]]) -> list[object]:
    """Queue every call while the store lock is held, so they run as one batch."""
    outcomes: list[object] = [None] * len(calls)

    def run(index: int) -> None:
        try:
            outcomes[index] = calls[index]()
        except Exception as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    with store._lock:  # white box: stall the writer so every call queues up
        for thread in threads:
            thread.start()
        while True:
            with store._queue_lock:
                if len(store._queue) == len(calls):
                    break
            threading.Event().wait(0.001)
    for thread in threads:
        thread.join()
    return outcomes


@pytest.fixture(params=ENGINES)
def store(request: pytest.FixtureRequest, tmp_path: Path):
    store = open_test_store(request, tmp_path / "s.db", now_ms=FakeClock().now_ms)
    for n in range(6):
        store.ensure_object("block", f"b{n}")
    yield store
    store.close()


def test_one_batch_one_commit_and_a_failing_write_stays_apart(store: Store) -> None:
    commits_before = store.stats()["store_commits"]
    calls: list[Callable[[], object]] = [
        lambda n=n: store.update_meta("block", f"b{n}", {"n": n}) for n in range(6)
    ]
    calls.append(lambda: store.update_meta("block", "missing", {"n": 1}))
    outcomes = _queue_then_release(store, calls)
    assert isinstance(outcomes[-1], NotFound)
    assert store.stats()["store_commits"] == commits_before + 1
    for n in range(6):
        assert store.get_object("block", f"b{n}").meta == {"n": n}
        assert store.get_object("block", f"b{n}").version == 2


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    """The store on SQLite only (for what a trigger in the file does)."""
    store = Store.open(tmp_path / "s.db", now_ms=FakeClock().now_ms)
    for n in range(6):
        store.ensure_object("block", f"b{n}")
    yield store
    store.close()


def test_a_write_that_kills_the_transaction_fails_the_whole_batch_loudly(
    sqlite_store: Store, tmp_path: Path
) -> None:
    store = sqlite_store
    with sqlite3.connect(tmp_path / "s.db") as conn:
        conn.execute(
            "CREATE TRIGGER poison BEFORE UPDATE ON objects WHEN NEW.id = 'b3' "
            "BEGIN SELECT RAISE(ROLLBACK, 'poisoned row'); END"
        )
    conn.close()
    calls: list[Callable[[], object]] = [
        lambda n=n: store.update_meta("block", f"b{n}", {"n": n}) for n in range(6)
    ]
    outcomes = _queue_then_release(store, calls)
    assert isinstance(outcomes[3], StorageError)
    assert "poisoned row" in str(outcomes[3])
    # Nothing is reported done that was not committed, and nothing committed is hidden.
    for n, outcome in enumerate(outcomes):
        stored = store.get_object("block", f"b{n}").meta
        if isinstance(outcome, Exception):
            assert isinstance(outcome, StorageError)
            assert stored == {}
        else:
            assert stored == {"n": n}
    # The store still works afterwards.
    assert store.update_meta("block", "b0", {"after": True}).meta["after"] is True


def test_writes_queued_before_close_still_commit(store: Store, tmp_path: Path) -> None:
    outcome: list[object] = []
    with store._lock:  # white box: stall the writer, queue a write, then close
        thread = threading.Thread(
            target=lambda: outcome.append(_call(lambda: store.update_meta("block", "b0", {"x": 1})))
        )
        thread.start()
        while True:
            with store._queue_lock:
                if store._queue:
                    break
            threading.Event().wait(0.001)
        closer = threading.Thread(target=store.close)
        closer.start()
        while not store.closed:
            threading.Event().wait(0.001)
    thread.join()
    closer.join()
    assert len(outcome) == 1
    assert not isinstance(outcome[0], Exception), outcome[0]
    with pytest.raises(Stopped):
        store.update_meta("block", "b0", {"x": 2})
    reopened = reopen_test_store(store, tmp_path / "s.db")
    assert reopened.get_object("block", "b0").meta == {"x": 1}
    reopened.close()


def _call(fn: Callable[[], object]) -> object:
    try:
        return fn()
    except Exception as exc:
        return exc
