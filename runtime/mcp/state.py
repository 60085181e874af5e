"""The `requestState` of a multi round-trip tool call: the session and round it names,
signed with a key kept in the store.

A state is `<payload>.<mac>`, both base64url: the payload is JSON naming the tool, a
digest of the call's arguments, the execution session and the round its input requests
belong to; the MAC is HMAC-SHA256 of the payload under the store's key. Any server
process on the same database holds the key, so a client's retry goes on wherever it
lands, after a restart too. A state that does not verify, or that names another tool
or other arguments, is `InvalidRequestState`. Replaying a state is harmless: the
answers it carries are fed again, which changes nothing if they were given already
(and is refused if they differ).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from typing import Any

import attrs

from greenroom.errors import InvalidRequestState
from greenroom.store import Store

__all__ = ["KEY_ID", "KEY_KIND", "RequestState", "StateSigner"]

KEY_KIND = "mcp_server"
"""The store object kind holding the server's signing key."""
KEY_ID = "request_state"
"""Its id."""

_VERSION = 1
_MAX_STATE_CHARS = 4096


@attrs.frozen
class RequestState:
    """What a verified `requestState` names."""

    tool: str
    session_id: str
    round: int


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
        self._key = bytes.fromhex(key)

    def sign(self, tool: str, arguments: dict[str, Any], session_id: str, round_no: int) -> str:
        """The state of `tool`'s call with `arguments`, paused at `round_no`."""
        payload = json.dumps(
            {
                "v": _VERSION,
                "t": tool,
                "a": _digest(arguments),
                "s": session_id,
                "r": round_no,
            },
            separators=(",", ":"),
        ).encode()
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
        if fields.get("t") != tool or fields.get("a") != _digest(arguments):
            raise InvalidRequestState(
                f"the requestState belongs to another call (tool {fields.get('t')!r} with "
                "other arguments): retry with the arguments of the call that returned it"
            )
        return RequestState(str(fields["t"]), str(fields["s"]), int(fields["r"]))

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, b"greenroom-mcp-state|" + payload, hashlib.sha256).digest()


def _digest(arguments: dict[str, Any]) -> str:
    canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
