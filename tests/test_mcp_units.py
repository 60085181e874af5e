"""`greenroom.mcp`'s parts without a server: tool schemas and the signed requestState."""

from __future__ import annotations

import base64
import hmac
import json
from pathlib import Path
from typing import Any, Literal, TypedDict

import pytest

pytest.importorskip("mcp")

from greenroom import FakeClock, Runtime
from greenroom.errors import InvalidInput, InvalidRequestState
from greenroom.mcp import StateSigner
from greenroom.mcp.schemas import input_schema_of, output_schema_of
from greenroom.mcp.state import KEY_ID, KEY_KIND, arguments_digest, can_carry


class Point(TypedDict):
    x: int
    y: float


async def typed(
    ctx: Any,
    text: str,
    count: int,
    ratio: float,
    flag: bool,
    tags: list[str],
    scores: dict[str, float],
    mode: Literal["fast", "slow"],
    maybe: str | None,
    point: Point,
    pair: tuple[int, str],
    anything: Any,
    untyped,  # type: ignore[no-untyped-def]
    *,
    limit: int = 5,
    options: dict[str, Any] | None = None,
) -> list[str]:
    return []


def test_a_signature_becomes_a_json_schema() -> None:
    schema = input_schema_of(typed)
    props = schema["properties"]
    assert props["text"] == {"type": "string"}
    assert props["count"] == {"type": "integer"}
    assert props["ratio"] == {"type": "number"}
    assert props["flag"] == {"type": "boolean"}
    assert props["tags"] == {"type": "array", "items": {"type": "string"}}
    assert props["scores"] == {"type": "object", "additionalProperties": {"type": "number"}}
    assert props["mode"] == {"enum": ["fast", "slow"]}
    assert props["maybe"] == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    assert props["point"] == {
        "type": "object",
        "properties": {"x": {"type": "integer"}, "y": {"type": "number"}},
        "required": ["x", "y"],
    }
    assert props["pair"]["prefixItems"] == [{"type": "integer"}, {"type": "string"}]
    assert (props["anything"], props["untyped"]) == ({}, {})
    assert props["limit"] == {"type": "integer", "default": 5}
    assert schema["required"] == [
        "text", "count", "ratio", "flag", "tags", "scores", "mode", "maybe", "point",
        "pair", "anything", "untyped",
    ]  # fmt: skip
    assert schema["additionalProperties"] is False
    output = output_schema_of(typed)
    assert output["properties"]["result"] == {"type": "array", "items": {"type": "string"}}
    assert output["required"] == ["session_id", "status", "result", "stats"]


def test_a_signature_a_tool_cannot_call_is_refused() -> None:
    async def positional(ctx: Any, *items: str) -> None: ...

    with pytest.raises(InvalidInput, match="explicit input_schema"):
        input_schema_of(positional)

    async def kwargs(ctx: Any, **anything: Any) -> None: ...

    assert input_schema_of(kwargs)["additionalProperties"] is True


def test_a_state_verifies_only_for_its_call_and_across_runtimes(tmp_path: Path) -> None:
    with Runtime.open(tmp_path / "s.db", clock=FakeClock()) as rt:
        signer = StateSigner(rt.store)
        state = signer.sign("panel", {"question": "q"}, "s-1", 2)
        named = signer.verify(state, "panel", {"question": "q"})
        assert (named.session_id, named.round, named.tool) == ("s-1", 2, "panel")
        for bad in ("", "x", "a.b.c", state + "A", state.replace(".", "X."), 42, None):
            with pytest.raises(InvalidRequestState):
                signer.verify(bad, "panel", {"question": "q"})
        with pytest.raises(InvalidRequestState, match="another call"):
            signer.verify(state, "panel", {"question": "other"})
        with pytest.raises(InvalidRequestState, match="another call"):
            signer.verify(state, "other", {"question": "q"})
    with Runtime.open(tmp_path / "s.db", clock=FakeClock()) as again:  # the key is kept
        assert StateSigner(again.store).verify(state, "panel", {"question": "q"}).round == 2
    with (
        Runtime.open(tmp_path / "other.db", clock=FakeClock()) as other,
        pytest.raises(InvalidRequestState, match="not issued by this server"),
    ):
        StateSigner(other.store).verify(state, "panel", {"question": "q"})


def test_a_state_carries_the_answers_it_was_made_after_and_keeps_them_signed(
    tmp_path: Path,
) -> None:
    carried = [
        ("q-1-0", "yes " * 5_000, {"input_tokens": 7, "output_tokens": 3}),
        ("q-1-1", "no: \u00e9\u4e2d\U0001f600", None),
    ]
    with Runtime.open(tmp_path / "s.db", clock=FakeClock()) as rt:
        signer = StateSigner(rt.store)
        state = signer.sign("panel", {"question": "q"}, "s-1", 2, carried=carried)
        named = signer.verify(state, "panel", {"question": "q"})
        assert named.carried == tuple(carried)
        assert (named.session_id, named.round) == ("s-1", 2)
        payload, mac = state.split(".")
        # Another answer slipped in: the MAC no longer matches.
        tampered = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        tampered = tampered.replace(b"yes", b"NO!", 1)
        forged = base64.urlsafe_b64encode(tampered).rstrip(b"=").decode() + "." + mac
        with pytest.raises(InvalidRequestState, match="altered"):
            signer.verify(forged, "panel", {"question": "q"})
        assert signer.verify(signer.sign("t", {}, "s", 1), "t", {}).carried == ()


def test_the_state_mac_is_hmac_sha256_and_version_1_states_still_verify(tmp_path: Path) -> None:
    with Runtime.open(tmp_path / "s.db", clock=FakeClock()) as rt:
        signer = StateSigner(rt.store)
        key = bytes.fromhex(rt.store.get_object(KEY_KIND, KEY_ID).meta["key"])
        # A state as the first version wrote it (no carried answers).
        payload = json.dumps(
            {"v": 1, "t": "panel", "a": arguments_digest({"question": "q"}), "s": "s-1", "r": 3},
            separators=(",", ":"),
        ).encode()
        mac = hmac.digest(key, b"greenroom-mcp-state|" + payload, "sha256")
        state = f"{_b64(payload)}.{_b64(mac)}"
        named = signer.verify(state, "panel", {"question": "q"})
        assert (named.session_id, named.round, named.carried) == ("s-1", 3, ())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_state_carries_answers_up_to_half_its_size() -> None:
    assert can_carry([("q-1-0", "a" * 1_000_000, None)])
    assert not can_carry([("q-1-0", "a" * 7_000_000, None)])
    # Escaped characters count as what they take in the state (6 bytes each here).
    assert can_carry([("q-1-0", "\x01" * 600_000, None)])
    assert not can_carry([("q-1-0", "\x01" * 1_100_000, None)])
