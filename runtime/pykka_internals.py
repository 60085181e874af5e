"""Everything greenroom takes from pykka's private modules, in one place, checked on import.

greenroom's mailbox and futures stand in for pykka's own, so they must speak pykka's
internal types: the `Envelope` an ask travels in, the `_ActorStop` message, the `_Unset`
marker of a future's hook result, and the `OptExcInfo` alias. pyproject.toml pins pykka
to the minor version these were read from; `check()` runs on import and fails loudly
(`ImportError` naming what changed) if a pykka release moved or reshaped any of them,
rather than letting actors misbehave later.
"""

from __future__ import annotations

import importlib.metadata
import inspect
from typing import Any

import pykka
from pykka import ActorRef
from pykka._envelope import Envelope
from pykka._future import _Unset
from pykka._types import OptExcInfo
from pykka.messages import _ActorStop

__all__ = ["TESTED_PYKKA", "UNSET", "ActorStop", "Envelope", "OptExcInfo", "Unset", "check"]

TESTED_PYKKA = "4.5"
"""The pykka minor version these internals were read from (pyproject pins it)."""

ActorStop: type[Any] = _ActorStop
Unset: type[Any] = _Unset
UNSET: Any = _Unset()
"""One `_Unset` marker for every future (pykka makes a new one per future)."""


class _Referent:
    """What `pykka.ActorRef.__init__` reads of an actor (for `check`)."""

    actor_urn = "urn:check"
    actor_inbox = None
    actor_stopped = None


def check() -> None:
    """Raise `ImportError` if pykka's internals are not the shape greenroom relies on."""
    problems: list[str] = []
    version = importlib.metadata.version("pykka")
    if not version.startswith(TESTED_PYKKA + "."):
        problems.append(f"pykka {version} is not the tested {TESTED_PYKKA}.x")
    envelope: Any = Envelope("message", reply_to=None)
    if (envelope.message, envelope.reply_to) != ("message", None):
        problems.append("pykka._envelope.Envelope(message, reply_to=) changed")
    if list(inspect.signature(Envelope).parameters) != ["message", "reply_to"]:
        problems.append("pykka._envelope.Envelope's parameters changed")
    unset: object = _Unset
    if not isinstance(unset, type):
        problems.append("pykka._future._Unset is no longer a class")
    # `GreenroomFuture.__init__` sets these two itself (one shared `_Unset` marker).
    fresh = vars(pykka.Future())
    if set(fresh) != {"_get_hook", "_get_hook_result"} or fresh["_get_hook"] is not None:
        problems.append("pykka.Future() no longer sets just _get_hook and _get_hook_result")
    # `GreenroomActorRef.__init__` sets these itself, and stands in for the weakref.
    ref: Any = ActorRef.__new__(ActorRef)
    ActorRef.__init__(ref, _Referent())
    if set(vars(ref)) != {
        "_actor_weakref",
        "actor_class",
        "actor_urn",
        "actor_inbox",
        "actor_stopped",
    }:
        problems.append(
            "pykka.ActorRef() no longer sets just its weakref, class, urn, inbox and stopped flag"
        )
    stop: object = _ActorStop
    if not (isinstance(stop, type) and not inspect.signature(stop).parameters):
        problems.append("pykka.messages._ActorStop() changed")
    if problems:
        raise ImportError(
            "greenroom relies on pykka internals that changed: "
            + "; ".join(problems)
            + f". Install pykka {TESTED_PYKKA}.x (pip install 'pykka=={TESTED_PYKKA}.*')."
        )


check()
