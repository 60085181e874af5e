"""greenroom reads a few pykka internals, all in one module that fails loudly if they change."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from greenroom import pykka_internals

ROOT = Path(__file__).resolve().parent.parent


def test_the_installed_pykka_has_the_internals_greenroom_reads() -> None:
    pykka_internals.check()  # raises ImportError naming what changed


def test_another_pykka_minor_version_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pykka_internals.importlib.metadata, "version", lambda _name: "4.6.0")
    with pytest.raises(ImportError, match=r"pykka 4\.6\.0 is not the tested 4\.5\.x"):
        pykka_internals.check()


def test_a_reshaped_envelope_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    class Envelope:
        def __init__(self, message: object, reply_to: object = None, sender: object = None):
            self.message, self.reply_to = message, reply_to

    monkeypatch.setattr(pykka_internals, "Envelope", Envelope)
    with pytest.raises(ImportError, match="Envelope's parameters changed"):
        pykka_internals.check()


def test_no_other_module_imports_pykka_internals() -> None:
    private = re.compile(r"^\s*(from|import)\s+pykka\.(_\w+|messages\s+import\s+.*\b_\w+)", re.M)
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("runtime", "actors")
        for path in (ROOT / folder).rglob("*.py")
        if path.name != "pykka_internals.py" and private.search(path.read_text())
    ]
    assert offenders == []
