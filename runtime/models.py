"""Records greenroom hands back to callers: stored objects and stored files."""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["AppendedMany", "FileInfo", "StoredObject", "UnreadableObject"]


@attrs.frozen
class StoredObject:
    """One object of the store: its kind, id, JSON metadata and version.

    `meta` is a fresh dict for every read; changing it changes nothing stored.
    `version` starts at 1 and goes up by one with every metadata update.
    """

    kind: str
    id: str
    meta: dict[str, Any]
    version: int
    created_ms: int
    updated_ms: int


@attrs.frozen
class FileInfo:
    """What the store knows of one named byte file of an object."""

    kind: str
    id: str
    name: str
    size: int
    chunks: int
    created_ms: int
    updated_ms: int


@attrs.frozen
class UnreadableObject:
    """An object whose stored row does not read back (a hand-edited database), as
    `Store.list_objects(kind, unreadable=[...])` reports it instead of raising."""

    kind: str
    id: str
    """The id as stored, or its repr when it is not text."""
    error: str
    """Why it cannot be read (the `StorageError`'s message)."""


@attrs.frozen
class AppendedMany:
    """What `Store.append_many` did, in its one transaction.

    `sizes`: each appended file's size now, by object id. `failed`: the objects whose
    data was not stored, with why (`NotFound`: no such object or file; `StorageError`:
    a damaged file row). `values_changed`: how many objects' metadata values were set
    (an object that does not exist, or whose metadata is damaged, is skipped).
    `created`: how many of the objects to make first were missing, and made.
    """

    sizes: dict[str, int]
    failed: dict[str, Exception]
    values_changed: int
    created: int = 0
