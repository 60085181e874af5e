"""`build_server`: registered strategies as the tools of an MCP server (official SDK).

Every registered strategy is a tool. A client of the 2026-07-28 revision calls it and
gets, while the strategy waits for answers, an `InputRequiredResult`: one
`sampling/createMessage` input request per pending query, keyed by the query id, and
a signed `requestState` naming the execution and round (`greenroom.mcp.state`). The
client answers them with its LLM and retries the same call with `inputResponses` and
that `requestState`; the answers are fed (`feed_many`), and the result is the next
round's requests or the final result. The execution is durable, so the retry may land
on another server process on the same database, or on this one after a restart.

Clients that do not speak multi round-trip requests use the explicit tools:
`greenroom_start`, `greenroom_feed`, `greenroom_status`, `greenroom_cancel` and
`greenroom_strategies`, in the seed's shapes. Every failure is a tool error whose
text says what to do next (`greenroom.mcp.tool_errors`).
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Callable, Iterable, Mapping
from types import ModuleType
from typing import Any

import jsonschema
import mcp.types as types
from mcp.server import Server, ServerRequestContext
from mcp.types.version import MODERN_PROTOCOL_VERSIONS

from greenroom import __version__
from greenroom.aio.executions import AsyncExecutions
from greenroom.errors import GreenroomError, InvalidInput, UnknownQuery
from greenroom.executions.records import FeedResult
from greenroom.executions.strategies import StrategyInfo
from greenroom.mcp.schemas import STEP_SCHEMA, input_schema_of, output_schema_of
from greenroom.mcp.shapes import (
    final_json,
    input_required,
    round_of,
    round_of_id,
    step_json,
    text_of,
    tool_error,
    tool_result,
    usage_of,
)
from greenroom.mcp.state import CarriedAnswer, RequestState, StateSigner, can_carry
from greenroom.mcp.tool_errors import Call, error_text
from greenroom.runtime import Runtime

__all__ = ["EXPLICIT_TOOLS", "build_server", "runtime_of"]

log = logging.getLogger("greenroom.mcp")

Strategies = ModuleType | Mapping[str, Callable[..., Any]] | Iterable[ModuleType] | None

_RUNTIMES: weakref.WeakKeyDictionary[Server[Any], Runtime] = weakref.WeakKeyDictionary()

_SESSION_ID = {"type": "string", "description": "the session id a step returned"}
_OBJECT = {"type": "object"}
_SESSION_ONLY = {
    "type": "object",
    "properties": {"session_id": _SESSION_ID},
    "required": ["session_id"],
    "additionalProperties": False,
}

EXPLICIT_TOOLS: dict[str, types.Tool] = {
    tool.name: tool
    for tool in (
        types.Tool(
            name="greenroom_strategies",
            description="List the strategies this server runs, with their input schemas.",
            input_schema={"type": "object", "properties": {}, "additionalProperties": False},
            output_schema={
                "type": "object",
                "properties": {
                    "strategies": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string"},
                                "description": {"type": "string"},
                                "input_schema": _OBJECT,
                            },
                            "required": ["name", "description", "input_schema"],
                        },
                    }
                },
                "required": ["strategies"],
            },
        ),
        types.Tool(
            name="greenroom_start",
            description=(
                "Start a strategy. The result is its first step: needs_response with the "
                "queries to answer with greenroom_feed, or its end."
            ),
            input_schema={
                "type": "object",
                "properties": {
                    "strategy": {
                        "type": "string",
                        "description": "a name greenroom_strategies lists",
                    },
                    "arguments": {**_OBJECT, "description": "its arguments, by name"},
                },
                "required": ["strategy"],
                "additionalProperties": False,
            },
            output_schema=STEP_SCHEMA,
        ),
        types.Tool(
            name="greenroom_feed",
            description=(
                "Answer one query of a paused session with your LLM's response. The result "
                "is accepted (more queries of this round wait), the next needs_response, "
                "or the end."
            ),
            input_schema={
                "type": "object",
                "properties": {
                    "session_id": _SESSION_ID,
                    "query_id": {
                        "type": "string",
                        "description": "which query (may be left out when only one waits)",
                    },
                    "response": {"type": "string"},
                    "usage": {**_OBJECT, "description": "token usage of the response, if known"},
                },
                "required": ["session_id", "response"],
                "additionalProperties": False,
            },
            output_schema=STEP_SCHEMA,
        ),
        types.Tool(
            name="greenroom_status",
            description="A session's state, pending query ids and stats (never waits).",
            input_schema=_SESSION_ONLY,
            output_schema={
                "type": "object",
                "properties": {
                    "session_id": {"type": "string"},
                    "state": {"enum": ["running", "paused", "completed", "error", "cancelled"]},
                    "round": {"type": "integer"},
                    "pending_queries": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["session_id", "state"],
            },
        ),
        types.Tool(
            name="greenroom_cancel",
            description="Cancel a running or paused session.",
            input_schema=_SESSION_ONLY,
            output_schema=STEP_SCHEMA,
        ),
    )
}
"""The explicit tools, for clients that do not speak multi round-trip requests."""


def build_server(
    runtime_or_path: Runtime | str | os.PathLike[str],
    strategies: Strategies = None,
    *,
    name: str = "greenroom",
    explicit_tools: bool = True,
) -> Server[Any]:
    """An MCP server (the SDK's `mcp.server.Server`) serving the runtime's strategies.

    `runtime_or_path` is a `Runtime`, or the path of a database to open one on (the
    server then owns it: close `runtime_of(server)` once the server has stopped).
    `strategies` are registered first: a module (its `@greenroom.strategy`
    functions), several modules, or a mapping of name to function; None serves what
    the runtime has registered. Each strategy's tool takes its keyword arguments (the
    schema given at registration, or one from its signature); `explicit_tools`
    (default on) adds the `greenroom_*` tools. Serve it with `serve_stdio` or
    `serve_http` (`greenroom.mcp`), or any SDK transport.
    """
    runtime = (
        runtime_or_path if isinstance(runtime_or_path, Runtime) else Runtime.open(runtime_or_path)
    )
    _register(runtime, strategies)
    tools = _Tools(runtime, name, explicit_tools)
    server: Server[Any] = Server(
        name,
        version=__version__,
        instructions=(
            "Each strategy tool runs a strategy that asks your LLM questions: answer the "
            "sampling requests of an input-required result and retry the same call with "
            "the inputResponses and requestState. Without multi round-trip support, use "
            "greenroom_start / greenroom_feed."
        ),
        on_list_tools=tools.list_tools,
        on_call_tool=tools.call_tool,
    )
    _RUNTIMES[server] = runtime
    return server


def runtime_of(server: Server[Any]) -> Runtime:
    """The runtime a server made by `build_server` serves."""
    try:
        return _RUNTIMES[server]
    except KeyError:
        raise InvalidInput(f"{server!r} was not made by greenroom.mcp.build_server") from None


def _register(runtime: Runtime, strategies: Strategies) -> None:
    if strategies is None:
        return
    if isinstance(strategies, Mapping):
        for strategy_name, fn in strategies.items():
            runtime.executions.register(strategy_name, fn)
        return
    modules: list[object] = [strategies] if isinstance(strategies, ModuleType) else list(strategies)
    for module in modules:
        if not isinstance(module, ModuleType):
            raise InvalidInput(
                f"strategies is a module, modules, or a mapping of name to function; got {module!r}"
            )
        runtime.executions.register_all(module)


class _Tools:
    """The tool list and the calls, over one runtime."""

    def __init__(self, runtime: Runtime, name: str, explicit: bool) -> None:
        self._runtime = runtime
        self._executions = AsyncExecutions(runtime.executions)
        self._signer = StateSigner(runtime.store)
        self._name = name
        self._explicit = explicit
        self._cache: dict[str, tuple[StrategyInfo, types.Tool, _Checker]] = {}
        self._strategy_tools()  # a schema that is not one fails here, not at a call

    # -- the tool list --------------------------------------------------------------------

    def _strategy_tools(self) -> dict[str, tuple[StrategyInfo, types.Tool, _Checker]]:
        names = self._runtime.executions.strategies()
        if set(names) != set(self._cache):
            cache = {}
            for strategy_name in names:
                info = self._runtime.executions.strategy_info(strategy_name)
                tool = _tool_of(info)
                cache[strategy_name] = (info, tool, _Checker(strategy_name, tool.input_schema))
            self._cache = cache
        return self._cache

    async def list_tools(
        self, _ctx: ServerRequestContext[Any], _params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        tools = [tool for _info, tool, _checker in self._strategy_tools().values()]
        if self._explicit:
            tools += list(EXPLICIT_TOOLS.values())
        return types.ListToolsResult(tools=tools)

    # -- calls ----------------------------------------------------------------------------

    async def call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult | types.InputRequiredResult:
        arguments = dict(params.arguments or {})
        call = Call(params.name, restart=params.name)
        try:
            if self._explicit and params.name in EXPLICIT_TOOLS:
                call = Call(
                    params.name,
                    session_id=_str_or_none(arguments.get("session_id")),
                    query_id=_str_or_none(arguments.get("query_id")),
                )
                _EXPLICIT_CHECKERS[params.name].check(arguments)
                return await self._explicit_call(params.name, arguments)
            found = self._strategy_tools().get(params.name)
            if found is None:
                return tool_error(
                    f"this server has no tool {params.name!r}; list its tools, or call "
                    "greenroom_strategies"
                )
            info, _tool, checker = found
            if params.request_state is None:
                # A retry's arguments are those of the checked first call: its verified
                # state carries their digest.
                checker.check(arguments)
            return await self._strategy_call(ctx, info, arguments, params)
        except _Failed as failed:  # every failure is a tool error the model can read
            return _failure(failed.error, failed.call)
        except Exception as error:
            return _failure(error, call)

    async def _strategy_call(
        self,
        ctx: ServerRequestContext[Any],
        info: StrategyInfo,
        arguments: dict[str, Any],
        params: types.CallToolRequestParams,
    ) -> types.CallToolResult | types.InputRequiredResult:
        if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            return tool_error(
                f"{info.name} needs a client that answers input-required results (MCP "
                "2026-07-28); this client is older: call greenroom_start with strategy "
                f"{info.name!r} and answer its queries with greenroom_feed"
            )
        if params.request_state is None:
            if ctx.session.client_capabilities is None or (
                ctx.session.client_capabilities.sampling is None
            ):
                return tool_error(
                    f"{info.name} asks your LLM questions through sampling requests, which "
                    "this client does not answer: call greenroom_start with strategy "
                    f"{info.name!r} and answer its queries with greenroom_feed"
                )
            step = await self._executions.start(info.name, **arguments)
        else:
            state = self._signer.verify(params.request_state, info.name, arguments)
            items: list[CarriedAnswer] = []
            prefix = f"q-{state.round}-"
            for query_id, response in (params.input_responses or {}).items():
                if not query_id.startswith(prefix):
                    # A state answers its own round's requests only (never a later one).
                    return tool_error(
                        f"input response {query_id!r} does not answer a request of the "
                        f"result this requestState came with (round {state.round}); "
                        "retry with the inputResponses of that result"
                    )
                try:
                    text = text_of(response)
                except ValueError as error:
                    return tool_error(f"input response {query_id!r}: {error}")
                items.append((query_id, text, usage_of(response)))
            try:
                step, fed = await self._feed(state, items)
            except Exception as error:
                call = Call(info.name, state.session_id, restart=info.name)
                raise _Failed(error, call) from None
            return self._strategy_result(info, arguments, step, fed, state.digest)
        return self._strategy_result(info, arguments, step)

    async def _feed(
        self, state: RequestState, items: list[CarriedAnswer]
    ) -> tuple[FeedResult, list[CarriedAnswer]]:
        """Feed a retry's answers, after those its state carries; the step, and what
        the next state must carry (what this call may have fed, not yet committed).

        The answers are fed not durable: the next round's requests leave while their
        journal write commits, and the next state carries them. The state's own
        carried answers were committed before this call's turn (an answer waits for
        the writes before it), unless the server stopped first: then the session,
        re-driven from its journal, is behind, and they are fed again."""
        executions = self._executions
        session_id = state.session_id
        answered_now = {query_id for query_id, _text, _usage in items}
        # An answer the client gives again (a whole round after a partial one) goes in
        # once: as its own, not also as carried.
        carried = [item for item in state.carried if item[0] not in answered_now]
        batch = [*carried, *items]
        if not batch:
            return await executions.resume(session_id), []
        durable = not can_carry(batch)  # too big to carry back: committed first
        # What this call may apply, and so carry on: its own answers, with carried ones
        # of their round (a partial round, re-driven); a retry with no answers of its
        # own carries on what it was given.
        if durable:
            next_carried: list[CarriedAnswer] = []
        elif items:
            same_round = [item for item in carried if round_of_id(item[0]) == state.round]
            next_carried = same_round + items
        else:
            next_carried = carried
        try:
            # Usually the carried answers were given already: feeding them again is a
            # no-op, and this call's go in with them, in one turn.
            step = await executions.feed_many(session_id, batch, durable=durable)
        except UnknownQuery:
            if not carried or not items:
                raise
            # The journal lost the carried round (the server stopped before its
            # commit): it is asked again on the re-drive; answered from the state.
            log.info(
                "session %s: feeding %d answers again from the requestState (the journal "
                "had lost them)",
                session_id,
                len(carried),
            )
            await executions.feed_many(session_id, carried)
            step = await executions.feed_many(session_id, items, durable=durable)
            next_carried = [] if durable else items
        if step.status == "accepted":
            step = await executions.resume(session_id)
        return step, next_carried

    def _strategy_result(
        self,
        info: StrategyInfo,
        arguments: dict[str, Any],
        step: FeedResult,
        fed: list[CarriedAnswer] | None = None,
        digest: str | None = None,
    ) -> types.CallToolResult | types.InputRequiredResult:
        if step.status in ("needs_response", "accepted"):
            state = self._signer.sign(
                info.name,
                arguments,
                step.session_id,
                round_of(step.queries),
                carried=fed or (),
                digest=digest,
            )
            return input_required(step.session_id, step.queries, state)
        if step.status == "completed":
            return tool_result(final_json(step))
        if step.status == "error":
            return tool_error(
                f"strategy {info.name} failed (session {step.session_id}): {step.error}"
            )
        return tool_error(f"session {step.session_id} of {info.name} was cancelled")

    async def _explicit_call(self, tool: str, arguments: dict[str, Any]) -> types.CallToolResult:
        executions = self._executions
        if tool == "greenroom_strategies":
            listed = [
                {
                    "name": info.name,
                    "description": tool_.description or "",
                    "input_schema": tool_.input_schema,
                }
                for info, tool_, _checker in self._strategy_tools().values()
            ]
            return tool_result({"strategies": listed})
        if tool == "greenroom_start":
            step = await executions.start(arguments["strategy"], **arguments.get("arguments", {}))
        elif tool == "greenroom_feed":
            step = await executions.feed(
                arguments["session_id"],
                arguments["response"],
                query_id=arguments.get("query_id"),
                usage=arguments.get("usage"),
            )
        elif tool == "greenroom_status":
            status = executions.status(arguments["session_id"])
            return tool_result({**status, "session_id": arguments["session_id"]})
        else:
            step = await executions.cancel(arguments["session_id"])
        return tool_result(step_json(step))


class _Failed(Exception):
    """A failure, with the call it belongs to (the session named by a requestState)."""

    def __init__(self, error: Exception, call: Call) -> None:
        super().__init__(str(error))
        self.error = error
        self.call = call


def _failure(error: Exception, call: Call) -> types.CallToolResult:
    if not isinstance(error, GreenroomError):
        log.error("MCP tool %s failed", call.tool, exc_info=error)
    return tool_error(error_text(error, call))


def _tool_of(info: StrategyInfo) -> types.Tool:
    schema = info.input_schema or input_schema_of(info.strategy)
    return types.Tool(
        name=info.name,
        description=info.description or _doc_of(info.strategy) or f"Run strategy {info.name}.",
        input_schema=dict(schema),
        output_schema=output_schema_of(info.strategy),
    )


def _doc_of(fn: Callable[..., Any]) -> str:
    doc = (fn.__doc__ or "").strip()
    return doc.split("\n\n")[0].replace("\n", " ").strip()


class _Checker:
    """A tool's input schema, compiled once (checking the schema itself costs far more
    than checking arguments against it)."""

    def __init__(self, tool: str, schema: Mapping[str, Any]) -> None:
        cls = jsonschema.validators.validator_for(schema)
        try:
            cls.check_schema(schema)
        except jsonschema.SchemaError as error:
            raise InvalidInput(
                f"the input schema of tool {tool!r} is not a valid JSON schema: {error.message}"
            ) from None
        self._validator = cls(schema)

    def check(self, arguments: dict[str, Any]) -> None:
        """`InvalidInput` naming where `arguments` break the schema, if they do."""
        if self._validator.is_valid(arguments):
            return
        error = jsonschema.exceptions.best_match(self._validator.iter_errors(arguments))
        where = "/".join(str(part) for part in error.absolute_path)
        raise InvalidInput(f"{where + ': ' if where else ''}{error.message}")


_EXPLICIT_CHECKERS = {
    name: _Checker(name, tool.input_schema) for name, tool in EXPLICIT_TOOLS.items()
}


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None
