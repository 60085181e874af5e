"""`greenroom`: the command line (the console script calls `main`).

    greenroom blocks app.db                  # every block: lines, tokens, activity, state
    greenroom show app.db pane-1             # one block's stats and metadata
    greenroom export app.db pane-1 -o out.jsonl
    greenroom archive app.db pane-1
    greenroom restore app.db pane-1
    greenroom sweep app.db --dry-run --inactive-days 3
    greenroom transcript app.db.transcripts/9f2c0a1b2c3d4e5f.jsonl
    greenroom mcp --db app.db --strategies my_package.strategies     # an MCP server
    greenroom serve app.db --port 8765       # sessions live in a browser (SSE)

Every command takes `--help` and `--json`. With `--json`, a command that lists rows
(`blocks`) prints ONE JSON array of row objects, one row per line as sqlite-utils prints
them (`[{"id": ...},\n {"id": ...}]`, `[]` for none); a command about one item (`show`,
`export`, `archive`, `restore`, the summary of a `sweep`, a `transcript` file) prints
ONE JSON object. Either way stdout is one document for `json.loads`. Exit status: 0
done, 1 an error (one line on stderr: `greenroom: error: ...`), 2 bad usage, 130
interrupted (Ctrl-C). Commands on a database open it with a real clock and never
create it; the runtime is closed on every way out. Whatever the database or a file
holds, no command prints a traceback: an unexpected failure is one error line too
(its traceback is logged at debug level: `-vv` shows it).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import textwrap
from collections.abc import Callable, Sequence

import attrs
from pykka import ActorDeadError

from greenroom import __version__
from greenroom.cli.blocks import run_archive, run_blocks, run_export, run_restore, run_show
from greenroom.cli.common import PROG, one_line
from greenroom.cli.serve import parse_listen, run_mcp, run_serve
from greenroom.cli.sweep import parse_byte_count, parse_days, run_sweep
from greenroom.cli.transcript import run_transcript
from greenroom.errors import GreenroomError, StorageError

__all__ = ["build_parser", "main"]

log = logging.getLogger("greenroom.cli")

_RAW = argparse.RawDescriptionHelpFormatter

_JSON_OUTPUT = """\
json output (--json):
  blocks               one JSON array of row objects, one row per line ([] for none)
  show, export, archive, restore, sweep, transcript
                       one JSON object
"""

_EXIT_STATUS = """\
exit status:
  0    done
  1    an error (one line on stderr, never a traceback), a missing or unreadable
       file, a sweep item that failed, or a block `blocks` could not read
  2    bad usage
  130  interrupted (Ctrl-C)
