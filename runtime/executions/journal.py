"""The journal of a durable execution: what it asked, what it was told, how it ended.

Each execution has a store object `("execution", session_id)`. Its metadata says
whether it is durable, its strategy's name, its arguments and when it started; a
durable one also has a file `journal` of JSON lines, appended as the session goes:

    {"k": "start", "strategy": "essay", "args": [...], "kwargs": {...}}
    {"k": "ask", "round": 1, "queries": [{"prompt": ..., "system": ..., ...}]}
    {"k": "answer", "id": "q-1-0", "response": "...", "usage": {...} | null}
    {"k": "step", "name": "fetch", "value": ...}        (ctx.step and ctx.now)
    {"k": "passivated", "status": {...}, "at_ms": ...}  (left memory, idle)
    {"k": "end", "status": {...}, "at_ms": ...}         (its final status)

An answer is committed before the feed that gave it returns; a step's value before
the strategy sees it. On re-drive (`greenroom.actors.execution`) the strategy runs
again from the start, every `ctx.llm` the journal answered is answered from it, and
every `ctx.step` returns the journaled value. A line that cannot be read is skipped,
counted and logged (the session then re-drives from what is left).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from greenroom.errors import GreenroomError
from greenroom.executions.records import LlmQuery, SessionMetrics
from greenroom.jsontext import json_encoder
from greenroom.usage import Usage

__all__ = [
    "JOURNAL",
    "KIND",
    "Journal",
    "answer_record",
    "ask_record",
    "encode",
    "end_record",
    "parse_journal",
    "passivated_record",
    "query_fields",
    "start_record",
    "step_record",
    "usage_of",
]

log = logging.getLogger("greenroom.executions")

_encode = json_encoder()  # a journal line: ASCII, so any text round-trips

KIND = "execution"
"""The store kind of execution objects."""

JOURNAL = "journal"
"""The file name of a durable execution's journal."""


def query_fields(query: LlmQuery) -> dict[str, Any]:
    """What a round's query says, without its id (what re-drive compares)."""
    return {
        "prompt": query.prompt,
        "system": query.system,
        "max_tokens": query.max_tokens,
        "grounded": query.grounded,
        "underspecified": query.underspecified,
    }


