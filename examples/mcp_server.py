"""Two strategies served to MCP clients: a judge panel and a draft-critique-revise loop.

Serve them to a real client (Claude Desktop, an IDE, any MCP host) from this folder:

    greenroom mcp --db host.db --strategies mcp_server

Run this file to see them work: it starts that server as a child process and calls
both tools with the MCP SDK's own client, whose "LLM" here is a few canned rules.

    python examples/mcp_server.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import mcp.types as types
from mcp.client import Client
from mcp.client.session import ClientRequestContext
from mcp.client.stdio import StdioServerParameters

import greenroom
from greenroom import AsyncExecutionContext, LlmRequest

JUDGES = ("a strict logician", "a pragmatic engineer", "a skeptical reviewer")


@greenroom.strategy("judge_panel")
async def judge_panel(ctx: AsyncExecutionContext, claim: str, judges: int = 3) -> dict[str, Any]:
    """Ask a panel of judges, in one round, whether a claim holds; the majority wins.

    A tie is broken by one more question that shows the panel's reasons.
    """
    personas = [JUDGES[i % len(JUDGES)] for i in range(judges)]
    verdicts = await ctx.llm_batch(
        [
            LlmRequest(
                f"Does this claim hold? Answer 'yes' or 'no', then one sentence why.\n{claim}",
                system=f"You are {persona}.",
                max_tokens=80,
            )
            for persona in personas
        ]
    )
    votes = Counter("yes" if v.strip().lower().startswith("yes") else "no" for v in verdicts)
    ctx.metric("yes", votes["yes"])
    if votes["yes"] == votes["no"]:
        reasons = "\n".join(
            f"- {persona}: {v}" for persona, v in zip(personas, verdicts, strict=True)
        )
        tie = await ctx.llm(f"The panel is split on: {claim}\n{reasons}\nDecide: yes or no?")
        decision = "yes" if tie.strip().lower().startswith("yes") else "no"
    else:
        decision = votes.most_common(1)[0][0]
    return {"claim": claim, "decision": decision, "votes": dict(votes), "verdicts": verdicts}


@greenroom.strategy("draft_critique_revise")
async def draft_critique_revise(
    ctx: AsyncExecutionContext, task: str, max_rounds: int = 3
) -> dict[str, Any]:
    """Draft a text, then critique and revise it until the critic has nothing to add."""
    draft = await ctx.llm(f"Write a first draft: {task}", max_tokens=400)
    history = []
    for _ in range(max_rounds):
        critique = await ctx.llm(
            f"Critique this draft for: {task}\n---\n{draft}\n---\n"
            "List concrete problems, or answer exactly LGTM.",
            system="You are an exacting editor.",
        )
        history.append(critique)
        if critique.strip() == "LGTM":
            break
        draft = await ctx.llm(
            f"Revise the draft to fix these problems:\n{critique}\n---\n{draft}", max_tokens=400
        )
    return {"text": draft, "critiques": history}


# -- the demo: a client with a canned "LLM" -----------------------------------------------


async def canned_llm(
    context: ClientRequestContext, params: types.CreateMessageRequestParams
) -> types.CreateMessageResult:
    """Stands in for the client's model: a few rules, enough to show the flow."""
    prompt = "".join(
        block.text
        for message in params.messages
        for block in message.content_as_list
        if isinstance(block, types.TextContent)
    )
    system = params.system_prompt or ""
    if prompt.startswith("Does this claim hold?"):
        text = "no, it ignores friction." if "skeptical" in system else "yes, it follows."
    elif prompt.startswith("Critique"):
        text = "LGTM" if "(revised)" in prompt else "Too vague: say what the tide is."
    elif prompt.startswith("Revise"):
        text = "Tides are the sea's rise and fall, pulled by the moon. (revised)"
    else:
        text = "Tides happen."
    return types.CreateMessageResult(
        role="assistant", content=types.TextContent(text=text), model="canned"
    )


async def demo(db: Path) -> None:
    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "greenroom.cli", "mcp", "--db", str(db), "--strategies", "mcp_server"],
        cwd=str(Path(__file__).resolve().parent),
    )
    async with Client(server, sampling_callback=canned_llm) as client:
        tools = sorted(tool.name for tool in (await client.list_tools()).tools)
        print("tools:", ", ".join(tools))
        panel = await client.call_tool("judge_panel", {"claim": "A heavier ball falls faster."})
        verdict = panel.structured_content or {}
        print("judge_panel:", json.dumps(verdict["result"]["votes"]), verdict["result"]["decision"])
        assert verdict["result"] == {
            "claim": "A heavier ball falls faster.",
            "decision": "yes",
            "votes": {"yes": 2, "no": 1},
            "verdicts": ["yes, it follows.", "yes, it follows.", "no, it ignores friction."],
        }
        text = await client.call_tool("draft_critique_revise", {"task": "explain tides"})
        final = text.structured_content or {}
        written = final["result"]
        print("draft_critique_revise:", written["text"])
        print(f"  after {len(written['critiques'])} critiques, {final['stats']['rounds']} rounds")
        assert written["critiques"] == ["Too vague: say what the tide is.", "LGTM"]


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as folder:
        anyio.run(demo, Path(folder) / "host.db")
