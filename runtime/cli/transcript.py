"""`greenroom transcript PATH`: what a transcript file holds, read without changing it.

The file is read as `Runtime.transcripts.resume` reads it (`greenroom.transcripts.logformat.load`),
but read-only (opened without following a symbolic link, a regular file only) and without
the lock: a transcript a host has open can be
inspected, and a last line cut short by a crash is reported (what a resume would do
to it) instead of repaired. With `--json` it prints one JSON object about the file (its
active context's entries are a list inside it, `context.items`).
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from greenroom.cli.common import emit_object, plural, say
from greenroom.pricing import calculate_cost, lookup_pricing
from greenroom.transcripts.compaction import context_tokens
from greenroom.transcripts.logformat import Node, load, message_to_json, transcript_path
from greenroom.transcripts.records import (
    AssistantMessage,
    CompactionSummary,
    RecoveryReport,
    ToolResult,
)

__all__ = ["recovery_record", "run_transcript"]

_PREVIEW = 72


def _item(node: Node) -> dict[str, Any]:
    message = node.message
    if isinstance(message, CompactionSummary):
        data: dict[str, Any] = {
            "role": "compaction_summary",
            "summary": message.summary,
            "first_kept_entry_id": message.first_kept_entry_id,
            "tokens_before": message.tokens_before,
            "tokens_after": message.tokens_after,
        }
    else:
        data = message_to_json(message)
    return {"entry_id": node.id, "timestamp": node.timestamp, "tokens": node.tokens, **data}


def recovery_record(report: RecoveryReport) -> dict[str, Any]:
    """The recovery report in read-only terms: `repair` is what a resume would do to a
    last line cut short (`cut_off` its `truncated_bytes`, or `add_newline`), `notes`
    say so instead of claiming it was done."""
    repair = None
    notes = list(report.notes)
    line = report.truncated_line
    if line is not None:
        repair = "cut_off" if report.truncated_bytes else "add_newline"
        said = (
            f"line {line}: cut short by a crash mid-write ({report.truncated_bytes} bytes); a "
            "resume would cut it off (the file would end at the last whole line)"
            if repair == "cut_off"
            else f"line {line}: a whole entry missing its newline; a resume would add it"
        )
        # The loader's own note describes the repair as done; here nothing was.
        prefix = f"line {line}: "
        notes = [
            note
            for note in notes
            if not (note.startswith(prefix) and ("newline" in note or "cut short" in note))
        ]
        notes.insert(0, said)
    return {
        "clean": report.clean,
        "truncated_line": line,
        "truncated_bytes": report.truncated_bytes,
        "repair": repair,
        "corrupt_lines": list(report.corrupt_lines),
        "missing_leaf": report.missing_leaf,
        "fallback_entry_id": report.fallback_entry_id,
        "unfinished_entries": report.unfinished_entries,
        "broken_links": report.broken_links,
        "notes": notes,
    }


def _preview(node: Node) -> str:
    message = node.message
    if isinstance(message, CompactionSummary):
        role, text = "summary", message.summary
    elif isinstance(message, AssistantMessage):
        role, text = "assistant", message.text
        calls = " ".join(
            f"{call.name}({json.dumps(call.arguments, ensure_ascii=False)})"
            for call in message.tool_calls
        )
        if calls:
            text = f"{text} [calls {calls}]" if text else f"[calls {calls}]"
    elif isinstance(message, ToolResult):
        role = "tool_error" if message.is_error else "tool_result"
        text = message.text
    else:
        role, text = "user", message.text
    flat = text.replace("\r", "\\r").replace("\n", "\\n")
    if len(flat) > _PREVIEW:
        flat = flat[: _PREVIEW - 3] + "..."
    return f"  #{node.id:<5} {role:<11} {flat}"


def _shown_path(path: os.PathLike[str]) -> str:
    """`path` as printable text: bytes that are not UTF-8 (kept in a `str` path as lone
    surrogates, which no strict output encoding takes) shown as U+FFFD."""
    return os.fsencode(path).decode("utf-8", "replace")


def run_transcript(args: argparse.Namespace) -> int:
    """`greenroom transcript PATH`: header, active context, usage, cost, recovery."""
    path = transcript_path(args.path, "PATH")
    loaded = load(path)
    header, state = loaded.header, loaded.state
    model = args.model if args.model is not None else header.model
    pricing = lookup_pricing(model)
    cost = None if pricing is None else calculate_cost(state.usage, pricing)
    tokens = context_tokens(state.context, state.post_start, state.est_sum)
    usage = state.usage
    recovery = recovery_record(loaded.recovery)
    if args.json:
        emit_object(
            {
                "path": _shown_path(path),
                "session_id": header.session_id,
                "parent_session": header.parent_session,
                "created": header.timestamp,
                "cwd": header.cwd,
                "model": model,
                "entries": len(state.nodes),
                "next_entry_id": str(state.next_seq),
                "leaf_id": state.tip,
                "context": {
                    "messages": len(state.context),
                    "tokens": tokens,
                    "items": [_item(node) for node in state.context],
                },
                "usage": {
                    "input_tokens": usage.input_tokens,
                    "output_tokens": usage.output_tokens,
                    "cache_read_tokens": usage.cache_read_tokens,
                    "cache_write_tokens": usage.cache_write_tokens,
                    "total_tokens": usage.total_tokens,
                },
                "cost": None
                if cost is None
                else {
                    "input": cost.input,
                    "output": cost.output,
                    "cache_read": cost.cache_read,
                    "cache_write": cost.cache_write,
                    "total": cost.total,
                    "currency": "USD",
                },
                "recovery": recovery,
            }
        )
        return 0
    parent = f" (forked from {header.parent_session})" if header.parent_session else ""
    if cost is None:
        priced = f"unknown (no price for model {model!r})" if model else "unknown (no model)"
    else:
        priced = (
            f"${cost.total:.4f} (input ${cost.input:.4f}, output ${cost.output:.4f}, "
            f"cache read ${cost.cache_read:.4f}, cache write ${cost.cache_write:.4f})"
        )
    lines = [
        ("transcript", _shown_path(path)),
        ("session", header.session_id + parent),
        ("model", model or "-"),
        ("cwd", header.cwd),
        ("created", header.timestamp or "-"),
        (
            "entries",
            f"{len(state.nodes):,} messages and compactions (all branches); next id "
            f"{state.next_seq}; active branch ends at {state.tip or '-'}",
        ),
        ("context", f"{plural(len(state.context), 'message')}, ~{tokens:,} tokens"),
        (
            "usage",
            f"{usage.input_tokens:,} input, {usage.output_tokens:,} output, "
            f"{usage.cache_read_tokens:,} cache read, {usage.cache_write_tokens:,} cache write "
            f"({plural(usage.total_tokens, 'token')})",
        ),
        ("cost", priced),
        ("recovery", "clean" if recovery["clean"] else "findings below (the file was not changed)"),
    ]
    width = max(len(label) for label, _value in lines)
    for label, value in lines:
        say(f"{label.ljust(width)}  {value}")
    if not recovery["clean"]:
        for note in recovery["notes"]:
            say(f"  - {note}")
    say("active context:" if state.context else "active context: empty")
    for node in state.context:
        say(_preview(node))
    return 0
