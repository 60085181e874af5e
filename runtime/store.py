"""The embedded store: objects with JSON metadata and named byte files, in SQLite.

One `Store` wraps one SQLite database through sqlite-utils. Every call runs on one
connection under one lock, so writes from many actor threads are serialised in the
process: none is lost and none fails with "database is locked" (the busy timeout only
matters when another process, such as the CLI, writes at the same moment). Writes that
arrive while another is committing are grouped into the next transaction, each in its
own savepoint: one commit (one fsync) serves them all, and each caller still gets its
own result or error, only after the commit that holds its change. The database runs
in WAL mode, so readers in other processes do not block it.

A new database file is private (0600, its new folders 0700, by default), and several
processes may create the same one at once: the schema is made under the write lock.
What is read back is checked, since anyone with the file can edit it: metadata that is
not a JSON object within the bounds an update may write, a count or size of the wrong
type, a damaged chunk, all raise `StorageError` naming the row.

    store = Store.open("app.db")
    store.ensure_object("block", "b1", {"view": "agent"})
    store.update_meta("block", "b1", {"session:line_count": 3, "old:*": True})
    store.append_file("block", "b1", "output", b"hello\\n", create=True)
    store.read_file("block", "b1", "output")  # b"hello\\n"
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import itertools
import json
import logging
import math
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

import attrs
import sqlite_utils

from greenroom.checks import MAX_TIMEOUT_S, check_int, check_number, check_path
from greenroom.clock import SystemClock, stopwatch
from greenroom.errors import (
    Conflict,
    InvalidInput,
    InvalidTransition,
    NotFound,
    SchemaTooNew,
    Stopped,
    StorageError,
)
from greenroom.files import DEFAULT_DIR_MODE, DEFAULT_FILE_MODE, create_private, private_dir
from greenroom.meta import apply_update, dumps_meta, loads_meta, merge_meta, validate_update
from greenroom.models import AppendedMany, FileInfo, StoredObject, UnreadableObject
from greenroom.write_plan import (
    MAX_COUNT,
    MAX_VERSION,
    FileRow,
    ObjectRow,
    Replan,
    Step,
    WritePlan,
    planned_keys,
)

__all__ = [
    "SCHEMA_VERSION",
    "AppendFile",
    "CreateObject",
    "Database",
    "DbConnection",
    "DbCursor",
    "DeleteFile",
    "ExpectFile",
    "ExpectMeta",
    "RenameFile",
    "Store",
    "UpdateMeta",
]

T = TypeVar("T")

log = logging.getLogger("greenroom.store")

SCHEMA_VERSION = 1
"""The schema this greenroom writes; a database with a higher version is refused."""

_KIND = re.compile(r"[a-z][a-z0-9_]{0,63}")
_NAME = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")
_MAX_ID = 1024
_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
_SECURE_DELETE = ("OFF", "FAST", "ON")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.:@-]{1,256}")
_PLAIN_VALUE = (int, float, str)
_INFINITE = (math.inf, -math.inf)
_PAGE_ROWS = 64  # chunks read a statement, a row each (see Store._page_chunk_rows)
_PAGE_CHUNKS = 1024  # small chunks read joined, in one row (see Store._page_chunks)
_SMALL_CHUNK = 4096  # bytes: a chunk read joined with others (a page: at most 4 MB)
_IN_LIST = 500  # ids per `IN (...)` lookup: well under SQLite's bound on parameters
# Steps (creates, appends, updates) planned together (see Store._run_ops): a few
# statements each way, and what a plan makes in memory stays small (a larger plan's
# rows would outlive young collections and bring full ones sooner).
_PLAN_STEPS = 512
_NO_IDS: Mapping[str, object] = {}


def _check_kind(kind: object) -> str:
    if not isinstance(kind, str) or not _KIND.fullmatch(kind):
        raise InvalidInput(
            f"object kind must be 1-64 lowercase letters, digits or '_' starting with a "
            f"letter, got {kind!r}"
        )
    return kind


def _check_id(kind: str, object_id: object) -> str:
    if not isinstance(object_id, str) or not object_id or len(object_id) > _MAX_ID:
        shown = repr(object_id) if len(repr(object_id)) <= 80 else repr(object_id)[:77] + "..."
        raise InvalidInput(
            f"{kind} id must be a non-empty str of at most {_MAX_ID} characters, got {shown}"
            + (f" ({len(object_id)} characters)" if isinstance(object_id, str) else "")
        )
    if "\x00" in object_id:
        raise InvalidInput(f"{kind} id {object_id!r} contains a NUL character")
    if not object_id.isascii():
        try:
            object_id.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInput(f"{kind} id {object_id!r} is not valid Unicode text") from None
    return object_id


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInput(f"file name must be 1-128 letters, digits or '_.:@-', got {name!r}")
    return name


@attrs.frozen
class AppendFile:
    """A write for `Store.write_batch` and `Store.write_atomic`: append `data` to a file
    (created if `create`); with `expect_size`, only if the file holds exactly that many
    bytes (a missing file counts as 0), else `Conflict` and nothing is written."""

    kind: str
    object_id: str
    name: str
    data: bytes
    create: bool = True
    expect_size: int | None = None


@attrs.frozen
class CreateObject:
    """A write for `Store.write_atomic`: create the object (kind, id) with `meta`;
    `InvalidTransition` if it exists."""

    kind: str
    object_id: str
    meta: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class UpdateMeta:
    """A write for `Store.write_batch`: merge `update` into an object's metadata."""

    kind: str
    object_id: str
    update: Mapping[str, Any]


@attrs.frozen
class DeleteFile:
    """A write for `Store.write_atomic`: delete a file (if it exists)."""

    kind: str
    object_id: str
    name: str


@attrs.frozen
class RenameFile:
    """A write for `Store.write_atomic`: rename a file, replacing any called `new`."""

    kind: str
    object_id: str
    old: str
    new: str


@attrs.frozen
class ExpectFile:
    """A condition for `Store.write_atomic`: the file holds exactly `size` bytes (a
    missing file counts as 0)."""

    kind: str
    object_id: str
    name: str
    size: int


@attrs.frozen
class ExpectMeta:
    """A condition for `Store.write_atomic`: the object's metadata `key` is `value`
    (`None` also matches a missing key or object)."""

    kind: str
    object_id: str
    key: str
    value: Any


class _Op:
    """A queued write's operation, `func(store, *args)`, as one object while it waits
    for its commit: with thousands queued, each object one keeps is one more for the
    cyclic GC to walk (a `functools.partial` is two, its arguments a tuple the GC
    walks as long as the store is in it). Arguments that are all plain values make a
    tuple the GC stops tracking. `Store._plan_steps` reads `func` and `args`."""

    __slots__ = ("args", "func", "store")

    def __init__(self, func: Callable[..., Any], store: Store, args: tuple[Any, ...]) -> None:
        self.func = func
        self.store = store
        self.args = args

    def __call__(self) -> Any:
        return self.func(self.store, *self.args)


class _WriteSlot:
    """One queued write operation and, once its batch ran, its outcome."""

    __slots__ = ("done", "error", "on_done", "op", "value", "what")

    def __init__(
        self,
        what: str,
        op: Callable[[], Any],
        on_done: Callable[[Any, BaseException | None], object] | None = None,
    ) -> None:
        self.what = what
        self.op = op
        self.on_done = on_done  # a submitted write's callback (see Store.submit_atomic)
        self.done = False
        self.value: Any = None
        self.error: BaseException | None = None


def _call_back(batch: list[_WriteSlot]) -> None:
    """Tell submitted writes of a batch (now done, the store lock released) how it went."""
    for slot in batch:
        if slot.on_done is not None:
            try:
                slot.on_done(slot.value, slot.error)
            except Exception:  # a callback's failure is its own; the others are told
                log.exception("a submitted write's callback failed")


class DbCursor(Protocol):
    """What the store reads from a statement (a DB-API cursor)."""

    @property
    def rowcount(self) -> int:
        """Rows the statement changed."""
        ...

    def fetchone(self) -> Any:
        """The next row, or None."""
        ...

    def fetchall(self) -> list[Any]:
        """Every remaining row."""
        ...

    def __iter__(self) -> Iterator[Any]:
        """The rows."""
        ...


