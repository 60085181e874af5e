"""Model pricing: dollars per million tokens, and what a transcript's usage cost.

    pricing = ModelPricing(input=3.0, output=15.0, cache_read=0.30, cache_write=3.75)
    cost = calculate_cost(Usage(input_tokens=1_000_000), pricing)
    cost.total  # 3.0

`Transcript.cost()` looks its model up in the built-in table (`BUILTIN_PRICING`, keyed
`"provider:model"`), with `RuntimeConfig(pricing={...})` adding or overriding entries.
A model without an entry has no cost (`None`), never a made-up one.

The built-in prices are the providers' published list prices for standard (not batch)
requests when this table was written; a host that needs exact figures passes its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from greenroom.errors import InvalidInput

if TYPE_CHECKING:
    from greenroom.usage import Usage

__all__ = [
    "BUILTIN_PRICING",
    "CostBreakdown",
    "ModelPricing",
    "calculate_cost",
    "check_pricing_table",
    "lookup_pricing",
]

_PER = 1_000_000


def _price(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise InvalidInput(
            f"ModelPricing.{attribute.name} must be a finite number of dollars per million "
            f"tokens, >= 0; got {value!r}"
        )


@attrs.frozen
class ModelPricing:
    """A model's list prices in dollars per million tokens, for the four token kinds."""

    input: float = attrs.field(validator=_price)
    output: float = attrs.field(validator=_price)
    cache_read: float = attrs.field(default=0.0, validator=_price)
    cache_write: float = attrs.field(default=0.0, validator=_price)


@attrs.frozen
class CostBreakdown:
    """What a usage cost in dollars, per token kind; `total` is their sum."""

    input: float = 0.0
    output: float = 0.0
    cache_read: float = 0.0
    cache_write: float = 0.0

    @property
    def total(self) -> float:
        """The four parts added up, in dollars."""
        return self.input + self.output + self.cache_read + self.cache_write


BUILTIN_PRICING: Mapping[str, ModelPricing] = {
    # Anthropic: cache writes are the 5-minute cache price.
    "anthropic:claude-opus-4-1": ModelPricing(15.0, 75.0, 1.50, 18.75),
    "anthropic:claude-sonnet-4-5": ModelPricing(3.0, 15.0, 0.30, 3.75),
    "anthropic:claude-sonnet-4": ModelPricing(3.0, 15.0, 0.30, 3.75),
    "anthropic:claude-haiku-4-5": ModelPricing(1.0, 5.0, 0.10, 1.25),
    # OpenAI: cached input is billed at the cache-read price; writes are not billed.
    "openai:gpt-5": ModelPricing(1.25, 10.0, 0.125, 0.0),
    "openai:gpt-5-mini": ModelPricing(0.25, 2.0, 0.025, 0.0),
    "openai:gpt-4.1": ModelPricing(2.0, 8.0, 0.50, 0.0),
    "openai:gpt-4o": ModelPricing(2.50, 10.0, 1.25, 0.0),
    # Google: prompts up to 200k tokens.
    "google:gemini-2.5-pro": ModelPricing(1.25, 10.0, 0.31, 0.0),
    "google:gemini-2.5-flash": ModelPricing(0.30, 2.50, 0.075, 0.0),
}
"""The built-in table, keyed `"provider:model"`; `RuntimeConfig.pricing` overrides it."""


def _check_key(key: Any) -> None:
    if not isinstance(key, str):
        raise InvalidInput(f"pricing keys are 'provider:model' strings, got {key!r}")
    provider, sep, model = key.partition(":")
    if not sep or not provider.strip() or not model.strip():
        raise InvalidInput(
            f"pricing key {key!r} must be 'provider:model', e.g. 'anthropic:claude-sonnet-4-5'"
        )


def check_pricing_table(mapping: Mapping[Any, Any]) -> None:
    """Raise `InvalidInput` naming the first bad entry of a pricing table.

    Keys are `"provider:model"` strings (both parts non-empty); values `ModelPricing`.
    """
    if not isinstance(mapping, Mapping):
        raise InvalidInput(f"a pricing table is a dict, got {type(mapping).__name__}")
    for key, value in mapping.items():
        _check_key(key)
        if not isinstance(value, ModelPricing):
            raise InvalidInput(
                f"pricing[{key!r}] must be a ModelPricing(input, output, cache_read, "
                f"cache_write) in dollars per million tokens, got {value!r}"
            )


def lookup_pricing(
    model: str, extra: Mapping[str, ModelPricing] | None = None
) -> ModelPricing | None:
    """The pricing of `model`, or `None` when no table knows it.

    `model` is looked up as given, first in `extra` (the host's entries) and then in the
    built-in table. A model named without its provider (`"gpt-4o"`) matches an entry
    `"<any provider>:gpt-4o"` when exactly one table entry has that model part, the
    host's entries again first.
    """
    if not isinstance(model, str) or not model:
        return None
    tables = [extra or {}, BUILTIN_PRICING]
    for table in tables:
        if model in table:
            return table[model]
    if ":" not in model:
        for table in tables:
            found = [price for key, price in table.items() if key.partition(":")[2] == model]
            if len(found) == 1:
                return found[0]
    return None


def calculate_cost(usage: Usage, pricing: ModelPricing) -> CostBreakdown:
    """The dollars `usage` costs at `pricing` (tokens * price / one million, per kind)."""
    return CostBreakdown(
        input=usage.input_tokens * pricing.input / _PER,
        output=usage.output_tokens * pricing.output / _PER,
        cache_read=usage.cache_read_tokens * pricing.cache_read / _PER,
        cache_write=usage.cache_write_tokens * pricing.cache_write / _PER,
    )
