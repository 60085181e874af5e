"""Plain copies of JSON values, shared by the parts that hand them to hosts."""

from __future__ import annotations

from typing import Any

__all__ = ["json_copy"]


def json_copy(value: Any) -> Any:
    """A deep copy of a JSON value as plain `dict`s and `list`s (subclasses included,
    such as the transcripts' read-only ones); strings, numbers, `None` are shared."""
    if isinstance(value, dict):
        return {key: json_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_copy(item) for item in value]
    return value
