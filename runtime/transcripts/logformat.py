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

A line is corrupt when it is not UTF-8 JSON or not an entry, and also when it holds
what greenroom never writes: an id (`id`, `parent_id`, a leaf's `entry_id`,
`first_kept_entry_id`) that is not 1 to `MAX_ID_DIGITS` ASCII digits, a timestamp over
`MAX_TIMESTAMP_LENGTH` characters, nesting deeper than `MAX_LINE_DEPTH`, a token count
over `records.MAX_TOKENS` (`records.MAX_ESTIMATE` for a compaction's sizes), `NaN` or
an infinite number, or text that is not valid Unicode (an escaped lone surrogate).
The next entry id follows the largest id in the file; a transcript whose next ids
would pass `MAX_ENTRY_ID` (only a damaged or hand-edited file gets there) refuses to
write (`check_ids_left`) rather than write an id it could not read back. The file is
opened without following a symbolic link and only when it is a regular file
(`greenroom.files.open_regular`): a FIFO is refused, never waited on.
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

from greenroom.checks import check_path
from greenroom.errors import InvalidInput, InvalidTransition, NotFound, StorageError
from greenroom.files import DEFAULT_FILE_MODE, create_private, open_regular
from greenroom.transcripts.records import (
    MAX_ARGUMENT_DEPTH,
    AssistantMessage,
    CompactionConfig,
    CompactionSummary,
    Message,
    RecoveryReport,
    ToolCall,
    ToolResult,
    UserMessage,
    bounded_usage,
    json_depth,
)
from greenroom.usage import ZERO_USAGE, Usage

__all__ = [
    "MAX_ENTRY_ID",
    "MAX_ID_DIGITS",
    "MAX_LINE_DEPTH",
    "MAX_TIMESTAMP_LENGTH",
    "VERSION",
    "Header",
    "IsoStamps",
    "Loaded",
    "LogFile",
    "Node",
    "TranscriptState",
    "check_ids_left",
    "compaction_entry",
    "encode",
    "estimate_tokens",
    "fsync_dir",
    "iso_utc",
    "leaf_entry",
    "load",
    "message_entry",
    "message_to_json",
    "transcript_path",
]

log = logging.getLogger("greenroom.transcripts")

VERSION = 1
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
_MAX_LINE_NOTES = 100  # corrupt lines described one by one (all are counted)
_MAX_REASON = 200  # characters of a corrupt line's reason kept in its note
MAX_ID_DIGITS = 18
"""The most digits of an entry id (or parent, leaf target, first kept entry) a line may
hold; ids are ASCII decimal numbers."""
MAX_ENTRY_ID = 10**MAX_ID_DIGITS - 1
"""The largest entry id a transcript writes (and reads)."""
MAX_TIMESTAMP_LENGTH = 64
"""The longest timestamp a line may hold (greenroom writes 24 characters)."""
MAX_SESSION_ID_LENGTH = 128
"""The longest session id a header may hold (greenroom writes 16 hex digits)."""
MAX_LINE_DEPTH = MAX_ARGUMENT_DEPTH + 4
"""How deeply a line may nest: an entry, its message, its tool calls, a call, then
the call's arguments (`records.MAX_ARGUMENT_DEPTH` levels)."""
_ID_IN_LINE = re.compile(rb'"id"\s*:\s*"([0-9]{1,18})"')


def iso_utc(ms: int) -> str:
    """Unix milliseconds as ISO-8601 UTC with milliseconds: `2026-01-01T00:00:00.000Z`."""
    moment = _EPOCH + _dt.timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


class IsoStamps:
    """`iso_utc` for one writer's clock readings: the part up to the second is
    formatted once per second (a turn's stamp then costs one f-string)."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second: int | None = None
        self._prefix = ""

    def __call__(self, ms: int) -> str:
        second, milli = divmod(ms, 1000)
        if second != self._second:
            self._prefix = iso_utc(ms)[:-4]  # up to and with the "." before the ms
            self._second = second
        return f"{self._prefix}{milli:03d}Z"


def transcript_path(value: Any, what: str) -> Path:
    """`value` (str or `os.PathLike`) as an absolute `Path` to a transcript file;
    `InvalidInput` when it is no usable path (empty, a NUL, not encodable).

    The folders on the way are resolved (symbolic links included), the last part is
    not: a transcript file that is a symbolic link is refused when it is opened.
    """
    path = check_path(value, what)
    if path.name in ("", ".", ".."):
        return path.resolve()  # a folder: refused when opened, as not a regular file
    return path.absolute().parent.resolve() / path.name


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number greenroom writes")


def _finite_float(text: str) -> float:
    number = float(text)
    if number in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:40]!r} is too large for a float")
    return number


# One encoder for every line (json.dumps with options builds a new one per call).
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
# Its C core, made once: `JSONEncoder.encode` makes one per call, a cost per line
# that shows with a turn's dozen lines. No circular check: entries are built here
# from checked messages (a cycle would raise RecursionError, which `encode` reports).
_C_MAKE_ENCODER: Any = getattr(json.encoder, "c_make_encoder", None)
_C_ENCODE: Any = (
    None
    if _C_MAKE_ENCODER is None
    else _C_MAKE_ENCODER(
        None, _ENCODER.default, json.encoder.encode_basestring, None, ":", ",", False, False, False
    )
)


def _encode_json(obj: Any) -> str:
    """`obj` as compact JSON text (as `_ENCODER.encode`)."""
    if _C_ENCODE is None:
        return _ENCODER.encode(obj)
    return "".join(_C_ENCODE(obj, 0))


_decode_json = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite_float).decode


def _decode_line(line: bytes) -> Any:
    """A line's JSON value; `ValueError` (never anything else) for a line that is not
    UTF-8 JSON within the log's bounds: nesting, numbers, valid Unicode."""
    try:
        data = _decode_json(line.decode("utf-8"))  # UnicodeDecodeError is a ValueError
    except RecursionError:
        raise ValueError(f"nested more than {MAX_LINE_DEPTH} levels deep") from None
    # Fewer brackets than the bound cannot nest deeper: only the others are walked.
    many = line.count(b"{") + line.count(b"[") > MAX_LINE_DEPTH
    if many and json_depth(data, MAX_LINE_DEPTH) > MAX_LINE_DEPTH:
        raise ValueError(f"nested more than {MAX_LINE_DEPTH} levels deep")
    # An escaped lone surrogate decodes, but could never be written back (a fork
    # copies lines): greenroom writes text as UTF-8, so only foreign lines get here.
    if b"\\ud" in line or b"\\uD" in line:
        try:
            _encode_json(data).encode("utf-8")
        except (ValueError, RecursionError):
            raise ValueError("holds text that is not valid Unicode (a lone surrogate)") from None
    return data


def encode(obj: dict[str, Any]) -> bytes:
    """One log line: compact JSON, UTF-8, ending in a newline."""
    try:
        return (_encode_json(obj) + "\n").encode("utf-8")
    except (TypeError, ValueError, RecursionError) as error:
        raise _not_json(error) from None


def encode_lines(objs: list[dict[str, Any]]) -> bytes:
    """Several log lines in one pass (as the `encode` of each, joined)."""
    if _C_ENCODE is None:
        return b"".join(encode(obj) for obj in objs)
    parts: list[str] = []
    try:
        for obj in objs:
            parts.extend(_C_ENCODE(obj, 0))
            parts.append("\n")
        return "".join(parts).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as error:
        raise _not_json(error) from None


def _not_json(error: BaseException) -> InvalidInput:
    """The error for an entry JSON cannot hold (UnicodeEncodeError is a ValueError)."""
    if isinstance(error, RecursionError):
        return InvalidInput("entry could not be written as JSON: it refers to itself")
    return InvalidInput(f"entry could not be written as JSON: {error}")


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
    """The `Usage` a log object holds (missing kinds are zero); `InvalidInput` for
    counts that are not ints in [0, `MAX_TOKENS`]."""
    if not isinstance(data, dict):
        raise ValueError("usage is not an object")
    usage = Usage(
        data.get("input_tokens", 0),
        data.get("output_tokens", 0),
        data.get("cache_read_tokens", 0),
        data.get("cache_write_tokens", 0),
    )
    return bounded_usage(usage, "usage")


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
        usage = message.usage
        if usage.total_tokens:  # (as `usage != ZERO_USAGE`: counts are never negative)
            data["usage"] = usage_to_json(usage)
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
        size = _utf8_size(message.text)
        for call in message.tool_calls:
            size += call.size_bytes
        return size // 4
    if type(message) is CompactionSummary:
        return _utf8_size(message.summary) // 4
    return _utf8_size(message.text) // 4  # type: ignore[union-attr]


def _utf8_size(text: str) -> int:
    """Bytes of `text` in UTF-8 (without encoding it when it is ASCII)."""
    return len(text) if text.isascii() else len(text.encode("utf-8"))


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


_Before = tuple[str | None, int, int, Usage]
"""The state `TranscriptState.add_messages` changed: tip, context length, size, usage."""


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

    def add_messages(self, nodes: Iterable[Node], turn_usage: Usage) -> _Before:
        """A turn written: its message nodes continue the active branch. Returns what
        `take_back` needs to undo it."""
        before = (self.tip, len(self.context), self.est_sum, self.usage)
        for node in nodes:
            self.nodes[node.id] = node
            self.context.append(node)
            self.est_sum += node.tokens
            self.tip = node.id
        self.usage = self.usage + turn_usage
        return before

    def take_back(self, nodes: Iterable[Node], before: _Before) -> None:
        """Undo the `add_messages(nodes, ...)` that returned `before` (its turn could
        not be written); nothing may have changed the state in between."""
        self.tip, length, self.est_sum, self.usage = before
        del self.context[length:]
        for node in nodes:
            del self.nodes[node.id]

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
    def create(
        cls, path: Path, header: Header, *, sync: bool, mode: int = DEFAULT_FILE_MODE
    ) -> LogFile:
        """Create `path` exclusively (never truncating a file nor following a link) with
        permissions `mode`, and write the header."""
        fd = create_private(path, mode, flags=os.O_RDWR | os.O_APPEND)
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
        """Open an existing transcript file for reading and appending, and lock it.

        `NotFound` when there is none; `StorageError` for a symbolic link, a FIFO or
        anything else that is not a regular file, or a file that cannot be opened.
        """
        fd = _open_transcript(path, os.O_RDWR | os.O_APPEND)
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
        after = before + sum(map(len, lines))  # (before the fsync: less to do after it)
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
        self.size = after

    def _undo(self, size: int, error: OSError) -> None:
        assert self.fd is not None
        try:
            os.ftruncate(self.fd, size)
        except OSError as undo_error:
            self.broken = f"{error}; then, cutting back: {undo_error}"
            log.error("transcript %s: a failed write could not be undone: %s", self.path, error)

    def refresh_size(self) -> None:
        """Re-read the file's size (after `load` repaired it)."""
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


def _open_transcript(path: Path, flags: int) -> int:
    """`open_regular` for a transcript: `NotFound` when there is no such file."""
    try:
        return open_regular(path, what="transcript", flags=flags)
    except StorageError as error:
        if isinstance(error.__cause__, FileNotFoundError):
            raise NotFound(f"no transcript file at {str(path)!r}") from None
        raise


def _read_all(fd: int) -> bytes:
    """Everything in the file open at `fd`, from its start."""
    size = os.fstat(fd).st_size
    chunks: list[bytes] = []
    offset = 0
    while True:
        chunk = os.pread(fd, max(size - offset, 1 << 16), offset)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        offset += len(chunk)


_DAMAGED_HEADER = (
    "; line 1 must be a session header, and a damaged one cannot be skipped as a later "
    "line can: restore that line (from a backup, or a fork's parent) to open the file"
)


def _parse_header(line: bytes, path: Path) -> tuple[Header, dict[str, Any]]:
    """The header of line 1 and its JSON object; `StorageError` when it is none."""
    try:
        data = _decode_line(line)
    except ValueError as error:
        raise StorageError(
            f"{str(path)!r} is not a transcript: its first line is not a session header "
            f"({_reason(error)}){_DAMAGED_HEADER}"
        ) from None
    if not isinstance(data, dict) or data.get("type") != "session":
        raise StorageError(
            f"{str(path)!r} is not a transcript: its first line is not a session header"
        )
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise StorageError(
            f"transcript {str(path)!r} has no valid version in its header{_DAMAGED_HEADER}"
        )
    if version > VERSION:
        shown = str(version) if version < 10**9 else "a later one"
        raise StorageError(
            f"transcript {str(path)!r} has format version {shown}, but this greenroom "
            f"reads versions up to {VERSION}; upgrade greenroom to open it"
        )
    session_id = data.get("id")
    parent = data.get("parent_session")
    fields = (session_id, data.get("timestamp", ""), data.get("cwd", "."), data.get("model", ""))
    if (
        not all(isinstance(field, str) for field in fields)
        or not session_id
        or len(session_id) > MAX_SESSION_ID_LENGTH
        or not (parent is None or isinstance(parent, str))
    ):
        raise StorageError(
            f"transcript {str(path)!r} has a malformed session header (its id must be a "
            f"non-empty string of at most {MAX_SESSION_ID_LENGTH} characters; timestamp, "
            f"cwd, model and parent_session strings){_DAMAGED_HEADER}"
        )
    return Header(session_id, fields[1], fields[2], parent, fields[3]), data


def _header_compaction(data: dict[str, Any], header: Header, notes: list[str]) -> Header:
    """`header` with the compaction settings its line records (a note when they are
    unreadable: the file is still read, with the default settings)."""
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


def _reason(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


def _entry_ref(value: Any, what: str) -> str:
    """`value` if it is an entry id a line may hold: 1 to `MAX_ID_DIGITS` ASCII digits
    ("²" is a digit to `str.isdigit`, and 4,300 digits are too many for `int()`)."""
    if value is None:
        raise ValueError(f"no {what}")
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= MAX_ID_DIGITS
        or not value.isascii()
        or not value.isdigit()
    ):
        raise ValueError(f"{what} is not a number of 1 to {MAX_ID_DIGITS} ASCII digits")
    return value


def _seq(entry_id: str | bytes) -> int:
    """The number of a checked entry id (at most `MAX_ID_DIGITS` ASCII digits)."""
    return int(entry_id)


def check_ids_left(next_seq: int, needed: int, path: Path) -> None:
    """`StorageError` when `needed` more entry ids from `next_seq` on would pass
    `MAX_ENTRY_ID`: an id that long could not be read back, so nothing is written."""
    if next_seq + needed - 1 > MAX_ENTRY_ID:
        raise StorageError(
            f"transcript {str(path)!r} has no entry ids left: it holds entry id "
            f"{next_seq - 1}, near the largest one (a damaged or hand-edited file); "
            "nothing was written. Remove the line with that id and resume the file"
        )


def _parse_entry(line: bytes) -> tuple[str, str, str | None, Any, str]:
    """(type, id, parent_id, payload, timestamp) of an entry line; `ValueError` (and
    nothing else) when malformed."""
    data = _decode_line(line)
    if not isinstance(data, dict):
        raise ValueError("not an object")
    kind = data.get("type")
    entry_id = _entry_ref(data.get("id"), "id")
    parent = data.get("parent_id")
    if parent is not None:
        _entry_ref(parent, "parent_id")
    ts = data.get("timestamp")
    if not isinstance(ts, str):
        raise ValueError("no timestamp")
    if len(ts) > MAX_TIMESTAMP_LENGTH:
        raise ValueError(f"timestamp longer than {MAX_TIMESTAMP_LENGTH} characters")
    try:
        if kind == "message":
            return kind, entry_id, parent, message_from_json(data["message"]), ts
        if kind == "compaction":
            summary = CompactionSummary(
                data["summary"],
                _entry_ref(data["first_kept_entry_id"], "first_kept_entry_id"),
                data["tokens_before"],
                data["tokens_after"],
            )
            return kind, entry_id, parent, summary, ts
        if kind == "leaf":
            target = _entry_ref(data["entry_id"], "entry_id")
            usage = usage_from_json(data["usage"]) if "usage" in data else None
            return kind, entry_id, parent, (target, usage), ts
    except (KeyError, TypeError, AttributeError, InvalidInput, RecursionError) as error:
        raise ValueError(f"malformed {kind} entry: {_reason(error)}") from None
    shown = repr(kind) if isinstance(kind, str | None) else type(kind).__name__
    raise ValueError(f"unknown entry type {shown[:_MAX_REASON]}")


def load(path: Path, *, file: LogFile | None = None) -> Loaded:
    """Read a transcript file back (see the module docstring for the recovery rules).

    With `file` (the transcript opened and locked by `LogFile.open_existing`), the file
    is read through it and a cut-short last line is repaired in the file itself;
    without it (a fork reading its source, the command line) the file at `path` is
    opened read-only, not touched, and the partial line is only reported.

    `NotFound` when there is no file; `StorageError` when it cannot be read, is not a
    regular file, or its line 1 is no session header. Anything wrong after line 1 is
    in the report, never raised.
    """
    repair = file is not None
    fd = file.fd if file is not None else _open_transcript(path, os.O_RDONLY)
    if fd is None:
        raise StorageError(f"transcript {str(path)!r} is closed")
    try:
        data = _read_all(fd)
    except OSError as error:
        raise StorageError(f"cannot read transcript {str(path)!r}: {error}") from error
    finally:
        if file is None:
            os.close(fd)
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
    header, header_data = _parse_header(lines[0], path)
    header = _header_compaction(header_data, header, notes)
    if header_only:
        truncated_line = 1
        notes.append("line 1: the session header was missing its newline; it was added")
        if file is not None:
            _repair(file, lambda fd: write_all(fd, b"\n"))
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
        if fix is not None and file is not None:
            _repair(file, fix)

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
                reason = "an empty line" if not line.strip() else _reason(error)
                notes.append(f"line {number}: skipped ({reason})")
            # Its id, if it can be made out, is not given again (at most 18 digits).
            match = _ID_IN_LINE.search(line)
            if match:
                max_seq = max(max_seq, _seq(match.group(1)))
            continue
        max_seq = max(max_seq, _seq(entry_id))
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


def _repair(file: LogFile, fix: Callable[[int], object]) -> None:
    """Apply `fix` to the file through its own (locked) descriptor, and fsync it."""
    fd = file.fd
    try:
        if fd is None:
            raise OSError("the file is closed")
        fix(fd)
        os.fsync(fd)
    except OSError as error:
        raise StorageError(
            f"transcript {str(file.path)!r} ends in a partial line and could not be "
            f"repaired: {error}"
        ) from error
    file.refresh_size()
