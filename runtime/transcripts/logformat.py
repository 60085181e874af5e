"""The transcript log: JSONL entries, the entry tree, reading back and recovering.

One JSON object per line. Line 1 is the session header::

    {"type":"session","version":1,"id":"9f2c...","timestamp":"2026-01-01T00:00:00.000Z",
     "cwd":".","parent_session":null,"model":"anthropic:claude-sonnet-4-5",
     "compaction":{"enabled":true,"context_window_tokens":200000,"threshold_tokens":null,
                   "keep_recent_tokens":null}}

`compaction` records the settings the transcript was created with (not the summarizer,
host code; `null` for a value left to its default), so a resume without `compaction=`
keeps them; a file without it (or with it unreadable, reported) gets the defaults.

Every later line is an entry with an `id` (per transcript: "1", "2", ... continuing
after a resume), a `parent_id` (the previous entry on its branch; `null` for the first)
and an ISO-8601 UTC `timestamp` from the runtime clock, tagged by `type`:

* `message`: `{"message": {"role": "user" | "assistant" | "tool_result", ...}}`;
* `compaction`: `summary`, `first_kept_entry_id`, `tokens_before`, `tokens_after`;
* `leaf`: `entry_id`, the entry the active branch now ends at. A turn's leaf carries
  the turn's `usage` when the host gave one explicitly. A leaf's `parent_id` is where
  the branch ended before it was written (for a branch move, the entry left behind).

`parent_id` links make the file a tree; the last leaf picks the active branch.

Reading (`load`) never trusts the file: a last line cut short by a crash is repaired
(cut off, or given its missing newline when it holds a whole entry), corrupt lines are
skipped, a last leaf pointing at a missing entry falls back to the newest intact
entry, and each of these is reported in the `RecoveryReport` and logged.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import logging
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

from greenroom.errors import InvalidInput, InvalidTransition, NotFound, StorageError
from greenroom.transcripts.records import (
    AssistantMessage,
    CompactionConfig,
    CompactionSummary,
    Message,
    RecoveryReport,
    ToolCall,
    ToolResult,
    UserMessage,
)
from greenroom.usage import ZERO_USAGE, Usage

__all__ = [
    "VERSION",
    "Header",
    "Loaded",
    "LogFile",
    "Node",
    "TranscriptState",
    "compaction_entry",
    "encode",
    "estimate_tokens",
    "fsync_dir",
    "iso_utc",
    "leaf_entry",
    "load",
    "message_entry",
    "message_to_json",
]

log = logging.getLogger("greenroom.transcripts")

VERSION = 1
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
_MAX_LINE_NOTES = 100  # corrupt lines described one by one (all are counted)
_ID_IN_LINE = re.compile(rb'"id"\s*:\s*"(\d+)"')


def iso_utc(ms: int) -> str:
    """Unix milliseconds as ISO-8601 UTC with milliseconds: `2026-01-01T00:00:00.000Z`."""
    moment = _EPOCH + _dt.timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


# One encoder for every line (json.dumps with options builds a new one per call).
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_encode_json = _ENCODER.encode
_decode_json = json.JSONDecoder().decode


def encode(obj: dict[str, Any]) -> bytes:
    """One log line: compact JSON, UTF-8, ending in a newline."""
    try:
        return (_encode_json(obj) + "\n").encode("utf-8")
    except (TypeError, ValueError) as error:  # UnicodeEncodeError is a ValueError
        raise InvalidInput(f"entry could not be written as JSON: {error}") from None


# -- messages <-> JSON ------------------------------------------------------------------------


def usage_to_json(usage: Usage) -> dict[str, int]:
    """A `Usage` as the log writes it."""
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
    }


def usage_from_json(data: Any) -> Usage:
    """The `Usage` a log object holds (missing kinds are zero)."""
    if not isinstance(data, dict):
        raise ValueError("usage is not an object")
    return Usage(
        data.get("input_tokens", 0),
        data.get("output_tokens", 0),
        data.get("cache_read_tokens", 0),
        data.get("cache_write_tokens", 0),
    )


def message_to_json(message: Message) -> dict[str, Any]:
    """A host message as the log writes it."""
    if type(message) is UserMessage:
        return {"role": "user", "text": message.text}
    if type(message) is AssistantMessage:
        data: dict[str, Any] = {"role": "assistant", "text": message.text}
        if message.tool_calls:
            data["tool_calls"] = [
                {"id": call.id, "name": call.name, "arguments": call.arguments}
                for call in message.tool_calls
            ]
        if message.usage != ZERO_USAGE:
            data["usage"] = usage_to_json(message.usage)
        return data
    if type(message) is ToolResult:
        data = {"role": "tool_result", "tool_call_id": message.tool_call_id, "text": message.text}
        if message.is_error:
            data["is_error"] = True
        return data
    raise InvalidInput(f"not a turn message: {message!r}")


def message_from_json(data: Any) -> Message:
    """The message a log object holds; `ValueError` / `InvalidInput` when malformed."""
    if not isinstance(data, dict):
        raise ValueError("message is not an object")
    role = data.get("role")
    if role == "user":
        return UserMessage(data["text"])
    if role == "assistant":
        calls = data.get("tool_calls", [])
        if not isinstance(calls, list):
            raise ValueError("tool_calls is not a list")
        return AssistantMessage(
            data["text"],
            tuple(ToolCall.from_log(c["id"], c["name"], c.get("arguments", {})) for c in calls),
            usage_from_json(data["usage"]) if "usage" in data else ZERO_USAGE,
        )
    if role == "tool_result":
        return ToolResult(data["tool_call_id"], data["text"], data.get("is_error", False))
    raise ValueError(f"unknown message role {role!r}")


def estimate_tokens(message: Message) -> int:
    """bytes // 4 of a message's text, tool call names and arguments included."""
    if type(message) is AssistantMessage:
        size = len(message.text.encode("utf-8"))
        for call in message.tool_calls:
            size += call.size_bytes
        return size // 4
    if type(message) is CompactionSummary:
        return len(message.summary.encode("utf-8")) // 4
    return len(message.text.encode("utf-8")) // 4  # type: ignore[union-attr]


