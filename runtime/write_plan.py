"""Queued writes worked out together in Python, so a batch is stored in a few statements.

Python's `sqlite3` lets go of the interpreter's lock for every row a statement reads or
writes, and in a busy process taking it back can cost a whole switch interval (5 ms). A
batch of durable executions' journal writes (an append and a metadata update each) ran
about five single-row statements a write. The store instead reads the rows the batch
touches in a statement or two, plays the writes here in order (`WritePlan`), and writes
what changed as multi-row statements. A write the plan cannot take as it is (a missing
object, a size that is not the one expected) raises `Replan`: the store then runs the
batch the plain way, a write at a time, and that write gets its own error there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import attrs

from greenroom.jsonvalue import json_copy
from greenroom.meta import apply_update
from greenroom.models import FileInfo, StoredObject

__all__ = [
    "MAX_COUNT",
    "MAX_VERSION",
    "FileRow",
    "ObjectRow",
    "Replan",
    "Step",
    "WritePlan",
    "planned_keys",
]

MAX_VERSION = 2**62
"""The highest object version a read takes (an update adds one: below 2**63)."""
MAX_COUNT = 2**62
"""The highest file size or count a read takes (an append adds to them, below 2**63)."""


class Replan(Exception):
    """A write the plan does not take as it is: run the batch a write at a time."""


@attrs.define(slots=True)
class ObjectRow:
    """An object's row as the plan has it: its metadata, version and times."""

    meta: dict[str, Any]
    version: int
    created_ms: int
    updated_ms: int
    new: bool = False  # made by this plan (inserted, not updated)
    changed: bool = False
    handed: bool = False  # `meta` is a result's too: copied before it changes again


@attrs.define(slots=True)
class FileRow:
    """A file's row as the plan has it: its size and counts, and times."""

    size: int
    chunks: int
    next_seq: int
    created_ms: int
    updated_ms: int
    new: bool = False
    changed: bool = False


