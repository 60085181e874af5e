"""`PostgresStore`: the store on PostgreSQL (psycopg 3), for several hosts on one database.

    store = PostgresStore.connect("postgresql://greenroom@127.0.0.1:5432/greenroom")
    store.ensure_object("block", "b1", {"view": "agent"})   # every call of `Store`

The same code as the SQLite store (`greenroom.store.Store`): the same tables, checks,
group commit, results and errors; what differs is below its SQL.

* **Writes** go through one connection of this process. What SQLite's single writer
  gives for free, row locks give here: a write reads the rows it is about to change
  with `FOR UPDATE`, so two hosts' read-then-write (an append that expects a size, a
  metadata merge) never interleave: the second waits, then reads afresh. A write that
  lost a race all the same (both inserted one new row, or a deadlock) was rolled back
  whole and runs again, up to `CONFLICT_ATTEMPTS` times (then its caller gets
  `StorageError`).
* **Reads** take a connection from a pool (`psycopg_pool`, `pool_size` connections), so
  they run side by side and never wait for a commit.
* **Schema**: the tables of `greenroom.store` (metadata as `jsonb`, chunks as `bytea`,
  text keys in the "C" collation, so ids sort as SQLite sorts them), made once under
  an advisory lock; the version is kept in `greenroom_schema` and a newer one is
  refused (`SchemaTooNew`).
* `query()` runs PostgreSQL's SQL (`?` placeholders are rewritten to psycopg's).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

from greenroom.clock import SystemClock
from greenroom.errors import InvalidInput, SchemaTooNew, StorageError
from greenroom.models import StoredObject
from greenroom.store import (
    SCHEMA_VERSION,
    Database,
    DbConnection,
    Store,
    _object_from_row,
    _WriteSlot,
)
from greenroom.urls import is_postgres_url, shown_url
from greenroom.write_plan import Step

try:  # the `postgres` extra
    import psycopg
    import psycopg.errors
    from psycopg.pq import TransactionStatus
    from psycopg.types.string import TextLoader
    from psycopg_pool import ConnectionPool
except ImportError:  # pragma: no cover (checked when a PostgreSQL URL is opened)
    psycopg = None  # type: ignore[assignment]

__all__ = ["CONFLICT_ATTEMPTS", "PostgresStore", "is_postgres_url"]

_AGAIN: tuple[type[Exception], ...] = (
    (
        psycopg.errors.SerializationFailure,
        psycopg.errors.DeadlockDetected,
        psycopg.errors.UniqueViolation,
        psycopg.errors.LockNotAvailable,
    )
    if psycopg is not None
    else ()
)

log = logging.getLogger("greenroom.store")

CONFLICT_ATTEMPTS = 10
"""How many times a write that conflicted with another host's runs before it fails."""

_LOCK_KEY = 0x67726E72  # the advisory lock the schema is made under ("grnr")
_SQL_CACHE: dict[str, str] = {}
_SQL_CACHE_MAX = 4096
_LOCK_TIMEOUT = "10s"  # a row lock held longer (a stalled host): the write runs again


def _dialect(sql: str, *, writer: bool = False) -> str:
    """The store's SQL (SQLite's) as PostgreSQL takes it through psycopg. On the
    writer's connection, a `SELECT` of `objects` or `files` (a write reading what it is
    about to change) locks the rows it reads (`FOR UPDATE`): another host's write of
    them waits for this transaction, then reads them afresh."""
    key = sql if not writer else "w:" + sql
    found = _SQL_CACHE.get(key)
    if found is None:
        if len(_SQL_CACHE) >= _SQL_CACHE_MAX:
            _SQL_CACHE.clear()  # (statements with values in their text: keep it bounded)
        found = sql.replace("%", "%%").replace("?", "%s")
        if found.startswith("BEGIN IMMEDIATE"):
            found = "BEGIN"
        elif writer and _LOCKED_READ.match(found):
            found += " FOR UPDATE"
        _SQL_CACHE[key] = found
    return found


_LOCKED_READ = re.compile(r"^\s*SELECT\b[^;]*\bFROM (objects|files)\b(?![^;]*\b(FROM|JOIN)\b)")