# -- entries ---------------------------------------------------------------------------------


def message_entry(
    entry_id: str, parent_id: str | None, ts: str, message: Message
) -> dict[str, Any]:
    """A `message` entry."""
    return {
        "type": "message",
        "id": entry_id,
        "parent_id": parent_id,
        "timestamp": ts,
        "message": message_to_json(message),
    }


def compaction_entry(
    entry_id: str, parent_id: str | None, ts: str, summary: CompactionSummary
) -> dict[str, Any]:
    """A `compaction` entry."""
    return {
        "type": "compaction",
        "id": entry_id,
        "parent_id": parent_id,
        "timestamp": ts,
        "summary": summary.summary,
        "first_kept_entry_id": summary.first_kept_entry_id,
        "tokens_before": summary.tokens_before,
        "tokens_after": summary.tokens_after,
    }


def leaf_entry(
    entry_id: str, parent_id: str | None, ts: str, target: str, usage: Usage | None = None
) -> dict[str, Any]:
    """A `leaf` entry (with the turn's usage when the host gave it)."""
    entry: dict[str, Any] = {
        "type": "leaf",
        "id": entry_id,
        "parent_id": parent_id,
        "timestamp": ts,
        "entry_id": target,
    }
    if usage is not None:
        entry["usage"] = usage_to_json(usage)
    return entry


def compaction_to_json(config: CompactionConfig) -> dict[str, Any]:
    """A `CompactionConfig`'s settings as the header records them (not the summarizer,
    which is host code; `keep_recent_tokens` is `null` when left to its default)."""
    keep = config.keep_recent_tokens
    return {
        "enabled": config.enabled,
        "context_window_tokens": config.context_window_tokens,
        "threshold_tokens": config.threshold_tokens,
        "keep_recent_tokens": None if config.keep_recent_is_default else keep,
    }