class DbConnection(Protocol):
    """The connection the store writes through (`sqlite3.Connection`'s shape)."""

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open."""
        ...

    def execute(self, sql: str, parameters: Any = ..., /) -> Any:
        """Run one statement; its cursor."""
        ...

    def executemany(self, sql: str, parameters: Any, /) -> Any:
        """Run one statement per row of parameters; a cursor (its rowcount the sum)."""
        ...


class Database(Protocol):
    """A connection and its helpers (`sqlite_utils.Database`'s shape)."""

    @property
    def conn(self) -> Any:
        """The `DbConnection`."""
        ...

    def execute(self, sql: str, parameters: Any = None) -> Any:
        """Run one statement; its cursor."""
        ...

    def close(self) -> None:
        """Close the connection."""
        ...


class Store:
    """Objects addressed by (kind, id) with JSON metadata, and named files per object.

    Open with `Store.open(path)`; a `Runtime` opens and owns one. Thread-safe. The
    engine's SQL goes through `Database` / `DbConnection`; `PostgresStore`
    (`greenroom.store_postgres`) runs the same code on PostgreSQL.
    """

    db_errors: ClassVar[tuple[type[Exception], ...]] = (sqlite3.Error,)
    """The engine's own errors (what becomes `StorageError`)."""
    dialect: ClassVar[str] = "sqlite"
    """The SQL `query` takes: `"sqlite"`, or `"postgresql"` (`PostgresStore`)."""

    def __init__(
        self,
        db: Database,
        path: str,
        *,
        now_ms: Callable[[], int],
        chunk_bytes: int,
        read_db: Database | None = None,
    ) -> None:
        """Wrap an open database; use `Store.open` instead."""
        self._db = db
        self._path = path
        self._now_ms = now_ms
        self._chunk_bytes = chunk_bytes
        # Chunks are joined as text (`_page_chunks`): byte for byte only in UTF-8 (a
        # database made UTF-16 elsewhere would change bytes that are not valid UTF-16).
        self._joins_chunks = (
            self.dialect == "sqlite" and db.execute("PRAGMA encoding").fetchone()[0] == "UTF-8"
        )
        self._lock = threading.Lock()
        # Reads use a connection of their own, so they never wait for a commit (WAL:
        # a read sees everything committed when it starts). In memory there is one.
        self._rdb = read_db or db
        self._read_lock = self._lock if read_db is None else threading.Lock()
        self._queue_lock = threading.Lock()
        self._queue: list[_WriteSlot] = []
        self._committer: concurrent.futures.ThreadPoolExecutor | None = None
        self._committing = False  # the committer has a drain under way or due
        self._closed = False
        self._commits = 0
        self._plan_faults = 0  # see `_plan_fault`

    # -- opening and closing -------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        now_ms: Callable[[], int] | None = None,
        chunk_bytes: int = 256 * 1024,
        synchronous: str = "FULL",
        busy_timeout_s: float = 5.0,
        secure_delete: str = "FAST",
        file_mode: int = DEFAULT_FILE_MODE,
        dir_mode: int = DEFAULT_DIR_MODE,
    ) -> Store:
        """Open (creating when new) the store at `path`, or `":memory:"` for a throwaway.

        `now_ms` supplies the timestamps written to rows (the runtime passes its
        clock's). A new database file is created with `file_mode` (SQLite gives its
        `-wal` and `-shm` files the same mode) and its missing folders with
        `dir_mode`; an existing file keeps its mode. Several processes may open (and
        create) the same new database at once. Raises `SchemaTooNew` for a database
        written by a newer greenroom and `StorageError` for a file that is not a
        usable SQLite database.
        """
        if synchronous not in _SYNCHRONOUS:
            raise InvalidInput(f"synchronous must be one of {_SYNCHRONOUS}, got {synchronous!r}")
        if secure_delete not in _SECURE_DELETE:
            raise InvalidInput(
                f"secure_delete must be one of {_SECURE_DELETE}, got {secure_delete!r}"
            )
        if isinstance(chunk_bytes, bool) or not isinstance(chunk_bytes, int) or chunk_bytes <= 0:
            raise InvalidInput(f"chunk_bytes must be a positive int, got {chunk_bytes!r}")
        busy_s = check_number(busy_timeout_s, "busy_timeout_s", minimum=0, maximum=MAX_TIMEOUT_S)
        check_int(file_mode, "file_mode", minimum=0, maximum=0o777)
        check_int(dir_mode, "dir_mode", minimum=0, maximum=0o777)
        target = path if path == ":memory:" else str(check_path(path, "the database path"))
        if target != ":memory:":
            _create_database_file(Path(target), file_mode, dir_mode)
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(target, check_same_thread=False)
            db = sqlite_utils.Database(conn, execute_plugins=False)
            # SQLite takes the busy timeout in milliseconds, as a C int.
            db.execute(f"PRAGMA busy_timeout = {min(int(busy_s * 1000), 2**31 - 1)}")
            deadline = stopwatch() + busy_s
            found = _retry_busy(deadline, lambda: _user_version(db))
            if found > SCHEMA_VERSION:
                raise SchemaTooNew(target, found, SCHEMA_VERSION)
            if target != ":memory:":
                _retry_busy(deadline, db.enable_wal)
            db.execute(f"PRAGMA synchronous = {synchronous}")
            # Many builds default to ON, which rewrites every freed page with zeros:
            # dropping a 100 MB output would write 100 MB more. FAST zeroes only
            # where that costs no extra I/O.
            db.execute(f"PRAGMA secure_delete = {secure_delete}")
            if found < SCHEMA_VERSION:
                _retry_busy(deadline, lambda: _create_schema(db, target))
        except SchemaTooNew:
            conn.close()  # type: ignore[union-attr]
            raise
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            raise StorageError(f"cannot open store {target!r}: {exc}") from exc
        read_db = None
        if target != ":memory:":
            try:
                read_conn = sqlite3.connect(target, check_same_thread=False)
                read_conn.execute(f"PRAGMA busy_timeout = {min(int(busy_s * 1000), 2**31 - 1)}")
                read_conn.execute("PRAGMA query_only = ON")
                read_db = sqlite_utils.Database(read_conn, execute_plugins=False)
            except sqlite3.Error as exc:
                conn.close()
                raise StorageError(f"cannot open store {target!r}: {exc}") from exc
        if now_ms is None:
            now_ms = SystemClock().now_ms
        return cls(db, target, now_ms=now_ms, chunk_bytes=chunk_bytes, read_db=read_db)

    @property
    def path(self) -> str:
        """The database path as given (or `":memory:"`)."""
        return self._path

    @property
    def schema_version(self) -> int:
        """The schema version recorded in the database."""
        with self._reading("read the schema version") as db:
            return self._read_schema_version(db)

    def _read_schema_version(self, db: Database) -> int:
        return int(db.execute("PRAGMA user_version").fetchone()[0])

    @property
    def closed(self) -> bool:
        """Whether `close()` was called."""
        return self._closed

    def close(self) -> None:
        """Close the database; later calls raise `Stopped`. Idempotent.

        Writes already queued when `close()` is called still commit; later ones fail.
        """
        with self._queue_lock:
            if self._closed:
                return
            self._closed = True
        batch: list[_WriteSlot] = []
        try:
            with self._lock:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                if batch:
                    self._run_batch(batch)
                try:
                    if self._rdb is not self._db:
                        with self._read_lock:
                            self._rdb.close()
                    self._db.close()
                except self.db_errors as exc:  # pragma: no cover - close rarely fails
                    raise StorageError(f"closing store {self._path!r} failed: {exc}") from exc
        finally:
            _call_back(batch)  # (with the store free, as for every callback)
            if self._committer is not None:
                # Its drain, if one is under way, finds the queue empty; wait for it
                # to have told its last batch's writers.
                self._committer.shutdown(wait=True)

    def stats(self) -> dict[str, int]:
        """Counters for `Runtime.metrics()`: committed write transactions, and batches
        that failed together with no write failing alone (`_plan_fault`)."""
        return {"store_commits": self._commits, "store_plan_faults": self._plan_faults}

    # -- transactions ------------------------------------------------------------------

    @contextlib.contextmanager
    def _reading(self, what: str) -> Iterator[Database]:
        """The read connection, held; an engine error becomes `StorageError`."""
        with self._read_lock:
            self._ensure_open()
            try:
                yield self._rdb
            except self.db_errors as exc:
                raise StorageError(f"could not {what} in store {self._path!r}: {exc}") from exc

    def _write(self, what: str, op: Callable[[], T]) -> T:
        """Run `op` in a write transaction and return its result (or raise its error).

        Group commit: callers queue their operation, and whichever thread holds the
        store lock next runs every queued operation in one transaction, each inside its
        own savepoint, so one failing operation is rolled back alone. One commit (one
        fsync) then serves the whole batch. Every caller returns only after the commit
        that holds its change, and sees its own error, if any.
        """
        [slot] = self._write_all([_WriteSlot(what, op)])
        if slot.error is not None:
            raise slot.error
        value: T = slot.value
        return value

    def _write_all(self, slots: list[_WriteSlot]) -> list[_WriteSlot]:
        """Queue several independent writes at once; return them done (value or error)."""
        with self._queue_lock:
            self._ensure_open()
            self._queue.extend(slots)
        batch: list[_WriteSlot] = []
        with self._lock:
            if not slots[-1].done:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                self._run_batch(batch)
        _call_back(batch)  # (submitted writes that joined this batch)
        return slots

    def _drain(self, *, inline: bool = False) -> None:
        """Commit what was submitted, batch after batch, until none is left (writes
        submitted during a commit make up the next batch). `inline`: on the thread
        that submitted into an idle store, which commits one batch itself (no hand-off
        for a lone writer) and leaves the rest to the committer thread."""
        while True:
            batch: list[_WriteSlot] = []
            try:
                with self._lock:
                    with self._queue_lock:
                        batch, self._queue = self._queue, []
                        if not batch:
                            self._committing = False
                            return
                    self._run_batch(batch)  # (every slot done, even when interrupted)
            except BaseException:
                # Interrupted (KeyboardInterrupt): its writes are told so, and what is
                # queued behind them goes to the committer, not left waiting.
                _call_back(batch)
                self._hand_off()
                raise
            _call_back(batch)
            if inline:
                self._hand_off()
                return

    def _hand_off(self) -> None:
        """Leave what is queued to the committer thread (or commit it here, if the
        committer is gone: the interpreter is exiting); the store idle if nothing is."""
        with self._queue_lock:
            if not self._queue or self._closed:
                self._committing = False
                return
            self._committing = True
            committer = self._committer_locked()
        try:
            committer.submit(self._drain)
        except RuntimeError:  # shut down (at exit): no thread to hand it to
            self._drain()

    def _run_batch(self, batch: list[_WriteSlot]) -> None:
        """Run queued writes in one transaction; on return every slot is done.

        Several writes are first tried together with no savepoint (a savepoint per
        write costs a third of a small write's time); if one fails, that transaction
        is rolled back and the batch runs again, each write in its own savepoint, so
        the failing one is rolled back alone.
        """
        together: Exception | None = None  # why the batch failed together, if it did
        if len(batch) > 1:
            try:
                together = self._run_together(batch)
                if together is None:
                    return
            except BaseException as exc:  # (KeyboardInterrupt and the like: nothing written)
                for slot in batch:
                    slot.error = StorageError(
                        f"could not {slot.what} in store {self._path!r}: interrupted ({exc!r})"
                    )
                    slot.done = True
                raise
        conn = self._db.conn
        savepoints = len(batch) > 1
        try:
            conn.execute("BEGIN IMMEDIATE")
            for index, slot in enumerate(batch):
                if savepoints:
                    conn.execute(f"SAVEPOINT w{index}")
                try:
                    slot.value = slot.op()
                except Exception as exc:
                    slot.error = self._translate(exc, slot.what)
                    if not conn.in_transaction:
                        raise  # the error ended the whole transaction: fail the batch
                    if savepoints:
                        conn.execute(f"ROLLBACK TO w{index}")
                        conn.execute(f"RELEASE w{index}")
                else:
                    if savepoints:
                        conn.execute(f"RELEASE w{index}")
            if batch[0].error is not None and not savepoints:
                conn.execute("ROLLBACK")
            else:
                conn.execute("COMMIT")
                self._commits += 1
                if together is not None and all(slot.error is None for slot in batch):
                    self._plan_fault(len(batch), together)
        except BaseException as exc:
            # Nothing of this batch is committed: every caller whose write looked fine
            # gets the error too, so no change is reported done that was rolled back.
            if conn.in_transaction:
                with contextlib.suppress(*self.db_errors):
                    conn.execute("ROLLBACK")
            for slot in batch:
                if slot.error is None:
                    slot.value = None
                    slot.error = StorageError(
                        f"could not {slot.what} in store {self._path!r}: the transaction it "
                        f"shared with other writes failed and was rolled back ({exc})"
                    )
                    slot.error.__cause__ = exc
            if not isinstance(exc, Exception):
                raise
        finally:
            for slot in batch:
                slot.done = True

    def _run_together(self, batch: list[_WriteSlot]) -> Exception | None:
        """Run every write of `batch` in one plain transaction: None, every slot done,
        if all of them succeeded and it committed; else the error that stopped it,
        nothing written."""
        conn = self._db.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            values = self._run_ops(batch)
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                with contextlib.suppress(*self.db_errors):
                    conn.execute("ROLLBACK")
            if not isinstance(exc, Exception):
                raise
            # (Expected when a write fails; otherwise a sign of a fault in the plan.)
            log.debug(
                "store %r: a batch of %d writes failed together (%s: %s); each runs in a "
                "savepoint of its own",
                self._path,
                len(batch),
                type(exc).__name__,
                exc,
            )
            return exc  # (run again with savepoints: each write's own outcome)
        self._commits += 1
        for slot, value in zip(batch, values, strict=True):
            slot.value = value
            slot.done = True
        return None

    def _plan_fault(self, writes: int, error: Exception) -> None:
        """A batch failed together and then every write of it succeeded alone: no write
        explains the failure, so planning them together has a fault (or the engine
        failed once). Nothing is lost (each write is stored); it cost time: counted
        and logged."""
        self._plan_faults += 1
        log.warning(
            "store %r: a batch of %d writes failed together (%s: %s), then each succeeded "
            "alone: a fault in planning them together, or an engine error that passed "
            "(counted in store_plan_faults; every write is stored)",
            self._path,
            writes,
            type(error).__name__,
            error,
        )

    def _run_ops(self, batch: list[_WriteSlot]) -> list[Any]:
        """Every write of `batch` run in order (in the open transaction): their values.
        Runs of writes a plan takes (`_plan_steps`) are planned together."""
        values: list[Any] = [None] * len(batch)
        run: list[tuple[int, list[Step], bool]] = []
        steps = 0
        for index, slot in enumerate(batch):
            planned = self._plan_steps(slot.op)
            if planned is None:
                self._run_planned(batch, run, values)
                run, steps = [], 0
                values[index] = slot.op()
                continue
            run.append((index, *planned))
            steps += len(planned[0])
            if steps >= _PLAN_STEPS:
                self._run_planned(batch, run, values)
                run, steps = [], 0
        self._run_planned(batch, run, values)
        return values

    def _plan_steps(self, op: Callable[[], Any]) -> tuple[list[Step], bool] | None:
        """The steps of a write a plan takes (a create, append or metadata update, or an
        atomic write of those without conditions), and whether its value is their list;
        None for any other write."""
        if type(op) is not _Op:
            return None
        func, args = op.func, op.args
        if func is Store._run_atomic:
            if args[0]:  # (conditions: checked a row at a time)
                return None
            steps = []
            for each in args[1:]:
                step = self._plan_step(each)
                if step is None:
                    return None
                steps.append(step)
            return steps, True
        step = self._plan_step(op)
        return None if step is None else ([step], False)

    def _plan_step(self, op: Callable[[], Any]) -> Step | None:
        """A write's step, if it is one of `Store`'s own creates, appends or updates (a
        subclass that overrides one of those runs it as it is: see `PostgresStore`)."""
        if type(op) is not _Op:
            return None
        func = op.func
        if func is Store._append_op:
            return WritePlan.append, op.args
        if func is Store._meta_op:
            return WritePlan.update, op.args
        if func is Store._patch_op:
            return WritePlan.patch, op.args
        if func is Store._create_op:
            return WritePlan.create, op.args
        return None

    def _run_planned(
        self, batch: list[_WriteSlot], run: list[tuple[int, list[Step], bool]], values: list[Any]
    ) -> None:
        """The writes of `run` (index in `batch`, steps, listed) planned together: the
        rows they touch read in a few statements, written in a few more; `Replan` (or
        any error) if one of them cannot be taken as it is. A lone write runs as is."""
        if len(run) < 2:
            for index, _, _ in run:
                values[index] = batch[index].op()
            return
        object_keys, file_ids = planned_keys(step for _, steps, _ in run for step in steps)
        files = self._planned_files(file_ids)
        # Appends read no object, unless their file is missing (and may be made): then
        # only whether it exists.
        owners: dict[str, list[str]] = {}
        for kind, object_id, _ in (key for key, row in files.items() if row is None):
            if (kind, object_id) not in object_keys:
                owners.setdefault(kind, []).append(object_id)
        existing = {
            (kind, object_id)
            for kind, ids in owners.items()
            for object_id in self._existing_ids(kind, list(dict.fromkeys(ids)))
        }
        plan = WritePlan(self._now_ms(), self._planned_objects(object_keys), files, existing)
        for index, steps, listed in run:
            results = [method(plan, *args) for method, args in steps]
            values[index] = results if listed else results[0]
        self._store_plan(plan)

    def _planned_objects(
        self, keys: set[tuple[str, str]]
    ) -> dict[tuple[str, str], ObjectRow | None]:
        """The rows of the objects `keys`, read as one row of JSON a few hundred."""
        found: dict[tuple[str, str], ObjectRow | None] = dict.fromkeys(keys)
        by_kind: dict[str, list[str]] = {}
        for kind, object_id in keys:
            by_kind.setdefault(kind, []).append(object_id)
        for kind, ids in by_kind.items():
            for at in range(0, len(ids), _IN_LIST):
                # (A damaged row fails the plan, and the write that meets it, run
                # alone, says what is wrong.)
                for obj in self._objects_among(self._db.conn, kind, ids[at : at + _IN_LIST]):
                    found[(kind, obj.id)] = ObjectRow(
                        obj.meta, obj.version, obj.created_ms, obj.updated_ms
                    )
        return found

    def _planned_files(
        self, ids: dict[tuple[str, str], set[str]]
    ) -> dict[tuple[str, str, str], FileRow | None]:
        """The rows of the files (their ids by kind and name), a few hundred a statement."""
        found: dict[tuple[str, str, str], FileRow | None] = {}
        for (kind, name), object_ids in ids.items():
            listed = list(object_ids)
            found.update(((kind, object_id, name), None) for object_id in listed)
            for at in range(0, len(listed), _IN_LIST):
                for row in self._file_counts(kind, name, listed[at : at + _IN_LIST]):
                    object_id, next_seq = row[0], row[3]
                    info = _file_info(kind, object_id, name, *row[1:])
                    found[(kind, object_id, name)] = FileRow(
                        info.size, info.chunks, next_seq, info.created_ms, info.updated_ms
                    )
        return found

    def _store_plan(self, plan: WritePlan) -> None:
        """What `plan` changed, written as multi-row statements."""
        conn = self._db.conn
        inserted, updated = plan.object_rows()
        for count, flat in _row_groups(
            [(kind, oid, dumps_meta(meta), *rest) for kind, oid, meta, *rest in inserted], 6
        ):
            conn.execute(
                "INSERT INTO objects (kind, id, meta, version, created_ms, updated_ms) "
                + _values(count, 6),
                flat,
            )
        rows = [(dumps_meta(meta), *rest) for meta, *rest in updated]
        for count, flat in _row_groups(rows, 5):
            # (Each of them read in this transaction: there is a row to update.)
            conn.execute(
                "UPDATE objects SET meta = v.column1, version = v.column2, "
                f"updated_ms = v.column3 FROM ({_values(count, 5)}) AS v "
                "WHERE objects.kind = v.column4 AND objects.id = v.column5",
                flat,
            )
        if plan.patches:
            self._store_patches(plan.now_ms, plan.patch_rows())
        new_files, changed_files = plan.file_rows()
        self._insert_files(new_files)
        self._insert_chunks(plan.chunks)
        self._update_file_counts(changed_files)

    def _store_patches(self, now: int, rows: dict[tuple[str, ...], list[list[Any]]]) -> None:
        """`WritePlan.patch_rows`' updates, with `json_set` in the statement: one
        statement a group of objects that set the same keys. `Replan` if an object
        is missing, its metadata damaged or at its highest version (no row read says
        so first: the statement changes fewer rows than it names, and the batch runs
        again a write at a time, where that write fails alone)."""
        for keys, params in rows.items():
            # Each row: the values, how many updates they were, then kind and id.
            width = len(keys) + 3
            # (An empty update still counts a version, as one run alone does.)
            setting = f"meta = json_set(meta, {_json_paths(keys)}), " if keys else ""
            updates = f"v.column{width - 2}"
            for count, flat in _row_groups(params, width):
                changed = self._db.conn.execute(
                    f"UPDATE objects SET {setting}"
                    f"version = version + {updates}, updated_ms = ? "
                    f"FROM ({_values(count, width)}) AS v "
                    f"WHERE objects.kind = v.column{width - 1} AND objects.id = v.column{width} "
                    f"AND {_META_IS_OBJECT} "
                    f"AND typeof(version) = 'integer' AND version + {updates} <= {MAX_VERSION + 1}",
                    [now, *flat],
                ).rowcount
                if changed != count:
                    raise Replan(
                        f"{count - changed} of {count} objects patched are missing, damaged "
                        "or at their highest version"
                    )

    def _translate(self, exc: BaseException, what: str) -> BaseException:
        if isinstance(exc, self.db_errors):
            error = StorageError(f"could not {what} in store {self._path!r}: {exc}")
            error.__cause__ = exc
            return error
        return exc

    def _ensure_open(self) -> None:
        if self._closed:
            raise Stopped(f"store {self._path!r} is closed")

    # -- objects -----------------------------------------------------------------------

    def create_object(
        self, kind: str, object_id: str, meta: Mapping[str, Any] | None = None
    ) -> StoredObject:
        """Create a new object; `InvalidTransition` if (kind, id) exists already."""
        obj, created = self.ensure_object(kind, object_id, meta)
        if not created:
            raise InvalidTransition(f"{kind} {object_id!r} already exists")
        return obj

    def ensure_object(
        self, kind: str, object_id: str, meta: Mapping[str, Any] | None = None
    ) -> tuple[StoredObject, bool]:
        """Get the object, creating it with `meta` when missing; returns (object, created)."""
        _check_kind(kind)
        _check_id(kind, object_id)
        initial = merge_meta({}, meta or {})

        def op() -> tuple[StoredObject, bool]:
            existing = self._fetch(kind, object_id)
            if existing is not None:
                return existing, False
            return self._insert_object(kind, object_id, initial), True

        return self._write(f"create {kind} {object_id!r}", op)

    def _create_slot(self, write: CreateObject) -> _WriteSlot:
        kind, object_id = _check_kind(write.kind), _check_id(write.kind, write.object_id)
        initial = merge_meta({}, write.meta)

        # An `_Op`, as `_append_slot` says; and `_plan_steps` knows it.
        op = _Op(type(self)._create_op, self, (kind, object_id, initial))
        return _WriteSlot(f"create {kind} {object_id!r}", op)

    def _create_op(self, kind: str, object_id: str, initial: dict[str, Any]) -> StoredObject:
        """`_create_slot`'s write, in the batch's transaction."""
        if self._exists(kind, object_id):
            raise InvalidTransition(f"{kind} {object_id!r} already exists")
        return self._insert_object(kind, object_id, initial)

    def _insert_object(self, kind: str, object_id: str, meta: dict[str, Any]) -> StoredObject:
        now = self._now_ms()
        self._db.conn.execute(
            "INSERT INTO objects (kind, id, meta, version, created_ms, updated_ms) "
            "VALUES (?, ?, ?, 1, ?, ?)",
            [kind, object_id, dumps_meta(meta), now, now],
        )
        return StoredObject(kind, object_id, meta, 1, now, now)

    def get_object(self, kind: str, object_id: str) -> StoredObject:
        """The object (kind, id); `NotFound` when there is none."""
        found = self.find_object(kind, object_id)
        if found is None:
            raise NotFound(f"no {kind} with id {object_id!r} in store {self._path!r}")
        return found

    def find_object(self, kind: str, object_id: str) -> StoredObject | None:
        """The object (kind, id), or `None`."""
        _check_kind(kind)
        _check_id(kind, object_id)
        with self._reading(f"read {kind} {object_id!r}") as db:
            return self._fetch(kind, object_id, db.conn)

    def find_objects(self, kind: str, ids: Iterable[str]) -> dict[str, StoredObject]:
        """The objects of `kind` among `ids` that exist, by id: a few hundred read a
        statement. `StorageError` if one of them is damaged (`find_object` of each
        says which)."""
        _check_kind(kind)
        wanted = list(dict.fromkeys(_check_id(kind, object_id) for object_id in ids))
        found: dict[str, StoredObject] = {}
        with self._reading(f"read {len(wanted)} {kind}(s)") as db:
            for at in range(0, len(wanted), _IN_LIST):
                for obj in self._objects_among(db.conn, kind, wanted[at : at + _IN_LIST]):
                    found[obj.id] = obj
        return found

    def _objects_among(self, conn: DbConnection, kind: str, ids: list[str]) -> list[StoredObject]:
        """The objects of `kind` among `ids` (at most `_IN_LIST`), read as one row of
        JSON; every column checked as a read is."""
        marks = ", ".join("?" * len(ids))
        (joined,) = conn.execute(
            "SELECT json_group_array(json_array(id, meta, version, created_ms, updated_ms)) "
            f"FROM objects WHERE kind = ? AND id IN ({marks})",
            [kind, *ids],
        ).fetchone()
        return [_object_from_row((kind, *row)) for row in json.loads(joined)]

    def list_objects(
        self, kind: str, *, unreadable: list[UnreadableObject] | None = None
    ) -> list[StoredObject]:
        """Every object of `kind`, ordered by id.

        An object whose stored row does not read back (a hand-edited database: metadata
        that is not a JSON object, a column of the wrong type) raises `StorageError`;
        when `unreadable` is a list, it is left out instead, logged, and described in
        `unreadable`, so a listing can go on.
        """
        _check_kind(kind)
        with self._reading(f"list {kind} objects") as db:
            rows = self._object_rows(db, kind)
        found: list[StoredObject] = []
        for row in rows:
            try:
                found.append(_object_from_row(row))
            except StorageError as error:
                if unreadable is None:
                    raise
                log.warning("%s", error)
                object_id = row[1] if isinstance(row[1], str) else _shown_id(row[1])
                unreadable.append(UnreadableObject(kind, object_id, str(error)))
        return found

    def _object_rows(self, db: Database, kind: str) -> list[tuple[Any, ...]]:
        """Every object row of `kind` (kind, id, meta, version, created_ms, updated_ms),
        ordered by id: pages of up to `_LIST_ROWS` rows (about `_LIST_BYTES` of
        metadata) each read as one row of JSON, in one read transaction (see
        `_insert_objects` on rows and the interpreter's lock: 10,000 objects listed in
        0.05 s alone took 9.6 s a row each with another thread running Python). Read a
        row each when a row holds a value of another type than its column's (damaged:
        its caller says how)."""
        with _snapshot(db):
            return self._object_pages(db, kind)

    def _object_pages(self, db: Database, kind: str) -> list[tuple[Any, ...]]:
        if _odd_ids(db, kind):  # (ids that are not text sort apart: no pages by id)
            return self._object_rows_each(db, kind)
        rows: list[tuple[Any, ...]] = []
        after, above = "", ">="  # (the first page: from the smallest text on)
        while True:
            (last,) = db.execute(
                _LIST_BOUND.format(above=above), [kind, after, _LIST_ROWS, _LIST_BYTES]
            ).fetchone()
            if last is None:
                break
            odd, joined = db.execute(
                _LIST_JOINED.format(above=above), [kind, after, last]
            ).fetchone()
            if odd:
                return self._object_rows_each(db, kind)
            rows.extend((kind, *row) for row in json.loads(joined))
            after, above = last, ">"
        if not all(a[1] < b[1] for a, b in itertools.pairwise(rows)):  # (as ordered)
            return self._object_rows_each(db, kind)
        return rows

    def _object_rows_each(self, db: Database, kind: str) -> list[tuple[Any, ...]]:
        """`_object_rows`, a row each (PostgreSQL's driver reads them in one go)."""
        rows = db.execute(
            "SELECT kind, id, meta, version, created_ms, updated_ms FROM objects "
            "WHERE kind = ? ORDER BY id",
            [kind],
        )
        return [tuple(row) for row in rows.fetchall()]

    def _id_rows(self, db: Database, kind: str) -> list[tuple[Any, ...]]:
        """The ids of `kind`, ordered, as rows (id,): pages of `_LIST_ROWS` ids each
        read as one row of JSON, as `_object_rows`."""
        with _snapshot(db):
            if _odd_ids(db, kind):
                return self._id_rows_each(db, kind)
            ids: list[str] = []
            after, above = "", ">="
            while True:
                count, joined, last = db.execute(
                    "SELECT count(*), json_group_array(id), max(id) FROM (SELECT id FROM "
                    f"objects WHERE kind = ? AND id {above} ? ORDER BY id LIMIT ?) AS page",
                    [kind, after, _LIST_ROWS],
                ).fetchone()
                ids.extend(json.loads(joined))
                if count < _LIST_ROWS:
                    break
                after, above = last, ">"
        if not all(a < b for a, b in itertools.pairwise(ids)):  # (as ordered)
            return self._id_rows_each(db, kind)
        return [(object_id,) for object_id in ids]

    def _id_rows_each(self, db: Database, kind: str) -> list[tuple[Any, ...]]:
        """`_id_rows`, a row each (PostgreSQL's driver reads them in one go)."""
        rows = db.execute("SELECT id FROM objects WHERE kind = ? ORDER BY id", [kind])
        return [tuple(row) for row in rows.fetchall()]

    def list_ids(self, kind: str) -> list[str]:
        """The ids of every object of `kind`, sorted."""
        _check_kind(kind)
        with self._reading(f"list {kind} ids") as db:
            rows = self._id_rows(db, kind)
        for (object_id,) in rows:
            if not isinstance(object_id, str):
                raise StorageError(
                    f"a {kind} in store {self._path!r} has an id that is not text "
                    f"({type(object_id).__name__} {_shown_id(object_id)})"
                )
        return [row[0] for row in rows]

    def update_meta(self, kind: str, object_id: str, update: Mapping[str, Any]) -> StoredObject:
        """Merge `update` into the object's metadata in one transaction; bump its version.

        Merge rules (see `greenroom.meta.merge_meta`): `"prefix:*": True` first deletes
        `prefix` and every `prefix:...` key; then `None` deletes a key and any other
        value overwrites it. `NotFound` for an unknown object, `InvalidInput` for a
        malformed update; either way nothing changes.
        """
        return self.update_meta_many([(kind, object_id, update)])[0]

    def update_meta_many(
        self, updates: Iterable[tuple[str, str, Mapping[str, Any]]]
    ) -> list[StoredObject]:
        """Apply several metadata updates in one transaction: all of them or none.

        Every update is validated before anything is written; one unknown object or
        malformed update raises and leaves every object as it was.
        """
        slot = self._meta_slot(updates)
        if slot is None:
            self._ensure_open()
            return []
        return self._write(slot.what, slot.op)

    def _meta_slot(
        self, updates: Iterable[tuple[str, str, Mapping[str, Any]]], *, patch: bool = False
    ) -> _WriteSlot | None:
        """A metadata update's write; with `patch` (nobody reads its results) and only
        plain values to set, a `_patch_op`."""
        # The operation's arguments (`_meta_op(*batch)`): no list kept beside them.
        batch = tuple(
            (
                _check_kind(kind),
                _check_id(kind, oid),
                validate_update(update, where=f"metadata update of {kind} {oid!r}"),
            )
            for kind, oid, update in updates
        )
        if not batch:
            return None
        method: Callable[..., list[Any]] = type(self)._meta_op
        if patch and all(_patchable(update) for _kind, _oid, update in batch):
            method = type(self)._patch_op
        # An `_Op`, not a closure (see `_append_slot`).
        op = _Op(method, self, batch)
        return _WriteSlot(f"update metadata of {len(batch)} object(s)", op)

    def _patch_op(self, *batch: tuple[str, str, dict[str, Any]]) -> list[None]:
        """`_meta_op` for a caller that reads no result (each is None). Planned with
        others, it is written with `json_set` in the statement, without reading the
        object's row and its JSON (`WritePlan.patch`, `_store_patches`)."""
        self._meta_op(*batch)
        return [None] * len(batch)

    def _meta_op(self, *batch: tuple[str, str, dict[str, Any]]) -> list[StoredObject]:
        """`_meta_slot`'s write, in the batch's transaction."""
        results: list[StoredObject] = []
        now = self._now_ms()
        for kind, object_id, update in batch:
            current = self._fetch(kind, object_id)
            if current is None:
                raise NotFound(f"no {kind} with id {object_id!r}; metadata not updated")
            merged = apply_update(current.meta, update)
            version = current.version + 1
            self._db.conn.execute(
                "UPDATE objects SET meta = ?, version = ?, updated_ms = ? "
                "WHERE kind = ? AND id = ?",
                [dumps_meta(merged), version, now, kind, object_id],
            )
            results.append(StoredObject(kind, object_id, merged, version, current.created_ms, now))
        return results

    def delete_object(self, kind: str, object_id: str) -> None:
        """Delete the object and all its files; `NotFound` if it does not exist."""
        _check_kind(kind)
        _check_id(kind, object_id)

        def op() -> None:
            # Existence only: an object whose metadata no longer reads can be deleted.
            if not self._exists(kind, object_id):
                raise NotFound(f"no {kind} with id {object_id!r} to delete")
            key = [kind, object_id]
            self._db.conn.execute("DELETE FROM file_chunks WHERE kind = ? AND id = ?", key)
            self._db.conn.execute("DELETE FROM files WHERE kind = ? AND id = ?", key)
            self._db.conn.execute("DELETE FROM objects WHERE kind = ? AND id = ?", key)

        self._write(f"delete {kind} {object_id!r}", op)

    def _exists(self, kind: str, object_id: str) -> bool:
        row = self._db.conn.execute(
            "SELECT 1 FROM objects WHERE kind = ? AND id = ?", [kind, object_id]
        ).fetchone()
        return row is not None

    def _fetch(
        self, kind: str, object_id: str, conn: DbConnection | None = None
    ) -> StoredObject | None:
        row = (
            (conn or self._db.conn)
            .execute(
                "SELECT kind, id, meta, version, created_ms, updated_ms FROM objects "
                "WHERE kind = ? AND id = ?",
                [kind, object_id],
            )
            .fetchone()
        )
        return None if row is None else _object_from_row(row)

    # -- files -------------------------------------------------------------------------

    def create_file(self, kind: str, object_id: str, name: str) -> FileInfo:
        """Create an empty file; `InvalidTransition` if it exists, `NotFound` without object."""
        self._check_file_args(kind, object_id, name)

        def op() -> FileInfo:
            if self._file_row(kind, object_id, name) is not None:
                raise InvalidTransition(f"file {name!r} of {kind} {object_id!r} already exists")
            return self._insert_file(kind, object_id, name)

        return self._write(f"create file {name!r} of {kind} {object_id!r}", op)

    def append_file(
        self, kind: str, object_id: str, name: str, data: bytes, *, create: bool = False
    ) -> FileInfo:
        """Append `data` in one transaction; cost grows with `len(data)`, not the file.

        With `create=True` a missing file is created first; otherwise it is `NotFound`.
        """
        slot = self._append_slot(AppendFile(kind, object_id, name, data, create=create))
        info: FileInfo = self._write(slot.what, slot.op)
        return info

    def _append_slot(self, write: AppendFile) -> _WriteSlot:
        kind, object_id, name, create = write.kind, write.object_id, write.name, write.create
        self._check_file_args(kind, object_id, name)
        data = write.data
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidInput(f"data must be bytes, got {type(data).__name__}")
        data = bytes(data)
        # A tuple of bytes: one the cyclic GC stops tracking while the write waits.
        pieces = tuple(
            data[at : at + self._chunk_bytes] for at in range(0, len(data), self._chunk_bytes)
        )

        # An `_Op`, not a closure: a write queued for a commit is 1 object for the
        # cyclic GC to walk, not a function, its cells and their tuple.
        op = _Op(
            type(self)._append_op, self, (kind, object_id, name, create, write.expect_size, pieces)
        )
        return _WriteSlot(f"append to file {name!r} of {kind} {object_id!r}", op)

    def _append_op(
        self,
        kind: str,
        object_id: str,
        name: str,
        create: bool,
        expect_size: int | None,
        pieces: tuple[bytes, ...],
    ) -> FileInfo:
        """`_append_slot`'s write, in the batch's transaction."""
        row = self._file_row(kind, object_id, name)
        if expect_size is not None and (0 if row is None else row[0]) != expect_size:
            raise Conflict(
                f"file {name!r} of {kind} {object_id!r} holds "
                f"{0 if row is None else row[0]} bytes, not the {expect_size} expected"
            )
        if row is None:
            if not create:
                raise NotFound(f"{kind} {object_id!r} has no file {name!r}")
            info = self._insert_file(kind, object_id, name)
            size, chunks, next_seq, created, updated = 0, 0, 0, info.created_ms, info.updated_ms
        else:
            size, chunks, next_seq, created, updated = row
        if not pieces:
            return FileInfo(kind, object_id, name, size, chunks, created, updated)
        start = size
        rows = []
        for offset, piece in enumerate(pieces):
            rows.append((kind, object_id, name, next_seq + offset, start, piece))
            start += len(piece)
        self._db.conn.executemany(
            "INSERT INTO file_chunks (kind, id, name, seq, start, data) VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
        now = self._now_ms()
        self._db.conn.execute(
            "UPDATE files SET size = ?, chunks = ?, next_seq = ?, updated_ms = ? "
            "WHERE kind = ? AND id = ? AND name = ?",
            [start, chunks + len(pieces), next_seq + len(pieces), now, kind, object_id, name],
        )
        return FileInfo(kind, object_id, name, start, chunks + len(pieces), created, now)

    def write_batch(self, writes: Iterable[AppendFile | UpdateMeta]) -> list[Any]:
        """Apply independent writes in one transaction, each in its own savepoint.

        One commit (one fsync) for the lot. Returns, in order, each write's result (a
        `FileInfo` or `StoredObject`) or the exception it failed with: a failing write
        is rolled back alone and does not stop the others. Malformed writes raise
        `InvalidInput` before anything is written.
        """
        slots = []
        for write in writes:
            if isinstance(write, AppendFile):
                slots.append(self._append_slot(write))
            elif isinstance(write, UpdateMeta):
                slot = self._meta_slot([(write.kind, write.object_id, write.update)])
                assert slot is not None  # one update: never an empty batch
                slots.append(slot)
            else:
                raise InvalidInput(
                    f"write_batch takes AppendFile and UpdateMeta, got {type(write).__name__}"
                )
        if not slots:
            self._ensure_open()
            return []
        done = self._write_all(slots)
        return [
            slot.error
            if slot.error is not None
            else (slot.value[0] if isinstance(slot.value, list) else slot.value)
            for slot in done
        ]

    def set_meta_values(
        self, kind: str, values: Mapping[str, Mapping[str, int | float | str]]
    ) -> int:
        """Set plain keys in many objects' metadata in one statement; how many changed.

        `values` maps object id to `{key: value}`: keys of letters, digits and
        `_.:@-`; values `int`, finite `float` or `str`; no merge rules (no `None`
        deletes, no `prefix:*`). One transaction and no savepoint per object, so
        thousands of small updates (block stats) cost one commit. Objects that do not
        exist, and objects whose stored metadata is not a JSON object (a hand-edited
        database; reading them raises `StorageError`), are skipped: compare the count
        returned.
        """
        _check_kind(kind)
        rows = _value_rows(kind, values)
        if not rows:
            self._ensure_open()
            return 0
        return self._write(
            f"set metadata values of {len(values)} {kind}(s)", lambda: self._set_values(rows)
        )

    def _set_values(self, rows: dict[tuple[str, ...], list[list[Any]]]) -> int:
        now = int(self._now_ms())
        changed = 0
        for keys, params in rows.items():
            # One statement per distinct key set and group of rows (see `_row_groups`);
            # json_set edits the stored JSON in place (an int or str parameter becomes
            # that JSON value). Each row: the values, then kind and id.
            width = len(keys) + 2
            # A float goes in as its JSON text, through json(): SQLite writes a REAL
            # parameter with 15 significant digits (0.30000000000000004 as 0.3).
            texts = [at for at in range(len(keys)) if any(type(r[at]) is float for r in params)]
            if texts:
                params = [_json_texts(row, texts) for row in params]
            paths = _json_paths(keys, texts)
            for count, flat in _row_groups(params, width):
                # (The time a parameter, not in the text: a statement is compiled once.)
                cursor = self._db.conn.execute(
                    f"UPDATE objects SET meta = json_set(meta, {paths}), "
                    "version = version + 1, updated_ms = ? "
                    f"FROM ({_values(count, width)}) AS v "
                    f"WHERE objects.kind = v.column{width - 1} AND objects.id = v.column{width} "
                    f"AND {_META_IS_OBJECT}",
                    [now, *flat],
                )
                changed += cursor.rowcount
        return changed

    def renew_leases(
        self, kind: str, ids: Iterable[str], owner: str, owner_key: str, until_key: str, until: int
    ) -> list[str]:
        """Set `until_key` to `until` in the metadata of those of `ids` whose `owner_key`
        is `owner`, in one transaction (version and times left as they are); their ids.

        For leases (`greenroom.leases`): a host renews, or gives up (`until` 0), only
        what it still holds, never a lease another host took over meanwhile.
        """
        _check_kind(kind)
        for key in (owner_key, until_key):
            if not isinstance(key, str) or _PLAIN_KEY.fullmatch(key) is None:
                raise InvalidInput(f"a lease key must be a plain metadata key, got {key!r}")
        checked = [_check_id(kind, object_id) for object_id in ids]
        if not checked:
            self._ensure_open()
            return []
        return self._write(
            f"renew {len(checked)} lease(s) of {kind}(s)",
            lambda: self._renew_leases(kind, checked, owner, owner_key, until_key, until),
        )

    def _renew_leases(
        self,
        kind: str,
        ids: list[str],
        owner: str,
        owner_key: str,
        until_key: str,
        until: int,
    ) -> list[str]:
        renewed: list[str] = []
        for at in range(0, len(ids), _IN_LIST):
            part = ids[at : at + _IN_LIST]
            marks = ", ".join("?" * len(part))
            rows = self._db.conn.execute(
                f"UPDATE objects SET meta = json_set(meta, '$.{json.dumps(until_key)}', ?) "
                f"WHERE kind = ? AND id IN ({marks}) AND CASE WHEN json_valid(meta) THEN "
                f"json_extract(meta, '$.{json.dumps(owner_key)}') END = ? RETURNING id",
                [until, kind, *part, owner],
            ).fetchall()
            renewed.extend(row[0] for row in rows)
        return renewed

    def append_many(
        self,
        kind: str,
        name: str,
        appends: Mapping[str, bytes | bytearray],
        *,
        values: Mapping[str, Mapping[str, int | float | str]] | None = None,
        create: bool = True,
        objects: Mapping[str, Mapping[str, Any]] | None = None,
        owned_by: tuple[str, str] | None = None,
    ) -> AppendedMany:
        """Append to the file `name` of many objects, and set plain metadata values of
        many (as `set_meta_values`), in one transaction: one commit for the lot.

        `appends` maps object id to the bytes to append (the file is made first if
        missing and `create`). Built for many small writes at once (every block's new
        output and stats): a few statements in all, not a few per object. An object
        that does not exist (or whose file row is damaged) fails alone: see
        `AppendedMany.failed`; its data is not stored. Malformed arguments raise
        `InvalidInput` before anything is written. `objects` maps ids of objects to make
        first, when missing, to their metadata (an existing one is left as it is): a new
        object costs no commit of its own. With `owned_by=(key, owner)`, an object
        whose metadata `key` is not `owner` (another host took its lease over) fails
        alone with `Conflict`, its data and values not stored.
        """
        _check_kind(kind)
        _check_name(name)
        new_objects = [
            (kind, _check_id(kind, object_id), dumps_meta(merge_meta({}, meta)))
            for object_id, meta in (objects or {}).items()
        ]
        pieces: dict[str, tuple[bytes, ...]] = {}  # (tuples of bytes: untracked by the GC)
        step = self._chunk_bytes
        for object_id, data in appends.items():
            _check_id(kind, object_id)
            if not isinstance(data, bytes | bytearray | memoryview):
                raise InvalidInput(f"data must be bytes, got {type(data).__name__}")
            if len(data) <= step:  # (the common case: one chunk)
                if data:
                    pieces[object_id] = (bytes(data),)
                continue
            data = bytes(data)
            pieces[object_id] = tuple(data[at : at + step] for at in range(0, len(data), step))
        rows = _value_rows(kind, values or {}, checked=appends)
        values_ids = [oid for oid in (values or {}) if oid not in pieces]
        if owned_by is not None:
            for key in owned_by[:1]:
                if not isinstance(key, str) or _PLAIN_KEY.fullmatch(key) is None:
                    raise InvalidInput(f"owned_by's key must be a plain metadata key, got {key!r}")
        if not pieces and not rows and not new_objects:
            self._ensure_open()
            return AppendedMany({}, {}, 0)

        def op() -> AppendedMany:
            created = self._insert_objects(new_objects) if new_objects else 0
            refused: dict[str, Exception] = {}
            if owned_by is not None:
                others = self._not_owned(kind, [*pieces, *values_ids], *owned_by)
                refused = {
                    object_id: Conflict(
                        f"{kind} {object_id!r} is served by another host now (its "
                        f"{owned_by[0]} is not {owned_by[1]!r}); not written here"
                    )
                    for object_id in others
                }
            mine = (
                {oid: parts for oid, parts in pieces.items() if oid not in refused}
                if refused
                else pieces
            )
            sizes, failed = self._append_pieces(kind, name, mine, create)
            failed.update(refused)
            kept_rows = _without(rows, refused) if refused else rows
            changed = self._set_values(kept_rows) if kept_rows else 0
            return AppendedMany(sizes, failed, changed, created)

        what = f"append to file {name!r} of {len(pieces)} {kind}(s)"
        return self._write(what, op)

    def _not_owned(self, kind: str, ids: list[str], key: str, owner: str) -> set[str]:
        """Those of `ids` whose metadata `key` is not `owner` (in the write transaction)."""
        found: set[str] = set()
        for at in range(0, len(ids), _IN_LIST):
            part = ids[at : at + _IN_LIST]
            marks = ", ".join("?" * len(part))
            for (object_id,) in self._db.conn.execute(
                f"SELECT id FROM objects WHERE kind = ? AND id IN ({marks}) AND coalesce("
                f"CASE WHEN json_valid(meta) THEN json_extract(meta, '$.{json.dumps(key)}') "
                "END, '') <> ?",
                [kind, *part, owner],
            ):
                found.add(object_id)
        return found

    def _append_pieces(
        self, kind: str, name: str, pieces: dict[str, tuple[bytes, ...]], create: bool
    ) -> tuple[dict[str, int], dict[str, Exception]]:
        found: dict[str, tuple[int, int, int]] = {}
        failed: dict[str, Exception] = {}
        ids = list(pieces)
        for at in range(0, len(ids), _IN_LIST):
            part = ids[at : at + _IN_LIST]
            for row in self._file_counts(kind, name, part):
                object_id, size, chunks, next_seq = row[:4]
                if _plain_counts(size, chunks, next_seq):
                    found[object_id] = (size, chunks, next_seq)
                    continue
                try:  # a damaged row: say what is wrong with it
                    _file_info(kind, object_id, name, *row[1:])
                except StorageError as error:
                    failed[object_id] = error
        missing = [oid for oid in ids if oid not in found and oid not in failed]
        now = self._now_ms()
        if missing and not create:
            for object_id in missing:
                failed[object_id] = NotFound(f"{kind} {object_id!r} has no file {name!r}")
        elif missing:  # (new blocks' first output: made together)
            existing = self._existing_ids(kind, missing)
            new_files = []
            for object_id in missing:
                if object_id in existing:
                    new_files.append((kind, object_id, name, 0, 0, 0, now, now))
                    found[object_id] = (0, 0, 0)
                else:
                    failed[object_id] = NotFound(
                        f"no {kind} with id {object_id!r}; create the object before its files"
                    )
            if new_files:
                self._insert_files(new_files)
        chunk_rows = []
        file_rows = []
        sizes = {}
        for object_id, (size, chunks, next_seq) in found.items():
            parts = pieces[object_id]
            if len(parts) == 1:  # (the common case)
                chunk_rows.append((kind, object_id, name, next_seq, size, parts[0]))
                start = size + len(parts[0])
            else:
                start = size
                for offset, piece in enumerate(parts):
                    chunk_rows.append((kind, object_id, name, next_seq + offset, start, piece))
                    start += len(piece)
            count = len(parts)
            file_rows.append((start, chunks + count, next_seq + count, now, kind, object_id, name))
            sizes[object_id] = start
        self._insert_chunks(chunk_rows)
        self._update_file_counts(file_rows)
        return sizes, failed

    # Many rows a statement. The driver lets go of the interpreter's lock for each row
    # it writes or reads, and in a busy process taking it back can cost a whole switch
    # interval (5 ms): `executemany` of 100 lines' rows took 1.3 s there, where a few
    # statements of many rows each take about as long as alone. PostgreSQL's driver
    # sends an `executemany` in one go: `PostgresStore` keeps it.

    def _insert_objects(self, rows: list[tuple[str, str, str]]) -> int:
        """Insert objects (kind, id, meta JSON) that do not exist yet; how many were."""
        now = int(self._now_ms())
        created = 0
        for count, flat in _row_groups(rows, 3):
            created += self._db.conn.execute(
                "INSERT INTO objects (kind, id, meta, version, created_ms, updated_ms) "
                "SELECT column1, column2, column3, 1, ?1, ?1 FROM "
                f"({_values(count, 3)}) WHERE true ON CONFLICT DO NOTHING",
                [now, *flat],
            ).rowcount
        return created

    def _file_counts(self, kind: str, name: str, ids: list[str]) -> list[tuple[Any, ...]]:
        """The file rows (id, size, chunks, next_seq, created_ms, updated_ms) of the
        file `name` of `ids` that have one, read as one row: a row of any other type
        than integers is read again alone, as stored (it is damaged: its caller says
        how)."""
        marks = ", ".join("?" * len(ids))
        (joined,) = self._db.conn.execute(
            "SELECT json_group_array(json_array(id, "
            + ", ".join(
                f"iif(typeof({column}) = 'integer', {column}, NULL)"
                for column in ("size", "chunks", "next_seq", "created_ms", "updated_ms")
            )
            + f")) FROM files WHERE kind = ? AND name = ? AND id IN ({marks})",
            [kind, name, *ids],
        ).fetchone()
        rows: list[tuple[Any, ...]] = []
        for row in json.loads(joined):
            if None in row:
                rows.append(
                    self._db.conn.execute(
                        "SELECT id, size, chunks, next_seq, created_ms, updated_ms FROM files "
                        "WHERE kind = ? AND id = ? AND name = ?",
                        [kind, row[0], name],
                    ).fetchone()
                )
            else:
                rows.append(tuple(row))
        return rows

    def _existing_ids(self, kind: str, ids: list[str]) -> set[str]:
        """Those of `ids` with an object of `kind`, read as one row a few hundred."""
        found: set[str] = set()
        for at in range(0, len(ids), _IN_LIST):
            part = ids[at : at + _IN_LIST]
            marks = ", ".join("?" * len(part))
            (joined,) = self._db.conn.execute(
                f"SELECT json_group_array(id) FROM objects WHERE kind = ? AND id IN ({marks})",
                [kind, *part],
            ).fetchone()
            found.update(json.loads(joined))
        return found

    def _insert_files(self, rows: list[tuple[Any, ...]]) -> None:
        """Insert file rows (kind, id, name, size, chunks, next_seq, created_ms,
        updated_ms)."""
        for count, flat in _row_groups(rows, 8):
            self._db.conn.execute(
                "INSERT INTO files (kind, id, name, size, chunks, next_seq, created_ms, "
                f"updated_ms) {_values(count, 8)}",
                flat,
            )

    def _insert_chunks(self, rows: list[tuple[Any, ...]]) -> None:
        """Insert chunk rows (kind, id, name, seq, start, data)."""
        for count, flat in _row_groups(rows, 6):
            self._db.conn.execute(
                f"INSERT INTO file_chunks (kind, id, name, seq, start, data) {_values(count, 6)}",
                flat,
            )

    def _update_file_counts(self, rows: list[tuple[Any, ...]]) -> None:
        """Set file rows' counts: rows (size, chunks, next_seq, updated_ms, kind, id, name)."""
        for count, flat in _row_groups(rows, 7):
            self._db.conn.execute(
                "UPDATE files SET size = v.column1, chunks = v.column2, next_seq = v.column3, "
                f"updated_ms = v.column4 FROM ({_values(count, 7)}) AS v "
                "WHERE files.kind = v.column5 AND files.id = v.column6 AND files.name = v.column7",
                flat,
            )

    def _rename_slot(self, write: RenameFile) -> _WriteSlot:
        kind, object_id, old, new = write.kind, write.object_id, write.old, write.new
        self._check_file_args(kind, object_id, old)
        _check_name(new)

        def op() -> FileInfo:
            row = self._file_row(kind, object_id, old)
            if row is None:
                raise NotFound(f"{kind} {object_id!r} has no file {old!r} to rename")
            if old != new:
                for table in ("file_chunks", "files"):
                    self._db.conn.execute(
                        f"DELETE FROM {table} WHERE kind = ? AND id = ? AND name = ?",
                        [kind, object_id, new],
                    )
                    self._db.conn.execute(
                        f"UPDATE {table} SET name = ? WHERE kind = ? AND id = ? AND name = ?",
                        [new, kind, object_id, old],
                    )
            size, chunks, _next, created, updated = row
            return FileInfo(kind, object_id, new, size, chunks, created, updated)

        return _WriteSlot(f"rename file {old!r} of {kind} {object_id!r} to {new!r}", op)

    def write_atomic(
        self,
        writes: Iterable[CreateObject | AppendFile | UpdateMeta | DeleteFile | RenameFile],
        *,
        expect: Iterable[ExpectFile | ExpectMeta] = (),
    ) -> list[Any]:
        """Apply several writes in one transaction: all of them, or none.

        The first failing write raises (`NotFound`, ...) and rolls back every write
        of the call. Returns each write's result in order. Each `expect` condition is
        checked inside the same transaction, before any write: if one does not hold
        (another process wrote since the caller read), nothing is written and
        `Conflict` is raised, naming the condition.
        """
        what, op = self._atomic_op(writes, expect)
        if op is None:
            return []  # nothing to write: no transaction
        return self._write(what, op)

    def submit_atomic(
        self,
        writes: Iterable[CreateObject | AppendFile | UpdateMeta | DeleteFile | RenameFile],
        on_done: Callable[[list[Any] | None, BaseException | None], object],
        *,
        expect: Iterable[ExpectFile | ExpectMeta] = (),
        inline: bool = True,
        results: bool = True,
    ) -> None:
        """`write_atomic`, without waiting: the writes are committed with the next batch,
        and `on_done(results, None)` or `on_done(None, error)` is called once they are
        (on the thread that committed them, after the store is free again: keep it
        short). Malformed writes raise `InvalidInput` here, and a closed store `Stopped`.

        With `results=False` the caller reads no `UpdateMeta` result (each is a list of
        None): an update that only sets plain values (str, or int of 64 bits) may then
        be written without its object's row being read first, which saves a batch of
        durable executions' end writes a read and two JSON passes an object.

        Many writers that each submit and go on share a commit (one fsync) however few
        threads they run on: what is submitted while one batch commits makes up the
        next, committed by the store's committer thread. A write submitted while the
        store is idle is committed on the submitting thread at once (and `on_done`
        called there before this returns), so a lone writer pays no hand-off; with
        `inline=False` (a thread others wait for) it goes to the committer thread too.
        Writes commit in the order they were submitted.
        """
        what, op = self._atomic_op(writes, expect, results=results)
        if op is None:
            on_done([], None)  # nothing to write
            return
        slot = _WriteSlot(what, op, on_done)
        with self._queue_lock:
            self._ensure_open()
            self._queue.append(slot)
            if self._committing:
                return  # the drain under way takes it
            self._committing = True
        if not inline:
            self._hand_off()
            return
        self._drain(inline=True)

    def _committer_locked(self) -> concurrent.futures.ThreadPoolExecutor:
        """The committer thread's executor, made on first use (call with the queue lock)."""
        if self._committer is None:
            self._committer = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="greenroom-store-commit"
            )
        return self._committer

    def _atomic_op(
        self,
        writes: Iterable[CreateObject | AppendFile | UpdateMeta | DeleteFile | RenameFile],
        expect: Iterable[ExpectFile | ExpectMeta],
        *,
        results: bool = True,
    ) -> tuple[str, Callable[[], list[Any]] | None]:
        """`write_atomic`'s writes checked and made one operation: (what, op); op is
        None when there is nothing to write. Without `results`, a metadata update's
        result is None (see `submit_atomic`)."""
        conditions = tuple(expect)  # (the shared empty tuple, mostly)
        for condition in conditions:
            if not isinstance(condition, ExpectFile | ExpectMeta):
                raise InvalidInput(
                    "write_atomic's expect takes ExpectFile and ExpectMeta, "
                    f"got {type(condition).__name__}"
                )
        ops: list[Callable[[], Any]] = []
        whats: list[str] = []
        for write in writes:
            if isinstance(write, UpdateMeta):
                slot = self._meta_slot(
                    [(write.kind, write.object_id, write.update)], patch=not results
                )
                assert slot is not None
            elif isinstance(write, CreateObject):
                slot = self._create_slot(write)
            elif isinstance(write, AppendFile):
                slot = self._append_slot(write)
            elif isinstance(write, DeleteFile):
                slot = self._delete_slot(write.kind, write.object_id, write.name, missing_ok=True)
            elif isinstance(write, RenameFile):
                slot = self._rename_slot(write)
            else:
                raise InvalidInput(
                    "write_atomic takes CreateObject, AppendFile, UpdateMeta, DeleteFile "
                    "and RenameFile, "
                    f"got {type(write).__name__}"
                )
            # Only the operation waits for the commit, not its slot: with thousands of
            # writes queued, each object one keeps is one more for the cyclic GC to walk.
            ops.append(slot.op)
            whats.append(slot.what)
        if not ops:
            self._ensure_open()
            return "write nothing", None
        # (An `_Op` rather than a closure, for the same reason; the operations in its
        # arguments, so that no list or tuple of them is kept too.)
        op = _Op(type(self)._run_atomic, self, (conditions, *ops))
        return " and ".join(whats), op

    def _run_atomic(
        self, conditions: tuple[ExpectFile | ExpectMeta, ...], *ops: Callable[[], Any]
    ) -> list[Any]:
        """`_atomic_op`'s writes, in one transaction: the conditions checked first."""
        for condition in conditions:
            self._check_condition(condition)
        return [op() for op in ops]

    def _check_condition(self, condition: ExpectFile | ExpectMeta) -> None:
        if isinstance(condition, ExpectFile):
            row = self._file_row(condition.kind, condition.object_id, condition.name)
            size = 0 if row is None else row[0]
            if size != condition.size:
                raise Conflict(
                    f"file {condition.name!r} of {condition.kind} {condition.object_id!r} "
                    f"holds {size} bytes, not the {condition.size} expected"
                )
            return
        current = self._fetch(condition.kind, condition.object_id)
        value = None if current is None else current.meta.get(condition.key)
        if value != condition.value:
            raise Conflict(
                f"metadata {condition.key!r} of {condition.kind} {condition.object_id!r} "
                f"is {value!r}, not the {condition.value!r} expected"
            )

    def read_file(
        self, kind: str, object_id: str, name: str, *, offset: int = 0, size: int | None = None
    ) -> bytes:
        """The file's bytes from `offset` (all of them, or at most `size`)."""
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise InvalidInput(f"offset must be a non-negative int, got {offset!r}")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise InvalidInput(f"size must be a non-negative int or None, got {size!r}")
        end = None if size is None else offset + size
        parts = []
        for start, piece in self._iter_chunks(kind, object_id, name, offset, end):
            lo = max(offset - start, 0)
            hi = len(piece) if end is None else min(end - start, len(piece))
            parts.append(piece[lo:hi])
        return b"".join(parts)

    def iter_file(self, kind: str, object_id: str, name: str) -> Iterator[bytes]:
        """Yield the file's bytes chunk by chunk, in bounded memory.

        The lock is released between pages of chunks, so a long read does not stall
        writers; bytes appended while iterating may or may not be included.
        """
        return (piece for _start, piece in self._iter_chunks(kind, object_id, name, 0, None))

    def _iter_chunks(
        self, kind: str, object_id: str, name: str, lo: int, hi: int | None
    ) -> Iterator[tuple[int, bytes]]:
        """Check the file exists (now, not on first iteration), then page its chunks."""
        self._check_file_args(kind, object_id, name)
        what = f"read file {name!r} of {kind} {object_id!r}"
        with self._reading(what) as db:
            if self._file_row(kind, object_id, name, db.conn) is None:
                raise NotFound(f"{kind} {object_id!r} has no file {name!r}")
        return self._page_chunks(kind, object_id, name, lo, hi, what)

    def _page_chunks(
        self, kind: str, object_id: str, name: str, lo: int, hi: int | None, what: str
    ) -> Iterator[tuple[int, bytes]]:
        """The file's chunks from offset `lo` (to `hi`), page by page: (start, bytes).

        Small chunks (a block's output lines, say) are read `_PAGE_CHUNKS` at a time in
        one row: the driver lets go of the interpreter's lock for every row it reads,
        and a thread taking it back may wait a whole switch interval (5 ms) while
        another thread runs Python: a file of 20,000 lines read a row each took 23.6 s
        instead of 0.024 in a busy process (0.31-0.40 s this way). Large chunks are
        read a row each, `_PAGE_ROWS` at a time (joined, they would only be copied
        more), and so is everything in a database not encoded UTF-8 (see `__init__`).
        """
        top = MAX_COUNT if hi is None else hi
        failing = f"could not {what} in store {self._path!r}"
        after = -1
        # Where the next chunk starts: chunks are contiguous, the first one at `lo` or before.
        expected: int | None = None
        # Whether the next page is tried joined (its chunks were small last time).
        joining = self._joins_chunks
        while True:
            where = [kind, object_id, name, after, lo, top]
            if joining:
                with self._reading(what) as db:
                    *joined, last = db.execute(
                        _PAGE_JOINED, [*where, _PAGE_CHUNKS, _SMALL_CHUNK, MAX_COUNT]
                    ).fetchone()
                page = _joined_page(tuple(joined), after, lo, expected)
                if page is not None:
                    starts, data, after, expected = page
                    first = starts[0]
                    for start, end in itertools.pairwise([*starts, expected]):
                        yield start, data[start - first : end - first]  # chunk by chunk
                    if after == last:
                        return  # (the last chunk in the range: no statement more)
                    continue
            # A large chunk next (or none), or small ones damaged or changed meanwhile:
            # a row each, which also says what is wrong with a damaged one.
            with self._reading(what) as db:
                rows = db.execute(_PAGE_ROWS_SQL, [*where, _PAGE_ROWS]).fetchall()
            small = 0
            for seq, start, data in rows:
                expected = _chunk_end(seq, start, data, lo, expected, failing)
                after = seq
                small += len(data) <= _SMALL_CHUNK
                yield start, data
            if len(rows) < _PAGE_ROWS:
                return
            joining = small >= _PAGE_ROWS // 2

    def _page_chunk_rows(
        self, kind: str, object_id: str, name: str, lo: int, hi: int | None, what: str
    ) -> Iterator[tuple[int, bytes]]:
        """`_page_chunks` a row at a time, `_PAGE_ROWS` to a statement (for drivers that
        read a statement's rows without taking the interpreter's lock back for each)."""
        failing = f"could not {what} in store {self._path!r}"
        after = -1
        expected: int | None = None
        while True:
            with self._reading(what) as db:
                rows = db.execute(
                    "SELECT seq, start, data FROM file_chunks "
                    "WHERE kind = ? AND id = ? AND name = ? AND seq > ? "
                    "AND start + length(data) > ? AND start < ? "
                    "ORDER BY seq LIMIT ?",
                    [
                        kind,
                        object_id,
                        name,
                        after,
                        lo,
                        MAX_COUNT if hi is None else hi,
                        _PAGE_ROWS,
                    ],
                ).fetchall()
            for seq, start, data in rows:
                expected = _chunk_end(seq, start, data, lo, expected, failing)
                after = seq
                yield start, data
            if len(rows) < _PAGE_ROWS:
                return

    def stat_file(self, kind: str, object_id: str, name: str) -> FileInfo:
        """Size and chunk count of the file; `NotFound` when it does not exist."""
        self._check_file_args(kind, object_id, name)
        with self._reading(f"stat file {name!r} of {kind} {object_id!r}") as db:
            row = db.execute(
                "SELECT size, chunks, created_ms, updated_ms FROM files "
                "WHERE kind = ? AND id = ? AND name = ?",
                [kind, object_id, name],
            ).fetchone()
        if row is None:
            raise NotFound(f"{kind} {object_id!r} has no file {name!r}")
        size, chunks, created, updated = row
        return _file_info(kind, object_id, name, size, chunks, 0, created, updated)

    def list_files(self, kind: str, object_id: str) -> list[FileInfo]:
        """Every file of the object, ordered by name."""
        _check_kind(kind)
        _check_id(kind, object_id)
        with self._reading(f"list files of {kind} {object_id!r}") as db:
            rows = db.execute(
                "SELECT name, size, chunks, created_ms, updated_ms FROM files "
                "WHERE kind = ? AND id = ? ORDER BY name",
                [kind, object_id],
            ).fetchall()
        return [
            _file_info(kind, object_id, name, size, chunks, 0, created, updated)
            for name, size, chunks, created, updated in rows
        ]

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of one read-only `SELECT` over the tables `objects` and `files`.

        For greenroom's own parts, where a scan in SQL (`json_extract` on `meta`) saves
        reading every object into Python; the schema is this module's, not an API.
        """
        if not isinstance(sql, str) or not sql.lstrip().upper().startswith("SELECT"):
            raise InvalidInput(f"query takes one SELECT statement, got {sql!r}")
        with self._reading("query the store") as db:
            return [tuple(row) for row in db.execute(sql, list(params)).fetchall()]

    def files_named(self, kind: str, name: str) -> dict[str, FileInfo]:
        """The file `name` of every object of `kind` that has one, by object id, in one
        query (rows that do not read back are left out and logged)."""
        _check_kind(kind)
        _check_name(name)
        with self._reading(f"list {kind} files named {name}") as db:
            rows = db.execute(
                "SELECT id, size, chunks, created_ms, updated_ms FROM files "
                "WHERE kind = ? AND name = ?",
                [kind, name],
            ).fetchall()
        found: dict[str, FileInfo] = {}
        for object_id, size, chunks, created, updated in rows:
            if not isinstance(object_id, str):
                continue
            try:
                found[object_id] = _file_info(
                    kind, object_id, name, size, chunks, 0, created, updated
                )
            except StorageError as error:
                log.warning("%s", error)
        return found

    def find_files(self, kind: str, prefix: str) -> list[tuple[str, str]]:
        """(object id, file name) of every file of `kind` whose name starts with
        `prefix`, in one query (rows that do not read back as text are left out)."""
        _check_kind(kind)
        if not isinstance(prefix, str) or not prefix:
            raise InvalidInput(f"prefix must be a non-empty str, got {prefix!r}")
        with self._reading(f"find {kind} files named {prefix}*") as db:
            rows = db.execute(
                "SELECT id, name FROM files WHERE kind = ? AND substr(name, 1, ?) = ? "
                "ORDER BY id, name",
                [kind, len(prefix), prefix],
            ).fetchall()
        return [
            (object_id, name)
            for object_id, name in rows
            if isinstance(object_id, str) and isinstance(name, str)
        ]

    def delete_file(
        self, kind: str, object_id: str, name: str, *, missing_ok: bool = False
    ) -> bool:
        """Delete the file and its bytes; returns whether one was deleted.

        A missing file is `NotFound` unless `missing_ok=True`.
        """
        slot = self._delete_slot(kind, object_id, name, missing_ok=missing_ok)
        deleted: bool = self._write(slot.what, slot.op)
        return deleted

    def _delete_slot(self, kind: str, object_id: str, name: str, *, missing_ok: bool) -> _WriteSlot:
        self._check_file_args(kind, object_id, name)

        def op() -> bool:
            # Existence only: a file whose row no longer reads can be deleted.
            if not self._file_exists(kind, object_id, name):
                if missing_ok:
                    return False
                raise NotFound(f"{kind} {object_id!r} has no file {name!r} to delete")
            key = [kind, object_id, name]
            self._db.conn.execute(
                "DELETE FROM file_chunks WHERE kind = ? AND id = ? AND name = ?", key
            )
            self._db.conn.execute("DELETE FROM files WHERE kind = ? AND id = ? AND name = ?", key)
            return True

        return _WriteSlot(f"delete file {name!r} of {kind} {object_id!r}", op)

    def _check_file_args(self, kind: str, object_id: str, name: str) -> None:
        _check_kind(kind)
        _check_id(kind, object_id)
        _check_name(name)

    def _file_exists(self, kind: str, object_id: str, name: str) -> bool:
        row = self._db.conn.execute(
            "SELECT 1 FROM files WHERE kind = ? AND id = ? AND name = ?", [kind, object_id, name]
        ).fetchone()
        return row is not None

    def _file_row(
        self, kind: str, object_id: str, name: str, conn: DbConnection | None = None
    ) -> tuple[int, int, int, int, int] | None:
        row = (
            (conn or self._db.conn)
            .execute(
                "SELECT size, chunks, next_seq, created_ms, updated_ms FROM files "
                "WHERE kind = ? AND id = ? AND name = ?",
                [kind, object_id, name],
            )
            .fetchone()
        )
        if row is None:
            return None
        size, chunks, next_seq, created, updated = row
        info = _file_info(kind, object_id, name, size, chunks, next_seq, created, updated)
        return info.size, info.chunks, next_seq, info.created_ms, info.updated_ms

    def _insert_file(self, kind: str, object_id: str, name: str) -> FileInfo:
        if not self._exists(kind, object_id):
            raise NotFound(f"no {kind} with id {object_id!r}; create the object before its files")
        now = self._now_ms()
        self._db.conn.execute(
            "INSERT INTO files (kind, id, name, size, chunks, next_seq, created_ms, updated_ms) "
            "VALUES (?, ?, ?, 0, 0, 0, ?, ?)",
            [kind, object_id, name, now, now],
        )
        return FileInfo(kind, object_id, name, 0, 0, now, now)

    def __repr__(self) -> str:
        return f"<Store {self._path!r}{' closed' if self._closed else ''}>"


# A page of small chunks of a file, from offset ?5 (to ?6) after chunk ?4, as one row:
# their count, seqs, starts and sizes (in the order the bytes are joined in), how many
# have a wrong type, their bytes, and the last seq in the range. At most ?7 chunks,
# those before the first one of more than ?8 bytes among them (?9: none); sizes are
# read from the rows' headers.
_PAGE_JOINED = """
SELECT count(*), group_concat(seq), group_concat(start), group_concat(length(data)),
  total(typeof(seq) <> 'integer' OR typeof(start) <> 'integer' OR typeof(data) <> 'blob'),
  CAST(group_concat(data, '') AS BLOB),
  (SELECT max(seq) FROM file_chunks WHERE kind = ?1 AND id = ?2 AND name = ?3 AND start < ?6)
