"""The block commands of `greenroom`: `blocks`, `show`, `export`, `archive`, `restore`.

Listing and showing read the store only (no block actor is started); export, archive
and restore go through the block's actor, as a host's calls do. With `--json`,
`blocks` prints one JSON array of block rows; the others print one JSON object.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import secrets
import stat
import sys
from pathlib import Path
from typing import Any

from greenroom.archives import check_block_id, checked_archive_path
from greenroom.blocks.records import (
    ARCHIVE_PATH,
    ARCHIVED_AT,
    ARCHIVED_BYTES,
    LAST_ACTIVITY,
    PRUNED_AT,
    START_TS,
    SessionStats,
)
from greenroom.checks import check_path
from greenroom.cli.common import (
    CliError,
    emit_object,
    emit_rows,
    iso,
    open_database,
    plural,
    print_table,
    printable,
    say,
    warn,
    when,
)
from greenroom.errors import GreenroomError, InvalidTransition, NotFound
from greenroom.models import StoredObject, UnreadableObject
from greenroom.runtime import Runtime
from greenroom.store import Store

# The database file and the files SQLite keeps beside it.
_DB_SUFFIXES = ("", "-wal", "-shm", "-journal")

__all__ = ["block_record", "run_archive", "run_blocks", "run_export", "run_restore", "run_show"]


def _number(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _live_bytes(store: Store, block_id: str) -> int:
    # Every file row is read (and checked): a hand-edited one is an error here, not later.
    files = {info.name: info.size for info in store.list_files("block", block_id)}
    return files.get("output", 0)


def block_record(
    store: Store, obj: StoredObject, archive_dir: Path | None = None
) -> dict[str, Any]:
    """One block as the commands report it (a row of `blocks --json`; `show --json` adds
    to it).

    `state` is `live` (output in the database), `archived` (output in an archive
    file), `archived+live` (archived, with new output since), `pruned` (the archive
    was deleted to keep the folder within its budget) or `empty`. `bytes` is the
    whole output: the archive's uncompressed size plus the live part. `archive_path`
    is in `archive_dir` when metadata stores a name relative to the folder.
    """
    meta = obj.meta
    stats = SessionStats.from_meta(meta)
    live = _live_bytes(store, obj.id)
    path = meta.get(ARCHIVE_PATH)
    archive_path = path if isinstance(path, str) and path else None
    if archive_path and archive_dir is not None and not Path(archive_path).is_absolute():
        archive_path = str(archive_dir / archive_path)
    archived = _number(meta.get(ARCHIVED_BYTES)) if archive_path else 0
    archived_at = _number(meta.get(ARCHIVED_AT)) if archive_path else 0
    pruned_at = _number(meta.get(PRUNED_AT))
    if archive_path:
        state = "archived+live" if live else "archived"
    elif live:
        state = "live"
    elif pruned_at:
        state = "pruned"
    else:
        state = "empty"
    view = meta.get("view")
    return {
        "id": obj.id,
        "view": view if isinstance(view, str) else None,
        "state": state,
        "archived": archive_path is not None,
        "line_count": stats.line_count,
        "token_estimate": stats.token_estimate,
        "start_ts_ms": stats.start_ts_ms or None,
        "started": iso(stats.start_ts_ms),
        "last_activity_ms": stats.last_activity_ms or None,
        "last_activity": iso(stats.last_activity_ms),
        "bytes": archived + live,
        "live_bytes": live,
        "archived_bytes": archived,
        "archive_path": archive_path,
        "archived_at_ms": archived_at or None,
        "archived_at": iso(archived_at),
        "archive_pruned_at_ms": pruned_at or None,
        "archive_pruned_at": iso(pruned_at),
    }


def _require_block(rt: Runtime, block_id: str) -> StoredObject:
    """The stored block `block_id`; `NotFound` (never a new block) when there is none.

    Its stored rows are read here, before its actor starts: a row that does not read
    back (a hand-edited database) is a `StorageError` naming it, not an actor that
    stops at its start.
    """
    check_block_id(block_id)
    obj = rt.store.find_object("block", block_id)
    if obj is None:
        raise NotFound(f"no block {block_id!r} in {str(rt.path)!r}")
    rt.store.list_files("block", block_id)
    return obj


def _pruned_at(rt: Runtime, obj: StoredObject, *, live_counts: bool) -> str | None:
    """When (ISO-8601) the block's archive was pruned, if that is all there is to it:
    no archive now and, if `live_counts`, no live output either.

    The CLI says so itself, as a time, instead of the runtime's milliseconds.
    """
    pruned_at = _number(obj.meta.get(PRUNED_AT))
    if not pruned_at or obj.meta.get(ARCHIVE_PATH):
        return None
    if live_counts and _live_bytes(rt.store, obj.id):
        return None
    return when(pruned_at)


_PRUNED = "its archive was pruned at {} to keep the archive folder within max_archive_bytes"


# -- blocks ------------------------------------------------------------------------------


def run_blocks(args: argparse.Namespace) -> int:
    """`greenroom blocks DB [--view V]`: one line per block."""
    unreadable: list[UnreadableObject] = []
    with open_database(args.db, args.archive_dir) as rt:
        store = rt.store
        records: list[dict[str, Any]] = []
        shown: list[Any] = []  # each row's stored last activity, as text output shows it
        for obj in store.list_objects("block", unreadable=unreadable):
            if args.view is not None and obj.meta.get("view") != args.view:
                continue
            try:
                records.append(block_record(store, obj, rt.blocks.archive_dir))
            except GreenroomError as error:  # a hand-edited file row, say
                unreadable.append(UnreadableObject("block", obj.id, str(error)))
                continue
            shown.append(obj.meta.get(LAST_ACTIVITY))
    # A block that does not read back is a row all the same (its view is unknown, so
    # even under --view), and a warning: exit status 1, as for a failed sweep item.
    bad = [_unreadable_record(item) for item in unreadable]
    for item in unreadable:
        warn(f"block {printable(item.id, 80)} cannot be read: {item.error}")
    status = 1 if unreadable else 0
    if args.json:
        emit_rows(records + bad)
        return status
    if not records and not bad:
        say(f"no blocks with view {args.view!r}" if args.view is not None else "no blocks")
        return status
    rows = [
        [
            printable(record["id"], 80),
            printable(record["view"], 40) if record["view"] else "-",
            f"{record['line_count']:,}",
            f"{record['token_estimate']:,}",
            when(last),
            record["state"],
            f"{record['bytes']:,}",
        ]
        for record, last in zip(records, shown, strict=True)
    ] + [[printable(row["id"], 80), "?", "?", "?", "?", row["state"], "?"] for row in bad]
    print_table(
        ["ID", "VIEW", "LINES", "TOKENS", "LAST ACTIVITY", "STATE", "BYTES"], rows, {2, 3, 6}
    )
    return status


def _unreadable_record(item: UnreadableObject) -> dict[str, Any]:
    """The `blocks --json` row of a block whose stored rows do not read back: its id,
    state `unreadable` and the `error`; every other field `null`."""
    return {
        "id": item.id,
        "view": None,
        "state": "unreadable",
        "archived": None,
        "line_count": None,
        "token_estimate": None,
        "start_ts_ms": None,
        "started": None,
        "last_activity_ms": None,
        "last_activity": None,
        "bytes": None,
        "live_bytes": None,
        "archived_bytes": None,
        "archive_path": None,
        "archived_at_ms": None,
        "archived_at": None,
        "archive_pruned_at_ms": None,
        "archive_pruned_at": None,
        "error": item.error,
    }


# -- show --------------------------------------------------------------------------------


def run_show(args: argparse.Namespace) -> int:
    """`greenroom show DB BLOCK`: a block's stats, state, files and metadata."""
    with open_database(args.db, args.archive_dir) as rt:
        obj = _require_block(rt, args.block)
        record = block_record(rt.store, obj, rt.blocks.archive_dir)
        files: list[dict[str, Any]] = [
            {"name": info.name, "bytes": info.size} for info in rt.store.list_files("block", obj.id)
        ]
        archive_file_bytes: int | None = None
        archive_error: str | None = None
        if record["archive_path"]:
            try:
                checked = checked_archive_path(
                    rt.blocks.archive_dir, obj.meta[ARCHIVE_PATH], obj.id
                )
                archive_file_bytes = checked.stat().st_size
            except GreenroomError as error:
                archive_error = str(error)
            except OSError as error:
                archive_error = f"the archive file cannot be read: {error.strerror}"
    record.update(
        version=obj.version,
        created_ms=obj.created_ms,
        created=iso(obj.created_ms),
        updated_ms=obj.updated_ms,
        updated=iso(obj.updated_ms),
        files=files,
        archive_file_bytes=archive_file_bytes,
        archive_error=archive_error,
        meta=obj.meta,
    )
    if args.json:
        emit_object(record)
        return 0
    meta = obj.meta
    lines = [
        ("block", printable(record["id"])),
        ("view", printable(record["view"]) if record["view"] else "-"),
        ("state", record["state"]),
        ("lines", f"{record['line_count']:,}"),
        ("tokens", f"{record['token_estimate']:,} (estimated: bytes // 4 per line)"),
        ("started", when(meta.get(START_TS))),
        ("last activity", when(meta.get(LAST_ACTIVITY))),
        (
            "output",
            f"{plural(record['bytes'], 'byte')} ({record['archived_bytes']:,} archived, "
            f"{record['live_bytes']:,} live)",
        ),
    ]
    if record["archive_path"]:
        size = (
            f"{plural(archive_file_bytes, 'byte')} compressed"
            if archive_file_bytes is not None
            else f"unreadable: {archive_error}"
        )
        lines += [
            ("archive", f"{printable(record['archive_path'])} ({printable(size)})"),
            ("archived at", when(meta.get(ARCHIVED_AT))),
        ]
    if meta.get(PRUNED_AT):
        lines.append(("archive pruned", when(meta.get(PRUNED_AT))))
    lines += [
        (
            "files",
            ", ".join(f"{printable(f['name'])} ({f['bytes']:,} bytes)" for f in files) or "none",
        ),
        ("version", str(record["version"])),
        ("created", when(obj.created_ms)),
        ("updated", when(obj.updated_ms)),
    ]
    width = max(len(label) for label, _value in lines)
    for label, value in lines:
        say(f"{label.ljust(width)}  {value}")
    say("metadata:")
    for key in sorted(meta):
        # (JSON escapes the value's control characters; the key's are escaped here.)
        say(f"  {printable(key)} = {json.dumps(meta[key], ensure_ascii=False)}")
    return 0