def compaction_from_json(data: Any) -> CompactionConfig:
    """The `CompactionConfig` a header records; `ValueError` when malformed."""
    if not isinstance(data, dict):
        raise ValueError("not an object")
    settings = {
        name: data[name]
        for name in ("enabled", "context_window_tokens", "threshold_tokens", "keep_recent_tokens")
        if data.get(name) is not None
    }
    try:
        return CompactionConfig(**settings)
    except InvalidInput as error:
        raise ValueError(str(error)) from None


class Header(NamedTuple):
    """A transcript file's first line; `compaction` is the settings it was created
    with (`None` in a file from before they were recorded, or when unreadable)."""

    session_id: str
    timestamp: str
    cwd: str
    parent_session: str | None
    model: str
    compaction: CompactionConfig | None = None

    def to_json(self) -> dict[str, Any]:
        """The header as the log writes it."""
        data: dict[str, Any] = {
            "type": "session",
            "version": VERSION,
            "id": self.session_id,
            "timestamp": self.timestamp,
            "cwd": self.cwd,
            "parent_session": self.parent_session,
            "model": self.model,
        }
        if self.compaction is not None:
            data["compaction"] = compaction_to_json(self.compaction)
        return data


class Node(NamedTuple):
    """A message or compaction entry of the tree (`message` is the summary for a
    compaction); `tokens` is its bytes // 4 estimate. Also an item of the context."""

    id: str
    parent_id: str | None
    message: Message
    tokens: int
    timestamp: str = ""


# -- the tree and the context ----------------------------------------------------------------


class TranscriptState:
    """A transcript in memory: every message and compaction entry of the file (all
    branches), the active branch's tip and context, the cumulative usage, the next id.

    The live actor and the loader build it with the same methods, which is what makes a
    resumed transcript equal the live one.
    """

    __slots__ = ("context", "est_sum", "next_seq", "nodes", "notes", "post_start", "tip", "usage")

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self.tip: str | None = None
        self.context: list[Node] = []
        self.post_start = 0  # context index where messages newer than the last compaction begin
        self.est_sum = 0  # bytes // 4 of the whole context
        self.usage = ZERO_USAGE
        self.next_seq = 1
        self.notes: list[str] = []

    def add_messages(self, nodes: Iterable[Node], turn_usage: Usage) -> None:
        """A turn written: its message nodes continue the active branch."""
        for node in nodes:
            self.nodes[node.id] = node
            self.context.append(node)
            self.est_sum += node.tokens
            self.tip = node.id
        self.usage = self.usage + turn_usage

    def add_compaction(self, node: Node, cut: int) -> None:
        """A compaction written: `[summary, ...context[cut:]]` becomes the context."""
        self.nodes[node.id] = node
        kept = self.context[cut:]
        self.context = [node, *kept]
        self.post_start = len(self.context)
        self.est_sum = sum(item.tokens for item in self.context)
        self.tip = node.id

    def chain(self, tip: str | None) -> list[Node]:
        """The branch ending at `tip`, oldest first; stops (noted) at a missing parent."""
        chain: list[Node] = []
        seen: set[str] = set()
        current = tip
        while current is not None:
            node = self.nodes.get(current)
            if node is None:
                if chain:
                    self.notes.append(
                        f"entry {chain[-1].id!r} links to parent {current!r}, which is "
                        "missing (a corrupt line?): the context starts at that entry"
                    )
                break
            if current in seen:
                self.notes.append(f"entry {current!r} links back into its own branch: cut there")
                break
            seen.add(current)
            chain.append(node)
            current = node.parent_id
        chain.reverse()
        return chain

    def move_tip(self, tip: str | None) -> list[Node]:
        """Make the branch ending at `tip` the active one and rebuild its context; the
        branch's nodes, oldest first."""
        context: list[Node] = []
        post_start = 0
        chain = self.chain(tip)
        for node in chain:
            if type(node.message) is CompactionSummary:
                first_kept = node.message.first_kept_entry_id
                start = next((i for i, item in enumerate(context) if item.id == first_kept), None)
                if start is None:
                    self.notes.append(
                        f"compaction {node.id!r} keeps from entry {first_kept!r}, which is "
                        "not on its branch: the context starts at its summary"
                    )
                    start = len(context)
                context = [node, *context[start:]]
                post_start = len(context)
            else:
                context.append(node)
        self.tip = tip
        self.context = context
        self.post_start = post_start
        self.est_sum = sum(item.tokens for item in context)
        return chain

    def messages(self) -> list[Message]:
        """The context's messages."""
        return [item.message for item in self.context]


