"""`rt.transcripts`: append-only conversation logs, created, resumed or forked.

    t = rt.transcripts.create(model="anthropic:claude-sonnet-4-5")
    t.on_turn_end([UserMessage("hi"), AssistantMessage("hello")])
    t.close()
    t = rt.transcripts.resume(t.path)   # same context, usage and next entry id
    f = rt.transcripts.fork(t.path)     # a new file with only the active branch

Opening work (creating the file, or reading back and repairing an existing one, up to
100,000 entries and more) runs here on the caller's thread, never on a dispatcher
thread (`greenroom.aio.transcripts` calls these on a worker thread); the transcript's
actor starts afterwards with the file and the state in hand. Paths are taken as str or
`os.PathLike` and given back as `pathlib.Path`.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from greenroom.actors.transcript import TranscriptActor
from greenroom.checks import check_choice, check_path, check_text
from greenroom.errors import InvalidInput, InvalidTransition, StorageError
from greenroom.files import private_dir
from greenroom.kernel import Kernel
from greenroom.transcripts.handle import Transcript
from greenroom.transcripts.logformat import (
    Header,
    LogFile,
    TranscriptState,
    check_ids_left,
    compaction_entry,
    encode,
    fsync_dir,
    iso_utc,
    leaf_entry,
    load,
    message_entry,
    transcript_path,
)
from greenroom.transcripts.records import (
    DURABILITIES,
    CompactionConfig,
    CompactionSummary,
    RecoveryReport,
)

__all__ = ["Transcripts"]

log = logging.getLogger("greenroom.transcripts")

_DEFAULT_COMPACTION = CompactionConfig()


def _folder(value: Any, what: str) -> Path:
    """`value` (str or os.PathLike) as an absolute, resolved `Path` to a folder;
    `InvalidInput` when it is no usable path (empty, a NUL, a lone surrogate)."""
    return check_path(value, what).resolve()


def _create_file(
    folder: Path,
    make_header: Callable[[str], Header],
    *,
    sync: bool,
    file_mode: int,
    dir_mode: int,
) -> tuple[LogFile, Header]:
    """A new `<random id>.jsonl` in `folder`, created exclusively with `file_mode`
    (the folder, when missing, with `dir_mode`), with its header."""
    try:
        private_dir(folder, dir_mode)
        if not folder.is_dir():  # private_dir leaves whatever exists alone
            raise NotADirectoryError(errno.ENOTDIR, "it exists and is not a folder")
    except OSError as error:
        raise StorageError(f"cannot create transcript folder {str(folder)!r}: {error}") from error
    while True:
        header = make_header(secrets.token_hex(8))
        path = folder / f"{header.session_id}.jsonl"
        try:
            return LogFile.create(path, header, sync=sync, mode=file_mode), header
        except FileExistsError:
            continue  # 64 random bits taken already: draw again, never overwrite
        except OSError as error:
            raise StorageError(f"cannot create transcript {str(path)!r}: {error}") from error


class Transcripts:
    """The transcripts of one runtime (`rt.transcripts`): create, resume and fork logs."""

    def __init__(self, kernel: Kernel) -> None:
        """Build the namespace on `kernel`; `Runtime` makes one."""
        self._kernel = kernel
        self._metrics = kernel.metrics
        self._lock = threading.Lock()
        self._temp_dir: Path | None = None  # made for a ":memory:" database's transcripts
        # A handle's call waits for its one actor: refused in handlers, not in jobs.
        self._refuse_waiting_call = functools.partial(kernel.refuse_inside_actor, pools=False)

    def counters(self) -> dict[str, int]:
        """This part's counters (at zero until bumped) and gauges (`Runtime.metrics`)."""
        running = self._kernel.running(TranscriptActor.kind)
        return {
            "transcripts_created": 0,
            "transcripts_resumed": 0,
            "transcripts_forked": 0,
            "transcripts_closed": 0,
            "transcript_turns": 0,
            "transcript_entries_written": 0,
            "transcript_fsyncs": 0,
            "transcript_write_failures": 0,
            "transcript_compactions": 0,
            "transcript_compaction_failures": 0,
            "transcript_branch_moves": 0,
            "transcript_repairs": 0,
            "transcript_corrupt_lines": 0,
            "transcript_leaf_fallbacks": 0,
            "transcript_unfinished_entries": 0,
            "transcript_broken_links": 0,
            "transcripts_open": running,
        }

    def close(self) -> None:
        """Release this part's resources; `close()` calls it after every actor stopped.

        Each transcript's actor flushed and closed its file in `on_stop`. What is left is
        the temporary folder made for a `":memory:"` database's transcripts (and only
        that one: a configured or default folder stays), removed with its files.
        """
        if not self._kernel.closed:
            raise InvalidTransition(
                "rt.transcripts.close() runs as part of Runtime.close(), once every actor has "
                "stopped; close the runtime instead"
            )
        with self._lock:
            folder, self._temp_dir = self._temp_dir, None
        if folder is None:
            return

        def failed(_function: Any, where: str, error: Any) -> None:
            log.warning("could not remove the temporary transcript folder %s: %s", where, error)

        shutil.rmtree(folder, onerror=failed)

    # -- the folder --------------------------------------------------------------------

    @property
    def directory(self) -> Path:
        """The folder new transcripts go to (`RuntimeConfig.transcript_dir`; by default
        `<database>.transcripts` beside the database, a temporary folder for
        `":memory:"`). Created on first use."""
        configured = self._kernel.config.transcript_dir
        if configured is not None:
            return Path(configured).resolve()
        store_path = self._kernel.store.path
        if store_path == ":memory:":
            with self._lock:
                if self._temp_dir is None:
                    made = Path(tempfile.mkdtemp(prefix="greenroom-transcripts-")).resolve()
                    os.chmod(made, self._kernel.config.dir_mode)  # 0700 from mkdtemp
                    self._temp_dir = made
                return self._temp_dir
        db = Path(store_path).resolve()
        return db.with_name(db.name + ".transcripts")

    # -- opening -----------------------------------------------------------------------

    def create(
        self,
        *,
        directory: str | os.PathLike[str] | None = None,
        cwd: str = ".",
        model: str = "",
        compaction: CompactionConfig = _DEFAULT_COMPACTION,
        durability: str | None = None,
    ) -> Transcript:
        """Start a new transcript: a new `<session id>.jsonl` file in `directory`
        (default `directory`), created exclusively, with its session header.

        The file is created with `RuntimeConfig.file_mode` (0600: only its owner reads
        a conversation), and missing folders with `RuntimeConfig.dir_mode` (0700).

        `model` (`"provider:model"`) is recorded in the header and prices `cost()`;
        `durability` is `"turn"` (one fsync per turn), `"entry"` or `"none"`, `None`
        meaning `RuntimeConfig.transcript_durability`. `directory` is a str or an
        `os.PathLike`; `InvalidInput` for one that is no usable path.
        """
        self._kernel.check_open()
        self._kernel.refuse_inside_actor("transcripts.create()")
        folder = self.directory if directory is None else _folder(directory, "directory")
        check_text(cwd, "cwd")
        check_text(model, "model")
        compaction, durability = self._transcript_options(compaction, durability)
        now = iso_utc(self._kernel.clock.now_ms())
        file, header = _create_file(
            folder,
            lambda session_id: Header(session_id, now, cwd, None, model, compaction),
            sync=durability != "none",
            **self._modes(),
        )
        path = file.path
        session_id = header.session_id
        self._metrics.incr("transcripts_created")
        log.info("transcript %s created at %s", session_id, path)
        return self._start_transcript(
            file,
            header,
            TranscriptState(),
            RecoveryReport(path),
            compaction,
            durability,
            new=True,
        )

    def resume(
        self,
        path: str | os.PathLike[str],
        *,
        model: str | None = None,
        compaction: CompactionConfig | None = None,
        durability: str | None = None,
    ) -> Transcript:
        """Reopen a transcript file and carry on appending to it.

        The active branch is the one the last leaf points at; its context, the usage over
        the whole file and the next entry id are what the live transcript had. A last
        line cut short by a crash is repaired, corrupt lines are skipped; both are in
        `Transcript.recovery` (and logged). `model=None` takes the header's.
        `compaction=None` takes the settings the header records (window, threshold,
        keep_recent_tokens, enabled; the defaults for a file that records none) with the
        default summarizer: the summarizer is host code and is not in the file, so pass
        `compaction` again to keep one. `model` and `compaction` given here apply to this
        session only (the header, line 1 of an append-only file, is not rewritten).
        `NotFound` when there is no such file, `StorageError` when it is not a
        transcript (or its line 1, the header, is damaged), is a symbolic link or is
        not a regular file (a FIFO, a folder: refused at once, never waited on),
        `InvalidTransition` when it is open already, `InvalidInput` for a `path` (str or
        `os.PathLike`) that is no usable path (empty, a NUL, a lone surrogate).
        """
        self._kernel.check_open()
        self._kernel.refuse_inside_actor("transcripts.resume()")
        where = transcript_path(path, "path")
        if model is not None:
            check_text(model, "model")
        given = compaction
        compaction, durability = self._transcript_options(
            _DEFAULT_COMPACTION if given is None else given, durability
        )
        file = LogFile.open_existing(where)
        try:
            loaded = load(where, file=file)
        except BaseException:
            file.close(sync=False)
            raise
        if given is None and loaded.header.compaction is not None:
            compaction = loaded.header.compaction
        self._count_recovery(loaded.recovery)
        self._metrics.incr("transcripts_resumed")
        header = loaded.header
        if model is not None:
            header = header._replace(model=model)
        log.info(
            "transcript %s resumed from %s (%d entries)",
            header.session_id,
            where,
            len(loaded.state.nodes),
        )
        return self._start_transcript(
            file, header, loaded.state, loaded.recovery, compaction, durability
        )

    def fork(
        self,
        path: str | os.PathLike[str],
        *,
        directory: str | os.PathLike[str] | None = None,
        model: str | None = None,
        compaction: CompactionConfig | None = None,
        durability: str | None = None,
    ) -> Transcript:
        """A new transcript holding only the active branch of the file at `path`.

        `model=None` and `compaction=None` take the source header's (as `resume` does);
        the fork's header records the ones it uses.

        The new file (in `directory`, default `directory`) has a new session id and
        `parent_session` set to the source's; the branch's entries keep their ids, so the
        fork's next entry id continues after them. The source is only read (a transcript
        open elsewhere may be forked); what reading it found is the fork's `recovery`.
        Usage is what the copied branch cost: each turn's total where the host gave one
        (its leaf is copied too), else its assistant messages' own usage; abandoned
        branches are not copied, and neither is what they cost. The source is refused
        as `resume` refuses it; the new file is created as `create` makes one.
        """
        self._kernel.check_open()
        self._kernel.refuse_inside_actor("transcripts.fork()")
        source_path = transcript_path(path, "path")
        folder = self.directory if directory is None else _folder(directory, "directory")
        if model is not None:
            check_text(model, "model")
        given = compaction
        compaction, durability = self._transcript_options(
            _DEFAULT_COMPACTION if given is None else given, durability
        )
        source = load(source_path)
        if given is None and source.header.compaction is not None:
            compaction = source.header.compaction
        self._count_recovery(source.recovery)
        state = source.state
        chain = state.chain(state.tip)
        state.notes.clear()  # reported by load already
        now = iso_utc(self._kernel.clock.now_ms())
        lines: list[bytes] = []
        for index, node in enumerate(chain):
            parent = node.parent_id if index else None  # the branch's root is the fork's
            when = node.timestamp or now
            if isinstance(node.message, CompactionSummary):
                entry = compaction_entry(node.id, parent, when, node.message)
            else:
                entry = message_entry(node.id, parent, when, node.message)
            lines.append(encode(entry))
            leaf = source.first_leaves.get(node.id)
            if leaf is not None:
                # The leaf that ended this entry's turn, with the turn's total: the turns
                # stay delimited and their usage is the source's.
                leaf_id, leaf_ts, turn_usage = leaf
                lines.append(encode(leaf_entry(leaf_id, node.id, leaf_ts, node.id, turn_usage)))
        if chain:
            tip = chain[-1].id
            check_ids_left(state.next_seq, 1, source_path)  # the fork's own leaf
            lines.append(encode(leaf_entry(str(state.next_seq), tip, now, tip)))
        sync = durability != "none"
        file, header = _create_file(
            folder,
            lambda session_id: Header(
                session_id,
                now,
                source.header.cwd,
                source.header.session_id,
                source.header.model if model is None else model,
                compaction,
            ),
            sync=False,  # synced with the entries below
            **self._modes(),
        )
        new_path = file.path
        session_id = header.session_id
        try:
            if lines:
                file.append(lines, "turn" if sync else "none")
            elif sync:
                file.sync()  # an empty source: the header alone
            if sync:
                fsync_dir(new_path.parent)  # the new file's name
            forked = load(new_path, file=file)
        except BaseException as error:
            file.close(sync=False)
            new_path.unlink(missing_ok=True)
            if isinstance(error, OSError):
                raise StorageError(
                    f"could not write the fork {str(new_path)!r}: {error}; it was removed"
                ) from error
            raise
        self._metrics.incr("transcripts_forked")
        log.info(
            "transcript %s forked from %s (%d entries on its branch) at %s",
            session_id,
            source.header.session_id,
            len(chain),
            new_path,
        )
        return self._start_transcript(
            file, header, forked.state, source.recovery, compaction, durability, new=True
        )

    # -- helpers -----------------------------------------------------------------------

    def _modes(self) -> dict[str, int]:
        config = self._kernel.config
        return {"file_mode": config.file_mode, "dir_mode": config.dir_mode}

    def _transcript_options(self, compaction: Any, durability: Any) -> tuple[CompactionConfig, str]:
        if not isinstance(compaction, CompactionConfig):
            raise InvalidInput(
                f"compaction must be a CompactionConfig, got {type(compaction).__name__}"
            )
        if durability is None:
            return compaction, self._kernel.config.transcript_durability
        return compaction, check_choice(durability, "durability", DURABILITIES)

    def _count_recovery(self, report: RecoveryReport) -> None:
        if report.truncated_line is not None:
            self._metrics.incr("transcript_repairs")
        if report.corrupt_lines:
            self._metrics.incr("transcript_corrupt_lines", len(report.corrupt_lines))
        if report.fallback_entry_id is not None:
            self._metrics.incr("transcript_leaf_fallbacks")
        if report.unfinished_entries:
            self._metrics.incr("transcript_unfinished_entries", report.unfinished_entries)
        if report.broken_links:
            self._metrics.incr("transcript_broken_links", report.broken_links)

    def _start_transcript(
        self,
        file: LogFile,
        header: Header,
        state: TranscriptState,
        recovery: RecoveryReport,
        compaction: CompactionConfig,
        durability: str,
        *,
        new: bool = False,
    ) -> Transcript:
        """Start the transcript's actor on `file`; when that fails the file is closed,
        and removed if it is `new` (made by this create or fork: it holds nothing the
        host was told about)."""
        if file.fsyncs:
            self._metrics.incr("transcript_fsyncs", file.fsyncs)  # the header's, a fork's

        try:
            ref = self._kernel.spawn(
                TranscriptActor,
                file,
                state,
                model=header.model,
                compaction=compaction,
                durability=durability,
                actor_id=header.session_id,
            )
        except BaseException as error:
            file.close(sync=False)
            if new:
                try:
                    file.path.unlink(missing_ok=True)
                except OSError as unlink_error:
                    log.error(
                        "transcript %s: its actor did not start, and its new file %s could "
                        "not be removed: %s",
                        header.session_id,
                        file.path,
                        unlink_error,
                    )
            if isinstance(error, InvalidTransition) and not new:
                raise InvalidTransition(
                    f"session {header.session_id!r} is open already in this runtime (from "
                    f"another copy of its file); close it before opening {str(file.path)!r}"
                ) from None
            raise
        return Transcript(
            ref,
            header.session_id,
            file.path,
            recovery,
            header.model,
            self._refuse_waiting_call,
        )
