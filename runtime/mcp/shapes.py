"""The JSON the MCP tools answer with, and the sampling requests of a paused round."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import mcp.types as types

from greenroom.executions.records import FeedResult, LlmQuery

__all__ = [
    "FLAG_META",
    "final_json",
    "input_required",
    "round_of",
    "round_of_id",
    "sampling_request",
    "step_json",
    "text_of",
    "tool_error",
    "tool_result",
    "usage_of",
]

FLAG_META = "greenroom/queries"
"""The `_meta` key of an input-required result that says what its requests are: the
session (`session_id`, what `greenroom_status` and `greenroom_cancel` take) and each
query's flags by request key (`{"grounded", "underspecified"}`). On the result, not on
each sampling request: the 2026-07-28 result schema drops an input request's `_meta`."""

_QUERY_ID = re.compile(r"q-(\d+)-\d+")


def step_json(step: FeedResult) -> dict[str, Any]:
    """A step in the seed's shapes, always with `session_id`; `queries` whenever the
    session waits for answers (the single-query keys beside it when there is one)."""
    out = step.to_json()
    out["session_id"] = step.session_id
    if step.status in ("needs_response", "accepted"):
        out["queries"] = [query.to_json() for query in step.queries]
    return out


def final_json(step: FeedResult) -> dict[str, Any]:
    """A completed strategy tool call's structured result."""
    out = step.to_json()
    return {
        "session_id": step.session_id,
        "status": "completed",
        "result": out["result"],
        "stats": out["stats"],
    }


def round_of(queries: tuple[LlmQuery, ...]) -> int:
    """The round the queries belong to (from their ids, `q-<round>-<index>`)."""
    for query in queries:
        found = round_of_id(query.id)
        if found is not None:
            return found
    return 0


def round_of_id(query_id: str) -> int | None:
    """The round of a query id (`q-<round>-<index>`); None for another shape."""
    found = _QUERY_ID.fullmatch(query_id)
    return None if found is None else int(found.group(1))


def input_required(
    session_id: str, queries: tuple[LlmQuery, ...], state: str
) -> types.InputRequiredResult:
    """The input-required result of a paused round: one sampling request per query
    (keyed by its id), the signed `state`, and what they are in `_meta`."""
    flags = {
        query.id: {"grounded": query.grounded, "underspecified": query.underspecified}
        for query in queries
    }
    return types.InputRequiredResult(
        input_requests={query.id: sampling_request(query) for query in queries},
        request_state=state,
        _meta={FLAG_META: {"session_id": session_id, "queries": flags}},
    )


def sampling_request(query: LlmQuery) -> types.CreateMessageRequest:
    """One `sampling/createMessage` input request for `query`: its prompt as the user
    message, `system` as `systemPrompt`, `max_tokens` as `maxTokens`."""
    return types.CreateMessageRequest(
        params=types.CreateMessageRequestParams(
            messages=[
                types.SamplingMessage(role="user", content=types.TextContent(text=query.prompt))
            ],
            system_prompt=query.system,
            max_tokens=query.max_tokens,
        )
    )


def text_of(response: Any) -> str:
    """The text of a sampling result (its text blocks, joined)."""
    if isinstance(response, types.CreateMessageResult | types.CreateMessageResultWithTools):
        blocks = response.content if isinstance(response.content, list) else [response.content]
        texts = [block.text for block in blocks if isinstance(block, types.TextContent)]
        if texts:
            return "".join(texts)
        raise ValueError("the sampling result holds no text")
    raise ValueError(f"expected a sampling result, got {type(response).__name__}")


def usage_of(response: Any) -> Mapping[str, Any] | None:
    """Token usage a client put in a sampling result's `_meta` (`usage`), if any."""
    meta = getattr(response, "meta", None)
    usage = meta.get("usage") if isinstance(meta, dict) else None
    return usage if isinstance(usage, dict) else None


def tool_result(structured: dict[str, Any]) -> types.CallToolResult:
    """A successful tool result: structured content, and the same as JSON text."""
    return types.CallToolResult(
        content=[types.TextContent(text=json.dumps(structured, ensure_ascii=False))],
        structured_content=structured,
    )


def tool_error(text: str) -> types.CallToolResult:
    """A tool error the client's model reads."""
    return types.CallToolResult(content=[types.TextContent(text=text)], is_error=True)