# -- the file --------------------------------------------------------------------------------


def write_all(fd: int, data: bytes) -> None:
    """Write all of `data` to `fd` (a module function so tests can make it fail)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def fsync(fd: int) -> None:
    """fsync `fd` (a module function so tests can make it fail)."""
    os.fsync(fd)


def _lock(fd: int, path: Path) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise InvalidTransition(
            f"transcript file {str(path)!r} is open already (in this or another process); "
            "close that transcript first, or fork it"
        ) from None


def fsync_dir(folder: Path) -> None:
    """Make a new file's name durable: fsync its folder (best effort)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class LogFile:
    """A transcript file open for appending, locked against a second writer.

    `append` writes whole lines with the durability asked; if writing or syncing fails
    it cuts the file back to where it was, so the file never holds part of a failed
    write, and raises `StorageError`. If even that cut fails the file is marked broken
    and refuses every later write (the host can resume it, which repairs it).
    """

    __slots__ = ("broken", "fd", "fsyncs", "path", "size")

    def __init__(self, fd: int, path: Path) -> None:
        self.fd: int | None = fd
        self.path = path
        self.size = os.fstat(fd).st_size
        self.broken: str | None = None
        self.fsyncs = 0

    @classmethod
    def create(cls, path: Path, header: Header, *, sync: bool) -> LogFile:
        """Create `path` exclusively (never truncating a file) and write the header."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        try:
            _lock(fd, path)
            file = cls(fd, path)
            file.append([encode(header.to_json())], "turn" if sync else "none")
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        if sync:
            fsync_dir(path.parent)
        return file

    @classmethod
    def open_existing(cls, path: Path) -> LogFile:
        """Open an existing transcript file for appending, and lock it."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        except FileNotFoundError:
            raise NotFound(f"no transcript file at {str(path)!r}") from None
        except OSError as error:
            raise StorageError(f"cannot open transcript {str(path)!r}: {error}") from error
        try:
            _lock(fd, path)
        except BaseException:
            os.close(fd)
            raise
        return cls(fd, path)

    def append(self, lines: list[bytes], durability: str) -> None:
        """Append `lines`: one write and one fsync (`"turn"`), a write and an fsync per
        line (`"entry"`), or one write and no fsync (`"none"`)."""
        if self.fd is None:
            raise StorageError(f"transcript {str(self.path)!r} is closed")
        if self.broken is not None:
            raise StorageError(
                f"transcript {str(self.path)!r} refuses writes after a failed one could not "
                f"be undone ({self.broken}); close it and resume it to repair the file"
            )
        fd = self.fd
        before = self.size
        try:
            if durability == "entry":
                for line in lines:
                    write_all(fd, line)
                    fsync(fd)
                    self.fsyncs += 1
            else:
                write_all(fd, b"".join(lines))
                if durability == "turn":
                    fsync(fd)
                    self.fsyncs += 1
        except OSError as error:
            self._undo(before, error)
            if self.broken is not None:
                raise StorageError(
                    f"could not write transcript {str(self.path)!r}: {error}; nor cut the "
                    "write back out, so the file may hold part of it: close the transcript "
                    "and resume it (which repairs and reports what it finds)"
                ) from error
            raise StorageError(
                f"could not write transcript {str(self.path)!r}: {error}; nothing of this "
                "write was kept"
            ) from error
        self.size = before + sum(len(line) for line in lines)

    def _undo(self, size: int, error: OSError) -> None:
        assert self.fd is not None
        try:
            os.ftruncate(self.fd, size)
        except OSError as undo_error:
            self.broken = f"{error}; then, cutting back: {undo_error}"
            log.error("transcript %s: a failed write could not be undone: %s", self.path, error)

    def refresh_size(self) -> None:
        """Re-read the file's size (after a repair made through another descriptor)."""
        if self.fd is not None:
            self.size = os.fstat(self.fd).st_size

    def sync(self) -> None:
        """fsync what was written."""
        if self.fd is not None:
            fsync(self.fd)
            self.fsyncs += 1

    def close(self, *, sync: bool) -> None:
        """fsync (when asked) and close; releases the lock. Idempotent.

        `StorageError` when the fsync or the close fails; the descriptor (and the lock)
        is released either way.
        """
        fd, self.fd = self.fd, None
        if fd is None:
            return
        try:
            if sync and self.broken is None:
                fsync(fd)
                self.fsyncs += 1
        except OSError as error:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise StorageError(
                f"could not flush transcript {str(self.path)!r} to disk on close: {error}; "
                "the file is closed, and entries written since the last fsync may be lost "
                "after a system crash: resume it to check what it holds"
            ) from error
        try:
            os.close(fd)
        except OSError as error:
            raise StorageError(
                f"could not close transcript {str(self.path)!r}: {error}; entries written "
                "since the last fsync may be lost after a system crash: resume it to check "
                "what it holds"
            ) from error