FROM (
  SELECT seq, start, data FROM file_chunks
  WHERE kind = ?1 AND id = ?2 AND name = ?3 AND seq > ?4
    AND start + length(data) > ?5 AND start < ?6
    AND seq < coalesce((
      SELECT min(seq) FROM (
        SELECT seq, length(data) AS size FROM file_chunks
        WHERE kind = ?1 AND id = ?2 AND name = ?3 AND seq > ?4
          AND start + length(data) > ?5 AND start < ?6
        ORDER BY seq LIMIT ?7
      ) AS sized WHERE size > ?8
    ), ?9)
  ORDER BY seq LIMIT ?7
) AS page
"""

_LIST_ROWS = 1024  # objects listed a statement (see Store._object_rows)
_LIST_BYTES = 1 << 22  # ... and about this much metadata

# A page of the objects of kind ?1 with ids from ?2 (`above` is ">=" or ">"): its last
# id, for at most ?3 objects and about ?4 bytes of metadata (at least one object).
_LIST_BOUND = """
SELECT max(id) FROM (
  SELECT id, size, sum(size) OVER (ORDER BY id) AS upto FROM (
    SELECT id, length(meta) AS size FROM objects
    WHERE kind = ?1 AND id {above} ?2 ORDER BY id LIMIT ?3
  ) AS sized
) AS paged WHERE upto - size < ?4
"""

# That page up to id ?3 as one row: how many rows have a value of another type than
# their column's, and the rows as JSON (a BLOB would make the JSON functions fail).
_LIST_JOINED = (
    "SELECT total(typeof(meta) <> 'text' OR typeof(version) <> 'integer' "
    "OR typeof(created_ms) <> 'integer' OR typeof(updated_ms) <> 'integer'), "
    "json_group_array(json_array("
    + ", ".join(
        f"iif(typeof({column}) = 'blob', NULL, {column})"
        for column in ("id", "meta", "version", "created_ms", "updated_ms")
    )
    + ")) FROM (SELECT * FROM objects WHERE kind = ?1 AND id {above} ?2 AND id <= ?3 "
    "ORDER BY id) AS page"
)

# The chunks from offset ?5 (to ?6) after chunk ?4, a row each: at most ?7.
_PAGE_ROWS_SQL = """
SELECT seq, start, data FROM file_chunks
WHERE kind = ?1 AND id = ?2 AND name = ?3 AND seq > ?4
  AND start + length(data) > ?5 AND start < ?6
