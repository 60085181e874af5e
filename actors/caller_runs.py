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
already), while the dispatcher runs and `RuntimeConfig.caller_runs` is on. That covers
`ref.ask(message)`, the facade's waiting calls, and pykka's proxy attribute writes
(`proxy.x = 1` asks and waits). Everything else goes through the dispatcher as before:
`tell`, `ask(block=False)`, proxy method calls and attribute reads (they return
futures), and asks with a timeout. The turn runs in a fresh `contextvars.Context`, as
it would on a worker: the caller's context variables neither reach the handler nor
come back changed.

Signals. Python runs signal handlers on the main thread, between any two bytecodes, so
a handler of the program's could run inside an actor's handler and its exception (a
`KeyboardInterrupt`, a `SystemExit` from a SIGTERM handler) would stop the actor or
end an execution session in `error`. So, on the main thread:

* SIGINT's handler is swapped, for the turn, for one that notes the signal; once the
  turn is over the handler is put back and a noted SIGINT raised again, so the caller
  gets its `KeyboardInterrupt` just after the turn, with the actor intact, as it would
  have while waiting for a worker. Handlers are short by rule; for one that is not, a
  second Ctrl-C during the same turn is delivered at once, inside the handler (which
  stops a plain actor or ends an execution session in `error`), and the caller gets
  its `KeyboardInterrupt` after that.
* If any other signal has a Python handler (SIGTERM, SIGALRM, SIGWINCH, ...), or
  SIGINT's was set outside Python (it could not be put back), the main thread leaves
  the turn to a worker.

Checking and swapping cost about 2.5 us per ask on the main thread; other threads pay
nothing. A handler that changes SIGINT's handler during such a turn has its change
undone when the turn ends.
"""

from __future__ import annotations

import contextvars
import signal
import threading
from typing import TYPE_CHECKING, Any

from greenroom.futures import in_handler

if TYPE_CHECKING:
    from greenroom.actors.mailbox import Mailbox

__all__ = ["caller_crowded", "put_running_here", "set_crowded"]

_SIGINT = int(signal.SIGINT)
# Every other signal a Python handler could be installed for.
_OTHER_SIGNALS = tuple(
    int(signum)
    for signum in signal.valid_signals()
    if signum not in (signal.SIGINT, signal.SIGKILL, signal.SIGSTOP)
)

# `signal.signal` and `signal.getsignal` wrap the C module's functions to convert to
# and from enums, which costs 2-3 us a call; the C functions take 0.3 us and 14 ns.
try:
    from _signal import getsignal as _get_handler  # type: ignore[import-not-found]
    from _signal import signal as _set_handler
except ImportError:  # pragma: no cover (an interpreter without the C module)
    _get_handler, _set_handler = signal.getsignal, signal.signal


# What `getsignal` gives for a signal with no Python handler: SIG_DFL, SIG_IGN, or None
# (set outside Python).
_PLAIN_HANDLERS = frozenset({int(signal.SIG_DFL), int(signal.SIG_IGN), None})


def _only_plain_handlers() -> bool:
    """Whether no signal but SIGINT has a Python handler (one set membership test per
    signal, about half the cost of asking `callable` of each)."""
    try:
        return _PLAIN_HANDLERS.issuperset(map(_get_handler, _OTHER_SIGNALS))
    except TypeError:  # an unhashable handler: certainly a Python one
        return False


class _Caller(threading.local):
    """What a turn run on its caller's thread knows of that caller."""

    crowded = False


_caller = _Caller()


def set_crowded(crowded: bool) -> bool:
    """Say whether this thread's caller has other calls in flight; the previous value.

    An event loop running a session's turn for one of several awaiting calls says so:
    the turn then leaves slow work (a commit) to the store's committer, which lets the
    loop go on and commits the writes of many calls together. Put the previous value
    back once the send returns.
    """
    previous = _caller.crowded
    _caller.crowded = crowded
    return previous


def caller_crowded() -> bool:
    """Whether the caller whose turn runs on this thread has other calls in flight
    (always `False` on a dispatcher worker)."""
    return _caller.crowded


def put_running_here(mailbox: Mailbox, item: Any) -> bool:
    """Queue `item` for `mailbox`'s actor and, if it is idle, run its turn on this thread.

    Returns what `Mailbox.put` returns: `False` when the actor had stopped (the item is
    answered with `ActorDeadError`).
    """
    if getattr(in_handler, "actor", None) is not None:
        return mailbox.put(item)  # a handler never runs another actor's turn
    # Asked each time, not remembered: after os.fork() in another thread, the child's
    # main thread is the thread that forked.
    if threading.current_thread() is not threading.main_thread():
        return contextvars.Context().run(mailbox.put, item, run_here=True)
    return _put_on_main_thread(mailbox, item)


def _put_on_main_thread(mailbox: Mailbox, item: Any) -> bool:
    try:
        previous = _get_handler(_SIGINT)
        if previous is None or not _only_plain_handlers():
            # SIGINT's handler could not be put back, or another signal's handler
            # could run inside the turn: leave the turn to a worker.
            return mailbox.put(item)
        noted: list[int] = []

        def note(signum: int, _frame: Any) -> None:
            noted.append(signum)
            if len(noted) > 1:
                # A second Ctrl-C in one turn: the handler is taking too long. Deliver
                # this one now, inside it; the caller still gets its own afterwards.
                _set_handler(_SIGINT, previous)
                signal.raise_signal(_SIGINT)

        _set_handler(_SIGINT, note)
    except ValueError:  # not the main interpreter: signals are not ours to swap
        return mailbox.put(item)
    try:
        return contextvars.Context().run(mailbox.put, item, run_here=True)
    finally:
        _set_handler(_SIGINT, previous)
        if noted:
            # Runs the restored handler now: KeyboardInterrupt by default.
            signal.raise_signal(_SIGINT)
