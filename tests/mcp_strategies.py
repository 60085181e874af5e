"""Strategies the MCP tests serve (`greenroom mcp --strategies tests.mcp_strategies`)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import greenroom
from greenroom import LlmRequest

# The server process says who it is, so a test can kill it (kill -9) between rounds.
if _PID_FILE := os.environ.get("GREENROOM_TEST_PID_FILE"):
    Path(_PID_FILE).write_text(str(os.getpid()))


@greenroom.strategy("panel")
async def panel(ctx: Any, question: str, judges: int = 2) -> dict[str, Any]:
    """Ask a panel of judges at once, then have their votes summed up."""
    votes = await ctx.llm_batch(
        [LlmRequest(f"judge {i}: {question}", system="Answer yes or no.") for i in range(judges)]
    )
    summary = await ctx.llm(f"sum up the votes {votes}", max_tokens=64)
    return {"votes": votes, "summary": summary}


@greenroom.strategy("fails")
async def fails(ctx: Any, topic: str) -> str:
    """Asks once, then fails."""
    await ctx.llm(f"about {topic}?")
    raise ValueError(f"no good answer about {topic}")


@greenroom.strategy(
    "schema",
    input_schema={
        "type": "object",
        "properties": {"words": {"type": "array", "items": {"type": "string"}, "minItems": 1}},
        "required": ["words"],
    },
    description="Joins the words the LLM gives back.",
)
async def with_schema(ctx: Any, **arguments: Any) -> str:
    return str(await ctx.llm(" ".join(arguments["words"])))


@greenroom.strategy("chatty")
async def chatty(ctx: Any, text: str) -> str:
    """Prints to stdout, as does a child process, then asks once (none of it may reach
    the protocol's wire)."""
    print("stray output on stdout", flush=True)
    subprocess.run(["echo", "a child's output"], check=True)
    return str(await ctx.llm(text))