# -- reading back ---------------------------------------------------------------------------


class Loaded(NamedTuple):
    """A transcript file read back: its header, its state and what recovery found."""

    header: Header
    state: TranscriptState
    recovery: RecoveryReport
    first_leaves: dict[str, tuple[str, str, Usage | None]]
    """The first leaf written for each entry it points at: (leaf id, timestamp, the
    turn's usage or `None`); a fork copies them to keep its turns' totals."""


def _parse_header(line: bytes, path: Path) -> Header:
    try:
        data = json.loads(line)
    except ValueError:
        data = None
    if not isinstance(data, dict) or data.get("type") != "session":
        raise StorageError(
            f"{str(path)!r} is not a transcript: its first line is not a session header"
        )
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise StorageError(f"transcript {str(path)!r} has no valid version in its header")
    if version > VERSION:
        raise StorageError(
            f"transcript {str(path)!r} has format version {version}, but this greenroom "
            f"reads versions up to {VERSION}; upgrade greenroom to open it"
        )
    session_id = data.get("id")
    parent = data.get("parent_session")
    fields = (session_id, data.get("timestamp", ""), data.get("cwd", "."), data.get("model", ""))
    if (
        not all(isinstance(field, str) for field in fields)
        or not session_id
        or not (parent is None or isinstance(parent, str))
    ):
        raise StorageError(f"transcript {str(path)!r} has a malformed session header")
    return Header(session_id, fields[1], fields[2], parent, fields[3])


def _header_compaction(line: bytes, header: Header, notes: list[str]) -> Header:
    """`header` with the compaction settings its line records (a note when they are
    unreadable: the file is still read, with the default settings)."""
    data = json.loads(line)
    if "compaction" not in data:
        return header
    try:
        return header._replace(compaction=compaction_from_json(data["compaction"]))
    except ValueError as error:
        notes.append(
            f"line 1: the recorded compaction settings are unreadable ({error}); the "
            "defaults apply unless compaction= is given"
        )
        return header


