"""What the `greenroom` commands share: opening a database, JSON and text output.

Opening never creates a database: a missing file, a folder, or a file that is not a
greenroom database is a `CliError` (exit status 1) before anything is written.

`--json` output has two shapes, one per kind of command: a command that lists rows
prints ONE JSON array of row objects (`emit_rows`, one row per line as sqlite-utils
prints them: `[{"id": ...},\n {"id": ...}]`); a command about one item prints ONE
JSON object (`emit_object`). Paths are written as strings, whether the runtime hands
back a `str` or a `pathlib.Path`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from greenroom.checks import check_path
from greenroom.config import RuntimeConfig
from greenroom.errors import GreenroomError, NotFound, StorageError
from greenroom.runtime import Runtime
from greenroom.transcripts.logformat import iso_utc

__all__ = [
    "PROG",
    "CliError",
    "check_database",
    "emit_object",
    "emit_rows",
    "iso",
    "one_line",
    "open_database",
    "plural",
    "print_table",
    "printable",
    "say",
    "warn",
    "when",
]

PROG = "greenroom"

# The CLI's runtime never sweeps by itself: only `greenroom sweep` does (a command that
# runs longer than the default first-sweep delay must not archive anything on its own).
_NEVER_S = 1e9

# The tables of greenroom's store schema (runtime/store.py, `_create_schema`).
_TABLES = ("objects", "files", "file_chunks")

# The times an ISO-8601 date can show: years 1 to 9999.
_MIN_MS = -62_135_596_800_000
_MAX_MS = 253_402_300_799_999


class CliError(GreenroomError):
    """A user error found by the command line itself (exit status 1, one line)."""


def say(text: str = "") -> None:
    """Print a line of text output on stdout."""
    sys.stdout.write(text + "\n")


def warn(text: str) -> None:
    """Print a one-line warning on stderr."""
    sys.stderr.write(f"{PROG}: warning: {one_line(text)}\n")


def one_line(text: str) -> str:
    """`text` with its line breaks folded, for a one-line message."""
    return " ".join(text.split()) if "\n" in text or "\r" in text else text


def _plain(value: object) -> str:
    # A path (the runtime hands back `pathlib.Path`s) is written as its text.
    if isinstance(value, os.PathLike):
        return os.fsdecode(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _dumps(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=False, default=_plain)


def emit_object(document: Mapping[str, Any]) -> None:
    """Print ONE JSON object on stdout (indented, UTF-8, a newline at the end): the
    `--json` output of a command about one item."""
    sys.stdout.write(_dumps(dict(document), indent=2) + "\n")


def emit_rows(rows: Sequence[Mapping[str, Any]]) -> None:
    """Print ONE JSON array of row objects on stdout, one row per line (as sqlite-utils
    does; `[]` for none): the `--json` output of a command that lists rows."""
    lines = [_dumps(dict(row)) for row in rows]
    sys.stdout.write("[" + ",\n ".join(lines) + "]\n")


def plural(count: int, word: str, many: str | None = None) -> str:
    """`1 block`, `2 blocks` (with thousands separators)."""
    return f"{count:,} {word if count == 1 else (many or word + 's')}"


def iso(ms: object) -> str | None:
    """Unix milliseconds as ISO-8601 UTC (`2026-01-01T00:00:00.000Z`); `None` for 0, and
    for what is no time a date can show (metadata is anyone's to write: `10**17`)."""
    if type(ms) is not int or not ms or not _MIN_MS <= ms <= _MAX_MS:
        return None
    return iso_utc(ms)


def when(ms: object) -> str:
    """A time for text output: ISO-8601 UTC, `-` for none (0), or `unknown (VALUE)` for
    a stored value that is no time (`10**17`, a string)."""
    shown = iso(ms)
    if shown is not None:
        return shown
    if ms is None or ms == 0:
        return "-"
    return f"unknown ({_raw(ms)})"


def _raw(value: object) -> str:
    # A stored value as text output shows it: bounded (a huge int, a long string).
    if type(value) is int and abs(value) >= 10**30:
        return f"an int of {len(str(abs(value))):,} digits"
    return printable(repr(value) if isinstance(value, str) else str(value), 60)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str, limit: int | None = None) -> str:
    """`text` for a terminal: control characters (line breaks, escapes, text-direction
    overrides) written as `\\xNN` / `\\uNNNN`, and cut to `limit` characters if given."""
    if _CONTROL.search(text) is not None:
        text = _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
    if limit is not None and len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> None:
    """Print rows under headers, columns padded; the columns in `right` right-aligned."""
    widths = [len(header) for header in headers]
    for row in rows:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell))

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return "  ".join(padded).rstrip()

    say(line(headers))
    for row in rows:
        say(line(row))


def check_database(path: Path) -> None:
    """Refuse (`CliError` / `NotFound`) what is not an existing greenroom database.

    A read-only look (SQLite `mode=ro`), so a wrong path never becomes a new database
    and a foreign one is never touched (opening the store would switch it to WAL): an
    empty file or another SQLite database has no greenroom schema (version 0) or lacks
    greenroom's tables.
    """
    if not path.exists():
        raise NotFound(f"no database at {str(path)!r} (the command line never creates one)")
    if path.is_dir():
        raise CliError(f"{str(path)!r} is a folder, not a greenroom database")
    if not os.access(path, os.R_OK):
        raise CliError(f"cannot read {str(path)!r}: permission denied")
    try:
        probe = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error as error:
        raise StorageError(f"cannot open {str(path)!r}: {error}") from error
    try:
        version = probe.execute("PRAGMA user_version").fetchone()[0]
        tables = {
            row[0] for row in probe.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
    except sqlite3.Error as error:
        raise StorageError(f"cannot open {str(path)!r}: {error}") from error
    finally:
        probe.close()
    if version == 0:
        raise CliError(f"{str(path)!r} is not a greenroom database (it has no greenroom schema)")
    missing = [table for table in _TABLES if table not in tables]
    if missing:
        raise CliError(
            f"{str(path)!r} is not a greenroom database (it lacks greenroom's tables: "
            f"{', '.join(missing)}); nothing was changed in it"
        )


@contextlib.contextmanager
def open_database(
    db: str | os.PathLike[str], archive_dir: str | os.PathLike[str] | None
) -> Iterator[Runtime]:
    """A runtime on the existing database `db` (real clock, no timed sweeps), closed
    on every way out."""
    path = check_path(db, "DB")
    folder = None if archive_dir is None else check_path(archive_dir, "--archive-dir")
    check_database(path)
    config = RuntimeConfig(
        sweep_first_after_s=_NEVER_S,
        sweep_interval_s=_NEVER_S,
        archive_dir=folder,
    )
    rt = Runtime.open(path, config=config)
    try:
        yield rt
    finally:
        rt.close()
