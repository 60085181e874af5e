"""Executions that are not in memory: read from, and swept in, the store.

A durable execution that left memory (passivated, or its process stopped) is still in
the store: its metadata and journal (`greenroom.executions.journal`). This module
answers for it without re-driving it (`status`, `snapshots`), reads its journal for a
re-drive, builds the final result of one that ended, and sweeps the store for the GC:
sessions idle past `execution_ttl_s` are reaped (an `end` record, `cancelled`), ended
ones past `result_retention_s` removed with their journal.

Session ids are `s-` and 32 hex digits: the first 8 name the runtime that started the
session (its *incarnation*, recorded in the store), so a session that was not durable
is told apart from one that never existed once its runtime is gone (`ExecutionLost`).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from typing import Any

import attrs

from greenroom.clock import Clock
from greenroom.config import RuntimeConfig
from greenroom.errors import ExecutionLost, GreenroomError, NotFound, StorageError
from greenroom.executions.journal import (
    JOURNAL,
    KIND,
    Journal,
    encode,
    end_record,
    parse_journal,
)
from greenroom.executions.records import (
    TERMINAL_STATES,
    ExecutionStats,
    FeedResult,
    TokenCount,
    answer_digest,
)
from greenroom.executions.registry import RetainedResult
from greenroom.ids import secret_hex
from greenroom.leases import Leases
from greenroom.metrics import Metrics
from greenroom.store import AppendFile, Store, UpdateMeta

__all__ = ["RUNTIME_KIND", "Stored", "StoredSessions", "stats_from_json"]

log = logging.getLogger("greenroom.executions")

_SAME_WRITE_MS = 1000  # a journal write this close to the passivation is the passivation's

RUNTIME_KIND = "execution_runtime"
"""The store kind recording each runtime (incarnation) that started executions."""


def stats_from_json(value: object) -> ExecutionStats:
    """`ExecutionStats` back from its `to_json()` (zeros where it does not read)."""
    if not isinstance(value, Mapping):
        return ExecutionStats()

    def count(key: str) -> int:
        found = value.get(key)
        return found if type(found) is int else 0

    def tokens(key: str) -> TokenCount:
        found = value.get(key)
        if isinstance(found, Mapping) and type(found.get("value")) is int:
            return TokenCount(found["value"], str(found.get("source", "estimated")))
        return TokenCount()

    custom = value.get("custom")
    logs = value.get("logs")
    return ExecutionStats(
        elapsed_ms=count("elapsed_ms"),
        llm_calls=count("llm_calls"),
        pauses=count("pauses"),
        rounds=count("rounds"),
        prompt_chars=count("prompt_chars"),
        response_chars=count("response_chars"),
        prompt_tokens=tokens("prompt_tokens"),
        response_tokens=tokens("response_tokens"),
        total_tokens=tokens("total_tokens"),
        custom=dict(custom) if isinstance(custom, Mapping) else {},
        logs=tuple(line for line in logs if isinstance(line, str))
        if isinstance(logs, list)
        else (),
        logs_dropped=count("logs_dropped"),
    )


# The sweep's scan: durable executions ended before their retention, or idle (by their
# journal's last write or their last activity) longer than the TTL. One per dialect.
_SWEEP_SQLITE = (
    "SELECT o.id, json_extract(o.meta, '$.state'), "
    "json_extract(o.meta, '$.finished_ms'), json_extract(o.meta, '$.passivated_ms'), "
    "json_extract(o.meta, '$.last_active_ms'), coalesce(f.updated_ms, o.updated_ms), "
    "json_extract(o.meta, '$.\"lease:owner\"'), json_extract(o.meta, '$.\"lease:until_ms\"') "
    "FROM objects o LEFT JOIN files f ON f.kind = o.kind AND f.id = o.id "
    "AND f.name = ? WHERE o.kind = ? AND json_valid(o.meta) "
    "AND json_extract(o.meta, '$.durable') = 1 AND ("
    "(json_extract(o.meta, '$.state') IN ({ended}) "
    "AND json_extract(o.meta, '$.finished_ms') <= ?) OR "
    "(coalesce(json_extract(o.meta, '$.state'), '') NOT IN ({ended}) "
    "AND min(coalesce(f.updated_ms, o.updated_ms), "
    "coalesce(json_extract(o.meta, '$.last_active_ms'), o.updated_ms)) <= ?))"
)


def _pg_int(key: str) -> str:
    """A metadata key's integer on PostgreSQL (NULL unless a JSON number)."""
    return (
        f"(CASE WHEN jsonb_typeof(o.meta->'{key}') = 'number' "
        f"THEN (o.meta->>'{key}')::numeric::bigint END)"
    )