def start_record(name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The first record: the strategy's name and its (JSON) arguments."""
    return {"k": "start", "strategy": name, "args": list(args), "kwargs": dict(kwargs)}


def ask_record(round_no: int, queries: Sequence[LlmQuery]) -> dict[str, Any]:
    """The record of a pause: round `round_no` asked `queries`."""
    return {"k": "ask", "round": round_no, "queries": [query_fields(q) for q in queries]}


def answer_record(query_id: str, response: str, usage: Usage | None) -> dict[str, Any]:
    """The record of one answer fed."""
    shown = None if usage is None else attrs.asdict(usage)
    return {"k": "answer", "id": query_id, "response": response, "usage": shown}


def step_record(name: str, value: Any) -> dict[str, Any]:
    """The record of a `ctx.step` (or `ctx.now`) result."""
    return {"k": "step", "name": name, "value": value}


def passivated_record(status: Mapping[str, Any], at_ms: int) -> dict[str, Any]:
    """The record of a passivation: the status as the session left memory."""
    return {"k": "passivated", "status": dict(status), "at_ms": at_ms}


def end_record(status: Mapping[str, Any], at_ms: int) -> dict[str, Any]:
    """The record of the end: the final status (with result, error or reason)."""
    return {"k": "end", "status": dict(status), "at_ms": at_ms}


def encode(records: Sequence[Mapping[str, Any]]) -> bytes:
    """Records as JSON lines (ASCII, so any text round-trips)."""
    return "".join(_encode(record) + "\n" for record in records).encode()


def usage_of(value: object) -> Usage | None:
    """A journaled usage back as a `Usage` (None if absent or malformed)."""
    if not isinstance(value, Mapping):
        return None
    try:
        return Usage(**{key: value[key] for key in value})
    except (TypeError, GreenroomError):
        return None


@attrs.frozen
class Journal:
    """A durable execution's journal, read back."""

    start: Mapping[str, Any] | None
    """The start record (strategy, args, kwargs), if readable."""
    asks: Mapping[int, tuple[Mapping[str, Any], ...]]
    """Each round's queries (their fields), by round number."""
    answers: Mapping[str, tuple[str, Usage | None]]
    """Every answer fed, by query id: (response, usage)."""
    steps: tuple[tuple[str, Any], ...]
    """`ctx.step` / `ctx.now` results, in the order they were taken."""
    end: Mapping[str, Any] | None
    """The final status, once ended."""
    end_ms: int | None
    """When it ended (the store clock's ms)."""
    passivated: Mapping[str, Any] | None
    """The status of the last passivation, if any."""
    corrupt_lines: int = 0
    """Lines that could not be read (skipped)."""
    size: int = 0
    """The bytes read: a writer that appends expects the journal to hold exactly these."""

    @property
    def rounds(self) -> int:
        """The highest round asked."""
        return max(self.asks, default=0)

    def metrics(self, started_at: float) -> tuple[SessionMetrics, int, tuple[str, ...]]:
        """The session's accounting rebuilt from the journal; with its rounds fully
        answered and the query ids still pending in its last round."""
        metrics = SessionMetrics(started_at)
        pending: tuple[str, ...] = ()
        for round_no in sorted(self.asks):
            queries = [
                LlmQuery.of_fields(f"q-{round_no}-{index}", fields)
                for index, fields in enumerate(self.asks[round_no])
            ]
            metrics.asked(queries)
            missing = []
            for query in queries:
                answer = self.answers.get(query.id)
                if answer is None:
                    missing.append(query.id)
                else:
                    metrics.answered(query, answer[0], answer[1])
            if missing:
                pending = tuple(missing)
            else:
                metrics.rounds += 1
        if self.passivated is not None:
            custom = self.passivated.get("metrics", {}).get("custom")
            logs = self.passivated.get("metrics", {}).get("logs")
            if isinstance(custom, dict):
                metrics.custom = dict(custom)
            if isinstance(logs, list) and all(isinstance(line, str) for line in logs):
                metrics.logs = list(logs)
                metrics.logs_view = None
        return metrics, self.rounds, pending


def parse_journal(data: bytes, session_id: str) -> Journal:
    """Read a journal's bytes; unreadable lines are skipped and logged."""
    start: Mapping[str, Any] | None = None
    asks: dict[int, tuple[Mapping[str, Any], ...]] = {}
    answers: dict[str, tuple[str, Usage | None]] = {}
    steps: list[tuple[str, Any]] = []
    end: Mapping[str, Any] | None = None
    end_ms: int | None = None
    passivated: Mapping[str, Any] | None = None
    corrupt = 0
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            kind = record["k"]
            if kind == "start":
                if not isinstance(record["args"], list) or not isinstance(record["kwargs"], dict):
                    raise TypeError("args must be a list and kwargs an object")
                start = {
                    "strategy": str(record["strategy"]),
                    "args": record["args"],
                    "kwargs": record["kwargs"],
                }
            elif kind == "ask":
                queries = tuple(dict(fields) for fields in record["queries"])
                asks[int(record["round"])] = queries
            elif kind == "answer":
                answers[str(record["id"])] = (str(record["response"]), usage_of(record["usage"]))
            elif kind == "step":
                steps.append((str(record["name"]), record["value"]))
            elif kind == "passivated":
                passivated = dict(record["status"])
            elif kind == "end":
                end = dict(record["status"])
                end_ms = int(record["at_ms"])
            else:
                raise ValueError(f"unknown record kind {kind!r}")
        except (ValueError, TypeError, KeyError, RecursionError, AttributeError):
            corrupt += 1
    if corrupt:
        log.warning(
            "execution %s: %d journal lines could not be read and were skipped",
            session_id,
            corrupt,
        )
    return Journal(start, asks, answers, tuple(steps), end, end_ms, passivated, corrupt, len(data))
