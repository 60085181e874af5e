"""The benchmarks' machine-readable channel: one `Row` per headline figure.

Each `bench_*.py` script keeps its human-readable output and, when given `--json PATH`,
also writes its headline figures there as a JSON list of rows (`Row.to_json`), which
`run_all.py` gathers into one table. A row's `target` is a string such as `"<= 2.0"`
(on the ratio) or `"< 0.25 s"` (on the value, so it carries the unit), or null when the
figure has none; `passed` is true or false beside a target, null without one.

Imported by the scripts in this folder (Python puts a script's own folder on
`sys.path`).
"""

from __future__ import annotations

import argparse
import json
import operator
import platform
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import attrs

from greenroom.errors import InvalidInput

__all__ = ["Row", "Target", "add_json_option", "cpu_model", "figure", "read_rows", "write_rows"]

Op = Literal["<", "<=", ">", ">="]

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _one_of(*options: str) -> Callable[[object, attrs.Attribute[Any], object], None]:
    def check(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value not in options:
            raise InvalidInput(f"Target.{attribute.name} must be one of {options}, not {value!r}")

    return check


@attrs.frozen
class Target:
    """A figure's target: `ratio <op> bound`, or `value <op> bound` when `on="value"`."""

    op: Op = attrs.field(validator=_one_of(*_OPS))
    bound: float
    on: Literal["ratio", "value"] = attrs.field(
        default="ratio", validator=_one_of("ratio", "value")
    )

    def met(self, x: float) -> bool:
        """Whether `x` (the ratio or the value, as `on` says) meets the target."""
        return _OPS[self.op](x, self.bound)

    def label(self, unit: str) -> str:
        """The target as the table shows it: `"<= 2.0"`, or `"< 0.25 s"` on a value."""
        if self.on == "ratio":
            return f"{self.op} {float(self.bound)!r}"
        return f"{self.op} {self.bound:g} {unit}".rstrip()


def _optional_number(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise InvalidInput(f"Row.{attribute.name} must be a number or null, not {value!r}")


def _optional_str(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f"Row.{attribute.name} must be a string or null, not {value!r}")


def _optional_bool(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, bool):
        raise InvalidInput(f"Row.{attribute.name} must be true, false or null, not {value!r}")


def _number(inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        raise InvalidInput(f"Row.{attribute.name} must be a number, not null")
    _optional_number(inst, attribute, value)


def _text(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str):
        raise InvalidInput(f"Row.{attribute.name} must be a string, not {value!r}")


@attrs.frozen
class Row:
    """One headline figure of a benchmark: its value, its baseline, ratio and target."""

    figure: str = attrs.field(validator=_text)
    value: float = attrs.field(validator=_number)
    unit: str = attrs.field(validator=_text)
    baseline: float | None = attrs.field(default=None, validator=_optional_number)
    baseline_label: str | None = attrs.field(default=None, validator=_optional_str)
    ratio: float | None = attrs.field(default=None, validator=_optional_number)
    target: str | None = attrs.field(default=None, validator=_optional_str)
    passed: bool | None = attrs.field(default=None, validator=_optional_bool)

    def to_json(self) -> dict[str, Any]:
        """The row as a JSON object (every field, nulls included)."""
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Row:
        """A row from `to_json`'s output; `InvalidInput` names what is wrong."""
        if not isinstance(data, Mapping):
            raise InvalidInput(f"a row must be a JSON object, not {data!r}")
        names = {field.name for field in attrs.fields(cls)}
        unknown = sorted(set(data) - names)
        missing = sorted(name for name in ("figure", "value", "unit") if name not in data)
        if unknown or missing:
            raise InvalidInput(f"row {dict(data)!r}: unknown keys {unknown}, missing {missing}")
        return cls(**data)


def figure(
    name: str,
    value: float,
    unit: str,
    *,
    baseline: float | None = None,
    baseline_label: str | None = None,
    ratio: float | None = None,
    target: Target | None = None,
) -> Row:
    """A `Row` whose `target` label and `passed` verdict are worked out from `target`."""
    if target is None:
        return Row(name, value, unit, baseline, baseline_label, ratio)
    checked = ratio if target.on == "ratio" else value
    if checked is None:
        raise InvalidInput(f"figure {name!r} has a target on its ratio but no ratio")
    return Row(
        name, value, unit, baseline, baseline_label, ratio, target.label(unit), target.met(checked)
    )


def add_json_option(parser: argparse.ArgumentParser) -> None:
    """Add `--json PATH` (write the headline figures there) to a script's parser."""
    parser.add_argument(
        "--json",
        metavar="PATH",
        type=Path,
        default=None,
        help="also write the headline figures to PATH as JSON rows (for run_all.py)",
    )


def write_rows(path: Path | None, rows: Iterable[Row]) -> None:
    """Write `rows` to `path` as a JSON list; nothing when `path` is None."""
    if path is None:
        return
    Path(path).write_text(json.dumps([row.to_json() for row in rows], indent=2) + "\n")


def read_rows(path: Path) -> list[Row]:
    """The rows a script wrote with `write_rows`; `InvalidInput` if they are malformed."""
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{path} is not JSON: {exc}") from exc
    if not isinstance(data, list):
        raise InvalidInput(f"{path} must hold a JSON list of rows, not {type(data).__name__}")
    return [Row.from_json(item) for item in data]


def cpu_model() -> str:
    """The CPU's model name, from /proc/cpuinfo where there is one (benchmarks print it:
    their figures depend on it)."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Hardware", "cpu model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"