_SWEEP_POSTGRES = (
    f"SELECT o.id, o.meta->>'state', {_pg_int('finished_ms')}, {_pg_int('passivated_ms')}, "
    f"{_pg_int('last_active_ms')}, coalesce(f.updated_ms, o.updated_ms), "
    f"o.meta->>'lease:owner', {_pg_int('lease:until_ms')} "
    "FROM objects o LEFT JOIN files f ON f.kind = o.kind AND f.id = o.id "
    "AND f.name = ? WHERE o.kind = ? AND jsonb_typeof(o.meta) = 'object' "
    "AND o.meta->'durable' = 'true'::jsonb AND ("
    f"(o.meta->>'state' IN ({{ended}}) AND {_pg_int('finished_ms')} <= ?) OR "
    "(coalesce(o.meta->>'state', '') NOT IN ({ended}) "
    "AND least(coalesce(f.updated_ms, o.updated_ms), "
    f"coalesce({_pg_int('last_active_ms')}, o.updated_ms)) <= ?))"
)


@attrs.frozen
class Stored:
    """A durable execution as the store holds it."""

    session_id: str
    strategy: str
    started_ms: int
    journal: Journal
    meta: Mapping[str, Any] = attrs.field(factory=dict)
    """Its object's metadata as read (its lease, among others)."""

    @property
    def ended(self) -> bool:
        """Whether its journal holds its end."""
        return self.journal.end is not None