"""


@attrs.frozen
class _Command:
    """How a command presents itself: its help line, description, examples, and what
    its `--json` prints."""

    summary: str
    description: str
    examples: str
    json: str


_ONE_OBJECT = "print one JSON object on stdout instead of text: "

_COMMANDS: dict[str, _Command] = {
    "blocks": _Command(
        "list the blocks of a database",
        "List every block: id, view, line count, token estimate, last activity (ISO-8601 "
        "UTC), state (live, archived, archived+live, pruned or empty) and output bytes "
        "(archived plus live). Stats are as last stored by the host.",
        "example:\n  greenroom blocks app.db --view agent\n  greenroom blocks app.db --json",
        "print one JSON array of row objects on stdout instead of text, one block a row "
        "and a line ([] for none)",
    ),
    "show": _Command(
        "show one block's stats and metadata",
        "Show one block: its stats, state, output size, archive file, stored files and "
        "every metadata key.",
        "example:\n  greenroom show app.db pane-1",
        _ONE_OBJECT + "the block's stats, files and metadata",
    ),
    "export": _Command(
        "write a block's output bytes to stdout or a file",
        "Write a block's whole output, byte for byte, to stdout or to FILE, read "
        "transparently from its archive when it is archived. With --json and -o FILE, "
        "the JSON object describes the export (bytes written, lines, archived); with "
        "--json and no -o, the bytes are in the object, base64-encoded "
        "(data_base64).",
        "example:\n  greenroom export app.db pane-1 > pane-1.jsonl\n"
        "  greenroom export app.db pane-1 -o pane-1.jsonl --json",
        _ONE_OBJECT + "what was exported (with the bytes, base64-encoded, without -o)",
    ),
    "archive": _Command(
        "compress a block's output into the archive folder",
        "Compress a block's live output into the archive folder and drop the live copy "
        "(reads stay transparent). A block with no live output is left as it is.",
        "example:\n  greenroom archive app.db pane-1",
        _ONE_OBJECT + "what was archived, and where",
    ),
    "restore": _Command(
        "bring an archived block's output back into the database",
        "Decompress an archived block's output back into the database. A block that is "
        "not archived, or whose archive was pruned, is an error.",
        "example:\n  greenroom restore app.db pane-1",
        _ONE_OBJECT + "what was restored",
    ),
    "sweep": _Command(
        "archive idle agent blocks and prune the archive folder",
        "Run one sweep: archive the view=agent blocks idle for --inactive-days (default "
        "7), then delete the oldest archive files until the folder fits in "
        "--max-archive-bytes (default 2G). --dry-run lists what would be archived and "
        "pruned and changes nothing (archives it would write are not counted towards "
        "the budget: their size is unknown until written). A progress bar is drawn on "
        "stderr when stderr is a terminal. Exit status 1 when an item failed (the "
        "others are done all the same; each failure is a warning on stderr).",
        "example:\n  greenroom sweep app.db --dry-run\n"
        "  greenroom sweep app.db --inactive-days 3 --max-archive-bytes 500M",
        _ONE_OBJECT + "the sweep's summary (settings, counts, and the items archived, "
        "pruned, skipped and failed)",
    ),
    "transcript": _Command(
        "inspect a transcript file (context, usage, cost, recovery)",
        "Read a transcript JSONL file without changing it (no repair, no lock: a file a "
        "host has open can be read) and show its session header, the active branch's "
        "context with its estimated size, the usage over the whole file, its cost at "
        "the model's built-in price, and what recovery finds: corrupt lines skipped, "
        "and a last line cut short by a crash, reported as what a resume would do.",
        "example:\n  greenroom transcript app.db.transcripts/9f2c0a1b2c3d4e5f.jsonl\n"
        "  greenroom transcript session.jsonl --model anthropic:claude-sonnet-4-5 --json",
        _ONE_OBJECT + "the file's header, context (its entries in context.items), usage, "
        "cost and recovery",
    ),
    "mcp": _Command(
        "serve registered strategies to MCP clients (stdio, or --http)",
        "Serve the @greenroom.strategy functions of the --strategies modules as the "
        "tools of an MCP server on the official SDK, over stdio (the default: the "
        "client starts this command) or streamable HTTP (--http HOST:PORT, at /mcp). "
        "Each strategy is a tool that speaks multi round-trip requests; the "
        "greenroom_* tools serve older clients. Executions are durable in DB (created "
        "when missing, unlike the other commands): a restarted server goes on with "
        "them. Needs the mcp extra: pip install 'greenroom[mcp]'. Logs (-v) go to stderr.",
        "example:\n  greenroom mcp --db host.db --strategies my_package.strategies\n"
        "  greenroom mcp --db host.db --strategies judges --http 127.0.0.1:8765",
        "not used: the server speaks MCP (JSON-RPC) on stdio",
    ),
    "serve": _Command(
        "serve sessions (Server-Sent Events), blocks and a page over HTTP",
        "Serve the database read-only over HTTP until Ctrl-C: each session's replay "
        "buffer as Server-Sent Events (/sessions/ID/events, resumed by Last-Event-ID), "
        "the blocks (/blocks, /blocks/ID, /blocks/ID/output with Range), and a page at "
        "/ that follows a session live. Bound to 127.0.0.1 unless --host says otherwise; "
        "with --token-file every route wants that bearer token (the page takes it as "
        "?token=). Needs the web extra: pip install 'greenroom[web]'.",
        "example:\n  greenroom serve app.db\n"
        "  greenroom serve app.db --port 0 --token-file ~/.greenroom-token",
        "not used: the server's answers are HTTP",
    ),
}


class _CommandParser(argparse.ArgumentParser):
    """A command's parser: it reports unknown arguments itself, with its own usage.

    argparse hands a subcommand's leftovers to the top-level parser, whose message
    would show `greenroom`'s usage instead of the command's.
    """

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `greenroom` and its commands."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Inspect and maintain greenroom databases and transcript files.",
        epilog=f"{_JSON_OUTPUT}\n{_EXIT_STATUS}",
        formatter_class=_RAW,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # The parents are of the commands' class: the subparsers action is typed by it.
    common = _CommandParser(add_help=False)
    common.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="show the runtime's log on stderr (-v: info, -vv: debug)",
    )
    database = _CommandParser(add_help=False)
    database.add_argument(
        "db", metavar="DB", help="an existing greenroom database file (never created)"
    )
    database.add_argument(
        "--archive-dir",
        metavar="DIR",
        help="the archive folder, if the host sets RuntimeConfig.archive_dir "
        "(default: DB.archives beside the database)",
    )
    commands = parser.add_subparsers(
        dest="command",
        metavar="COMMAND",
        required=True,
        title="commands",
        parser_class=_CommandParser,
    )

    def add(name: str, *, on_database: bool = True) -> argparse.ArgumentParser:
        spec = _COMMANDS[name]
        command = commands.add_parser(
            name,
            parents=[common, database] if on_database else [common],
            help=spec.summary,
            description=textwrap.fill(spec.description, 79),
            epilog=f"{spec.examples}\n\n{_EXIT_STATUS}",
            formatter_class=_RAW,
        )
        command.add_argument("--json", action="store_true", help=spec.json)
        return command

    blocks = add("blocks")
    blocks.add_argument("--view", metavar="V", help="only the blocks with this view")
    blocks.set_defaults(run=run_blocks)

    for name, run in (("show", run_show), ("archive", run_archive), ("restore", run_restore)):
        command = add(name)
        command.add_argument("block", metavar="BLOCK", help="the block id")
        command.set_defaults(run=run)

    export = add("export")
    export.add_argument("block", metavar="BLOCK", help="the block id")
    export.add_argument(
        "-o", "--output", metavar="FILE", help="write to FILE instead of stdout ('-': stdout)"
    )
    export.set_defaults(run=run_export)

    sweep = add("sweep")
    sweep.add_argument(
        "--dry-run", action="store_true", help="only report what would be done; change nothing"
    )
    sweep.add_argument(
        "--inactive-days",
        metavar="N",
        type=parse_days,
        help="archive agent blocks idle for N days or more (fractions allowed; default: 7)",
    )
    sweep.add_argument(
        "--max-archive-bytes",
        metavar="N",
        type=parse_byte_count,
        help="prune the archive folder down to N bytes, oldest first (K, M, G, T: powers "
        "of 1024; default: 2G)",
    )
    sweep.set_defaults(run=run_sweep)

    transcript = add("transcript", on_database=False)
    transcript.add_argument("path", metavar="PATH", help="a transcript JSONL file")
    transcript.add_argument(
        "--model",
        metavar="PROVIDER:MODEL",
        help="price the usage as this model (default: the model the header records)",
    )
    transcript.set_defaults(run=run_transcript)

    mcp = add("mcp", on_database=False)
    mcp.add_argument(
        "--db", metavar="DB", required=True, help="the database of the executions (created)"
    )
    mcp.add_argument(
        "--strategies",
        metavar="MODULE",
        action="append",
        required=True,
        help="a module whose @greenroom.strategy functions to serve (repeatable; "
        "modules of the current folder can be named)",
    )
    mcp.add_argument(
        "--http",
        metavar="HOST:PORT",
        type=parse_listen,
        help="serve streamable HTTP at http://HOST:PORT/mcp instead of stdio",
    )
    mcp.add_argument("--name", default="greenroom", help="the server's name (default: greenroom)")
    mcp.add_argument(
        "--synchronous",
        choices=("FULL", "NORMAL"),
        default="FULL",
        help="SQLite synchronous of the journal: FULL (default) survives power loss; "
        "NORMAL only a crash of the process, and a feed costs one fsync less",
    )
    mcp.set_defaults(run=run_mcp)

    serve = add("serve")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8765, help="port (default: 8765; 0: a free one)")
    serve.add_argument(
        "--token-file",
        metavar="FILE",
        help="require the bearer token this file holds on every route",
    )
    serve.set_defaults(run=run_serve)
    return parser


def _error(message: str) -> None:
    sys.stderr.write(f"{PROG}: error: {one_line(message)}\n")


def _describe(error: BaseException, args: argparse.Namespace) -> str:
    if isinstance(error, OSError) and not isinstance(error, GreenroomError):
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{error.strerror or error}"
    message = str(error) or type(error).__name__
    # Only a path outside the folder can be fixed by naming the host's folder (a path
    # naming another block's archive cannot); once given, the hint would say nothing.
    if (
        isinstance(error, StorageError)
        and "refusing archive path" in message
        and "not an archive file inside" in message
        and not getattr(args, "archive_dir", None)
    ):
        message += " (if the host keeps its archives elsewhere, pass --archive-dir)"
    return message


def _unexpected(error: Exception) -> str:
    if isinstance(error, ActorDeadError):
        return f"an actor stopped before it answered ({error}); run with -vv to see why"
    text = str(error)
    if len(text) > 500:
        text = text[:497] + "..."
    return f"unexpected {type(error).__name__}: {text or 'no message'} (run with -vv for details)"


def _quiet_stdout() -> None:
    # The reader went away: whatever is still buffered (and the interpreter's flush at
    # exit) goes to /dev/null instead of raising BrokenPipeError again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def _log_to_stderr(verbose: int) -> tuple[logging.Handler, int] | None:
    # The library logs to a NullHandler by default; -v shows its records on stderr.
    if not verbose:
        return None
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: log: %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("greenroom")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if verbose == 1 else logging.DEBUG)
    return handler, previous


def _open_closed_std_fds() -> None:
    """Open the null device on fds 0-2 where they are closed (`greenroom mcp 2>&-`):
    else the next file opened (the database) would take that number, and whatever
    writes to stderr would write into it."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            opened = os.open(os.devnull, os.O_RDWR)
            if opened != fd:  # (a lower one was closed too: it is opened in its turn)
                os.dup2(opened, fd)
                os.close(opened)


def main(argv: Sequence[str] | None = None) -> int:
    """Run `greenroom` with `argv` (default: the process's arguments); the exit status.

    Usage errors and `--help` return the status argparse exits with (2 and 0) instead
    of raising `SystemExit`, so `sys.exit(main())` is the whole console script.
    """
    _open_closed_std_fds()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    logging_added = _log_to_stderr(args.verbose)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        status = run(args)
        # Flushed here, so a reader that went away is seen here, not at exit.
        sys.stdout.flush()
        return status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`greenroom blocks db | head -1`): it has what it wanted.
        _quiet_stdout()
        return 0
    except (GreenroomError, OSError) as error:
        _error(_describe(error, args))
        return 1
    except Exception as error:
        # The last resort: whatever the database or a file holds, the command line
        # never shows a traceback. (The traceback is in the log: -vv shows it.)
        log.debug("%s failed unexpectedly", args.command, exc_info=True)
        _error(_unexpected(error))
        return 1
    finally:
        if logging_added is not None:
            handler, level = logging_added
            logger = logging.getLogger("greenroom")
            logger.removeHandler(handler)
            logger.setLevel(level)
