"""The package's shape: no import cycles between modules, no imports hidden in functions,
and `import greenroom` loading no optional extra (they are loaded by name when used).

The layers themselves are import-linter contracts (pyproject.toml, `make lint-imports`);
these checks read the sources as the installed package lays them out: `runtime/` is
`greenroom` and `actors/` is `greenroom.actors`.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder, package in (("runtime", "greenroom"), ("actors", "greenroom.actors")):
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


MODULES = _modules()


def _imported(tree: ast.Module, module: str) -> Iterator[str]:
    """The greenroom modules `module` imports when it is imported (type-only ones left out)."""
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for inner in ast.walk(node):
            names: list[str] = []
            if isinstance(inner, ast.Import):
                names = [alias.name for alias in inner.names]
            elif isinstance(inner, ast.ImportFrom) and inner.module and not inner.level:
                names = [inner.module] + [f"{inner.module}.{a.name}" for a in inner.names]
            for name in names:
                if name in MODULES and name != module:
                    yield name


def _graph() -> dict[str, set[str]]:
    return {
        module: set(_imported(ast.parse(path.read_text()), module))
        for module, path in MODULES.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    # Tarjan's strongly connected components; a component of two or more is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_modules_import_each_other_without_cycles() -> None:
    graph = _graph()
    # A package's __init__ re-exports what is below it; it is never imported from below.
    for module in graph:
        graph[module] -= {m for m in graph[module] if module.startswith(m + ".")}
    assert _cycles(graph) == []


def test_no_function_imports_anything() -> None:
    hidden = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.Import | ast.ImportFrom):
                        hidden.append(f"{module}:{inner.lineno}")
    assert hidden == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


_EXTRAS = ("psycopg", "psycopg_pool", "redis", "mcp", "starlette", "uvicorn")


@pytest.mark.parametrize("module", ["greenroom", "greenroom.aio", "greenroom.runtime"])
def test_importing_greenroom_loads_no_optional_extra(module: str) -> None:
    # In a fresh interpreter: this one has the extras loaded by other tests.
    found = subprocess.run(
        [sys.executable, "-c", f"import sys, {module}; print(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    loaded = sorted({name.split(".")[0] for name in found} & set(_EXTRAS))
    assert loaded == []
