"""Leases: which host serves an object (a durable execution, a block, the sweep) when
several hosts share a store.

On a shared store (PostgreSQL), such an object is served by one host at a time: the
one whose lease its metadata names (`lease:owner`, `lease:until_ms`). A host takes the
lease when it first serves the object (for an execution: starts it or brings it back
from its journal; for a block: connects to it); it renews the leases of what it serves
every third of `RuntimeConfig.lease_s`, and gives them up when it lets go (an execution
leaves memory, the runtime closes: `until_ms` 0). Another host's call raises
`LeaseHeld`, naming the owner; once a lease has run out (its host died), the first host
to call takes it over (a write that expects the lease as read, owner and term: of two
hosts taking over at once, one wins; a renewal in between keeps it its owner's).

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

__all__ = ["LEASE_OWNER", "LEASE_UNTIL", "Lease", "Leases", "default_host_id", "lease_of"]

log = logging.getLogger("greenroom.leases")

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
    """This runtime's leases on objects of one kind (on when the store is shared)."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        config: RuntimeConfig,
        kind: str,
        *,
        lease_s: float | None = None,
    ) -> None:
        """Leases of `kind` objects in `store`, as host `config.host_id`, each
        `lease_s` long (default `config.lease_s`)."""
        self._store = store
        self._clock = clock
        self._kind = kind
        self.enabled = store.dialect != "sqlite"
        self.host_id = config.host_id or default_host_id()
        term = config.lease_s if lease_s is None else lease_s
        self._lease_ms = int(term * 1000)
        self.renew_every_s = term / 3

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
            raise LeaseHeld(session_id, held.owner, held.until_ms, self._kind)
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
            raise LeaseHeld(session_id, lease.owner, lease.until_ms, self._kind) from None
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

    def renew(self, object_ids: Iterable[str]) -> list[str]:
        """Renew this host's leases on `object_ids`; those it no longer held (another
        host took them over: this host must let them go). None lost if the store failed
        (the next renewal tries again; the leases run out meanwhile if it keeps failing)."""
        ids = list(object_ids)
        renewed = self._set(ids, self._clock.now_ms() + self._lease_ms)
        if renewed is None:
            return []
        kept = set(renewed)
        lost = [object_id for object_id in ids if object_id not in kept]
        for object_id in lost:
            log.warning(
                "%s %s: another host took its lease over; this host lets it go",
                self._kind,
                object_id,
            )
        return lost

    def give_up(self, object_ids: Iterable[str]) -> None:
        """Give up this host's leases on `object_ids` (it lets them go, or closes)."""
        self._set(list(object_ids), 0)

    def _set(self, ids: list[str], until: int) -> list[str] | None:
        if not self.enabled or not ids:
            return ids
        try:
            return self._store.renew_leases(
                self._kind, ids, self.host_id, LEASE_OWNER, LEASE_UNTIL, until
            )
        except (StorageError, NotFound) as error:
            log.warning("%s: could not renew %d lease(s): %s", self._kind, len(ids), error)
            return None
