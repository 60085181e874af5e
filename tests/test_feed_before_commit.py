"""`feed_many(durable=False)`: a pause answered before the feed's own journal write
commits, after every earlier one; a crash in between loses only what the caller kept.

The store's write lock is held by a second SQLite connection, as another process
would hold it, so the feed's commit cannot happen while the test looks.
"""

from __future__ import annotations

import concurrent.futures
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from greenroom import FakeClock, Runtime, RuntimeConfig

pytestmark = pytest.mark.timeout(60)


async def three_questions(ctx: Any, topic: str) -> list[str]:
    """Ask three questions, one at a time."""
    return [await ctx.llm(f"{topic} {i}") for i in range(3)]


def open_rt(db: Path) -> Runtime:
    rt = Runtime.open(db, clock=FakeClock(), config=RuntimeConfig(sqlite_synchronous="FULL"))
    rt.executions.register("three", three_questions)
    return rt


@pytest.fixture
def write_lock(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A connection that takes the database's write lock with `BEGIN IMMEDIATE`."""
    conn = sqlite3.connect(tmp_path / "h.db", isolation_level=None, timeout=10)
    yield conn
    if conn.in_transaction:
        conn.execute("ROLLBACK")
    conn.close()


def test_a_feed_that_is_not_durable_answers_while_its_commit_waits(
    tmp_path: Path, write_lock: sqlite3.Connection
) -> None:
    db = tmp_path / "h.db"
    with open_rt(db) as rt:
        sid = rt.executions.start("three", "t").session_id
        write_lock.execute("BEGIN IMMEDIATE")
        # The commit cannot happen now; a durable feed would wait for it (and fail
        # after the store's busy timeout). This one answers with the next round.
        step = rt.executions.feed_many(sid, [("q-1-0", "a", None)], durable=False)
        assert (step.status, [q.id for q in step.queries]) == ("needs_response", ["q-2-0"])
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            # The next feed waits for the write before it, durable or not.
            later = pool.submit(rt.executions.feed_many, sid, [("q-2-0", "b", None)], durable=False)
            with pytest.raises(concurrent.futures.TimeoutError):
                later.result(timeout=0.3)
            write_lock.execute("ROLLBACK")
            assert [q.id for q in later.result(timeout=10).queries] == ["q-3-0"]
        done = rt.executions.feed(sid, "c")  # durable: answered once it is committed
    assert done.result == ["a", "b", "c"]
    with open_rt(db) as again:  # everything is in the journal
        assert again.executions.resume(sid).result == ["a", "b", "c"]


def test_a_durable_feed_still_waits_for_its_commit(
    tmp_path: Path, write_lock: sqlite3.Connection
) -> None:
    with open_rt(tmp_path / "h.db") as rt:
        sid = rt.executions.start("three", "t").session_id
        write_lock.execute("BEGIN IMMEDIATE")
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            fed = pool.submit(rt.executions.feed_many, sid, [("q-1-0", "a", None)])
            with pytest.raises(concurrent.futures.TimeoutError):
                fed.result(timeout=0.3)
            write_lock.execute("ROLLBACK")
            assert [q.id for q in fed.result(timeout=10).queries] == ["q-2-0"]
