"""A multi-agent host on greenroom: panes, strategies, transcripts, a live UI, a week on.

Run it with `make demo` (or `.venv/bin/python examples/multi_agent_host.py`). It plays a
host that runs many coding agents at once, on a fake clock so that eight days pass in
a few seconds, in five parts:

1. 50 agents, real processes (`_agent.py`) each under a pseudo-terminal, stream NDJSON
   output into their panes; one crashes, one runs on until the host stops it;
2. 10 executions ask three agents in one batch, then a judge, answered by a scripted
   LLM through `feed` / `feed_many`; one is cancelled, one fails in its strategy;
3. 5 transcripts run until they compact; one is branched with `append_leaf`, closed
   and resumed;
4. a UI follows a pane's events, disconnects, catches up from its cursor, then comes
   back too late and is told `trimmed`;
5. the clock jumps 8 days: the sweep archives the idle panes and prunes the archives
   to a small budget.

Every part checks what it prints: a broken runtime makes the demo exit non-zero. It
leaves `demo.db`, `demo.db.archives/` and `demo.db.transcripts/` in the current folder
(removing those of a previous run first). What the agents print and the LLM are
scripted in `_demo_world.py`.

`make live` (`--live`) runs the world without an end instead, on the real clock: eight
agents that keep working (and crash now and then, and are started again), served with
`greenroom.web` on http://127.0.0.1:8765/ (the URL is printed) until Ctrl-C.
"""

from __future__ import annotations

import itertools
import json
import shutil
import sys
import threading
from pathlib import Path
from typing import Any

import attrs
from _demo_world import (
    AGENTS,
    PANEL_TASKS,
    judge_prompt,
    line_stream,
    llm_answer,
    llm_usage,
    pane_lines,
    parse_verdict,
    summarize,
    turn_lines,
    turn_texts,
)

import greenroom.processes
import greenroom.web
from greenroom import (
    AssistantMessage,
    Block,
    CompactionConfig,
    CompactionSummary,
    FakeClock,
    FeedResult,
    Gap,
    LlmRequest,
    ObservationEvent,
    Runtime,
    RuntimeConfig,
    Subscription,
    ToolCall,
    ToolResult,
    Transcript,
    TurnResult,
    Usage,
    UserMessage,
)
from greenroom.errors import NotFound, Timeout
from greenroom.pricing import BUILTIN_PRICING

DB = Path("demo.db")
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY_S = 86_400
PANES = 50
BUSY_PANES = 10  # these agents are still at work four days later: the sweep spares them
UI_PANE = "agent-07"
CRASHING = 13  # this pane's agent dies of SIGSEGV once it has printed its turns
LONG_RUNNING = 29  # this one runs on until the host stops it
AGENT = Path(__file__).resolve().with_name("_agent.py")
ARCHIVE_BUDGET = 12_000  # bytes: small, so the sweep has to prune
REPLAY_LIMIT = 100  # events a session's replay buffer holds
MODEL = "anthropic:claude-sonnet-4-5"
COMPACTION = CompactionConfig(
    context_window_tokens=8_000,
    threshold_tokens=2_500,
    keep_recent_tokens=1_000,
    summarizer=summarize,  # a real host would ask its LLM for the summary
)
TurnMessage = UserMessage | AssistantMessage | ToolResult


def check(condition: bool, message: str) -> None:
    """Stop the demo with `message` (exit status 1) unless `condition` holds."""
    if not condition:
        raise SystemExit(f"demo check failed: {message}")


def section(title: str) -> None:
    """Print a section heading of the report."""
    print(f"\n== {title}")


