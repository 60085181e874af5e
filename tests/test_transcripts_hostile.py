"""Transcripts against hostile or damaged files: lines no greenroom writes, bad headers,
FIFOs and links, unusable paths, and the modes of the files and folders made.

Every damaged entry line must be skipped and reported (`RecoveryReport.corrupt_lines`)
by `resume`, `fork` and `greenroom transcript`, never raised; a damaged header is a
`StorageError` (the command line: one `greenroom: error:` line, status 1).
"""

from __future__ import annotations

import json
import os
import socket
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greenroom import (
    AssistantMessage,
    CompactionConfig,
    FakeClock,
    Runtime,
    RuntimeConfig,
    ToolCall,
    ToolResult,
    Usage,
    UserMessage,
)
from greenroom.aio.transcripts import AsyncTranscripts
from greenroom.cli import main
from greenroom.errors import GreenroomError, InvalidInput, StorageError
from greenroom.transcripts.logformat import MAX_LINE_DEPTH
from greenroom.transcripts.records import MAX_ARGUMENT_DEPTH, MAX_TOKENS, json_depth

SMALL = CompactionConfig(context_window_tokens=2_000, threshold_tokens=300, keep_recent_tokens=150)


def nested(depth: int, leaf: Any = 1) -> Any:
    """An object `depth` levels deep (`{"a": {"a": ... leaf}}`)."""
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


def nested_json(depth: int) -> bytes:
    """`nested(depth)` as JSON, built without recursion (json.dumps would recurse)."""
    return b'{"a":' * depth + b"1" + b"}" * depth


def make(rt: Runtime) -> tuple[Path, list[Any], Usage]:
    """A closed transcript with two turns, a tool call and a compaction: its path, its
    context and its usage."""
    t = rt.transcripts.create(compaction=SMALL, model="anthropic:claude-sonnet-4-5")
    for n in range(3):
        t.on_turn_end(
            [
                UserMessage(f"q{n} " + "x" * 400),
                AssistantMessage(
                    f"a{n}", tool_calls=[ToolCall(f"c{n}", "ls", {"n": n})], usage=Usage(10, n)
                ),
                ToolResult(f"c{n}", f"r{n}"),
            ]
        )
    state = (t.path, t.context(), t.usage())
    t.close()
    return state


def entry(**fields: Any) -> bytes:
    """A message entry line with `fields` replacing its own."""
    line: dict[str, Any] = {
        "type": "message",
        "id": "500",
        "parent_id": None,
        "timestamp": "2026-01-01T00:00:00.000Z",
        "message": {"role": "user", "text": "hi"},
    }
    line.update(fields)
    return json.dumps(line, ensure_ascii=False).encode("utf-8") + b"\n"


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main(["transcript", *args])
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_error_line(status: int, err: str, *, match: str = "") -> None:
    assert status == 1
    assert err.startswith("greenroom: error: "), err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err, err
    assert not err.startswith("greenroom: error: unexpected"), err  # a typed error
    assert match in err


# -- damaged entry lines ---------------------------------------------------------------------

HOSTILE_LINES = {
    "id of 5,000 digits": entry(id="9" * 5_000),
    "id a superscript two": entry(id="²"),
    "id not a number": entry(id="abc"),
    "id of 19 digits": entry(id="1" * 19),
    "parent a superscript two": entry(parent_id="²"),
    "leaf target of 5,000 digits": entry(type="leaf", entry_id="9" * 5_000),
    "int of 5,000 digits": b'{"type":"leaf","id":"501","parent_id":null,"timestamp":"t",'
    b'"entry_id":"1","usage":{"input_tokens":' + b"9" * 5_000 + b"}}\n",
    "nested arrays": b"[" * 100_000 + b"\n",
    "nested objects in a message": entry(message=0).replace(
        b'"message": 0', b'"message": ' + nested_json(50_000)
    ),
    "arguments one level too deep": entry(
        message={
            "role": "assistant",
            "text": "",
            "tool_calls": [{"id": "c", "name": "n", "arguments": nested(MAX_ARGUMENT_DEPTH + 1)}],
        }
    ),
    "NaN": entry(message={"role": "tool_result", "tool_call_id": "c", "text": "x"}).replace(
        b'"x"}', b'"x","is_error":NaN}'
    ),
    "infinite float": entry(type="leaf", entry_id="1", usage={"input_tokens": 1}).replace(
        b'"input_tokens": 1', b'"input_tokens": 1e400'
    ),
    "usage above the bound": entry(
        message={"role": "assistant", "text": "", "usage": {"input_tokens": MAX_TOKENS + 1}}
    ),
    "compaction size of 4,000 digits": entry(
        type="compaction",
        summary="s",
        first_kept_entry_id="1",
        tokens_before=10**4_000,
        tokens_after=1,
    ),
    "escaped lone surrogate in a text": entry().replace(b'"hi"', b'"\\ud800"'),
    "escaped lone surrogate in a timestamp": entry(timestamp="t").replace(b'"t"', b'"\\udfff"'),
    "timestamp of 10,000 characters": entry(timestamp="t" * 10_000),
    "not UTF-8": b'{"type":"message","id":"502","text":"\xff\xfe"}\n',
    "an empty line": b"\n",
    "a JSON string": b'"just a string"\n',
}