ORDER BY seq LIMIT ?7
"""


@contextlib.contextmanager
def _snapshot(db: Database) -> Iterator[None]:
    """One read transaction on `db`: every statement inside sees the same database."""
    db.execute("BEGIN")
    try:
        yield
    finally:
        db.execute("COMMIT")


def _odd_ids(db: Database, kind: str) -> bool:
    """Whether an object of `kind` has an id that is not text (a hand-edited row)."""
    (odd,) = db.execute(
        "SELECT total(typeof(id) <> 'text') FROM objects WHERE kind = ?", [kind]
    ).fetchone()
    return bool(odd)


def _joined_page(
    row: tuple[Any, ...], after: int, lo: int, expected: int | None
) -> tuple[list[int], bytes, int, int] | None:
    """A page read joined (`_PAGE_JOINED`): (its chunks' starts, their bytes, its last
    seq, where the next chunk starts); None if it is empty or not well-formed
    contiguous chunks (a damaged chunk)."""
    count, seqs, starts, sizes, odd, data = row
    if not count or odd or type(data) is not bytes:
        return None
    # Integers (`odd` counted the rows of other types), read in C as JSON lists.
    seq_list = json.loads(f"[{seqs}]")
    start_list = json.loads(f"[{starts}]")
    size_list = json.loads(f"[{sizes}]")
    if not len(seq_list) == len(start_list) == len(size_list) == count:
        return None
    first = start_list[0]
    if first < 0 or (first > lo if expected is None else first != expected):
        return None
    at, previous = first, after
    for seq, start, size in zip(seq_list, start_list, size_list, strict=True):
        if seq <= previous or start != at:
            return None
        previous, at = seq, start + size
    if len(data) != at - first:
        return None
    return start_list, data, previous, at


_GROUPS = (128, 64, 32, 16, 8, 4, 2, 1)
# SQLite's default bound on a statement's parameters before 3.32 (the store needs 3.35
# anyway, for RETURNING; a build may set it lower), less what a statement adds.
_MAX_PARAMETERS = 990


def _row_groups(rows: Sequence[Sequence[Any]], width: int) -> Iterator[tuple[int, list[Any]]]:
    """`rows` (of `width` values each) in groups of the sizes of `_GROUPS` (each a
    statement shape, compiled once and cached): (how many rows, their values in one
    list), largest groups first."""
    at = 0
    for size in _GROUPS:
        if size * width > _MAX_PARAMETERS:
            continue
        while len(rows) - at >= size:
            yield size, [value for row in rows[at : at + size] for value in row]
            at += size


@functools.cache
def _values(count: int, width: int) -> str:
    """A `VALUES` clause of `count` rows of `width` parameters each."""
    row = "(" + ", ".join("?" * width) + ")"
    return "VALUES " + ", ".join([row] * count)


def _chunk_end(seq: Any, start: Any, data: Any, lo: int, expected: int | None, failing: str) -> int:
    """Where the chunk row (seq, start, data) ends, once checked: it holds bytes and
    starts at `expected` (the first one: at `lo` or before); else `StorageError`
    ("`failing`: ...")."""
    if (
        type(seq) is not int
        or type(start) is not int
        or type(data) is not bytes
        or start < 0
        or (start > lo if expected is None else start != expected)
    ):
        raise StorageError(
            f"{failing}: its chunk {seq!r} is damaged (starts at {start!r}"
            + (f", not {expected}" if expected is not None else f", after {lo}")
            + f", holds {type(data).__name__}); the stored file is not usable"
        )
    return start + len(data)


def _without(
    rows: dict[tuple[str, ...], list[list[Any]]], refused: Mapping[str, object]
) -> dict[tuple[str, ...], list[list[Any]]]:
    """`_value_rows` output without the rows of the objects in `refused` (each row ends
    with kind, id)."""
    kept = {
        keys: [row for row in params if row[-1] not in refused] for keys, params in rows.items()
    }
    return {keys: params for keys, params in kept.items() if params}


def _table(db: sqlite_utils.Database, name: str) -> sqlite_utils.db.Table:
    """The table `name` (sqlite-utils types `db[name]` as a table or a view)."""
    table = db[name]
    assert isinstance(table, sqlite_utils.db.Table), name
    return table


def _shown_id(value: object) -> str:
    """An id as a message shows it: repr, cut short (a hand-edited one may be huge)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _object_from_row(row: tuple[Any, ...]) -> StoredObject:
    """A stored object from its row, every column checked: the database may have been
    edited by hand, and what it holds reaches hosts and the command line."""
    kind, object_id, meta, version, created_ms, updated_ms = row
    where = f"{kind} {_shown_id(object_id)}"
    if not isinstance(object_id, str):
        raise StorageError(f"{where}: its stored id is a {type(object_id).__name__}, not text")
    return StoredObject(
        kind,
        object_id,
        loads_meta(meta, where),
        # (Bounded: an update adds one, and SQLite's integers stop at 2**63 - 1.)
        _stored_int(where, "version", version, minimum=0, maximum=MAX_VERSION),
        _stored_int(where, "created_ms", created_ms),
        _stored_int(where, "updated_ms", updated_ms),
    )