# -- export ------------------------------------------------------------------------------


def _write_file(target: Path, data: bytes) -> None:
    """Write `data` to `target` through a temporary file beside it, then rename it into
    place: a write that fails leaves an existing `target` as it was."""
    try:
        status = target.stat()
    except FileNotFoundError:
        status = None
    if status is not None and not stat.S_ISREG(status.st_mode):
        # A device or a pipe (`-o /dev/stdout`) cannot be replaced: written as it is.
        with open(target, "wb") as out:
            out.write(data)
        return
    temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temp, "xb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if status is not None:
            os.chmod(temp, stat.S_IMODE(status.st_mode))  # the file keeps its permissions
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()  # no half-written file left behind
        raise


def _refuse_own_files(rt: Runtime, output: Path) -> None:
    """Refuse an export target that is the database, one of its SQLite side files, or
    inside its archive or transcript folder (real paths: links are followed)."""
    target = output.resolve()
    real_db = Path(rt.path).resolve()
    if target in {real_db.with_name(real_db.name + suffix) for suffix in _DB_SUFFIXES}:
        raise CliError(f"refusing to export over the database itself ({str(output)!r})")
    for what, folder in (
        ("archive", rt.blocks.archive_dir),
        ("transcript", rt.transcripts.directory),
    ):
        real = folder.resolve()
        if target == real or target.is_relative_to(real):
            raise CliError(
                f"refusing to export into the database's {what} folder ({str(output)!r} is in "
                f"{str(real)!r}); choose a file outside it"
            )