@pytest.mark.parametrize("line", list(HOSTILE_LINES.values()), ids=list(HOSTILE_LINES))
def test_a_hostile_line_is_skipped_and_reported_by_resume_fork_and_the_cli(
    rt: Runtime, capsys: pytest.CaptureFixture[str], line: bytes
) -> None:
    path, context, usage = make(rt)
    with open(path, "ab") as file:
        file.write(line)
    number = len(path.read_bytes().splitlines())

    t = rt.transcripts.resume(path)
    assert t.recovery.corrupt_lines == (number,)
    assert f"line {number}: skipped" in " ".join(t.recovery.notes)
    assert t.context() == context
    assert t.usage() == usage
    next_id = t.next_entry_id()
    assert len(next_id) <= 3  # the line's id, if any, did not move it
    t.on_turn_end([UserMessage("after the damage")])
    t.close()
    again = rt.transcripts.resume(path)  # what was written after it reads back
    assert again.recovery.corrupt_lines == (number,)
    assert again.context()[-1] == UserMessage("after the damage")
    again.close()

    fork = rt.transcripts.fork(path)
    assert fork.recovery.corrupt_lines == (number,)
    assert fork.context()[-1] == UserMessage("after the damage")
    fork.close()

    status, out, err = run_cli(capsys, str(path))
    assert (status, err) == (0, "")
    assert f"line {number}: skipped" in out
    status, out, err = run_cli(capsys, str(path), "--json")
    assert (status, err) == (0, "")
    assert json.loads(out)["recovery"]["corrupt_lines"] == [number]


def test_a_hostile_last_line_without_its_newline_is_cut_off(rt: Runtime) -> None:
    path, context, _usage = make(rt)
    good = path.read_bytes()
    path.write_bytes(good + b"[" * 100_000)
    t = rt.transcripts.resume(path)
    assert t.recovery.truncated_bytes == 100_000
    assert t.context() == context
    t.close()
    assert path.read_bytes() == good


def test_long_ids_are_continued_and_what_follows_them_reads_back(rt: Runtime) -> None:
    path, _context, _usage = make(rt)
    with open(path, "ab") as file:
        file.write(entry(id="9" * 15))  # an entry greenroom could read, far past its ids
    t = rt.transcripts.resume(path)
    assert t.recovery.corrupt_lines == ()
    assert t.recovery.unfinished_entries == 1  # no leaf points at it
    assert t.next_entry_id() == "1" + "0" * 15  # never an id given already
    t.on_turn_end([UserMessage("next")])
    t.close()
    again = rt.transcripts.resume(path)
    assert again.recovery.corrupt_lines == ()
    assert again.context()[-1] == UserMessage("next")
    assert again.next_entry_id() == "1" + "0" * 13 + "02"
    again.close()


def test_a_file_with_no_ids_left_refuses_to_write_and_loses_nothing(rt: Runtime) -> None:
    path, context, _usage = make(rt)
    with open(path, "ab") as file:
        file.write(entry(id="9" * 18))  # the largest id: the next would need 19 digits
    before = path.read_bytes()
    t = rt.transcripts.resume(path)
    assert t.recovery.corrupt_lines == ()
    assert t.context() == context
    with pytest.raises(
        StorageError, match=r"no entry ids left: it holds entry id 999999999999999999,"
    ):
        t.on_turn_end([UserMessage("refused")])
    with pytest.raises(StorageError, match="no entry ids left"):
        t.append_leaf("1")
    with pytest.raises(StorageError, match="no entry ids left"):
        rt.transcripts.fork(path)
    assert t.context() == context
    t.close()
    assert path.read_bytes() == before


