"""Caller runs: a thread that asks an idle actor and waits runs the actor's turn itself.

Why. Handing a message to a dispatcher worker and the answer back costs two thread
wake-ups. On a VM a thread woken on another virtual CPU starts 15-25 us later, more
than most handlers take. A caller that would only sleep until the answer comes can do
the work itself: the turn runs on the caller's thread, under the same one-at-a-time
rule (the caller takes the mailbox's `scheduled` flag, exactly as a worker would hold
it), and the answer is there when the turn ends. A greenroom `ask` then costs about
what a method call plus the handler costs, whichever CPU each thread is on.

When. Only for an ask that waits with no timeout (a thread running a handler cannot
give up on it after a timeout), from a thread that is not running a handler (handlers
never wait), to an actor that is idle and started (otherwise its turn is a worker's
already), while the dispatcher runs and `RuntimeConfig.caller_runs` is on. Everything
else goes through the dispatcher as before: `tell`, `ask(block=False)`, proxy calls
and asks with a timeout.

Ctrl-C. Python runs signal handlers on the main thread, between any two bytecodes, so
a `KeyboardInterrupt` could land inside a handler and stop the actor (or half-apply a
message). On the main thread the turn therefore runs with SIGINT's handler swapped for
one that only notes the signal; once the turn is over the handler is put back and a
noted SIGINT is raised again, so the caller gets its `KeyboardInterrupt` just after the
turn, with the actor intact, as it would have while waiting for a worker. Swapping
costs about 1 us; other threads pay nothing. When SIGINT's handler was set outside
Python (and so cannot be put back), the main thread leaves the turn to a worker.
"""

from __future__ import annotations

import signal
import threading
from typing import TYPE_CHECKING, Any

from actors.futures import in_handler

if TYPE_CHECKING:
    from actors.mailbox import Mailbox

__all__ = ["put_running_here"]

_MAIN_THREAD_ID = threading.main_thread().ident
_SIGINT = int(signal.SIGINT)

# `signal.signal` and `signal.getsignal` wrap the C module's functions to convert to
# and from enums, which costs 2-3 us a call; the C functions take 0.3 us and 14 ns.
try:
    from _signal import getsignal as _get_handler
    from _signal import signal as _set_handler
except ImportError:  # pragma: no cover (an interpreter without the C module)
    _get_handler, _set_handler = signal.getsignal, signal.signal


def put_running_here(mailbox: Mailbox, item: Any) -> bool:
    """Queue `item` for `mailbox`'s actor and, if it is idle, run its turn on this thread.

    Returns what `Mailbox.put` returns: `False` when the actor had stopped (the item is
    answered with `ActorDeadError`).
    """
    if getattr(in_handler, "actor", None) is not None:
        return mailbox.put(item)  # a handler never runs another actor's turn
    if threading.get_ident() != _MAIN_THREAD_ID:
        return mailbox.put(item, run_here=True)
    return _put_on_main_thread(mailbox, item)


def _put_on_main_thread(mailbox: Mailbox, item: Any) -> bool:
    noted: list[int] = []

    def note(signum: int, _frame: Any) -> None:
        noted.append(signum)

    try:
        previous = _get_handler(_SIGINT)
        if previous is None:
            # A handler installed outside Python: it could not be put back after the turn.
            return mailbox.put(item)
        _set_handler(_SIGINT, note)
    except ValueError:  # not the main interpreter: signals are not ours to swap
        return mailbox.put(item)
    try:
        return mailbox.put(item, run_here=True)
    finally:
        _set_handler(_SIGINT, previous)
        if noted:
            # Runs the restored handler now: KeyboardInterrupt by default.
            signal.raise_signal(_SIGINT)
