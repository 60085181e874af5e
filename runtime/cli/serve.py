"""`greenroom mcp` and `greenroom serve`: a database's strategies to MCP clients, its
sessions and blocks to browsers."""

from __future__ import annotations

import argparse
import functools
import importlib
import logging
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio

from greenroom.cli.common import CliError, open_database
from greenroom.config import RuntimeConfig
from greenroom.runtime import Runtime

__all__ = ["parse_listen", "run_mcp", "run_serve"]

log = logging.getLogger("greenroom.cli")


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` (or `:PORT`, on 127.0.0.1; port 0: a free one) for `--http`."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise argparse.ArgumentTypeError(
            f"expected HOST:PORT (such as 127.0.0.1:8765), got {text!r}"
        )
    return (host.strip("[]") or "127.0.0.1"), int(port)


def _modules(names: list[str]) -> list[ModuleType]:
    # As `python -m` does: modules of the folder the command runs in can be named.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    modules = []
    for name in names:
        try:
            modules.append(importlib.import_module(name))
        except ImportError as error:
            raise CliError(f"--strategies {name}: cannot import it ({error})") from None
    return modules


def _say_url(url: str) -> None:
    sys.stderr.write(f"greenroom: serving MCP on {url}\n")
    sys.stderr.flush()


def run_mcp(args: argparse.Namespace) -> int:
    """`greenroom mcp --db DB --strategies MODULE`: serve until the client goes."""
    try:
        # The mcp extra is optional: greenroom.mcp is imported only for this command.
        greenroom_mcp = importlib.import_module("greenroom.mcp")
    except ImportError as error:
        raise CliError(
            f"greenroom mcp needs the MCP SDK ({error}): pip install 'greenroom[mcp]'"
        ) from None
    modules = _modules(args.strategies or [])
    runtime = Runtime.open(args.db, config=RuntimeConfig(sqlite_synchronous=args.synchronous))
    try:
        server = greenroom_mcp.build_server(runtime, modules, name=args.name)
        names = runtime.executions.strategies()
        if not names:
            raise CliError(
                "no strategy to serve: name modules with @greenroom.strategy functions "
                "in --strategies"
            )
        log.info("serving strategies %s", ", ".join(names))
        serve: Any
        if args.http is not None:
            host, port = args.http
            serve = (
                functools.partial(greenroom_mcp.serve_http, on_ready=_say_url),
                server,
                host,
                port,
            )
        else:
            serve = (greenroom_mcp.serve_stdio, server)
        anyio.run(*serve)
    finally:
        runtime.close()
    return 0


def run_serve(args: argparse.Namespace) -> int:
    """`greenroom serve DB`: the web app (events, blocks, the page) until Ctrl-C."""
    try:
        # The web extra is optional: greenroom.web is imported only for this command.
        web = importlib.import_module("greenroom.web")
    except ImportError as error:
        raise CliError(
            f"greenroom serve needs Starlette and uvicorn ({error}): pip install 'greenroom[web]'"
        ) from None
    token = None
    if args.token_file is not None:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as error:
            raise CliError(f"--token-file {args.token_file}: {error.strerror}") from None
        if len(token) < 16:
            raise CliError(f"--token-file {args.token_file}: a token has 16 characters or more")
    with open_database(args.db, args.archive_dir) as runtime:
        web.serve(runtime, args.host, args.port, token=token, on_ready=_say_serving)
    return 0


def _say_serving(url: str) -> None:
    sys.stderr.write(f"greenroom: serving {url} (Ctrl-C stops)\n")
    sys.stderr.flush()