# -- what a live transcript writes, it reads back -----------------------------------------


def test_the_bounds_are_refused_when_written_and_read_back_at_the_limit(rt: Runtime) -> None:
    with pytest.raises(InvalidInput, match=f"at most {MAX_ARGUMENT_DEPTH} levels"):
        ToolCall("c", "n", nested(MAX_ARGUMENT_DEPTH + 1))
    with pytest.raises(InvalidInput, match="input_tokens"):
        AssistantMessage("a", usage=Usage(MAX_TOKENS + 1, 0))
    with pytest.raises(InvalidInput, match="context_window_tokens"):
        CompactionConfig(context_window_tokens=MAX_TOKENS + 1)
    t = rt.transcripts.create()
    with pytest.raises(InvalidInput, match="cache_read_tokens"):
        t.on_turn_end([UserMessage("q")], usage=Usage(1, 1, MAX_TOKENS + 1))
    deepest = ToolCall("c", "n", nested(MAX_ARGUMENT_DEPTH))
    turn = [
        UserMessage("q"),
        AssistantMessage("a", tool_calls=[deepest], usage=Usage(MAX_TOKENS, MAX_TOKENS)),
    ]
    t.on_turn_end(turn, usage=Usage(MAX_TOKENS, 0, MAX_TOKENS, MAX_TOKENS))
    context, cost = t.context(), t.cost()
    t.close()
    again = rt.transcripts.resume(t.path)
    assert again.recovery.clean
    assert (again.context(), again.cost()) == (context, cost)
    again.close()
    line = json.loads(t.path.read_bytes().splitlines()[2])
    assert json_depth(line, 1_000) == MAX_LINE_DEPTH  # the deepest line greenroom writes


# -- damaged headers ---------------------------------------------------------------------------

HEADER = b'{"type":"session","version":1,"id":"abc","timestamp":"","cwd":".","model":""}'
HOSTILE_HEADERS = {
    "nested arrays": (b"[" * 100_000, "not a session header"),
    "nested objects": (nested_json(50_000), "not a session header"),
    "not UTF-8": (b'{"type":"session","version":1,"id":"\xff"}', "not a session header"),
    "a version of 4,000 digits": (
        HEADER.replace(b'"version":1', b'"version":' + b"9" * 4_000),
        "upgrade greenroom",
    ),
    "a version of 5,000 digits": (
        HEADER.replace(b'"version":1', b'"version":' + b"9" * 5_000),
        "not a session header",
    ),
    "version zero": (HEADER.replace(b'"version":1', b'"version":0'), "no valid version"),
    "an id of 1,000 characters": (
        HEADER.replace(b'"abc"', b'"' + b"i" * 1_000 + b'"'),
        "malformed session header",
    ),
    "an escaped lone surrogate": (HEADER.replace(b'"abc"', b'"\\ud800"'), "lone surrogate"),
    "NaN": (HEADER.replace(b'"version":1', b'"version":NaN'), "not a session header"),
    "the compaction settings nested": (
        HEADER[:-1] + b',"compaction":' + nested_json(5_000) + b"}",
        "not a session header",
    ),
}


@pytest.mark.parametrize(
    ("header", "match"), list(HOSTILE_HEADERS.values()), ids=list(HOSTILE_HEADERS)
)
def test_a_damaged_header_is_a_storage_error_saying_what_to_do(
    rt: Runtime, tmp_path: Path, capsys: pytest.CaptureFixture[str], header: bytes, match: str
) -> None:
    path = tmp_path / "damaged.jsonl"
    content = header + b"\n" + entry(id="1")
    path.write_bytes(content)
    for open_it in (rt.transcripts.resume, rt.transcripts.fork):
        with pytest.raises(StorageError, match=match):
            open_it(path)
    assert path.read_bytes() == content
    status, _out, err = run_cli(capsys, str(path))
    assert_one_error_line(status, err, match=match)


