"""The store engines the store suites run on: SQLite, and PostgreSQL when there is one."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from greenroom import FakeClock
from greenroom.store import Store
from greenroom.store_postgres import PostgresStore

ENGINES = ["sqlite", "postgres"]
"""The params of a store fixture (`open_test_store` opens the one asked for)."""


def open_test_store(request: pytest.FixtureRequest, path: Path, **options: Any) -> Store:
    """A store on `request.param`'s engine: the SQLite file `path`, or a PostgreSQL
    schema of the test's own (`pg_url`; skipped without a server). `options` as
    `Store.open` takes them (`now_ms`, `chunk_bytes`; SQLite's own are dropped on
    PostgreSQL)."""
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")
        kept = {key: options[key] for key in ("now_ms", "chunk_bytes") if key in options}
        return PostgresStore.connect(url, **kept)
    return Store.open(path, **options)


@contextlib.contextmanager
def sqlite_store(path: Path, **options: Any) -> Iterator[Store]:
    """A SQLite store on `path` on a fake clock (`options` as `Store.open` takes
    them), closed after the block."""
    store = Store.open(path, **{"now_ms": FakeClock().now_ms, **options})
    try:
        yield store
    finally:
        store.close()


def reopen_test_store(store: Store, path: Path, **options: Any) -> Store:
    """Another store on `store`'s database (its engine, its file or schema)."""
    if isinstance(store, PostgresStore):
        kept = {key: options[key] for key in ("now_ms", "chunk_bytes") if key in options}
        return PostgresStore.connect(store.url, **kept)
    return Store.open(path, **options)


def run_together(count: int, work: Callable[[int], None]) -> list[BaseException]:
    """Run `work(index)` on `count` threads started together; return what they raised."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait()
            work(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors
