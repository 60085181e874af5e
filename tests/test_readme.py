"""Every Python snippet in README.md runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_has_snippets() -> None:
    assert len(SNIPPETS) >= 3


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_readme_snippet_runs(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # snippets write app.db in the current folder
    code = compile(SNIPPETS[index], f"README.md snippet {index + 1}", "exec")
    exec(code, {"__name__": f"readme_snippet_{index}"})


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_the_configuration_reference_lists_every_field_with_its_default() -> None:
    import attrs
    from greenroom import RuntimeConfig

    rows = {
        match[0]: match[1]
        for match in re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", _section("Configuration"), re.M)
    }
    defaults = RuntimeConfig()
    for field in attrs.fields(RuntimeConfig):
        assert field.name in rows, f"README configuration table lacks {field.name}"
        default = repr(getattr(defaults, field.name)).replace("'", '"')
        assert rows[field.name] == default, field.name


def test_the_error_reference_lists_every_error_class() -> None:
    import inspect

    from greenroom import errors

    table = _section("Errors")
    for name, cls in vars(errors).items():
        if inspect.isclass(cls) and issubclass(cls, errors.GreenroomError):
            assert f"`{name}`" in table or f"errors.{name}`" in table, name


def test_the_command_line_section_covers_every_command() -> None:
    section = _section("Command line")
    for command in ("blocks", "show", "export", "archive", "restore", "sweep", "transcript"):
        assert f"`greenroom {command} " in section, command