def test_unreadable_compaction_settings_are_a_note_not_an_error(
    rt: Runtime, tmp_path: Path
) -> None:
    path = tmp_path / "settings.jsonl"
    settings = {"context_window_tokens": 10**4_000}
    header = HEADER[:-1] + b',"compaction":' + json.dumps(settings).encode() + b"}\n"
    path.write_bytes(header)
    t = rt.transcripts.resume(path)
    assert "compaction settings are unreadable" in t.recovery.notes[0]
    t.close()


# -- files that are no transcripts to open ---------------------------------------------------


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe.jsonl"
    os.mkfifo(path)
    return path


def test_a_fifo_is_refused_at_once_never_waited_on(
    rt: Runtime, fifo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for open_it in (rt.transcripts.resume, rt.transcripts.fork):
        with pytest.raises(StorageError, match=r"not a regular file \(a FIFO\)"):
            open_it(fifo)
    status, _out, err = run_cli(capsys, str(fifo))
    assert_one_error_line(status, err, match="a FIFO")


def test_folders_and_sockets_are_refused(
    rt: Runtime, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sock_path = tmp_path / "s.jsonl"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock_path))
    try:
        for target in (tmp_path, sock_path):
            for open_it in (rt.transcripts.resume, rt.transcripts.fork):
                with pytest.raises(StorageError):
                    open_it(target)
            status, _out, err = run_cli(capsys, str(target))
            assert_one_error_line(status, err)
    finally:
        server.close()


