"""The strategy the lease tests drive on several hosts (importable by worker processes)."""

from __future__ import annotations

from typing import Any


async def answers(ctx: Any, rounds: int) -> list[str]:
    """Ask `rounds` questions, one a round; the answers, in order."""
    got = []
    for index in range(rounds):
        got.append(await ctx.llm(f"question {index}"))
    return got
