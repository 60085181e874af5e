"""`CommitGate`: answers held until the writes submitted before them are committed."""

from __future__ import annotations

from greenroom.actors.commit_gate import CommitGate
from greenroom.errors import StorageError


class Recorder:
    """An answer that notes how it was given, in a shared log."""

    def __init__(self, log: list[str], name: str) -> None:
        self.log = log
        self.name = name

    def set(self, value: object) -> None:
        self.log.append(f"{self.name} {value}")

    def fail(self, error: BaseException) -> None:
        self.log.append(f"{self.name} {error}")


def recorder(log: list[str], name: str) -> tuple[Recorder, str]:
    """An answer and the value it is held with ("ok")."""
    return Recorder(log, name), "ok"


def test_nothing_pending_is_answered_at_once() -> None:
    gate = CommitGate()
    log: list[str] = []
    assert not gate.pending
    assert gate.hold(*recorder(log, "a")) is False  # the caller answers itself
    assert log == []


def test_an_answer_waits_for_every_write_before_it_and_no_later_one() -> None:
    gate = CommitGate()
    log: list[str] = []
    first = gate.submitted()
    assert gate.hold(*recorder(log, "a"))  # waits for write 1
    second = gate.submitted()
    assert gate.hold(*recorder(log, "b"))  # waits for writes 1 and 2
    gate.done(first, None)
    assert log == ["a ok"]
    assert gate.pending
    third = gate.submitted()
    gate.done(second, None)
    assert log == ["a ok", "b ok"]  # (write 3 came after b: b does not wait for it)
    gate.done(third, None)
    assert not gate.pending


def test_a_failed_write_fails_what_waited_for_it_and_everything_after() -> None:
    gate = CommitGate()
    log: list[str] = []
    first = gate.submitted()
    assert gate.hold(*recorder(log, "a"))
    second = gate.submitted()
    assert gate.hold(*recorder(log, "b"))
    gate.done(first, None)
    gate.done(second, StorageError("disk full"))
    assert log == ["a ok", "b disk full"]
    assert isinstance(gate.failed, StorageError)
    assert gate.hold(*recorder(log, "c"))  # failed for good: answered with the error
    assert log[-1] == "c disk full"


def test_a_failure_told_before_an_earlier_success_fails_what_is_not_known_committed() -> None:
    gate = CommitGate()
    log: list[str] = []
    first = gate.submitted()
    assert gate.hold(*recorder(log, "a"))  # waits for write 1
    second = gate.submitted()
    gate.done(second, StorageError("conflict"))  # told first: write 1 not heard of yet
    assert log == ["a conflict"]  # never released as if write 1 were committed
    gate.done(first, None)
    assert log == ["a conflict"]


def test_an_answer_held_up_to_a_mark_waits_for_the_writes_before_the_mark_only() -> None:
    gate = CommitGate()
    log: list[str] = []
    first = gate.submitted()
    mark = gate.mark()
    own = gate.submitted()  # made after the mark: the answer does not wait for it
    assert gate.hold(*recorder(log, "early"), upto=mark)
    gate.done(first, None)
    assert log == ["early ok"]
    assert gate.pending  # its own write is still to commit
    assert gate.hold(*recorder(log, "late"))  # an ordinary answer waits for it
    gate.done(own, None)
    assert log == ["early ok", "late ok"]
    # A mark with nothing before it pending: answered at once.
    assert gate.hold(*recorder(log, "free"), upto=gate.mark()) is False


def test_an_answer_held_up_to_a_mark_fails_when_a_write_fails() -> None:
    gate = CommitGate()
    log: list[str] = []
    first = gate.submitted()
    assert gate.hold(*recorder(log, "early"), upto=gate.mark())
    gate.done(first, StorageError("disk full"))
    assert log == ["early disk full"]