class StoredSessions:
    """The executions of one runtime's store that are not in memory."""

    def __init__(self, store: Store, clock: Clock, config: RuntimeConfig, metrics: Metrics) -> None:
        self._store = store
        self._clock = clock
        self._config = config
        self._metrics = metrics
        self.incarnation = secrets.token_hex(4)
        self.leases: Leases | None = None  # set by the namespace (shared stores)
        self._recorded = False

    # -- ids ---------------------------------------------------------------------------

    def new_session_id(self) -> str:
        """A new session id naming this runtime; records the runtime once."""
        if not self._recorded:
            self._store.ensure_object(
                RUNTIME_KIND, self.incarnation, {"started_ms": self._clock.now_ms()}
            )
            self._recorded = True
        return f"s-{self.incarnation}{secret_hex(12)}"

    def lost_or_unknown(self, session_id: str, retention_s: float) -> GreenroomError:
        """The error for an id neither in memory nor durable in the store."""
        incarnation = (
            session_id[2:10] if session_id.startswith("s-") and len(session_id) == 34 else ""
        )
        if incarnation and incarnation != self.incarnation:
            try:
                known = self._store.find_object(RUNTIME_KIND, incarnation) is not None
            except GreenroomError:
                known = False
            if known:
                error = ExecutionLost(
                    f"execution {session_id} cannot come back: it was not durable (its "
                    "strategy was not registered by name) and the runtime that ran it "
                    "(an earlier process, or another one on this database) holds it in "
                    "memory only, or has stopped; register strategies with "
                    "rt.executions.register so their sessions survive restarts"
                )
                log.warning("%s", error)
                return error
        return NotFound(
            f"no execution session {session_id!r}: never started here, or finished more "
            f"than result_retention_s ({retention_s:g} s) ago"
        )

    # -- reading -----------------------------------------------------------------------

    def load(self, session_id: str) -> Stored | None:
        """The durable execution `session_id` from the store, or None if it has none."""
        found = self._store.find_object(KIND, session_id)
        if found is None or found.meta.get("durable") is not True:
            return None
        meta = found.meta
        try:
            data = self._store.read_file(KIND, session_id, JOURNAL)
        except NotFound:
            data = b""
        journal = parse_journal(data, session_id)
        strategy = meta.get("strategy")
        started = meta.get("started_ms")
        return Stored(
            session_id,
            strategy if isinstance(strategy, str) else "",
            started if type(started) is int else found.created_ms,
            journal,
            meta,
        )

    def status(self, stored: Stored) -> dict[str, Any]:
        """Its status from the journal, as `rt.executions.status` shows it."""
        journal = stored.journal
        if journal.end is not None:
            status = dict(journal.end)
            status["durable"] = True
            return status
        now_ms = self._clock.now_ms()
        started_at = -max(0, now_ms - stored.started_ms) / 1000
        metrics, rounds, pending = journal.metrics(started_at)
        state = "paused" if pending else "running"
        return {
            "session_id": stored.session_id,
            "state": state,
            "round": rounds,
            "pending_queries": list(pending),
            "metrics": metrics.snapshot(0.0).to_json(),
            "durable": True,
            "in_memory": False,
        }

    def retained(self, stored: Stored) -> RetainedResult | None:
        """The final result of an ended execution, if still within its retention."""
        journal = stored.journal
        if journal.end is None or journal.end_ms is None:
            return None
        end = journal.end
        age_s = max(0, self._clock.now_ms() - journal.end_ms) / 1000
        if age_s >= self._config.result_retention_s:
            return None
        state = str(end.get("state"))
        final = FeedResult(
            state if state in TERMINAL_STATES else "error",
            stored.session_id,
            result=end.get("result"),
            error=end.get("error") if isinstance(end.get("error"), str) else None,
            metrics=stats_from_json(end.get("metrics")),
        )
        answered = {qid: answer_digest(response) for qid, (response, _u) in journal.answers.items()}
        status = dict(end)
        status["durable"] = True
        finished_at = self._clock.monotonic() - age_s
        return RetainedResult(final, status, finished_at, answered, durable=True)

    def list_stored(self) -> list[str]:
        """Ids of every durable execution in the store."""
        return [
            obj.id
            for obj in self._store.list_objects(KIND, unreadable=[])
            if obj.meta.get("durable") is True
        ]

    # -- the GC's sweep ------------------------------------------------------------------

    def sweep(self, in_memory: set[str]) -> tuple[list[str], list[str]]:
        """Reap idle and remove expired executions not in memory: (reaped, removed).

        One scan in SQL picks the candidates, so a pass over 100,000 stored
        executions reads only the few that are due, not every object.
        """
        now_ms = self._clock.now_ms()
        ttl_ms = self._config.execution_ttl_s * 1000
        retention_ms = self._config.result_retention_s * 1000
        ended = ", ".join(f"'{state}'" for state in sorted(TERMINAL_STATES))
        sql = _SWEEP_POSTGRES if self._store.dialect == "postgresql" else _SWEEP_SQLITE
        rows = self._store.query(
            sql.format(ended=ended),
            [JOURNAL, KIND, now_ms - retention_ms, now_ms - ttl_ms],
        )
        reaped: list[str] = []
        removed: list[str] = []
        for session_id, state, finished, passivated_ms, last_active, last, owner, until in rows:
            if session_id in in_memory:
                continue
            if self.leases is not None and self.leases.held_elsewhere(owner, until):
                continue  # another host drives it (shared store): its GC sweeps it
            if state in TERMINAL_STATES:
                expired = type(finished) is int and now_ms - finished >= retention_ms
                if expired and self._remove(session_id):
                    removed.append(session_id)
                continue
            if (
                type(passivated_ms) is int
                and type(last_active) is int
                and type(last) is int
                and last - passivated_ms <= _SAME_WRITE_MS
            ):
                last = last_active  # nothing since it left memory: idle since then
            if type(last) is int and now_ms - last >= ttl_ms and self._reap(session_id, now_ms):
                reaped.append(session_id)
        return reaped, removed

    def remove(self, session_id: str) -> None:
        """Remove a durable execution and its journal (its result has expired)."""
        self._remove(session_id)

    def _remove(self, session_id: str) -> bool:
        try:
            self._store.delete_object(KIND, session_id)
        except NotFound:
            return False
        except StorageError as error:
            log.warning("execution %s: could not remove its journal: %s", session_id, error)
            return False
        return True

    def cancel(self, stored: Stored, reason: str) -> RetainedResult | None:
        """End a session not in memory `cancelled` in its journal, without re-driving
        it; its final result (None if it had ended already)."""
        if stored.ended:
            return self.retained(stored)
        now_ms = self._clock.now_ms()
        self._end(stored, reason, now_ms)
        log.info("execution %s (not in memory) cancelled: %s", stored.session_id, reason)
        ended = self.load(stored.session_id)
        return self.retained(ended) if ended is not None else None

    def _end(self, stored: Stored, reason: str, now_ms: int) -> None:
        status = self.status(stored)
        status.pop("in_memory", None)
        status.pop("durable", None)
        status.update(state="cancelled", pending_queries=[], reason=reason)
        record = end_record(status, now_ms)
        session_id = stored.session_id
        # Only if the journal is as read: a runtime that re-drove it meanwhile wins.
        self._store.write_atomic(
            [
                AppendFile(
                    KIND,
                    session_id,
                    JOURNAL,
                    encode([record]),
                    create=True,
                    expect_size=stored.journal.size,
                ),
                UpdateMeta(KIND, session_id, {"state": "cancelled", "finished_ms": now_ms}),
            ]
        )

    def _reap(self, session_id: str, now_ms: int) -> bool:
        stored = self.load(session_id)
        if stored is None or stored.ended:
            return False
        ttl = self._config.execution_ttl_s
        reason = f"reaped by the GC: idle for more than execution_ttl_s ({ttl:g} s)"
        try:
            self._end(stored, reason, now_ms)
        except GreenroomError as error:
            log.warning("execution %s: could not reap it: %s", session_id, error)
            return False
        self._metrics.incr("executions_reaped")
        log.warning("execution %s (not in memory) %s; cancelled", session_id, reason)
        return True