def fresh_start(db: Path) -> None:
    """Remove what a previous run left: the database, its WAL files and its folders."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    for suffix in (".archives", ".transcripts"):
        shutil.rmtree(f"{db}{suffix}", ignore_errors=True)


def shown(path: Path) -> Path:
    """`path` relative to the current folder when it lies inside it (shorter to read)."""
    try:
        return path.relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def pane_id(n: int) -> str:
    """The block id of agent pane `n`."""
    return f"agent-{n:02d}"


def tokens_of(lines: list[bytes]) -> int:
    """The block's token estimate for `lines`: bytes // 4 per line, newline excluded."""
    return sum((len(line) - 1) // 4 for line in lines)


# -- 1. agent panes -------------------------------------------------------------------------


def agent_command(n: int, mode: str) -> list[str]:
    """The argv of pane `n`'s agent program (`_agent.py`, a real process)."""
    return [sys.executable, str(AGENT), str(n), mode]


def stream_panes(rt: Runtime, clock: FakeClock) -> dict[str, Block]:
    """50 agent programs run at once, each under a pseudo-terminal into its pane."""
    section("1. Agent processes")
    modes = {CRASHING: "crash", LONG_RUNNING: "long"}
    long_id = pane_id(LONG_RUNNING)
    watcher = rt.replay.follow(rt.replay.current_cursor(long_id))  # its lines, as they come
    agents = {
        pane_id(n): greenroom.processes.spawn(rt, pane_id(n), agent_command(n, modes.get(n, "run")))
        for n in range(PANES)
    }
    panes = {block_id: rt.blocks.get(block_id) for block_id in agents}
    long_run = agents[long_id]
    # Every agent but the long one ends by itself; the long one is still at work once
    # it has printed its turns.
    statuses = {
        block_id: agent.wait(timeout=60)
        for block_id, agent in agents.items()
        if agent is not long_run
    }
    with watcher:
        for _ in pane_lines(LONG_RUNNING):
            check(isinstance(watcher.next_item(timeout=60), ObservationEvent), "a gap")
    check(long_run.returncode is None, "the long-running agent ended by itself")
    long_run.terminate()  # the host stops it
    statuses[long_id] = long_run.wait(timeout=60)

    lines = tokens = events = 0
    for n, (block_id, block) in enumerate(panes.items()):
        expected = pane_lines(n)
        stats = block.stats()
        check(stats.line_count == len(expected), f"{block_id} counted {stats.line_count} lines")
        check(stats.token_estimate == tokens_of(expected), f"{block_id} token estimate")
        check(block.meta()["session:line_count"] == stats.line_count, f"{block_id} not flushed")
        check(block.read_output().data == b"".join(expected), f"{block_id} output differs")
        check(block.meta()["session:exit_code"] == statuses[block_id], f"{block_id} exit code")
        check(agents[block_id].lines_published == len(expected), f"{block_id} line events")
        lines += stats.line_count
        tokens += stats.token_estimate
        events += agents[block_id].lines_published
    check(rt.blocks.ids(view="agent") == sorted(panes), "the store does not list the 50 panes")
    everything = [pane_lines(n) for n in range(PANES)]
    check(lines == sum(map(len, everything)), f"{lines} lines in all")
    check(tokens == sum(map(tokens_of, everything)), f"{tokens} tokens in all")
    finished = sum(1 for status in statuses.values() if status == 0)
    crashed, stopped = statuses[pane_id(CRASHING)], statuses[long_id]
    check((finished, crashed, stopped) == (PANES - 2, -11, -15), f"exit statuses {statuses}")
    print(f"{PANES} agents streamed {lines} NDJSON lines (~{tokens} tokens) into their panes")
    print(
        f"{finished} exited 0; {pane_id(CRASHING)} crashed (SIGSEGV, status {crashed}); "
        f"{long_id} ran on until the host stopped it (SIGTERM, {stopped})"
    )
    print(f"each line also went to its pane's replay buffer: {events} events")
    # Those events age out of the buffers before the UI of part 4 comes.
    clock.advance(rt.config.max_event_age_s + rt.config.replay_trim_interval_s)
    return panes


# -- 2. executions --------------------------------------------------------------------------


async def panel(ctx: Any, task: str) -> dict[str, str]:
    """A strategy: ask the three agents in one batch, then a judge to pick a draft."""
    drafts = await ctx.llm_batch(
        [LlmRequest(task, system=f"You are the {agent}.", max_tokens=300) for agent in AGENTS]
    )
    verdict = await ctx.llm(judge_prompt(task, drafts), system="You are the judge.", max_tokens=20)
    winner = parse_verdict(verdict)  # a verdict without a winner raises: the session errs
    ctx.metric("drafts", len(drafts))
    ctx.log(f"the judge picked the {AGENTS[winner - 1]}")
    return {"task": task, "winner": AGENTS[winner - 1], "answer": drafts[winner - 1]}


def answer(rt: Runtime, step: FeedResult, *, billed: bool, one_by_one: bool = False) -> FeedResult:
    """Answer every query of a paused session with the scripted LLM, as an MCP host would.

    One query is answered with `feed`, a batch with one `feed_many` (or, `one_by_one`,
    with a `feed` per query as the answers come in). `billed` passes the provider's
    token counts, so the session's token figures are `provided`, not estimated.
    """
    replies = []
    for query in step.queries:
        text = llm_answer(query.prompt, query.system)
        replies.append(
            (query.id, text, llm_usage(query.prompt, query.system, text) if billed else None)
        )
    if len(replies) == 1:
        _, text, usage = replies[0]
        return rt.executions.feed(step.session_id, text, usage=usage)
    if not one_by_one:
        return rt.executions.feed_many(step.session_id, replies)
    for n, (query_id, text, usage) in enumerate(replies, start=1):
        step = rt.executions.feed(step.session_id, text, query_id=query_id, usage=usage)
        if n < len(replies):  # the rest of the round still waits: the strategy too
            remaining = len(replies) - n
            check(step.to_json() == {"status": "accepted", "remaining": remaining}, str(step))
    return step


def panel_calls(task: str) -> list[tuple[str, str, str]]:
    """The (prompt, system, answer) of each LLM call a completed `panel` makes."""
    drafts = [(task, f"You are the {agent}.") for agent in AGENTS]
    calls = [(prompt, system, llm_answer(prompt, system)) for prompt, system in drafts]
    judge = (judge_prompt(task, [answer for *_, answer in calls]), "You are the judge.")
    return [*calls, (*judge, llm_answer(*judge))]


def panel_tokens(task: str, *, billed: bool) -> int:
    """The tokens a completed `panel` on `task` should count: what the scripted provider
    billed, or, unbilled, the runtime's documented estimate (chars // 4)."""
    total = 0
    for prompt, system, text in panel_calls(task):
        if billed:
            usage = llm_usage(prompt, system, text)
            total += usage["prompt_tokens"] + usage["completion_tokens"]
        else:
            total += (len(prompt) + len(system)) // 4 + len(text) // 4
    return total


def expected_error(task: str) -> str:
    """The error a `panel` on `task` ends in: its judge's verdict names no winner."""
    *_, (_, _, verdict) = panel_calls(task)
    try:
        parse_verdict(verdict)
    except ValueError as error:
        return f"ValueError: {error}"
    raise SystemExit(f"demo check failed: the judge of {task!r} named a winner")


def expected_pause(session_id: str, task: str) -> dict[str, Any]:
    """The MCP JSON of a `panel` paused at its first batch: the three agents asked."""
    queries = [
        {"id": f"q-1-{n}", "prompt": task, "system": f"You are the {agent}.", "max_tokens": 300}
        for n, agent in enumerate(AGENTS)
    ]
    return {"status": "needs_response", "session_id": session_id, "queries": queries}


def run_executions(rt: Runtime) -> dict[str, Any]:
    """10 panel executions: 8 complete, 1 is cancelled by the user, 1 fails."""
    section("2. Executions")
    cancelled_task, failing_task = PANEL_TASKS[5], PANEL_TASKS[6]
    paused_json: dict[str, Any] = {}
    failure = None
    outcomes: dict[str, int] = {}
    tokens = {"provided": 0, "estimated": 0}
    fed = 0  # answers the demo fed
    for n, task in enumerate(PANEL_TASKS):
        billed = n % 2 == 0  # half the answers come with the provider's usage
        step = rt.executions.start(panel, task)  # returns at the strategy's first pause
        check(step.status == "needs_response" and len(step.queries) == 3, str(step))
        if not paused_json:
            paused_json = step.to_json()
            check(paused_json == expected_pause(step.session_id, task), "the paused JSON")
        fed += len(step.queries)
        step = answer(rt, step, billed=billed, one_by_one=n == 1)
        check(step.status == "needs_response" and len(step.queries) == 1, str(step))
        if task == cancelled_task:
            step = rt.executions.cancel(
                step.session_id
            )  # the user closed the tab before the verdict
        else:
            fed += len(step.queries)
            step = answer(rt, step, billed=billed)
        state = rt.executions.status(step.session_id)["state"]
        check(state == step.status, f"status says {state}, the feed said {step.status}")
        outcomes[step.status] = outcomes.get(step.status, 0) + 1
        if task == cancelled_task:
            check(step.status == "cancelled", f"the cancelled execution is {step.status}")
        elif task == failing_task:
            check(step.status == "error", f"the failing execution is {step.status}")
            check(step.error == expected_error(task), f"error: {step.error}")
            failure = step.error
        else:
            check(step.status == "completed", f"{task!r} ended {step.status}: {step.error}")
            result = step.to_json()
            verdict = llm_answer(judge_prompt(task, []), "You are the judge.")
            winner = AGENTS[parse_verdict(verdict) - 1]
            check(result["result"]["winner"] == winner, f"winner {result['result']}")
            total = result["stats"]["total_tokens"]
            expected_source = "provided" if billed else "estimated"
            check(total["source"] == expected_source, f"token source {total}")
            check(result["stats"]["llm_calls"] == 4, f"llm calls {result['stats']}")
            check(total["value"] == panel_tokens(task, billed=billed), f"tokens {total}")
            tokens[total["source"]] += total["value"]
    check(outcomes == {"completed": 8, "cancelled": 1, "error": 1}, f"outcomes {outcomes}")
    metrics = rt.metrics()
    check(metrics["executions_completed"] == 8, "metrics: executions_completed")
    check(metrics["executions_cancelled"] == 1, "metrics: executions_cancelled")
    check(metrics["executions_failed"] == 1, "metrics: executions_failed")
    check(metrics["execution_feeds"] == fed, f"metrics: {metrics['execution_feeds']} feeds")
    completed = [
        (n, task)
        for n, task in enumerate(PANEL_TASKS)
        if task not in (cancelled_task, failing_task)
    ]
    for source, parity in (("provided", 0), ("estimated", 1)):
        expected = sum(
            panel_tokens(task, billed=n % 2 == 0) for n, task in completed if n % 2 == parity
        )
        check(tokens[source] == expected, f"{tokens[source]} tokens {source}, not {expected}")
    print(
        f"{len(PANEL_TASKS)} executions: {outcomes['completed']} completed, "
        f"{outcomes['cancelled']} cancelled, {outcomes['error']} error; "
        f"{metrics['execution_feeds']} answers fed"
    )
    print(f"the failing one ended in error: {failure}")
    print(
        f"tokens of the completed ones: {tokens['provided']} provided by the LLM, "
        f"{tokens['estimated']} estimated"
    )
    print("the MCP JSON of a paused execution (three agents asked in one batch):")
    print(json.dumps(paused_json, indent=2))
    return paused_json


# -- 3. transcripts -------------------------------------------------------------------------


@attrs.define
class Ledger:
    """What the demo itself wrote to one transcript, to check the transcript against.

    Entry ids follow the documented log format: "1", "2", ... per transcript; a turn
    writes an entry per message, then its leaf; a compaction writes its entry and a
    leaf; a branch move writes a leaf.
    """

    entries: int = 0  # entries written so far (the last id given)
    turns: int = 0
    compactions: int = 0
    usage: Usage = attrs.Factory(Usage)  # what the demo billed in its assistant messages
    branch: list[tuple[str, TurnMessage]] = attrs.Factory(list)  # active branch: (id, message)

    def cost(self) -> float:
        """What `usage` costs at the model's list price (the public pricing table)."""
        price = BUILTIN_PRICING[MODEL]
        u = self.usage
        return (
            u.input_tokens * price.input
            + u.output_tokens * price.output
            + u.cache_read_tokens * price.cache_read
            + u.cache_write_tokens * price.cache_write
        ) / 1_000_000


def run_turn(t: Transcript, ledger: Ledger, conversation: int, turn: int) -> TurnResult:
    """One agent turn: the user asks, the model reads a file, then answers."""
    ask, path, body, reply = turn_texts(conversation, turn)
    call = ToolCall(f"call-{turn}", "read_file", {"path": path})
    # The provider bills the whole context for each call: that is the context's size
    # compaction goes by.
    first = Usage(t.context_tokens() + len(ask) // 4, 12)
    second = Usage(first.input_tokens + 12 + len(body) // 4, len(reply) // 4)
    messages: list[TurnMessage] = [
        UserMessage(ask),
        AssistantMessage("", tool_calls=[call], usage=first),
        ToolResult(call.id, body),
        AssistantMessage(reply, usage=second),
    ]
    result = t.on_turn_end(messages)

    ids = [str(ledger.entries + n) for n in range(1, len(messages) + 1)]
    check(list(result.entry_ids) == ids, f"turn {turn} got entry ids {result.entry_ids}")
    ledger.entries += len(messages) + 1  # and the turn's leaf
    ledger.turns += 1
    ledger.usage += first + second
    ledger.branch += zip(ids, messages, strict=True)
    # After the turn the context is what the last call was billed for: above the
    # threshold, the transcript must compact.
    size = second.total_tokens
    threshold = COMPACTION.threshold_tokens
    compacts = threshold is not None and size > threshold
    check(
        (result.compaction is not None) == compacts,
        f"turn {turn}: a {size}-token context, compaction {result.compaction}",
    )
    if result.compaction is None:
        check(result.context_tokens == size, f"turn {turn}: size {result.context_tokens}")
    else:
        check(result.compaction.entry_id == str(ledger.entries + 1), "compaction entry id")
        ledger.entries += 2  # the compaction and its leaf
        ledger.compactions += 1
    return result


def run_transcripts(rt: Runtime, clock: FakeClock) -> Path:
    """5 conversations of 10 turns each compact; one is branched, closed and resumed.

    Returns the path of the branched transcript's file.
    """
    section("3. Transcripts")
    paths = []
    ledgers = []
    compactions = 0
    billed = Usage()
    dollars = 0.0
    for conversation in range(5):
        t = rt.transcripts.create(cwd="/repo", model=MODEL, compaction=COMPACTION)
        ledger = Ledger()
        results = []
        for turn in range(1, 11):
            clock.advance(20)  # the agent works on the turn for 20 s
            results.append(run_turn(t, ledger, conversation, turn))
        done = [r.compaction for r in results if r.compaction is not None]
        check(len(done) >= 1, f"transcript {conversation} never compacted")
        check(isinstance(t.context()[0], CompactionSummary), "the context is not compacted")
        compactions += len(done)
        if conversation == 0:
            t = branch_and_resume(rt, t, results, ledger)
        usage, cost = t.usage(), t.cost()
        check(usage == ledger.usage, f"transcript {conversation}: usage {usage}")
        check(cost is not None and abs(cost.total - ledger.cost()) < 1e-9, f"cost {cost}")
        billed += usage
        dollars += cost.total if cost else 0.0
        t.close()
        paths.append(Path(t.path))
        ledgers.append(ledger)
        with open(t.path, "rb") as file:  # the session header, then the entries
            lines = sum(1 for _ in file)
        check(lines == 1 + ledger.entries, f"transcript {conversation}: {lines} lines")

    metrics = rt.metrics()
    entries = sum(ledger.entries for ledger in ledgers)
    turns = sum(ledger.turns for ledger in ledgers)
    check(compactions == sum(ledger.compactions for ledger in ledgers), "compactions")
    check(metrics["transcript_compactions"] == compactions, "metrics: transcript_compactions")
    check(metrics["transcript_turns"] == turns, f"metrics: {metrics['transcript_turns']} turns")
    check(metrics["transcript_entries_written"] == entries, "metrics: entries written")
    check(metrics["transcripts_created"] == 5, "metrics: transcripts_created")
    check(metrics["transcripts_resumed"] == 1, "metrics: transcripts_resumed")
    check(metrics["transcript_branch_moves"] == 1, "metrics: transcript_branch_moves")
    check(metrics["transcripts_open"] == 0, "a transcript was left open")
    check(billed == sum((ledger.usage for ledger in ledgers), Usage()), f"billed {billed}")
    check(abs(dollars - sum(ledger.cost() for ledger in ledgers)) < 1e-9, f"${dollars}")
    print(
        f"5 transcripts, {metrics['transcript_turns']} turns, {compactions} compactions, "
        f"{metrics['transcript_entries_written']} entries written"
    )
    print(f"{billed.total_tokens} tokens billed in all: ${dollars:.4f} at {MODEL}'s price")
    return paths[0]


def branch_and_resume(
    rt: Runtime, t: Transcript, results: list[TurnResult], ledger: Ledger
) -> Transcript:
    """The user rewinds the last turn and asks again; the host restarts and resumes.

    Returns the resumed transcript, still open.
    """
    before = t.usage()
    # Back to the end of the turn before: its last message, or the compaction it caused
    # (the compaction entry follows the turn's messages in the tree).
    previous = results[-2]
    back_to = previous.compaction.entry_id if previous.compaction else previous.entry_ids[-1]
    t.append_leaf(back_to)
    ledger.entries += 1  # the branch move's leaf
    del ledger.branch[-4:]  # turn 10's messages leave the active branch
    context = t.context()
    check(isinstance(context[0], CompactionSummary), "the branch lost the compaction")
    check(context[-1] == ledger.branch[-1][1], f"the branch ends at {context[-1]}")
    retry = run_turn(t, ledger, 0, 11)  # the new answer replaces turn 10 on the branch
    check(retry.compaction is None, "the retried turn compacted")
    context, usage, next_id = t.context(), t.usage(), t.next_entry_id()
    check(usage.total_tokens > before.total_tokens, "the abandoned branch's usage was lost")
    # The context: the summary, then what the demo wrote from the first kept entry on.
    ids = [entry_id for entry_id, _ in ledger.branch]
    summary = context[0]
    check(isinstance(summary, CompactionSummary), "the retried turn lost the compaction")
    assert isinstance(summary, CompactionSummary)
    check(summary.first_kept_entry_id in ids, f"first kept {summary.first_kept_entry_id}")
    kept = [message for _, message in ledger.branch[ids.index(summary.first_kept_entry_id) :]]
    check(list(context[1:]) == kept, "the context is not the summary and the kept messages")
    check(next_id == str(ledger.entries + 1), f"next entry {next_id}")
    t.close()  # the host restarts...

    again = rt.transcripts.resume(t.path, compaction=COMPACTION)  # (keeps the summarizer)
    check(again.recovery.clean, f"resume found {again.recovery}")
    check(again.context() == context, "the resumed context differs")
    check(again.usage() == usage and again.next_entry_id() == next_id, "resumed state")
    print(f"transcript 1: rewound its last turn with append_leaf and asked again (entry {back_to})")
    print(f"closed and resumed: the same {len(context)}-message context, next entry {next_id}")
    return again


# -- 4. a UI following a pane's events ------------------------------------------------------


def follow_pane(rt: Runtime, clock: FakeClock) -> None:
    """A UI follows agent-07, disconnects, catches up, then comes back too late."""
    section("4. Replay: a UI follows " + UI_PANE)
    pane = rt.blocks.get(UI_PANE)
    stream = line_stream(7, first_turn=10)
    published_here = 0  # events published from here on (part 1's have aged out)
    before = rt.metrics()

    def agent_prints(count: int) -> list[Any]:
        # The host's reader stores each line and publishes it to the UI; neither waits.
        nonlocal published_here
        published_here += count
        lines = list(itertools.islice(stream, count))
        pane.append_output(b"".join(lines))
        events = [json.loads(line) for line in lines]
        rt.replay.publish_many(UI_PANE, events)
        return events

    follower = rt.replay.follow(rt.replay.current_cursor(UI_PANE))  # the UI opens the pane
    printed = agent_prints(8)
    items = [follower.next_item(timeout=10) for _ in printed]
    check(all(isinstance(item, ObservationEvent) for item in items), f"follow gave {items}")
    seen = [item for item in items if isinstance(item, ObservationEvent)]
    check([event.payload for event in seen] == printed, "the UI saw other events")
    cursor = follower.cursor  # the UI keeps the cursor of the last event it showed
    follower.close()  # ...and disconnects (a laptop lid closed)

    missed = agent_prints(12)
    clock.advance(30)
    sub = rt.replay.subscribe(cursor)  # back 30 s later: the replay, then live events
    check(isinstance(sub, Subscription), f"reconnect gave {sub}")
    assert isinstance(sub, Subscription)
    with sub:
        replayed = [sub.next_event(timeout=10) for _ in missed]
        check([event.payload for event in replayed] == missed, "the replay is not the missed")
        check(replayed[0].position == seen[-1].position + 1, "the replay skipped or repeated")
        try:
            extra = sub.next_event(timeout=0)
        except Timeout:
            extra = None
        check(extra is None, f"an event beyond the missed ones: {extra}")
        live = agent_prints(1)
        check(sub.next_event(timeout=10).payload == live[0], "the live event did not arrive")
        cursor = replayed[-1].cursor

    agent_prints(REPLAY_LIMIT + 20)  # the UI stays away while the buffer overflows
    late = rt.replay.subscribe(cursor)
    check(isinstance(late, Gap) and late.reason == "trimmed", f"late reconnect gave {late}")
    assert isinstance(late, Gap)
    # The UI reloads the pane's output from the block, then follows from the tail.
    check(pane.read_output().line_count == pane.stats().line_count, "pane reload")
    metrics = rt.metrics()
    trimmed = metrics["replay_events_trimmed"] - before["replay_events_trimmed"]
    published = metrics["replay_events_appended"] - before["replay_events_appended"]
    check(published == published_here, f"{published} events published, not {published_here}")
    check(trimmed == published_here - REPLAY_LIMIT, f"{trimmed} of {published} events trimmed")
    oldest = seen[0].position + trimmed
    check(late.oldest_position == oldest, f"oldest position {late.oldest_position}")
    follower = rt.replay.follow(late.latest_cursor)
    live = agent_prints(1)
    item = follower.next_item(timeout=10)
    check(isinstance(item, ObservationEvent) and item.payload == live[0], f"after gap: {item}")
    follower.close()
    check((len(seen), len(missed), len(replayed)) == (8, 12, 12), "the events counted")
    print(f"connected: {len(seen)} events live; disconnected while {len(missed)} more came")
    print(f"reconnected from its cursor: {len(replayed)} replayed (exactly those), then 1 live")
    print(
        f"came back too late: Gap {late.reason!r} ({trimmed} of {published} events trimmed, "
        f"{REPLAY_LIMIT} kept)"
    )
    print("reloaded the pane from its block and followed on from the gap's latest cursor")


# -- 5. eight days later --------------------------------------------------------------------


def a_week_later(rt: Runtime, clock: FakeClock, panes: dict[str, Block]) -> tuple[str, str]:
    """8 days pass; the hourly sweep archives the idle panes and prunes to the budget.

    Returns the id of a pane still live and of one read back from its archive.
    """
    section("5. Eight days later")
    busy = list(panes)[-BUSY_PANES:]
    clock.advance(4 * DAY_S)
    for n, block_id in enumerate(busy, start=PANES - BUSY_PANES):
        panes[block_id].append_output(b"".join(turn_lines(n, turn=20)))  # still at work
    clock.advance(4 * DAY_S)

    metas = {block_id: block.meta() for block_id, block in panes.items()}
    archived = [b for b, meta in metas.items() if "session:archived_at" in meta]
    pruned = [b for b, meta in metas.items() if "session:archive_pruned_at" in meta]
    live = [b for b, meta in metas.items() if b not in archived and b not in pruned]
    check(sorted(live) == sorted(busy), f"live panes {live}")
    check(bool(archived and pruned), f"{len(archived)} archived, {len(pruned)} pruned")
    archives = sorted(rt.blocks.archive_dir.glob("*.zst"))  # (not the hidden owner lock)
    size = sum(path.stat().st_size for path in archives)
    check(len(archives) == len(archived), f"{len(archives)} archive files")
    idle = sorted(set(panes) - set(busy))
    check(sorted(archived + pruned) == idle, "the idle panes are not all archived or pruned")
    # Oldest first (by archive time, then name): none kept is older than one pruned.
    first_at = min(metas[block_id]["session:archived_at"] for block_id in archived)
    oldest_kept = min(b for b in archived if metas[b]["session:archived_at"] == first_at)
    check(max(pruned) < oldest_kept, f"pruned {pruned}, but kept the older {oldest_kept}")
    check(size <= ARCHIVE_BUDGET, f"{size} archive bytes over the budget")
    kept = next(block_id for block_id in archived if block_id != UI_PANE)
    first = panes[kept].read_output()  # transparently from the archive
    check(first.archived and first.data == b"".join(pane_lines(int(kept[-2:]))), "read back")
    try:
        panes[pruned[0]].read_output()
    except NotFound:
        pass  # its archive was deleted to fit the budget; the metadata says when
    else:
        check(False, f"{pruned[0]} was pruned but still reads")
    again = rt.blocks.sweep()  # a sweep on demand: nothing left to do
    check(again.archived_count == again.pruned_count == 0, f"second sweep {again}")
    check(rt.metrics()["sweep_failures"] == 0, "a sweep failed")
    check(len(idle) == PANES - BUSY_PANES and len(live) == BUSY_PANES, "idle and busy panes")
    print(f"the hourly sweep archived {len(idle)} idle panes; the {len(live)} busy ones stay live")
    print(
        f"it pruned {len(pruned)} archives (oldest first) to fit {ARCHIVE_BUDGET} bytes: "
        f"{len(archives)} left, {size} bytes"
    )
    print(f"{pruned[0]} (pruned) reads as NotFound; {kept} reads back from its archive")
    return busy[0], kept


def live(port: int, agents: int = 8) -> None:
    """`make live`: agents that never end, their panes served live until Ctrl-C."""
    fresh_start(DB)
    with Runtime.open(DB) as rt:  # the real clock
        stopping = threading.Event()

        def keep_running(n: int) -> None:
            # An agent that crashes or ends is started again, until the host stops.
            while not stopping.is_set():
                mode = "forever" if n % 4 else "run"  # every fourth one ends and restarts
                agent = greenroom.processes.spawn(rt, pane_id(n), agent_command(n, mode))
                status = agent.wait()
                if not stopping.is_set():
                    rt.replay.publish(pane_id(n), {"type": "restarted", "after_status": status})

        threads = [
            threading.Thread(target=keep_running, args=(n,), daemon=True) for n in range(agents)
        ]
        for thread in threads:
            thread.start()

        def ready(url: str) -> None:
            print(f"serving {agents} live agents on {url}#{pane_id(0)} (Ctrl-C stops)", flush=True)

        try:
            greenroom.web.serve(rt, "127.0.0.1", port, on_ready=ready)
        except KeyboardInterrupt:
            print("stopped", flush=True)
        finally:
            stopping.set()  # the runtime's close stops the agents still running


def main() -> None:
    """Run the five parts on a fresh `demo.db` and print the report."""
    if "--live" in sys.argv[1:]:
        # (`--port N` for another port; 0 takes a free one.)
        args = sys.argv[1:]
        live(int(args[args.index("--port") + 1]) if "--port" in args else 8765)
        return
    fresh_start(DB)
    clock = FakeClock(start_ms=START_MS)
    config = RuntimeConfig(max_archive_bytes=ARCHIVE_BUDGET, max_events_per_session=REPLAY_LIMIT)
    with Runtime.open(DB, clock=clock, config=config) as rt:
        panes = stream_panes(rt, clock)
        run_executions(rt)
        transcript = run_transcripts(rt, clock)
        follow_pane(rt, clock)
        live_pane, archived_pane = a_week_later(rt, clock, panes)
        check(rt.metrics()["actor_failures"] == 0, "an actor failed")
        archive_dir = rt.blocks.archive_dir

    print("\nAll checks passed.")
    section("Inspect what it left")
    print(f"{DB}, {archive_dir.name}/ and {transcript.parent.name}/ in {Path.cwd()}")
    print(f"  greenroom blocks {DB}")
    print(f"  greenroom show {DB} {live_pane}")
    print(f"  greenroom export {DB} {archived_pane}")
    print(f"  greenroom transcript {shown(transcript)}")


if __name__ == "__main__":
    main()
