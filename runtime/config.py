"""`RuntimeConfig`: every tunable of a runtime, validated when it is made."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from greenroom.checks import (
    MAX_TIMEOUT_S,
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_path,
    check_text,
    validator,
)
from greenroom.errors import InvalidInput
from greenroom.pricing import check_pricing_table

__all__ = ["RuntimeConfig"]


# Seconds are bounded so no wait or timer overflows: waits as every timeout is (ten
# years), timers and ages by what the clock schedules (1e12 s, "never" in practice);
# counts by what SQLite and a process can hold.
_wait = validator(check_number, positive=True, maximum=MAX_TIMEOUT_S)
_positive_number = validator(check_number, positive=True, maximum=1e12)
_optional_positive_number = validator(
    check_number, optional=True, positive=True, maximum=MAX_TIMEOUT_S
)
_positive_int = validator(check_int, minimum=1, maximum=2**62)
_thread_count = validator(check_int, minimum=1, maximum=4096)
_bool = validator(check_bool)


def _mode(owner: int) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    """A permission-bits validator: at most 0o777, and with the `owner` bits set (a file
    or folder greenroom could not use again after making it is refused up front)."""
    bits = validator(check_int, minimum=0, maximum=0o777)

    def validate(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        bits(inst, attribute, value)
        if value & owner != owner:
            raise InvalidInput(
                f"{type(inst).__name__}.{attribute.name} must give the owner {owner:#o} "
                f"(greenroom reopens what it makes), got {value:#o}"
            )

    return validate


def _at_least(minimum: int) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    return validator(check_int, minimum=minimum, maximum=4096)


def _one_of(*choices: str) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    return validator(check_choice, choices=choices)


def _optional_path(value: Any) -> Any:
    # A converter: a str or os.PathLike becomes a Path; bad values go to the validator,
    # which names the field.
    if isinstance(value, str | os.PathLike) and value != "":
        try:
            return check_path(value, "path")
        except InvalidInput:
            return value
    return value


def _path_or_none(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        check_path(value, f"{type(inst).__name__}.{attribute.name}")


def _optional_host_id(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        check_text(value, f"{type(inst).__name__}.{attribute.name}", nonempty=True)
        if len(value) > 200:
            raise InvalidInput(
                f"{type(inst).__name__}.{attribute.name} is {len(value)} characters; at most 200"
            )


_REPLAY_SCHEMES = ("redis://", "rediss://", "unix://")


def _replay_url(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value.startswith(_REPLAY_SCHEMES):
        shown = repr(value) if isinstance(value, str) else type(value).__name__
        raise InvalidInput(
            f"{type(inst).__name__}.{attribute.name} must be None or a Redis URL starting "
            f"with {', '.join(_REPLAY_SCHEMES)} (got {shown[:80]}), for example "
            "'redis://127.0.0.1:6379/0'"
        )


def _pricing(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, dict):
        raise InvalidInput(
            f"RuntimeConfig.{attribute.name} must be a dict of 'provider:model' to "
            f"ModelPricing, got {type(value).__name__}"
        )
    check_pricing_table(value)


@attrs.frozen(kw_only=True)
class RuntimeConfig:
    """Every tunable of a `Runtime`, with defaults that suit most hosts.

    Frozen: make a changed copy with `attrs.evolve(config, field=value)`. A bad value
    (a negative or zero interval, a zero capacity, an unknown choice) raises
    `InvalidInput` when the config is made, never later.
    """

    settle_timeout_s: float = attrs.field(default=30.0, validator=_wait)
    """Real seconds `Runtime.settle()` waits for every actor to go idle."""

    stop_timeout_s: float = attrs.field(default=30.0, validator=_wait)
    """Real seconds `Runtime.close()` waits for the actors to finish and stop."""

    process_stop_timeout_s: float = attrs.field(default=5.0, validator=_wait)
    """Real seconds a program run by `greenroom.processes` gets between SIGTERM and
    SIGKILL when its runtime closes while it runs."""

    file_chunk_bytes: int = attrs.field(default=256 * 1024, validator=_positive_int)
    """Largest piece a stored file is split into; appends cost O(appended bytes)."""

    sqlite_synchronous: str = attrs.field(
        default="FULL", validator=_one_of("OFF", "NORMAL", "FULL", "EXTRA")
    )
    """SQLite `synchronous` setting: FULL survives power loss; NORMAL only crashes."""

    sqlite_secure_delete: str = attrs.field(default="FAST", validator=_one_of("OFF", "FAST", "ON"))
    """SQLite `secure_delete`: FAST zeroes deleted content where it costs no extra I/O;
    ON zeroes every freed page (dropping a 100 MB output writes 100 MB more)."""

    sqlite_busy_timeout_s: float = attrs.field(default=5.0, validator=_wait)
    """How long a write waits for another process (such as the CLI) holding the lock."""

    dispatcher_threads: int = attrs.field(default=4, validator=_thread_count)
    """Worker threads that run every actor's handlers (actors share them, none owns one)."""

    dispatcher_throughput: int = attrs.field(default=64, validator=_positive_int)
    """Messages an actor handles in one turn before the next runnable actor gets a thread."""

    caller_runs: bool = attrs.field(default=True, validator=_bool)
    """A thread that asks an idle actor and waits for the answer with no timeout runs
    the actor's turn itself instead of waking a dispatcher worker (see
    `greenroom.actors.caller_runs`); `False` sends every turn to the workers."""

    slow_handler_warning_s: float | None = attrs.field(
        default=0.1, validator=_optional_positive_number
    )
    """A handler running longer than this logs a warning naming the actor and message
    type (handlers must not block); `None` turns the check off."""

    blocking_threads: int = attrs.field(default=16, validator=_at_least(2))
    """Most threads of the separate pool for work that must block (`run_blocking`);
    at least 2, since a sweep running there waits for archive jobs run there too."""

    stats_flush_interval_s: float = attrs.field(default=1.0, validator=_positive_number)
    """A block writes its session stats at most this often, and once more when an
    interval with new lines ends (the first line is written at once)."""

    output_commit_delay_s: float = attrs.field(
        default=0.02, validator=validator(check_number, minimum=0, maximum=60)
    )
    """How long block output may wait for more before the writer commits it: one
    commit then serves every block's output of that span (at host scale, far fewer
    pages written per line). `flush()`, `rt.settle()` and a stop commit at once; 0
    commits as soon as the writer is free."""

    archive_dir: Path | None = attrs.field(
        default=None, converter=_optional_path, validator=_path_or_none
    )
    """Folder for compressed block outputs; `None` means `<database>.archives` beside
    the database (a temporary folder for `":memory:"`)."""

    archive_codec: str = attrs.field(default="zstd", validator=_one_of("zstd", "gzip"))
    """How archives are compressed; reading recognises either by its magic bytes."""

    sweep_first_after_s: float = attrs.field(default=60.0, validator=_positive_number)
    """Seconds after the sweep supervisor starts before its first sweep."""

    sweep_interval_s: float = attrs.field(default=3600.0, validator=_positive_number)
    """Seconds between sweeps after the first."""

    inactive_days: float = attrs.field(default=7.0, validator=_positive_number)
    """A sweep archives `view == "agent"` blocks idle for at least this many days."""

    max_archive_bytes: int = attrs.field(default=2 * 1024**3, validator=_positive_int)
    """A sweep prunes the archive folder, oldest first, down to this many bytes."""

    max_pending_output_bytes: int = attrs.field(default=64 * 1024**2, validator=_positive_int)
    """Backpressure: output a block has accepted but not yet stored (held during an
    archive or restore, or waiting for the block writer) beyond this many bytes makes
    `Block.append_output` wait, outside handlers, for the writer to catch up (inside a
    handler it raises `Timeout` at once). The backlog is the `pending_output_bytes`
    metric."""

    output_wait_timeout_s: float = attrs.field(default=30.0, validator=_wait)
    """Real seconds `Block.append_output` waits under backpressure before `Timeout`."""

    # -- files --------------------------------------------------------------------------

    file_mode: int = attrs.field(default=0o600, validator=_mode(0o600))
    """Permissions of files greenroom creates (database, transcripts, archives): only
    the owner may read them by default. Set exactly, whatever the umask; the owner's
    read and write bits (0o600) are required."""

    dir_mode: int = attrs.field(default=0o700, validator=_mode(0o700))
    """Permissions of folders greenroom creates (archive and transcript folders, the
    database's folder when missing); the owner's bits (0o700) are required."""

    # -- executions ---------------------------------------------------------------------

    strategy_threads: int = attrs.field(default=32, validator=_thread_count)
    """Most threads running plain (non-async) strategies at once; async strategies
    need none (a paused one is a suspended coroutine)."""

    result_retention_s: float = attrs.field(default=3600.0, validator=_positive_number)
    """A finished execution keeps its final result this long, for late status calls."""

    execution_passivate_after_s: float | None = attrs.field(
        default=300.0, validator=_optional_positive_number
    )
    """A durable execution paused and idle this long leaves memory (its actor stops; its
    journal brings it back on its next call); None keeps every session in memory."""

    host_id: str | None = attrs.field(default=None, validator=_optional_host_id)
    """This runtime's name among the hosts of one shared store (PostgreSQL): what a
    `LeaseHeld` error names. None: `<hostname>:<pid>:<random>`, new per runtime."""

    lease_s: float = attrs.field(default=30.0, validator=_positive_number)
    """On a shared store (PostgreSQL), how long a host's lease on a durable execution
    lasts without renewal; the host renews its leases every third of it, and another
    host takes over an execution whose lease ran out (its host died)."""

    gc_interval_s: float = attrs.field(default=60.0, validator=_positive_number)
    """Seconds between the execution GC supervisor's reaps."""

    execution_ttl_s: float = attrs.field(default=3 * 3600.0, validator=_positive_number)
    """An execution idle (neither fed nor progressing) longer than this is cancelled
    and removed by the GC, running ones included."""

    # -- transcripts --------------------------------------------------------------------

    transcript_dir: Path | None = attrs.field(
        default=None, converter=_optional_path, validator=_path_or_none
    )
    """Folder for transcript JSONL files; `None` means `<database>.transcripts` beside
    the database (a temporary folder for `":memory:"`)."""

    transcript_durability: str = attrs.field(
        default="turn", validator=_one_of("turn", "entry", "none")
    )
    """Default fsync policy of transcripts: once per turn, after every entry, or never."""

    pricing: dict[str, Any] = attrs.field(factory=dict, validator=_pricing)
    """Extra or overriding `ModelPricing` entries keyed by `"provider:model"`, on top of
    the built-in table used by `Transcript.cost()`."""

    # -- replay buffers -----------------------------------------------------------------

    max_events_per_session: int = attrs.field(default=2048, validator=_positive_int)
    """Most events a replay buffer holds; older ones are trimmed (counted)."""

    max_event_age_s: float = attrs.field(default=120.0, validator=_positive_number)
    """Events older than this are trimmed; an empty buffer with no subscribers idle
    longer than this is dropped."""

    replay_trim_interval_s: float = attrs.field(default=10.0, validator=_positive_number)
    """Seconds between the replay supervisor's age-trimming ticks."""

    subscriber_queue_size: int = attrs.field(default=1024, validator=_positive_int)
    """Live events a subscriber may have waiting before it is lagged."""

    replay_url: str | None = attrs.field(default=None, validator=_replay_url)
    """Keep the replay buffers in Redis Streams at this URL (`redis://host:port/db`,
    `rediss://...`, `unix:///path`) instead of in this process's memory, so every
    host on that Redis serves every session's events (`greenroom.replay.streams`;
    `pip install 'greenroom[redis]'`). None (the default): in memory."""
