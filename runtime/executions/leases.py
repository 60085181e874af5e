"""Execution leases: which host drives a durable execution when several share a store.

On a shared store (PostgreSQL), a durable execution is driven by one host at a time:
the one whose lease its metadata names (`lease:owner`, `lease:until_ms`). A host takes
the lease when it starts the execution or brings it back from its journal; it renews
the leases of the executions it has in memory every third of `RuntimeConfig.lease_s`
(`renew`, from the execution GC's timer) and gives them up when they leave memory or
the runtime closes (`until_ms` 0). Another host's call on a leased execution raises
`LeaseHeld`, naming the owner; once a lease has run out (its host died), the first
host to call takes it over (a write that expects the old owner: of two hosts taking
over at once, one wins) and re-drives the execution from its journal. The journal's
own check (each append expects its size) still fences a host that lost its lease
while it was paused: its next write fails and it lets the execution go.

On a store of one host (SQLite) leases are off: nothing is written or checked.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterable, Mapping
from typing import Any, Final

import attrs

from greenroom.clock import Clock
from greenroom.config import RuntimeConfig
from greenroom.errors import Conflict, LeaseHeld, NotFound, StorageError
from greenroom.ids import next_hex_id
from greenroom.store import ExpectMeta, Store, UpdateMeta

__all__ = ["LEASE_OWNER", "LEASE_UNTIL", "Lease", "Leases", "default_host_id"]

log = logging.getLogger("greenroom.executions")

LEASE_OWNER: Final = "lease:owner"
"""The metadata key naming the host that drives the execution."""
LEASE_UNTIL: Final = "lease:until_ms"
"""The metadata key holding when that host's lease ends (Unix ms; 0: given up)."""


def default_host_id() -> str:
    """`<hostname>:<pid>:<random>`: unique per runtime, readable in an error."""
    return f"{socket.gethostname()}:{os.getpid()}:{next_hex_id()[-6:]}"


@attrs.frozen
class Lease:
    """A lease as an execution's metadata holds it."""

    owner: str
    until_ms: int


def lease_of(meta: Mapping[str, Any]) -> Lease | None:
    """The lease in `meta`, or None (none, or not readable: then anyone may take it)."""
    owner, until = meta.get(LEASE_OWNER), meta.get(LEASE_UNTIL)
    if isinstance(owner, str) and type(until) is int:
        return Lease(owner, until)
    return None


class Leases:
    """This runtime's leases on durable executions (on when the store is shared)."""

    def __init__(self, store: Store, clock: Clock, config: RuntimeConfig, kind: str) -> None:
        """Leases of `kind` objects in `store`, as host `config.host_id`."""
        self._store = store
        self._clock = clock
        self._kind = kind
        self.enabled = store.dialect != "sqlite"
        self.host_id = config.host_id or default_host_id()
        self._lease_ms = int(config.lease_s * 1000)
        self.renew_every_s = config.lease_s / 3

    def initial(self) -> dict[str, Any]:
        """The lease keys a new execution's metadata starts with (none when off)."""
        if not self.enabled:
            return {}
        return {LEASE_OWNER: self.host_id, LEASE_UNTIL: self._clock.now_ms() + self._lease_ms}

    def given_up(self) -> dict[str, Any]:
        """The keys that give this host's lease up (when the execution leaves memory
        with a write the journal fences: only its driver makes it)."""
        return {LEASE_UNTIL: 0} if self.enabled else {}

    def expect(self, session_id: str) -> list[ExpectMeta]:
        """The condition a write of this host's to `session_id` carries: it holds the
        lease (none when off)."""
        if not self.enabled:
            return []
        return [ExpectMeta(self._kind, session_id, LEASE_OWNER, self.host_id)]

    def take(self, session_id: str, meta: Mapping[str, Any]) -> None:
        """Take the lease on `session_id` (whose stored metadata is `meta`) for this
        host; `LeaseHeld` if another host holds one that has not run out."""
        if not self.enabled:
            return
        now = self._clock.now_ms()
        held = lease_of(meta)
        if held is not None and held.owner != self.host_id and held.until_ms > now:
            raise LeaseHeld(session_id, held.owner, held.until_ms)
        mine = {LEASE_OWNER: self.host_id, LEASE_UNTIL: now + self._lease_ms}
        try:
            # The lease as read, owner and term: a renewal meanwhile keeps it its owner's.
            self._store.write_atomic(
                [UpdateMeta(self._kind, session_id, mine)],
                expect=[
                    ExpectMeta(self._kind, session_id, LEASE_OWNER, meta.get(LEASE_OWNER)),
                    ExpectMeta(self._kind, session_id, LEASE_UNTIL, meta.get(LEASE_UNTIL)),
                ],
            )
        except Conflict:
            # Another host took it over first: its lease stands.
            found = self._store.find_object(self._kind, session_id)
            lease = lease_of(found.meta) if found is not None else None
            if lease is None:
                raise
            raise LeaseHeld(session_id, lease.owner, lease.until_ms) from None
        if held is not None and held.owner != self.host_id:
            log.info(
                "execution %s: took over from host %r, whose lease ran out at %d",
                session_id,
                held.owner,
                held.until_ms,
            )

    def held_elsewhere(self, meta_owner: object, meta_until: object) -> bool:
        """Whether a lease read as (`owner`, `until_ms`) is another host's and running."""
        return (
            self.enabled
            and isinstance(meta_owner, str)
            and meta_owner != self.host_id
            and type(meta_until) is int
            and meta_until > self._clock.now_ms()
        )

    def renew(self, session_ids: Iterable[str]) -> int:
        """Renew this host's leases on `session_ids`; how many it still held."""
        return self._set(session_ids, self._clock.now_ms() + self._lease_ms)

    def give_up(self, session_ids: Iterable[str]) -> int:
        """Give up this host's leases on `session_ids` (the runtime closes)."""
        return self._set(session_ids, 0)

    def _set(self, session_ids: Iterable[str], until: int) -> int:
        ids = list(session_ids)
        if not self.enabled or not ids:
            return 0
        try:
            return self._store.renew_leases(
                self._kind, ids, self.host_id, LEASE_OWNER, LEASE_UNTIL, until
            )
        except (StorageError, NotFound) as error:
            log.warning("executions: could not renew %d lease(s): %s", len(ids), error)
            return 0