class _PgConnection:
    """A psycopg connection with the shape the store writes through (`DbConnection`)."""

    def __init__(self, conn: Any, *, writer: bool = False) -> None:
        self._conn = conn
        self._writer = writer

    @property
    def in_transaction(self) -> bool:
        return bool(self._conn.info.transaction_status != TransactionStatus.IDLE)

    def execute(self, sql: str, parameters: Any = None, /) -> Any:
        statement = _dialect(sql, writer=self._writer)
        # Always a list, so psycopg reads `%%` as `%` whether or not there are any.
        return self._conn.execute(statement, list(parameters or ()))

    def executemany(self, sql: str, parameters: Any, /) -> Any:
        cursor = self._conn.cursor()
        rows = [list(row) for row in parameters]
        if rows:
            cursor.executemany(_dialect(sql, writer=self._writer), rows)
        return cursor

    def close(self) -> None:
        self._conn.close()

    @property
    def broken(self) -> bool:
        """Whether the connection is closed or lost (the server went away)."""
        return bool(self._conn.closed or self._conn.broken)

    def replace(self, conn: Any) -> None:
        """Use `conn` from now on (the old one broke)."""
        with contextlib.suppress(Exception):
            self._conn.close()
        self._conn = conn


class _PgDatabase:
    """A `_PgConnection` with the shape of the store's `Database`."""

    def __init__(self, conn: Any, *, writer: bool = False) -> None:
        self.conn = _PgConnection(conn, writer=writer)

    def execute(self, sql: str, parameters: Any = None) -> Any:
        return self.conn.execute(sql, parameters)

    def close(self) -> None:
        self.conn.close()