def test_a_transcript_that_is_a_symbolic_link_is_refused(
    rt: Runtime, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, context, _usage = make(rt)
    before = path.read_bytes()
    link = tmp_path / "link.jsonl"
    link.symlink_to(path)
    for open_it in (rt.transcripts.resume, rt.transcripts.fork):
        with pytest.raises(StorageError, match="symbolic link"):
            open_it(link)
    status, _out, err = run_cli(capsys, str(link))
    assert_one_error_line(status, err, match="symbolic link")
    assert path.read_bytes() == before  # nothing written through the link
    # A linked folder on the way is followed: only the file itself must be no link.
    folder_link = tmp_path / "folder"
    folder_link.symlink_to(path.parent)
    t = rt.transcripts.resume(folder_link / path.name)
    assert t.path == path
    assert t.context() == context
    t.close()


@pytest.mark.parametrize("bad", ["a\0b.jsonl", "a\ud800b.jsonl", ""])
def test_unusable_paths_are_invalid_input_sync_and_async(
    rt: Runtime, tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: str
) -> None:
    with pytest.raises(InvalidInput, match="path"):
        rt.transcripts.resume(bad)
    with pytest.raises(InvalidInput, match="path"):
        rt.transcripts.fork(bad)
    with pytest.raises(InvalidInput, match="directory"):
        rt.transcripts.create(directory=bad)
    path, _context, _usage = make(rt)
    with pytest.raises(InvalidInput, match="directory"):
        rt.transcripts.fork(path, directory=bad)
    art = AsyncTranscripts(rt.transcripts)

    async def twins() -> None:
        with pytest.raises(InvalidInput, match="path"):
            await art.resume(bad)
        with pytest.raises(InvalidInput, match="path"):
            await art.fork(bad)
        with pytest.raises(InvalidInput, match="directory"):
            await art.create(directory=bad)

    anyio.run(twins)
    status, _out, err = run_cli(capsys, bad)
    assert_one_error_line(status, err, match="PATH")
    made = {p.name for p in tmp_path.iterdir()} - {"greenroom.db-wal", "greenroom.db-shm"}
    assert made == {"greenroom.db", "greenroom.db.transcripts"}  # nothing made for `bad`


def test_a_path_with_bytes_that_are_not_utf8_works_and_prints(
    rt: Runtime, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / os.fsdecode(b"caf\xe9")  # a Latin-1 name: a surrogate in the str
    t = rt.transcripts.create(directory=folder)
    t.on_turn_end([UserMessage("hi")])
    t.close()
    again = rt.transcripts.resume(t.path)
    assert again.context() == [UserMessage("hi")]
    again.close()
    status, out, _err = run_cli(capsys, str(t.path), "--json")
    assert status == 0
    assert json.loads(out)["path"].endswith(f"caf\ufffd/{t.path.name}")


# -- private files and folders ---------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A umask that narrows nothing: the modes must come from greenroom alone."""
    previous = os.umask(0)
    yield
    os.umask(previous)


@pytest.mark.usefixtures("open_umask")
def test_transcripts_and_their_folders_are_private(
    open_rt: Callable[..., Runtime], tmp_path: Path
) -> None:
    rt = open_rt()
    t = rt.transcripts.create()
    t.on_turn_end([UserMessage("secret")])
    assert mode(t.path) == 0o600
    assert mode(rt.transcripts.directory) == 0o700
    fork = rt.transcripts.fork(t.path, directory=tmp_path / "new" / "forks")
    assert mode(fork.path) == 0o600
    assert mode(tmp_path / "new") == mode(tmp_path / "new" / "forks") == 0o700
    fork.close()
    t.close()
    rt.close()
    shared = open_rt(file_mode=0o640, dir_mode=0o750)
    other = shared.transcripts.create(directory=tmp_path / "shared")
    assert (mode(other.path), mode(other.path.parent)) == (0o640, 0o750)
    other.close()


@pytest.mark.usefixtures("open_umask")
def test_a_memory_database_s_transcript_folder_has_the_configured_modes() -> None:
    config = RuntimeConfig(file_mode=0o640, dir_mode=0o750)
    with Runtime.open(":memory:", clock=FakeClock(), config=config) as rt:
        assert mode(rt.transcripts.directory) == 0o750
        t = rt.transcripts.create()
        assert mode(t.path) == 0o640
        t.close()


# -- fuzzing: lines appended to a good file, and headers ----------------------------------

_ids = st.one_of(
    st.integers(0, 10**20).map(str),
    st.sampled_from(["", "²", "٣", "1" * 5_000, " 1", "01", "-1", "1.0", "9" * 18, "9" * 17]),
    st.text(max_size=20),
    st.integers(),
    st.none(),
    st.lists(st.integers(), max_size=2),
)
_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
_json = st.recursive(
    _json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)
_message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "tool_result", "system", 3])},
    optional={
        "text": st.one_of(st.text(max_size=20), _json),
        "tool_calls": st.one_of(
            _json,
            st.lists(
                st.fixed_dictionaries(
                    {"id": st.text(max_size=5), "name": st.text(max_size=5)},
                    optional={"arguments": _json},
                ),
                max_size=2,
            ),
        ),
        "usage": st.one_of(
            _json, st.dictionaries(st.sampled_from(["input_tokens", "output_tokens"]), _json_leaf)
        ),
        "tool_call_id": st.text(max_size=5),
        "is_error": _json_leaf,
    },
)
_entry = st.fixed_dictionaries(
    {"type": st.sampled_from(["message", "compaction", "leaf", "session", "other"])},
    optional={
        "id": _ids,
        "parent_id": _ids,
        "timestamp": st.one_of(st.text(max_size=30), _json_leaf),
        "message": st.one_of(_message, _json),
        "entry_id": _ids,
        "usage": _json,
        "summary": _json_leaf,
        "first_kept_entry_id": _ids,
        "tokens_before": _json_leaf,
        "tokens_after": _json_leaf,
    },
)


def _mutate(data: bytes, where: int, how: int, extra: bytes) -> bytes:
    where %= len(data) + 1
    if how == 0:
        return data[:where] + extra + data[where:]  # insert
    if how == 1:
        return data[:where] + data[where + len(extra) + 1 :]  # delete
    if how == 2:
        return data[:where]  # cut
    return data[:where] + extra + data[where + len(extra) :]  # overwrite