def _parse_entry(line: bytes) -> tuple[str, str, str | None, Any, str]:
    """(type, id, parent_id, payload, timestamp) of an entry line; `ValueError` when
    malformed."""
    data = _decode_json(line.decode("utf-8"))  # UnicodeDecodeError is a ValueError
    if not isinstance(data, dict):
        raise ValueError("not an object")
    kind, entry_id, parent = data.get("type"), data.get("id"), data.get("parent_id")
    if not isinstance(entry_id, str) or not entry_id:
        raise ValueError("no id")
    if not (parent is None or isinstance(parent, str)):
        raise ValueError("bad parent_id")
    ts = data.get("timestamp")
    if not isinstance(ts, str):
        raise ValueError("no timestamp")
    try:
        if kind == "message":
            return kind, entry_id, parent, message_from_json(data["message"]), ts
        if kind == "compaction":
            summary = CompactionSummary(
                data["summary"],
                data["first_kept_entry_id"],
                data["tokens_before"],
                data["tokens_after"],
            )
            return kind, entry_id, parent, summary, ts
        if kind == "leaf":
            target = data["entry_id"]
            if not isinstance(target, str) or not target:
                raise ValueError("bad entry_id")
            usage = usage_from_json(data["usage"]) if "usage" in data else None
            return kind, entry_id, parent, (target, usage), ts
    except (KeyError, TypeError, InvalidInput) as error:
        raise ValueError(f"malformed {kind} entry: {error}") from None
    raise ValueError(f"unknown entry type {kind!r}")