def run_export(args: argparse.Namespace) -> int:
    """`greenroom export DB BLOCK [-o FILE]`: the block's output bytes, as they are."""
    # `-o -` (or no -o) is stdout.
    target = None if args.output in (None, "-") else check_path(args.output, "--output")
    with open_database(args.db, args.archive_dir) as rt:
        if target is not None:
            _refuse_own_files(rt, target)
        obj = _require_block(rt, args.block)
        pruned = _pruned_at(rt, obj, live_counts=True)
        if pruned is not None:
            raise NotFound(f"block {obj.id!r} has no output: {_PRUNED.format(pruned)}")
        read = rt.blocks.get(args.block).read_output()
    document: dict[str, Any] = {
        "block_id": args.block,
        "bytes": len(read.data),
        "line_count": read.line_count,
        "archived": read.archived,
        "output": None,
    }
    if target is not None:
        _write_file(target, read.data)
        document["output"] = str(target)
        if args.json:
            emit_object(document)
        return 0
    if args.json:
        # The bytes themselves cannot go to stdout beside the document: they go in it.
        document["data_base64"] = base64.b64encode(read.data).decode("ascii")
        emit_object(document)
        return 0
    sys.stdout.flush()
    sys.stdout.buffer.write(read.data)
    sys.stdout.buffer.flush()
    return 0


# -- archive and restore -----------------------------------------------------------------


def run_archive(args: argparse.Namespace) -> int:
    """`greenroom archive DB BLOCK`: compress the live output into the archive folder."""
    with open_database(args.db, args.archive_dir) as rt:
        _require_block(rt, args.block)
        result = rt.blocks.get(args.block).archive()
    done = result.archived_bytes > 0
    # `str()`: the path may come back as a `str` or a `pathlib.Path`.
    path = None if result.path is None else str(result.path)
    if args.json:
        emit_object(
            {
                "block_id": result.block_id,
                "archived": done,
                "archived_bytes": result.archived_bytes,
                "archived_at_ms": result.archived_at_ms if done else None,
                "archived_at": iso(result.archived_at_ms) if done else None,
                "path": path,
            }
        )
    elif done:
        say(
            f"archived block {result.block_id!r}: {plural(result.archived_bytes, 'byte')} to {path}"
        )
    elif path:
        say(f"block {result.block_id!r} has no new output: it is archived already ({path})")
    else:
        say(f"block {result.block_id!r} has no output to archive; nothing changed")
    return 0


def run_restore(args: argparse.Namespace) -> int:
    """`greenroom restore DB BLOCK`: bring an archived output back into the database."""
    with open_database(args.db, args.archive_dir) as rt:
        obj = _require_block(rt, args.block)
        pruned = _pruned_at(rt, obj, live_counts=False)
        if pruned is not None:
            raise InvalidTransition(
                f"block {obj.id!r} cannot be restored: {_PRUNED.format(pruned)}"
            )
        result = rt.blocks.get(args.block).restore()
    if args.json:
        emit_object({"block_id": result.block_id, "restored_bytes": result.restored_bytes})
    else:
        say(f"restored block {result.block_id!r}: {plural(result.restored_bytes, 'byte')}")
    return 0
