"""The `requestState` of a multi round-trip tool call: the session and round it names,
signed with a key kept in the store.

A state is `<payload>.<mac>`, both base64url: the payload is JSON naming the tool, a
digest of the call's arguments, the execution session and the round its input requests
belong to; the MAC is HMAC-SHA256 of the payload under the store's key. Any server
process on the same database holds the key, so a client's retry goes on wherever it
lands, after a restart too. A state that does not verify, or that names another tool
or other arguments, is `InvalidRequestState`.

A state also carries the answers the call that made it fed (`carried`): that call
answered before their journal write was committed, so after a crash the next retry
feeds them again before its own. Replaying a state is harmless: the answers it
carries are fed again, which changes nothing if they were given already (and is
refused if they differ).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from greenroom.errors import InvalidRequestState
from greenroom.store import Store

__all__ = [
    "KEY_ID",
    "KEY_KIND",
    "CarriedAnswer",
    "RequestState",
    "StateSigner",
    "arguments_digest",
    "can_carry",
]

KEY_KIND = "mcp_server"
"""The store object kind holding the server's signing key."""
KEY_ID = "request_state"
"""Its id."""

_VERSION = 2  # 1: without carried answers (still verified)
# Carried answers are LLM responses: allow many, refuse what no retry needs.
_MAX_STATE_CHARS = 16 * 1024 * 1024
_MAC_PREFIX = b"greenroom-mcp-state|"

CarriedAnswer = tuple[str, str, Mapping[str, Any] | None]
"""An answer a state carries: `(query_id, response, usage or None)`, as `feed_many`
takes it."""


@attrs.frozen
class RequestState:
    """What a verified `requestState` names."""

    tool: str
    session_id: str
    round: int
    carried: tuple[CarriedAnswer, ...] = ()
    """The answers fed by the call that made this state, maybe not yet committed."""
    digest: str = ""
    """The digest of the call's arguments (`arguments_digest`)."""


class StateSigner:
    """Signs and verifies request states with the store's key (made once, kept)."""

    def __init__(self, store: Store) -> None:
        obj, _created = store.ensure_object(KEY_KIND, KEY_ID, {"key": secrets.token_hex(32)})
        key = obj.meta.get("key")
        if not isinstance(key, str) or len(key) < 64:
            raise InvalidRequestState(
                f"the store's MCP signing key ({KEY_KIND} {KEY_ID!r}) is damaged; delete "
                "that object to make a new one (open tool calls then start again)"
            )
        # HMAC-SHA256 with its keyed inner and outer hashes made once: each MAC copies
        # them (a third of the cost of keying them again per call).
        raw = bytes.fromhex(key)
        if len(raw) > 64:  # (as HMAC does with a key longer than SHA-256's block)
            raw = hashlib.sha256(raw).digest()
        block = raw.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in block) + _MAC_PREFIX)
        self._outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in block))

    def sign(
        self,
        tool: str,
        arguments: dict[str, Any],
        session_id: str,
        round_no: int,
        *,
        carried: Sequence[CarriedAnswer] = (),
        digest: str | None = None,
    ) -> str:
        """The state of `tool`'s call with `arguments`, paused at `round_no`, carrying
        the answers just fed (`digest`: `arguments_digest(arguments)`, if known)."""
        fields: dict[str, Any] = {
            "v": _VERSION,
            "t": tool,
            "a": arguments_digest(arguments) if digest is None else digest,
            "s": session_id,
            "r": round_no,
        }
        if carried:
            fields["c"] = [[query_id, text, usage] for query_id, text, usage in carried]
        payload = json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def verify(self, state: object, tool: str, arguments: dict[str, Any]) -> RequestState:
        """What `state` names; `InvalidRequestState` unless this server issued it for
        `tool` called with `arguments`."""
        if not isinstance(state, str) or len(state) > _MAX_STATE_CHARS or state.count(".") != 1:
            raise InvalidRequestState("the requestState is not one this server issues")
        encoded, mac = state.split(".")
        try:
            payload = _unb64(encoded)
            given = _unb64(mac)
        except (binascii.Error, ValueError):
            raise InvalidRequestState("the requestState is not one this server issues") from None
        if not hmac.compare_digest(given, self._mac(payload)):
            raise InvalidRequestState(
                "the requestState was not issued by this server, or was altered"
            )
        fields = json.loads(payload)
        digest = arguments_digest(arguments)
        if fields.get("t") != tool or fields.get("a") != digest:
            raise InvalidRequestState(
                f"the requestState belongs to another call (tool {fields.get('t')!r} with "
                "other arguments): retry with the arguments of the call that returned it"
            )
        carried = tuple(
            (str(query_id), str(text), usage if isinstance(usage, dict) else None)
            for query_id, text, usage in fields.get("c", ())
        )
        return RequestState(str(fields["t"]), str(fields["s"]), int(fields["r"]), carried, digest)

    def _mac(self, payload: bytes) -> bytes:
        # HMAC-SHA256(key, _MAC_PREFIX + payload), as hmac.digest computes it.
        inner = self._inner.copy()
        inner.update(payload)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


def can_carry(carried: Sequence[CarriedAnswer]) -> bool:
    """Whether a state can carry these answers: they take at most half the size a state
    may have (a round with bigger answers is fed durably and carries none)."""
    budget = _MAX_STATE_CHARS // 2
    # A character takes at most 6 bytes in JSON (an escape), 8 in base64.
    rough = sum(len(query_id) + len(text) + 64 for query_id, text, _usage in carried)
    if 8 * rough <= budget:
        return True
    fields = [[query_id, text, usage] for query_id, text, usage in carried]
    encoded = json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()
    return 4 * (len(encoded) + 512) // 3 <= budget


def arguments_digest(arguments: dict[str, Any]) -> str:
    """A tool call's arguments, digested (what a state is bound to)."""
    canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