def load(path: Path, *, repair: bool) -> Loaded:
    """Read a transcript file back (see the module docstring for the recovery rules).

    With `repair`, a cut-short last line is repaired in the file itself (the caller
    holds the file's lock); without it (a fork reading its source) the file is not
    touched and the partial line is only reported.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NotFound(f"no transcript file at {str(path)!r}") from None
    except OSError as error:
        raise StorageError(f"cannot read transcript {str(path)!r}: {error}") from error
    where = str(path)
    notes: list[str] = []
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    truncated_line: int | None = None
    truncated_bytes = 0
    if not lines and tail.rstrip().endswith(b"}"):
        # Perhaps a whole header missing its newline: the entry checks below decide.
        lines.append(tail)
        tail = b""
        header_only = True
    else:
        header_only = False
    if not lines:
        raise StorageError(
            f"transcript {where!r} has no complete session header (the file is empty, or "
            "was cut short while it was being created)"
        )
    header = _parse_header(lines[0], path)
    header = _header_compaction(lines[0], header, notes)
    if header_only:
        truncated_line = 1
        notes.append("line 1: the session header was missing its newline; it was added")
        if repair:
            _repair(path, lambda fd: write_all(fd, b"\n"))
    if tail:
        truncated_line = len(lines) + 1
        try:
            _parse_entry(tail)
            whole = True
        except ValueError:
            whole = False
        if whole:
            lines.append(tail)
            notes.append(
                f"line {truncated_line}: a whole entry missing its newline (a crash mid-"
                "write); the newline was added"
            )
            fix = (lambda fd: write_all(fd, b"\n")) if repair else None
        else:
            truncated_bytes = len(tail)
            notes.append(
                f"line {truncated_line}: cut short by a crash mid-write ({len(tail)} bytes); "
                "cut off, the file ends at the last whole line"
            )
            good = len(data) - len(tail)
            fix = (lambda fd: os.ftruncate(fd, good)) if repair else None
        if fix is not None:
            _repair(path, fix)

    state = TranscriptState()
    nodes = state.nodes
    corrupt: list[int] = []
    max_seq = 0
    usage = ZERO_USAGE
    pending: dict[str, Usage] = {}  # assistant usage since the last leaf, by entry id
    last_leaf: str | None = None
    after_leaf: dict[str, None] = {}  # message / compaction entries since the last leaf
    leaf_ids: set[str] = set()
    first_leaves: dict[str, tuple[str, str, Usage | None]] = {}
    for number, line in enumerate(lines[1:], start=2):
        try:
            kind, entry_id, parent, payload, ts = _parse_entry(line)
            if entry_id in nodes or entry_id in leaf_ids:
                raise ValueError(f"duplicate id {entry_id!r}")
        except ValueError as error:
            corrupt.append(number)
            if len(corrupt) <= _MAX_LINE_NOTES:
                reason = "an empty line" if not line.strip() else str(error)
                notes.append(f"line {number}: skipped ({reason})")
            match = _ID_IN_LINE.search(line)
            if match:
                max_seq = max(max_seq, int(match.group(1)))
            continue
        if entry_id.isdigit():
            max_seq = max(max_seq, int(entry_id))
        if kind == "leaf":
            leaf_ids.add(entry_id)
            target, turn_usage = payload
            if target not in first_leaves:
                first_leaves[target] = (entry_id, ts, turn_usage)
            if turn_usage is not None:
                # The host's figure for the turn replaces the own usage of the turn's
                # messages: those written since the last leaf on the branch ending at
                # the target (a tool result or a user message in between does not end
                # the walk). Any other entry since the last leaf (a turn cut short)
                # still counts.
                current = target
                while current in after_leaf:
                    pending.pop(current, None)
                    del after_leaf[current]  # each entry once, whatever its links
                    current = nodes[current].parent_id
                usage = usage + turn_usage
            for spent in pending.values():
                usage = usage + spent
            pending.clear()
            last_leaf = target
            after_leaf.clear()
            continue
        nodes[entry_id] = Node(entry_id, parent, payload, estimate_tokens(payload), ts)
        after_leaf[entry_id] = None
        if type(payload) is AssistantMessage and payload.usage != ZERO_USAGE:
            pending[entry_id] = payload.usage
    for spent in pending.values():
        usage = usage + spent
    if len(corrupt) > _MAX_LINE_NOTES:
        notes.append(
            f"{len(corrupt) - _MAX_LINE_NOTES} more corrupt lines skipped (all their "
            "numbers are in RecoveryReport.corrupt_lines)"
        )

    missing_leaf: str | None = None
    fallback: str | None = None
    tip = last_leaf
    if tip is not None and tip not in nodes:
        missing_leaf = tip
        fallback = tip = next(reversed(nodes), None)
        notes.append(
            f"the last leaf points at entry {missing_leaf!r}, which is missing; the branch "
            f"ends at the newest intact entry, {fallback!r}, instead"
        )
    elif tip is None and nodes:
        fallback = tip = next(reversed(nodes))
        notes.append(f"no leaf entry: the branch ends at the newest entry, {fallback!r}")
    state.usage = usage
    state.next_seq = max_seq + 1
    on_branch = {node.id for node in state.move_tip(tip)}
    unfinished = sum(1 for entry_id in after_leaf if entry_id not in on_branch)
    if unfinished and missing_leaf is None:
        notes.append(
            f"{unfinished} entries after the last leaf (a turn cut short) are not on the "
            "active branch; they stay in the file and count in usage()"
        )
    broken_links = len(state.notes)  # missing parents, cycles, missing first kept entries
    notes.extend(state.notes)
    state.notes.clear()
    for note in notes:
        log.warning("transcript %s: %s", where, note)
    report = RecoveryReport(
        path=where,
        truncated_line=truncated_line,
        truncated_bytes=truncated_bytes,
        corrupt_lines=tuple(corrupt),
        missing_leaf=missing_leaf,
        fallback_entry_id=fallback,
        unfinished_entries=unfinished,
        broken_links=broken_links,
        notes=tuple(notes),
    )
    return Loaded(header, state, report, first_leaves)


def _repair(path: Path, fix: Callable[[int], object]) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            fix(fd)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as error:
        raise StorageError(
            f"transcript {str(path)!r} ends in a partial line and could not be repaired: {error}"
        ) from error