# Good entries of each kind, linked into the good file's tree (its ids are "1".."12"),
# with one field replaced: the lines that get furthest into the reader.
_TEMPLATES: list[dict[str, Any]] = [
    {"type": "message", "message": {"role": "user", "text": "u"}},
    {
        "type": "message",
        "message": {
            "role": "assistant",
            "text": "a",
            "tool_calls": [{"id": "c", "name": "ls", "arguments": {"x": [1]}}],
            "usage": {"input_tokens": 5, "output_tokens": 1},
        },
    },
    {"type": "message", "message": {"role": "tool_result", "tool_call_id": "c", "text": "r"}},
    {
        "type": "compaction",
        "summary": "s",
        "first_kept_entry_id": "2",
        "tokens_before": 100,
        "tokens_after": 10,
    },
    {"type": "leaf", "entry_id": "3", "usage": {"input_tokens": 7}},
]
_known_ids = st.integers(1, 16).map(str)
_near_valid = st.builds(
    lambda template, entry_id, parent, key, value: {
        **template,
        "id": entry_id,
        "parent_id": parent,
        "timestamp": "t",
        **({} if key is None else {key: value}),
    },
    st.sampled_from(_TEMPLATES),
    _known_ids | _ids,
    _known_ids | st.none(),
    st.sampled_from(
        [
            None,
            "id",
            "parent_id",
            "timestamp",
            "message",
            "entry_id",
            "usage",
            "summary",
            "first_kept_entry_id",
            "tokens_before",
            "tokens_after",
            "type",
        ]
    ),
    _ids | _json | _message,
)
_raw_line = st.one_of(
    _near_valid.map(lambda obj: json.dumps(obj).encode()),
    _entry.map(lambda obj: json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    st.builds(
        _mutate,
        _entry.map(lambda obj: json.dumps(obj).encode()),
        st.integers(0, 10_000),
        st.integers(0, 3),
        st.binary(max_size=8) | st.sampled_from([b"[" * 500, b"\\ud800", b"9" * 5_000, b'"\xff']),
    ),
    st.binary(max_size=60),
    st.sampled_from([b"[" * 200_000, b"{}" * 3, b"null", b"1e400", b"NaN", b'"\\udc80"']),
)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(appended=st.lists(_raw_line, min_size=1, max_size=4), last_newline=st.booleans())
def test_random_lines_after_a_good_file_are_skipped_or_read_never_raised(
    rt: Runtime, capsys: pytest.CaptureFixture[str], appended: list[bytes], last_newline: bool
) -> None:
    path, context, _usage = make(rt)
    good = path.read_bytes()
    tail = b"\n".join(line.replace(b"\n", b" ") for line in appended)
    path.write_bytes(good + tail + (b"\n" if last_newline else b""))
    first_appended = len(good.splitlines()) + 1

    refused: StorageError | None = None
    try:
        rt.transcripts.fork(path).close()  # before resume: the source as damaged, only read
    except StorageError as error:
        refused = error
    # Only an id of 18 nines (no id left for the fork's leaf) stops a fork.
    assert refused is None or "no entry ids left" in str(refused), refused
    status, out, err = run_cli(capsys, str(path), "--json")
    assert (status, err) == (0, ""), err
    assert all(n >= first_appended for n in json.loads(out)["recovery"]["corrupt_lines"])

    t = rt.transcripts.resume(path)
    report = t.recovery
    assert all(n >= first_appended for n in report.corrupt_lines)
    t.context(), t.usage(), t.cost(), t.context_tokens()
    if len(t.next_entry_id()) > 18:  # an id of 18 nines was read: writes are refused
        with pytest.raises(StorageError, match="no entry ids left"):
            t.on_turn_end([UserMessage("after")])
        t.close()
        return
    written = t.on_turn_end([UserMessage("after"), AssistantMessage("kept")])
    t.close()
    again = rt.transcripts.resume(path)  # nothing written after the damage is lost
    assert again.context()[-2:] == [UserMessage("after"), AssistantMessage("kept")]
    assert again.leaf_id() == written.entry_ids[-1]
    assert again.recovery.corrupt_lines == report.corrupt_lines
    again.close()
    assert path.read_bytes().startswith(good)  # the good part untouched
    assert context  # (and it had a context to keep)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(header=st.one_of(_raw_line, _entry.map(lambda obj: json.dumps(obj).encode())))
def test_random_headers_open_or_are_a_storage_error(
    rt: Runtime, tmp_path: Path, capsys: pytest.CaptureFixture[str], header: bytes
) -> None:
    path = tmp_path / "fuzzed.jsonl"
    path.write_bytes(header.replace(b"\n", b" ") + b"\n" + entry(id="1"))
    for open_it in (rt.transcripts.resume, rt.transcripts.fork):
        failed: GreenroomError | None = None
        try:
            open_it(path).close()
        except GreenroomError as error:
            failed = error
        assert failed is None or isinstance(failed, StorageError), repr(failed)
    status, _out, err = run_cli(capsys, str(path))
    if status:
        assert_one_error_line(status, err)
