"""`Usage`: tokens billed for model calls, one record for executions and transcripts.

A host hands usage over as a `Usage` or as its provider's own mapping; `as_usage` reads
either:

    as_usage({"prompt_tokens": 12, "completion_tokens": 30})          # OpenAI style
    as_usage({"input_tokens": 12, "output_tokens": 30,
              "cache_read_input_tokens": 100})                         # Anthropic style
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from greenroom.checks import check_int, validator
from greenroom.errors import InvalidInput

__all__ = ["MAX_TOKENS", "ZERO_USAGE", "Usage", "as_usage"]

MAX_TOKENS = 10**15
"""The most tokens of one kind a host may report for one call or turn (`as_usage`): far
above any model's, and small enough that totals stay exact, print as JSON anywhere and
price as floats. Sums of many (`Usage + Usage`) may go past it."""

_count = validator(check_int, minimum=0)


@attrs.frozen
class Usage:
    """Tokens billed for one or more model calls (Python ints, never truncated)."""

    input_tokens: int = attrs.field(default=0, validator=_count)
    output_tokens: int = attrs.field(default=0, validator=_count)
    cache_read_tokens: int = attrs.field(default=0, validator=_count)
    cache_write_tokens: int = attrs.field(default=0, validator=_count)

    @property
    def total_tokens(self) -> int:
        """All four kinds added up."""
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_read_tokens
            + self.cache_write_tokens
        )

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return unchecked_usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
        )


_set_field = object.__setattr__  # (the record is frozen: attrs sets fields this way too)


def unchecked_usage(input_: int, output: int, cache_read: int, cache_write: int) -> Usage:
    """A `Usage` of counts already known to be ints >= 0 (sums of `Usage` fields),
    not checked again: a transcript makes a turn's totals on every turn. Internal:
    hosts make `Usage(...)`, which checks."""
    usage = object.__new__(Usage)
    _set_field(usage, "input_tokens", input_)
    _set_field(usage, "output_tokens", output)
    _set_field(usage, "cache_read_tokens", cache_read)
    _set_field(usage, "cache_write_tokens", cache_write)
    return usage


ZERO_USAGE = Usage()

# Each provider's keys, mapped to Usage's fields; `total_tokens` is checked, not kept.
_OPENAI = {"prompt_tokens": "input_tokens", "completion_tokens": "output_tokens"}
_ANTHROPIC = {
    "input_tokens": "input_tokens",
    "output_tokens": "output_tokens",
    "cache_read_input_tokens": "cache_read_tokens",
    "cache_creation_input_tokens": "cache_write_tokens",
    "cache_read_tokens": "cache_read_tokens",
    "cache_write_tokens": "cache_write_tokens",
}
# Breakdowns providers add beside the counts (already inside them): accepted, not kept.
_OPENAI_DETAILS = frozenset({"prompt_tokens_details", "completion_tokens_details"})
_ANTHROPIC_DETAILS = frozenset(
    {
        "cache_creation",
        "service_tier",
        "server_tool_use",
        "input_tokens_details",
        "output_tokens_details",
    }
)
_FORMS = (
    "a Usage, or a mapping with prompt_tokens and completion_tokens (and optionally "
    "total_tokens), or with input_tokens and output_tokens (and optionally "
    "cache_read_input_tokens / cache_creation_input_tokens, or cache_read_tokens / "
    "cache_write_tokens)"
)


def as_usage(value: Any, what: str = "usage") -> Usage | None:
    """`value` (None, a `Usage` or a provider's usage mapping) as a `Usage`, or None.

    `InvalidInput` for anything else: unknown or missing keys, styles mixed, counts
    that are not ints from 0 to `MAX_TOKENS` (a `Usage`'s too), or a `total_tokens`
    that is not the sum.
    """
    if value is None:
        return value
    if isinstance(value, Usage):
        for attribute in attrs.fields(Usage):
            name = attribute.name
            check_int(getattr(value, name), f"{what}.{name}", maximum=MAX_TOKENS)
        return value
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{what} must be None, {_FORMS}; got {type(value).__name__}")
    keys = set(value)
    if "prompt_tokens" in keys or "completion_tokens" in keys:
        names, required = _OPENAI, ("prompt_tokens", "completion_tokens")
        allowed = set(_OPENAI) | {"total_tokens"} | _OPENAI_DETAILS
    else:
        names, required = _ANTHROPIC, ("input_tokens", "output_tokens")
        allowed = set(_ANTHROPIC) | {"total_tokens"} | _ANTHROPIC_DETAILS
    unknown = sorted(map(repr, keys - allowed))
    missing = [key for key in required if key not in keys]
    if unknown or missing:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unknown {', '.join(unknown)}"] if unknown else []
        )
        raise InvalidInput(f"{what} must be {_FORMS} ({'; '.join(parts)})")
    fields: dict[str, int] = {}
    for key, field in names.items():
        if key in value:
            count = check_int(value[key], f"{what}[{key!r}]", minimum=0, maximum=MAX_TOKENS)
            if field in fields:
                raise InvalidInput(f"{what} gives {field} twice ({key!r} and another key)")
            fields[field] = count
    usage = Usage(**fields)
    if "total_tokens" in value:
        total = check_int(
            value["total_tokens"], f"{what}['total_tokens']", minimum=0, maximum=2 * MAX_TOKENS
        )
        if total != usage.input_tokens + usage.output_tokens:
            raise InvalidInput(
                f"{what}['total_tokens'] is {total}, not the input (prompt) and output "
                f"(completion) tokens added up ({usage.input_tokens + usage.output_tokens})"
            )
    return usage