class WritePlan:
    """The rows a batch of writes touches, changed in order as the writes would change
    them; what is left to store is in `objects`, `files` and `chunks`."""

    __slots__ = ("chunks", "existing", "files", "now_ms", "objects", "patches")

    def __init__(
        self,
        now_ms: int,
        objects: dict[tuple[str, str], ObjectRow | None],
        files: dict[tuple[str, str, str], FileRow | None],
        existing: set[tuple[str, str]],
    ) -> None:
        """`objects` holds a row (or None: there is none) for every object the writes
        create or update, `files` one for every file they append to, as stored when the
        plan began; `existing` the other objects of files that are missing and may be
        made, that exist."""
        self.now_ms = now_ms
        self.objects = objects
        self.files = files
        self.existing = existing
        self.chunks: list[tuple[str, str, str, int, int, bytes]] = []
        # Updates of objects the plan holds no row of (`patch`): by object, the values
        # they set, merged in order, and how many updates they were.
        self.patches: dict[tuple[str, str], tuple[dict[str, Any], list[int]]] = {}

    def create(self, kind: str, object_id: str, meta: dict[str, Any]) -> StoredObject:
        """`Store._create_op`: a new object."""
        key = (kind, object_id)
        if self.objects[key] is not None:
            raise Replan(f"{kind} {object_id!r} exists")
        now = self.now_ms
        self.objects[key] = ObjectRow(meta, 1, now, now, new=True, changed=True, handed=True)
        return StoredObject(kind, object_id, meta, 1, now, now)

    def update(self, *batch: tuple[str, str, dict[str, Any]]) -> list[StoredObject]:
        """`Store._meta_op`: metadata updates, each merged into the object's metadata."""
        results = []
        now = self.now_ms
        for kind, object_id, update in batch:
            row = self.objects[(kind, object_id)]
            if row is None:
                raise Replan(f"no {kind} {object_id!r}")
            if row.version > MAX_VERSION:
                raise Replan(f"{kind} {object_id!r} is at its highest version")
            # Each result's metadata is its caller's alone, as a write run alone hands
            # out what it read: one handed out already is copied before it changes.
            current = json_copy(row.meta) if row.handed else row.meta
            row.meta = apply_update(current, update)
            row.version += 1
            row.updated_ms = now
            row.changed = row.handed = True
            results.append(
                StoredObject(kind, object_id, row.meta, row.version, row.created_ms, now)
            )
        return results

    def patch(self, *batch: tuple[str, str, dict[str, Any]]) -> list[None]:
        """`Store._patch_op`: metadata updates of plain values whose results nobody
        reads. One of an object the plan holds a row of (read, or made by it) is
        applied as `update` applies it; any other is kept in `patches`, to be written
        in the statement without its row being read (`Store._store_patches`, which
        raises `Replan` if the object is missing, damaged or at its highest version)."""
        patches = self.patches
        for kind, object_id, update in batch:
            key = (kind, object_id)
            if key in self.objects:
                self.update((kind, object_id, update))
                continue
            held = patches.get(key)
            if held is None:
                patches[key] = (dict(update), [1])
            else:
                held[0].update(update)  # (plain values only: a later one overwrites)
                held[1][0] += 1
        return [None] * len(batch)

    def patch_rows(self) -> dict[tuple[str, ...], list[list[Any]]]:
        """The patches as statement parameters, grouped by the keys they set: each row
        the values, how many updates they were, then kind and id."""
        rows: dict[tuple[str, ...], list[list[Any]]] = {}
        for (kind, object_id), (values, updates) in self.patches.items():
            rows.setdefault(tuple(values), []).append(
                [*values.values(), updates[0], kind, object_id]
            )
        return rows

    def append(
        self,
        kind: str,
        object_id: str,
        name: str,
        create: bool,
        expect_size: int | None,
        pieces: tuple[bytes, ...],
    ) -> FileInfo:
        """`Store._append_op`: bytes appended to a file (made first if `create`)."""
        key = (kind, object_id, name)
        row = self.files[key]
        if expect_size is not None and (0 if row is None else row.size) != expect_size:
            raise Replan(f"file {name!r} of {kind} {object_id!r} is not {expect_size} bytes")
        now = self.now_ms
        if row is None:
            owner = (kind, object_id)
            if not create or (self.objects.get(owner) is None and owner not in self.existing):
                raise Replan(f"no file {name!r} of {kind} {object_id!r} to append to")
            row = self.files[key] = FileRow(0, 0, 0, now, now, new=True, changed=True)
        elif max(row.size, row.chunks, row.next_seq) > MAX_COUNT:
            raise Replan(f"file {name!r} of {kind} {object_id!r} is at its largest")
        if not pieces:
            return FileInfo(
                kind, object_id, name, row.size, row.chunks, row.created_ms, row.updated_ms
            )
        start = row.size
        seq = row.next_seq
        for piece in pieces:
            self.chunks.append((kind, object_id, name, seq, start, piece))
            seq += 1
            start += len(piece)
        row.size = start
        row.chunks += len(pieces)
        row.next_seq = seq
        row.updated_ms = now
        row.changed = True
        return FileInfo(kind, object_id, name, start, row.chunks, row.created_ms, now)

    def object_rows(self) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """The objects to insert (kind, id, meta, version, created_ms, updated_ms) and
        to update (meta, version, updated_ms, kind, id); meta still a dict."""
        inserted: list[tuple[Any, ...]] = []
        updated: list[tuple[Any, ...]] = []
        for (kind, object_id), row in self.objects.items():
            if row is None or not row.changed:
                continue
            if row.new:
                inserted.append(
                    (kind, object_id, row.meta, row.version, row.created_ms, row.updated_ms)
                )
            else:
                updated.append((row.meta, row.version, row.updated_ms, kind, object_id))
        return inserted, updated

    def file_rows(self) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """The files to insert (kind, id, name, size, chunks, next_seq, created_ms,
        updated_ms) and to update (size, chunks, next_seq, updated_ms, kind, id, name)."""
        inserted: list[tuple[Any, ...]] = []
        updated: list[tuple[Any, ...]] = []
        for (kind, object_id, name), row in self.files.items():
            if row is None or not row.changed:
                continue
            if row.new:
                counts = (row.size, row.chunks, row.next_seq, row.created_ms, row.updated_ms)
                inserted.append((kind, object_id, name, *counts))
            else:
                updated.append(
                    (row.size, row.chunks, row.next_seq, row.updated_ms, kind, object_id, name)
                )
        return inserted, updated


Step = tuple[Callable[..., Any], tuple[Any, ...]]
"""A write as the plan takes it: `WritePlan.create`, `.update` or `.append`, and the
arguments after the plan."""


def planned_keys(
    steps: Iterable[Step],
) -> tuple[set[tuple[str, str]], dict[tuple[str, str], set[str]]]:
    """The objects (kind, id) `steps` create or update (not those they only patch), and
    the files they append to (their ids by kind and name)."""
    objects: set[tuple[str, str]] = set()
    files: dict[tuple[str, str], set[str]] = {}
    for method, args in steps:
        if method is WritePlan.update:
            objects.update((kind, object_id) for kind, object_id, _ in args)
        elif method is WritePlan.patch:
            continue  # (no row read for it: see `WritePlan.patch`)
        elif method is WritePlan.append:
            files.setdefault((args[0], args[2]), set()).add(args[1])
        else:
            objects.add((args[0], args[1]))
    return objects, files