class PostgresStore(Store):
    """The store's contract on PostgreSQL; see the module docstring."""

    db_errors: ClassVar[tuple[type[Exception], ...]] = (
        (psycopg.Error,) if psycopg is not None else ()
    )

    dialect: ClassVar[str] = "postgresql"

    def __init__(
        self,
        db: Database,
        url: str,
        pool: Any,
        *,
        now_ms: Callable[[], int],
        chunk_bytes: int,
    ) -> None:
        """Wrap an open connection and read pool; use `PostgresStore.connect` instead."""
        super().__init__(db, shown_url(url), now_ms=now_ms, chunk_bytes=chunk_bytes)
        self._pool = pool
        self._url = url

    @property
    def url(self) -> str:
        """The URL this store connected to (its password included: not for logs)."""
        return self._url

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        now_ms: Callable[[], int] | None = None,
        chunk_bytes: int = 256 * 1024,
        pool_size: int = 4,
    ) -> PostgresStore:
        """Connect to the database at `url`, creating greenroom's tables when new.

        `StorageError` when it does not answer or refuses; `SchemaTooNew` for tables
        written by a newer greenroom.
        """
        if psycopg is None:  # pragma: no cover (the extra is part of the dev install)
            raise InvalidInput(
                "a PostgreSQL store needs psycopg: pip install 'greenroom[postgres]'"
            )
        if not is_postgres_url(url):
            raise InvalidInput(f"not a PostgreSQL URL (postgresql://...): {shown_url(url)!r}")
        if isinstance(chunk_bytes, bool) or not isinstance(chunk_bytes, int) or chunk_bytes <= 0:
            raise InvalidInput(f"chunk_bytes must be a positive int, got {chunk_bytes!r}")
        conn = None
        pool = None
        try:
            conn = psycopg.connect(url, autocommit=True)
            _configure(conn, writer=True)
            _create_schema(conn, url)
            pool = ConnectionPool(
                url,
                min_size=1,
                max_size=max(1, pool_size),
                kwargs={"autocommit": True},
                configure=_configure,
                open=True,
                name="greenroom-store-reads",
            )
        except SchemaTooNew:
            conn.close()  # type: ignore[union-attr]
            raise
        except psycopg.Error as exc:
            if conn is not None:
                conn.close()
            if pool is not None:
                pool.close()
            raise StorageError(f"cannot open store {shown_url(url)!r}: {exc}") from exc
        if now_ms is None:
            now_ms = SystemClock().now_ms
        writer = _PgDatabase(conn, writer=True)
        return cls(writer, url, pool, now_ms=now_ms, chunk_bytes=chunk_bytes)

    def close(self) -> None:
        """As `Store.close`, and the read pool closed too."""
        try:
            super().close()
        finally:
            self._pool.close()

    @contextlib.contextmanager
    def _reading(self, what: str) -> Iterator[Database]:
        """A pooled connection; a PostgreSQL error becomes `StorageError`."""
        self._ensure_open()
        try:
            with self._pool.connection() as conn:
                yield _PgDatabase(conn)
        except psycopg.Error as exc:
            raise StorageError(f"could not {what} in store {self._path!r}: {exc}") from exc

    def _read_schema_version(self, db: Database) -> int:
        return int(db.execute("SELECT max(version) FROM greenroom_schema").fetchone()[0])

    def _page_chunks(
        self, kind: str, object_id: str, name: str, lo: int, hi: int | None, what: str
    ) -> Iterator[tuple[int, bytes]]:
        """A row at a time: psycopg reads a statement's rows without letting go of the
        interpreter's lock for each (SQLite's statements are joined in pages instead)."""
        return self._page_chunk_rows(kind, object_id, name, lo, hi, what)

    def _plan_steps(self, op: Callable[[], Any]) -> tuple[list[Step], bool] | None:
        """None: every write runs as it is (psycopg sends a statement's rows without
        letting go of the interpreter's lock for each, and the plan's SQL is SQLite's)."""
        return None

    def _run_batch(self, batch: list[_WriteSlot]) -> None:
        """As `Store._run_batch`; the writes another host's transaction conflicted with
        (rolled back whole: nothing of theirs committed) run again. A writer connection
        that broke (the server restarted) is made again first."""
        self._reconnect_if_broken()
        todo = batch
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            super()._run_batch(todo)
            again = [slot for slot in todo if _conflicted(slot.error)]
            if not again or attempt == CONFLICT_ATTEMPTS:
                return
            log.debug("store: %d write(s) conflicted with another host's; again", len(again))
            for slot in again:
                slot.done = False
                slot.value = None
                slot.error = None
            todo = again

    def _reconnect_if_broken(self) -> None:
        conn = self._db.conn
        if not conn.broken:
            return
        try:
            fresh = psycopg.connect(self._url, autocommit=True)
            _configure(fresh, writer=True)
        except psycopg.Error as exc:
            log.warning(
                "store %s: the writer connection could not be made again: %s", self._path, exc
            )
            return
        conn.replace(fresh)
        log.warning("store %s: the writer connection broke; made again", self._path)

    def _renew_leases(
        self,
        kind: str,
        ids: list[str],
        owner: str,
        owner_key: str,
        until_key: str,
        until: int,
    ) -> list[str]:
        """`Store._renew_leases` on PostgreSQL: one statement, the ids it renewed."""
        rows = self._db.conn.execute(
            f"UPDATE objects SET meta = jsonb_set(meta, {_jsonb_path(until_key)}, "
            "to_jsonb(?::bigint)) WHERE kind = ? AND id = ANY(?) "
            f"AND meta->>'{owner_key}' = ? RETURNING id",
            [until, kind, ids, owner],
        ).fetchall()
        return [row[0] for row in rows]

    def _not_owned(self, kind: str, ids: list[str], key: str, owner: str) -> set[str]:
        """`Store._not_owned` on PostgreSQL (the rows read locked: FOR UPDATE)."""
        rows = self._db.conn.execute(
            f"SELECT id FROM objects WHERE kind = ? AND id = ANY(?) "
            f"AND coalesce(meta->>'{key}', '') <> ?",
            [kind, ids, owner],
        ).fetchall()
        return {row[0] for row in rows}

    # psycopg sends an `executemany` in one go, and reads a statement's rows without
    # letting go of the interpreter's lock for each: a row a parameter set here.

    def _insert_objects(self, rows: list[tuple[str, str, str]]) -> int:
        """`Store._insert_objects` on PostgreSQL."""
        now = int(self._now_ms())
        cursor = self._db.conn.executemany(
            "INSERT INTO objects (kind, id, meta, version, created_ms, updated_ms) "
            f"VALUES (?, ?, ?, 1, {now}, {now}) ON CONFLICT DO NOTHING",
            rows,
        )
        created: int = max(0, cursor.rowcount)
        return created

    def _object_rows(self, db: Database, kind: str) -> list[tuple[Any, ...]]:
        """`Store._object_rows` on PostgreSQL."""
        return self._object_rows_each(db, kind)

    def _id_rows(self, db: Database, kind: str) -> list[tuple[Any, ...]]:
        """`Store._id_rows` on PostgreSQL."""
        return self._id_rows_each(db, kind)

    def _file_counts(self, kind: str, name: str, ids: list[str]) -> list[tuple[Any, ...]]:
        """`Store._file_counts` on PostgreSQL."""
        marks = ", ".join("?" * len(ids))
        rows = self._db.conn.execute(
            "SELECT id, size, chunks, next_seq, created_ms, updated_ms FROM files "
            f"WHERE kind = ? AND name = ? AND id IN ({marks})",
            [kind, name, *ids],
        ).fetchall()
        return [tuple(row) for row in rows]

    def _objects_among(self, conn: DbConnection, kind: str, ids: list[str]) -> list[StoredObject]:
        """`Store._objects_among` on PostgreSQL: a row each."""
        rows = conn.execute(
            "SELECT kind, id, meta, version, created_ms, updated_ms FROM objects "
            "WHERE kind = ? AND id = ANY(?)",
            [kind, ids],
        ).fetchall()
        return [_object_from_row(tuple(row)) for row in rows]

    def _existing_ids(self, kind: str, ids: list[str]) -> set[str]:
        """`Store._existing_ids` on PostgreSQL."""
        rows = self._db.conn.execute(
            "SELECT id FROM objects WHERE kind = ? AND id = ANY(?)", [kind, ids]
        ).fetchall()
        return {row[0] for row in rows}

    def _insert_files(self, rows: list[tuple[Any, ...]]) -> None:
        """`Store._insert_files` on PostgreSQL."""
        self._db.conn.executemany(
            "INSERT INTO files (kind, id, name, size, chunks, next_seq, created_ms, "
            "updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )

    def _insert_chunks(self, rows: list[tuple[Any, ...]]) -> None:
        """`Store._insert_chunks` on PostgreSQL."""
        self._db.conn.executemany(
            "INSERT INTO file_chunks (kind, id, name, seq, start, data) VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )

    def _update_file_counts(self, rows: list[tuple[Any, ...]]) -> None:
        """`Store._update_file_counts` on PostgreSQL."""
        self._db.conn.executemany(
            "UPDATE files SET size = ?, chunks = ?, next_seq = ?, updated_ms = ? "
            "WHERE kind = ? AND id = ? AND name = ?",
            rows,
        )

    def _set_values(self, rows: dict[tuple[str, ...], list[list[Any]]]) -> int:
        """`Store._set_values` on PostgreSQL: each object's keys merged into its `jsonb`."""
        now = int(self._now_ms())
        changed = 0
        conn = self._db.conn
        for keys, params in rows.items():
            patches = [
                [json.dumps(dict(zip(keys, row[: len(keys)], strict=True))), *row[len(keys) :]]
                for row in params
            ]
            cursor = conn.executemany(
                f"UPDATE objects SET meta = meta || ?::jsonb, version = version + 1, "
                f"updated_ms = {now} WHERE kind = ? AND id = ? "
                "AND jsonb_typeof(meta) = 'object'",
                patches,
            )
            changed += max(0, cursor.rowcount)
        return changed


def _jsonb_path(key: str) -> str:
    """A plain metadata key as a one-element jsonb path literal: '{key}'."""
    return "'{" + key.replace('"', "") + "}'"


def _configure(conn: Any, *, writer: bool = False) -> None:
    """Metadata comes back as the JSON text the store checks itself, not parsed; the
    writer waits for a row lock at most `_LOCK_TIMEOUT` (then its write runs again)."""
    conn.adapters.register_loader("jsonb", TextLoader)
    if writer:
        conn.execute(f"SET lock_timeout = '{_LOCK_TIMEOUT}'")


def _conflicted(error: BaseException | None) -> bool:
    """Whether `error` came from another host's write: a deadlock, a row it inserted
    first (a unique key), a serialization failure. Run it again: it reads afresh."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, _AGAIN):
            return True
        error = error.__cause__ or error.__context__
        seen += 1
    return False


def _create_schema(conn: Any, url: str) -> None:
    """Make greenroom's tables if missing, under an advisory lock (several hosts may
    open a new database at once); `SchemaTooNew` for a newer version."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
        conn.execute("CREATE TABLE IF NOT EXISTS greenroom_schema (version integer NOT NULL)")
        found = conn.execute("SELECT max(version) FROM greenroom_schema").fetchone()[0]
        if found is not None and found > SCHEMA_VERSION:
            raise SchemaTooNew(shown_url(url), found, SCHEMA_VERSION)
        if found == SCHEMA_VERSION:
            return
        conn.execute(
            """
            CREATE TABLE IF NOT EXISTS objects (
                kind text COLLATE "C" NOT NULL,
                id text COLLATE "C" NOT NULL,
                meta jsonb NOT NULL,
                version bigint NOT NULL,
                created_ms bigint NOT NULL,
                updated_ms bigint NOT NULL,
                PRIMARY KEY (kind, id)
            )"""
        )
        conn.execute(
            """
            CREATE TABLE IF NOT EXISTS files (
                kind text COLLATE "C" NOT NULL,
                id text COLLATE "C" NOT NULL,
                name text COLLATE "C" NOT NULL,
                size bigint NOT NULL,
                chunks bigint NOT NULL,
                next_seq bigint NOT NULL,
                created_ms bigint NOT NULL,
                updated_ms bigint NOT NULL,
                PRIMARY KEY (kind, id, name)
            )"""
        )
        conn.execute(
            """
            CREATE TABLE IF NOT EXISTS file_chunks (
                kind text COLLATE "C" NOT NULL,
                id text COLLATE "C" NOT NULL,
                name text COLLATE "C" NOT NULL,
                seq bigint NOT NULL,
                start bigint NOT NULL,
                data bytea NOT NULL,
                PRIMARY KEY (kind, id, name, seq)
            )"""
        )
        conn.execute("INSERT INTO greenroom_schema (version) VALUES (%s)", [SCHEMA_VERSION])
    log.info("created greenroom store schema version %d in %s", SCHEMA_VERSION, shown_url(url))