def _stored_int(
    where: str,
    column: str,
    value: object,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int:
    """A stored integer column, checked (`StorageError` naming it if it is not one)."""
    if (
        type(value) is not int
        or (minimum is not None and value < minimum)
        or (maximum is not None and value > maximum)
    ):
        need = "an integer"
        if minimum is not None:
            need += f" >= {minimum}"
        if maximum is not None:
            need += f" <= {maximum}"
        raise StorageError(f"{where}: its stored {column} is {_shown_id(value)}, not {need}")
    return value


def _plain_counts(size: object, chunks: object, next_seq: object) -> bool:
    """Whether stored sizes and counts are what they should be (the common case, checked
    fast; `_file_info` says what is wrong otherwise)."""
    return (
        type(size) is int
        and type(chunks) is int
        and type(next_seq) is int
        and 0 <= size <= MAX_COUNT
        and 0 <= chunks <= MAX_COUNT
        and 0 <= next_seq <= MAX_COUNT
    )


def _file_info(
    kind: str,
    object_id: str,
    name: object,
    size: object,
    chunks: object,
    next_seq: object,
    created_ms: object,
    updated_ms: object,
) -> FileInfo:
    """A stored file's row, checked: sizes and counts integers in [0, 2**62], times
    integers."""
    if (
        isinstance(name, str)
        and _plain_counts(size, chunks, next_seq)
        and type(created_ms) is int
        and type(updated_ms) is int
    ):
        return FileInfo(kind, object_id, name, size, chunks, created_ms, updated_ms)  # type: ignore[arg-type]
    where = f"file {_shown_id(name)} of {kind} {_shown_id(object_id)}"
    if not isinstance(name, str):
        raise StorageError(f"{where}: its stored name is a {type(name).__name__}, not text")
    _stored_int(where, "next_seq", next_seq, minimum=0, maximum=MAX_COUNT)
    return FileInfo(
        kind,
        object_id,
        name,
        _stored_int(where, "size", size, minimum=0, maximum=MAX_COUNT),
        _stored_int(where, "chunks", chunks, minimum=0, maximum=MAX_COUNT),
        _stored_int(where, "created_ms", created_ms),
        _stored_int(where, "updated_ms", updated_ms),
    )


def _value_rows(
    kind: str,
    values: Mapping[str, Mapping[str, int | float | str]],
    checked: Mapping[str, object] = _NO_IDS,
) -> dict[tuple[str, ...], list[list[Any]]]:
    """`set_meta_values`' values as statement parameters, grouped by key set; checked
    (ids in `checked` were checked already)."""
    rows: dict[tuple[str, ...], list[list[Any]]] = {}
    for object_id, update in values.items():
        if object_id not in checked:
            _check_id(kind, object_id)
        keys = tuple(update)
        params = rows.get(keys)
        if params is None:
            for key in keys:
                if not isinstance(key, str) or not _PLAIN_KEY.fullmatch(key):
                    raise InvalidInput(
                        "set_meta_values takes keys of letters, digits and _.:@-, "
                        f"got {key!r} for {kind} {object_id!r}"
                    )
            params = rows[keys] = []
        row = list(update.values())
        for value in row:
            if type(value) is int:
                continue  # (the common case, checked first)
            if type(value) not in _PLAIN_VALUE or value != value or value in _INFINITE:
                raise InvalidInput(
                    "set_meta_values takes int, finite float and str values, got "
                    f"{value!r} for {kind} {object_id!r}"
                )
        row += (kind, object_id)
        params.append(row)
    return rows


_META_IS_OBJECT = "CASE WHEN json_valid(meta) THEN json_type(meta) END = 'object'"
"""SQL: the row's metadata is a JSON object (CASE: json_type needs valid JSON)."""


def _json_paths(keys: tuple[str, ...], texts: Sequence[int] = ()) -> str:
    """`json_set`'s path and value arguments for `keys`, the values the columns of
    `v` in order (those at `texts`, 0-based, JSON text: through json())."""
    return ", ".join(
        f"'$.{json.dumps(key)}', "
        + (f"json(v.column{index})" if index - 1 in texts else f"v.column{index}")
        for index, key in enumerate(keys, 1)
    )


def _json_texts(row: list[Any], columns: list[int]) -> list[Any]:
    """`row` with the values in `columns` as their JSON text (for SQL's json())."""
    row = list(row)
    for column in columns:
        row[column] = json.dumps(row[column])
    return row


def _patchable(update: Mapping[str, Any]) -> bool:
    """Whether a checked metadata update only sets plain values `json_set` stores as
    they are: str, or int of 64 bits (not bool, which SQLite would store as 1; not
    float, whose text SQLite may shorten), under plain keys."""
    for key, value in update.items():
        kind = type(value)
        if kind is int:
            if not -(2**63) <= value < 2**63:
                return False
        elif kind is not str:
            return False
        if _PLAIN_KEY.fullmatch(key) is None:
            return False
    return True


def _create_database_file(path: Path, file_mode: int, dir_mode: int) -> None:
    """Create the database file (empty, `file_mode`) and its folders, when missing.

    Made here rather than by SQLite, which would give it the umask's mode. An empty
    file is a valid empty database; one made meanwhile by another process is kept.
    """
    if os.path.lexists(path):
        return  # an existing database (or whatever is there) keeps its mode
    try:
        private_dir(path.parent, dir_mode)
    except OSError as exc:
        raise StorageError(
            f"cannot create folder {str(path.parent)!r} for the store: {exc}"
        ) from exc
    try:
        os.close(create_private(path, file_mode))
    except FileExistsError:
        return  # created meanwhile by another process or thread
    except OSError as exc:
        raise StorageError(f"cannot create store {str(path)!r}: {exc}") from exc


def _user_version(db: sqlite_utils.Database) -> int:
    found = db.execute("PRAGMA user_version").fetchone()[0]
    return int(found)


def _busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


def _retry_busy(deadline: float, step: Callable[[], T]) -> T:
    """Run `step`, again while SQLite answers "busy" and time is left before `deadline`.

    The busy timeout makes most waits inside SQLite; a few conflicts it answers at
    once (a schema or journal-mode change racing another connection's, a read
    snapshot gone stale), and then the whole step is worth running again.
    """
    while True:
        try:
            return step()
        except sqlite3.OperationalError as exc:
            if not _busy(exc) or stopwatch() >= deadline:
                raise
            log.debug("store busy while opening (%s); trying again", exc)


def _create_schema(db: sqlite_utils.Database, target: str) -> None:
    """Create the tables of schema version 1 and record the version, in one transaction.

    The transaction takes the write lock first (`BEGIN IMMEDIATE`) and reads the
    version again inside it: of several processes creating one new database at once,
    one creates the tables and the others find them made.
    """
    conn = db.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = _user_version(db)
        if found > SCHEMA_VERSION:
            raise SchemaTooNew(target, found, SCHEMA_VERSION)
        if found == SCHEMA_VERSION:
            conn.execute("ROLLBACK")
            return
        _create_tables(db)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise
    log.info("created greenroom store schema version %d", SCHEMA_VERSION)


def _create_tables(db: sqlite_utils.Database) -> None:
    """The tables of schema version 1 (inside the caller's transaction)."""
    _table(db, "objects").create(
        {
            "kind": str,
            "id": str,
            "meta": str,
            "version": int,
            "created_ms": int,
            "updated_ms": int,
        },
        pk=("kind", "id"),
        not_null={"meta", "version", "created_ms", "updated_ms"},
        if_not_exists=True,
    )
    _table(db, "files").create(
        {
            "kind": str,
            "id": str,
            "name": str,
            "size": int,
            "chunks": int,
            "next_seq": int,
            "created_ms": int,
            "updated_ms": int,
        },
        pk=("kind", "id", "name"),
        not_null={"size", "chunks", "next_seq", "created_ms", "updated_ms"},
        if_not_exists=True,
    )
    _table(db, "file_chunks").create(
        {"kind": str, "id": str, "name": str, "seq": int, "start": int, "data": bytes},
        pk=("kind", "id", "name", "seq"),
        not_null={"start", "data"},
        if_not_exists=True,
    )
