"""`rt.replay` on Redis Streams: one session's events, cursors and gaps for every host.

    config = RuntimeConfig(replay_url="redis://127.0.0.1:6379/0")
    with Runtime.open("host.db", config=config) as rt:   # rt.replay is a StreamReplay
        event = rt.replay.append("s1", {"type": "commit"}, revision=3)
        ...                                               # the calls of rt.replay

The same calls, arguments, results and errors as the in-memory buffers
(`greenroom.replay.namespace`), and the same gap rules (`greenroom.replay.records`);
any runtime on the same Redis serves any session's events, and a cursor one host gave
resumes exactly on another.

Layout. Each session has two keys under `greenroom:replay:`: `<session>:events`, a
stream whose entries hold `p` (the position), `r` (the revision) and `d` (the payload
as JSON), and `<session>:meta`, a hash: `epoch`, `pos` (the last position), `rev`
(the highest revision), `ms` and `last` (the last entry's id), `aged` and `len` (the
stream's length, for trimming). An append is one Lua
script, so positions are dealt out atomically whichever host appends. Entry ids are
`<ms>-<seq>` with `ms` from the runtime's clock, never below the stream's last (a
host whose clock lags still appends in order). The same script trims the stream to
`max_events_per_session` (`XTRIM MAXLEN`, once it holds a sixteenth more) and
`max_event_age_s` (`XTRIM MINID`, by the clock, at most once a second); a read trims
exactly first, so no read sees more events, or older ones, than the config allows.
One append at a time goes on a connection of its own, packed by hand
(`Scripts.run_on`): the client's per-command work was a quarter of its time.

Cursors are `v2` (`greenroom.cursor`): they carry the entry id a read resumes after.
A read takes the meta hash, the stream's first entry and the entries after the cursor
in one script. A session with no keys answers as an empty stream at the unborn epoch
(`0000000000000000`), whose cursor at position 0 replays, once the session has
events, everything from the first (or gives a `trimmed` gap). Reads never make keys.

Waiting. A sync call runs its command on the calling thread; the steps an event loop
drives (`greenroom.aio.replay`) run it on a small pool of this part's, so the loop
never waits. `publish` / `publish_many` queue the append for a writer thread, which
sends everything queued in one pipeline; an `append` made while publishes are queued
goes the same way, so one thread's events keep their order. A publish that Redis
refuses is logged and counted (`replay_publishes_failed`); `close()` sends what is
queued before it returns.

Subscriptions: `subscribe` replays, then hands the subscription to a reader thread
that reads every subscribed stream with one `XREAD BLOCK` (and a wake stream of its
own, written when a subscription comes or goes), each from its subscription's last
entry: no gap and no duplicate. If events a subscriber was not given yet were trimmed
before the reader got them, the subscription lags (`SubscriberLagged` once its queued
events are taken) and resuming gives the `trimmed` gap. `follow` works as ever.

What differs from the in-memory buffers: payloads come back decoded from JSON (a copy);
`replay_buffers` and `replay_buffers_dropped` stay 0 (Redis holds the streams, and
an idle session's keys stay until deleted); `replay_trim_interval_s` is not used.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import attrs

from greenroom.actors.replay import gap_after
from greenroom.cursor import (
    STREAM_CURSOR_VERSION,
    ParsedCursor,
    format_stream_cursor,
)
from greenroom.errors import InvalidInput, InvalidTransition, StorageError
from greenroom.futures import GreenroomFuture, Steps
from greenroom.ids import next_hex_id
from greenroom.kernel import Kernel
from greenroom.replay.messages import (
    Append,
    batch_of,
    check_revision,
    check_session_id,
    current_cursor_message,
    encode_payloads,
)
from greenroom.replay.namespace import PendingSubscribe, Replay
from greenroom.replay.records import UNAVAILABLE, Gap, ObservationEvent, Replayed
from greenroom.replay.redis_scripts import (
    KEY_PREFIX,
    UNBORN_EPOCH,
    Scripts,
    entry_order,
    entry_parts,
    events_key,
    meta_key,
)
from greenroom.replay.stream_reader import Reading, StreamReader
from greenroom.replay.subscription import Subscription
from greenroom.urls import shown_url

try:  # the `redis` extra
    import redis
    from redis.exceptions import RedisError
except ImportError:  # pragma: no cover (checked when a replay_url is configured)
    redis = None  # type: ignore[assignment]
    RedisError = OSError  # type: ignore[assignment,misc]

__all__ = ["KEY_PREFIX", "UNBORN_EPOCH", "StreamReplay"]

log = logging.getLogger("greenroom.replay")

_SENT_BY_CALLER: Any = object()  # a `_Job.answer` not given yet, for its caller

_V1_DETAIL = (
    "the cursor names an in-memory buffer (v1); this runtime keeps the replay buffers in "
    f"Redis ({STREAM_CURSOR_VERSION} cursors)"
)

R = TypeVar("R")

_POOL_THREADS = 4


@attrs.frozen
class _Meta:
    """A stream's meta hash, read."""

    epoch: str
    tail: int
    revision: int
    last: str


@attrs.define
class _Job:
    """An append on its way to Redis: the writer's or the calling thread's."""

    session_id: str
    message: Append
    future: GreenroomFuture[Any] | None  # None: a publish, or sent by its caller
    data: list[str] = attrs.field(factory=list)
    answer: Any = None  # what the caller that sent it gets: the event(s)
    error: StorageError | None = None


class StreamReplay(Replay):
    """`rt.replay` kept in Redis Streams (`RuntimeConfig.replay_url`); see the module."""

    def __init__(self, kernel: Kernel, url: str) -> None:
        """Connect to Redis at `url` (`StorageError` if it does not answer)."""
        super().__init__(kernel)
        if redis is None:  # pragma: no cover (the extra is part of the dev install)
            raise InvalidInput(
                "RuntimeConfig.replay_url needs the redis client: pip install 'greenroom[redis]'"
            )
        self._url = url
        self._where = shown_url(url)
        self._clock = kernel.clock
        self._metrics = kernel.metrics
        try:
            self._client = redis.Redis.from_url(url, decode_responses=True)
            self._client.ping()
            self._scripts = Scripts(self._client)
        except (RedisError, ValueError) as error:
            raise StorageError(
                f"Redis at {self._where} (RuntimeConfig.replay_url) did not answer: {error}; "
                "start it, or leave replay_url unset to keep the buffers in memory"
            ) from None
        self._max_events = str(kernel.config.max_events_per_session)
        self._max_age_ms = int(kernel.config.max_event_age_s * 1000)
        # Appends: queued for the writer thread, or sent by the caller when none are.
        self._send_lock = threading.Lock()  # held while a batch is taken and sent
        self._conn: Any = None  # the connection one append is sent on (under _send_lock)
        self._conn_pid = 0  # the process that took it
        self._queue_lock = threading.Lock()
        self._queued: deque[_Job] = deque()
        # Taken from the queue and not yet sent (under _queue_lock): a read waits for
        # them too, or it could miss a publish made before it. `_sender`: the thread
        # sending them (whose futures' callbacks must not wait for itself).
        self._taken = 0
        self._sender = 0
        self._queue_ready = threading.Condition(self._queue_lock)
        self._writer: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._reader = StreamReader(
            url, self._client, self._metrics, self._stored_event, self._detached
        )
        self._stopping = False

    # -- the surface that differs -----------------------------------------------------------

    def counters(self) -> dict[str, int]:
        """As `Replay.counters`, plus `replay_publishes_failed` (publishes Redis refused,
        each logged); `replay_buffers` is 0 (Redis holds the streams)."""
        counters = super().counters()
        with self._queue_lock:
            counters["replay_publishes_pending"] = len(self._queued)
        counters["replay_publishes_failed"] = 0
        return counters

    def close(self) -> None:
        """Send what is queued, end every subscription, stop the threads; `close()` of
        the runtime calls it after every actor stopped."""
        super().close()  # (checks the runtime is closing; ends the subscriptions)
        with self._queue_lock:
            self._stopping = True
            writer = self._writer
            self._queue_ready.notify_all()
        if writer is not None:
            writer.join()
        self._send_queued()  # whatever came after the writer left
        with self._send_lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            self._client.connection_pool.release(conn)
        self._reader.stop()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._client.close()

    def publish(self, session_id: str, payload: Any, *, revision: int = 0) -> None:
        """`Replay.publish`: checked here, then queued for the writer thread."""
        self._queue(self._job(session_id, (payload,), revision, single=True))

    def publish_many(self, session_id: str, payloads: Iterable[Any], *, revision: int = 0) -> None:
        """`Replay.publish_many`: checked here, then queued for the writer thread."""
        job = self._job(session_id, batch_of(payloads), revision, single=False)
        if job.data:
            self._queue(job)

    def append(self, session_id: str, payload: Any, *, revision: int = 0) -> ObservationEvent:
        """`Replay.append` on Redis: sent on this thread (after what it published)."""
        self._refuse_inside_actor("replay.append()")
        job = self._job(session_id, (payload,), revision, single=True)
        if self._send_alone(job):
            if job.error is not None:
                raise job.error
            event: ObservationEvent = job.answer
            return event
        job.future = GreenroomFuture()
        self._queue(job)
        answered: ObservationEvent = job.future.get()
        return answered

    def append_steps(
        self, session_id: str, payload: Any, *, revision: int = 0, caller_runs: bool = False
    ) -> Steps[ObservationEvent]:
        """`Replay.append_steps` on Redis (`caller_runs`: sent by the driving thread)."""
        job = self._job(session_id, (payload,), revision, single=True)
        return self._append_steps(job, caller_runs=caller_runs)

    def append_many_steps(
        self,
        session_id: str,
        payloads: Iterable[Any],
        *,
        revision: int = 0,
        caller_runs: bool = False,
    ) -> Steps[list[ObservationEvent]]:
        """`Replay.append_many_steps` on Redis."""
        job = self._job(session_id, batch_of(payloads), revision, single=False)
        if not job.data:
            return _answered([])
        return self._append_steps(job, caller_runs=caller_runs)

    def current_cursor_steps(
        self, session_id: str, revision: int = 0, *, caller_runs: bool = False
    ) -> Steps[str]:
        """`Replay.current_cursor_steps` on Redis: makes the session's meta if missing."""
        self._check_open()
        check_session_id(session_id)
        checked = current_cursor_message(revision).revision
        return self._run_steps(lambda: self._current_cursor(session_id, checked), caller_runs)

    def after_steps(
        self, cursor: str, *, session_id: str | None = None, caller_runs: bool = False
    ) -> Steps[Replayed | Gap]:
        """`Replay.after_steps` on Redis; the cursor is checked now."""
        parsed = self._parse(cursor, session_id)
        return self._run_steps(lambda: self._after(parsed, cursor)[0], caller_runs)

    def subscribe(self, cursor: str, *, session_id: str | None = None) -> Subscription | Gap:
        """`Replay.subscribe` on Redis: the replay read on this thread, then live events
        from the reader thread."""
        self._refuse_inside_actor("replay.subscribe()")
        pending = _StreamSubscribe(self, self._parse(cursor, session_id), cursor, here=True)
        return pending.wait(None)

    def subscribe_pending(self, cursor: str, *, session_id: str | None = None) -> PendingSubscribe:
        """`Replay.subscribe_pending` on Redis: the read runs on this part's pool."""
        return _StreamSubscribe(self, self._parse(cursor, session_id), cursor, here=False)

    # -- appends ----------------------------------------------------------------------------

    def _job(
        self, session_id: str, payloads: tuple[Any, ...], revision: object, *, single: bool
    ) -> _Job:
        """An append's job, its input checked and its payloads encoded (once)."""
        self._check_open()
        check_session_id(session_id)
        checked = check_revision(revision)
        data = encode_payloads(payloads)
        return _Job(session_id, Append(payloads, checked, single), None, data)

    def _append_steps(self, job: _Job, *, caller_runs: bool) -> Steps[Any]:
        if caller_runs and self._send_alone(job):
            if job.error is not None:
                raise job.error
            return _answered(job.answer)
        job.future = GreenroomFuture()
        self._queue(job)
        return _awaited(job.future)

    def _queue(self, job: _Job) -> None:
        with self._queue_lock:
            if self._stopping:
                raise InvalidTransition("the runtime is closing: nothing more is appended")
            self._queued.append(job)
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_loop, name="greenroom-replay-writer", daemon=True
                )
                self._writer.start()
            self._queue_ready.notify()

    def _send_alone(self, job: _Job) -> bool:
        """Send `job` on this thread if nothing is queued before it; whether it was
        (its `answer` or `error` set)."""
        with self._send_lock:
            with self._queue_lock:
                if self._stopping:
                    raise InvalidTransition("the runtime is closing: nothing more is appended")
                if self._queued:
                    return False
            job.answer = _SENT_BY_CALLER
            self._send([job])
        return True

    def _held(self) -> Any:
        """The connection single appends go on (call holding `_send_lock`): taken from
        the pool once, and again in a forked child (the parent's socket is never
        written from two processes) or when redis-py says it must reconnect."""
        conn, pid = self._conn, os.getpid()
        if conn is not None and (self._conn_pid != pid or conn.should_reconnect()):
            if self._conn_pid == pid:
                conn.disconnect()
            conn = None
        if conn is None:
            conn = self._client.connection_pool.get_connection()
            self._conn, self._conn_pid = conn, pid
        return conn

    def _write_loop(self) -> None:
        while True:
            with self._queue_lock:
                while not self._queued and not self._stopping:
                    self._queue_ready.wait()
                if not self._queued:
                    return
            self._send_queued()

    def _send_queued(self) -> None:
        with self._send_lock:
            with self._queue_lock:
                jobs = list(self._queued)
                self._queued.clear()
                self._taken += len(jobs)
                self._sender = threading.get_ident()
            try:
                if jobs:
                    self._send(jobs)
            finally:
                with self._queue_lock:
                    self._taken -= len(jobs)

    def _send(self, jobs: list[_Job]) -> None:
        """Append `jobs` (one at a time, or in one pipeline); resolve their futures.
        Call holding `_send_lock`."""
        now = self._clock.now_ms()
        min_id = str(max(0, now - self._max_age_ms))
        calls = [
            (
                [events_key(job.session_id), meta_key(job.session_id)],
                [next_hex_id(), job.message.revision, now, self._max_events, min_id, *job.data],
            )
            for job in jobs
        ]
        replies: list[Any]
        try:
            if len(calls) == 1:
                replies = [self._scripts.run_on(self._held(), "append", *calls[0])]
            else:
                replies = self._pipelined(calls)
        except RedisError as error:
            replies = [error] * len(jobs)
        for job, reply in zip(jobs, replies, strict=True):
            if isinstance(reply, Exception):
                self._failed(job, reply)
                continue
            epoch, first, trimmed, *ids = reply.split(" ")
            self._metrics.incr("replay_events_appended", len(ids))
            if trimmed != "0":
                self._metrics.incr("replay_events_trimmed", int(trimmed))
                log.debug("replay: trimmed %s events of session %r", trimmed, job.session_id)
            if job.future is None and job.answer is not _SENT_BY_CALLER:
                continue  # a publish
            sid, revision, start = job.session_id, job.message.revision, int(first)
            events = [
                self._event(sid, epoch, revision, start + n, ids[n], payload)
                for n, payload in enumerate(job.message.payloads)
            ]
            answer = events[0] if job.message.single else events
            if job.future is None:
                job.answer = answer
            else:
                job.future.set(answer)

    def _pipelined(self, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        """The append script's replies to `calls`, sent in one pipeline (each a reply or
        the error Redis gave); scripts Redis lost are loaded and their calls sent again."""
        pipe = self._client.pipeline(transaction=False)
        for keys, args in calls:
            self._scripts.queue(pipe, "append", keys, args)
        replies: list[Any] = pipe.execute(raise_on_error=False)
        if any(map(self._scripts.missing, replies)):
            self._scripts.load()
            for n, reply in enumerate(replies):
                if self._scripts.missing(reply):
                    try:
                        replies[n] = self._scripts.run("append", *calls[n])
                    except RedisError as error:
                        replies[n] = error  # this one alone: the others were stored
        return replies

    def _failed(self, job: _Job, error: Exception) -> None:
        failure = self._storage_error("append", job.session_id, error)
        if job.future is not None:
            job.future.set_exception((StorageError, failure, None))
            return
        if job.answer is _SENT_BY_CALLER:
            job.error = failure
            return
        self._metrics.incr("replay_publishes_failed")
        log.error(
            "replay: %d published event(s) of session %r were not stored: %s",
            len(job.data),
            job.session_id,
            failure,
        )

    # -- reads --------------------------------------------------------------------------------

    def _flush_publishes(self) -> None:
        """Send what publishes are queued first: a cursor or a read made after a
        publish sees it, as the in-memory buffer's mailbox order gives."""
        with self._queue_lock:
            if self._taken and self._sender == threading.get_ident():
                return  # a callback of the batch being sent: it is stored already
            pending = bool(self._queued) or self._taken > 0
        if pending:
            self._send_queued()  # (waits on _send_lock for a batch the writer is sending)

    def _current_cursor(self, session_id: str, revision: int) -> str:
        self._flush_publishes()
        try:
            epoch, tail, last = self._scripts.run(
                "cursor", [meta_key(session_id)], [next_hex_id(), revision]
            )
        except RedisError as error:
            raise self._storage_error("current_cursor", session_id, error) from None
        return format_stream_cursor(epoch, revision, int(tail), last, session_id)

    def _after(
        self, parsed: ParsedCursor, cursor: str
    ) -> tuple[Replayed | Gap, _Meta | None, tuple[int, int]]:
        """`after`'s answer; the stream's meta (None: no keys); the last entry read."""
        sid = parsed.session_id
        self._flush_publishes()
        min_id = str(max(0, self._clock.now_ms() - self._max_age_ms))
        start = parsed.stream_id or "0-0"
        try:
            reply = self._scripts.run(
                "read",
                [events_key(sid), meta_key(sid)],
                [min_id, parsed.epoch, start, self._max_events],
            )
        except RedisError as error:
            raise self._storage_error("read", sid, error) from None
        epoch, tail, revision, last_id, trimmed, first, rows = reply
        if trimmed:
            self._metrics.incr("replay_events_trimmed", int(trimmed))
        streamed = parsed.stream_id is not None
        if not epoch:
            unborn = format_stream_cursor(UNBORN_EPOCH, 0, 0, "0-0", sid)
            if streamed and parsed.epoch == UNBORN_EPOCH and parsed.position == 0:
                return Replayed(sid, (), cursor), None, (0, 0)
            # Any other cursor names what no stream holds: unavailable.
            missing = gap_after(parsed, cursor, sid, UNBORN_EPOCH, 0, 0, None, latest=unborn)
            why = missing.detail if streamed and missing is not None else _V1_DETAIL
            detail = f"{why} (session {sid!r} has no events in Redis)"
            return Gap(sid, UNAVAILABLE, cursor, unborn, 0, None, detail), None, (0, 0)
        meta = _Meta(epoch, int(tail), int(revision), last_id)
        latest = format_stream_cursor(meta.epoch, meta.revision, meta.tail, meta.last, sid)
        unborn_start = streamed and parsed.epoch == UNBORN_EPOCH and parsed.position == 0
        seen = parsed if not unborn_start else attrs.evolve(parsed, epoch=meta.epoch)
        oldest = int(first) if first else None
        if not streamed:
            gap: Gap | None = Gap(sid, UNAVAILABLE, cursor, latest, meta.revision, None, _V1_DETAIL)
        else:
            gap = gap_after(
                seen, cursor, sid, meta.epoch, meta.tail, meta.revision, oldest, latest=latest
            )
        if gap is not None:
            return gap, meta, (0, 0)
        events, last_read = self._read_events(sid, meta.epoch, rows)
        last = entry_order(last_read or start)
        latest_cursor = events[-1].cursor if events else cursor
        return Replayed(sid, tuple(events), latest_cursor), meta, last

    def _read_events(
        self, session_id: str, epoch: str, rows: str
    ) -> tuple[list[ObservationEvent], str | None]:
        """The events of the read script's entries (one JSON text: [[id, position,
        revision, payload], ...]), decoded in one pass; the last entry's id."""
        if not rows:
            return [], None
        try:
            decoded = json.loads(rows)
        except ValueError as error:
            raise self._damaged(session_id, error) from None
        events = [
            ObservationEvent(
                session_id,
                revision,
                position,
                format_stream_cursor(epoch, revision, position, entry_id, session_id),
                payload,
            )
            for entry_id, position, revision, payload in decoded
        ]
        return events, decoded[-1][0] if decoded else None

    def _damaged(self, session_id: str, error: BaseException) -> StorageError:
        return StorageError(
            f"Redis at {self._where} holds a damaged event of session {session_id!r} "
            f"({error}); delete the session's keys ({KEY_PREFIX}{session_id}:events and "
            ":meta) to start it afresh"
        )

    def _event(
        self,
        session_id: str,
        epoch: str,
        revision: int,
        position: int,
        entry_id: str,
        payload: Any,
    ) -> ObservationEvent:
        cursor = format_stream_cursor(epoch, revision, position, entry_id, session_id)
        return ObservationEvent(session_id, revision, position, cursor, payload)

    def _stored_event(
        self, session_id: str, epoch: str, entry_id: str, raw: Any
    ) -> ObservationEvent:
        """The event of an entry `XREAD` gave (its payload decoded: a copy)."""
        position, revision, data = entry_parts(raw)
        try:
            payload = json.loads(data)
        except ValueError as error:
            raise self._damaged(session_id, error) from None
        return self._event(session_id, epoch, int(revision), int(position), entry_id, payload)

    # -- helpers ------------------------------------------------------------------------------

    def _run_steps(self, call: Callable[[], R], caller_runs: bool) -> Steps[R]:
        """Steps that run `call` on the driving thread (`caller_runs`) or on the pool."""
        if caller_runs:
            return _called(call)
        return _awaited(self._submit(call))

    def _submit(self, call: Callable[[], R]) -> GreenroomFuture[R]:
        future: GreenroomFuture[R] = GreenroomFuture()
        with self._queue_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    _POOL_THREADS, thread_name_prefix="greenroom-replay-redis"
                )
            pool = self._pool

        def run() -> None:
            try:
                value = call()
            except BaseException:
                future.set_exception()
            else:
                future.set(value)

        pool.submit(run)
        return future

    def _storage_error(self, what: str, session_id: str, error: BaseException) -> StorageError:
        return StorageError(
            f"Redis at {self._where} refused the replay {what} of session {session_id!r}: {error}"
        )


class _StreamSubscribe(PendingSubscribe):
    """A subscribe on Redis: its replay read (here, or on the pool), then the reader."""

    __slots__ = ("_stream_api", "_stream_future", "_stream_parsed", "_stream_sub")

    def __init__(self, api: StreamReplay, parsed: ParsedCursor, cursor: str, *, here: bool) -> None:
        # (PendingSubscribe's own state is for actors; this one keeps its own.)
        self._stream_api = api
        self._stream_parsed = parsed
        self._stream_sub = Subscription(
            parsed.session_id, cursor, api._config.subscriber_queue_size, api._reader.remove
        )
        with api._lock:
            api._check_open()
            api._subs.add(self._stream_sub)
        if here:
            future: GreenroomFuture[Subscription | Gap] = GreenroomFuture()
            try:
                future.set(self._start(cursor))
            except BaseException:
                self.cancel()
                raise
            self._stream_future = future
        else:
            self._stream_future = api._submit(lambda: self._start(cursor))

    def _start(self, cursor: str) -> Subscription | Gap:
        api, sub = self._stream_api, self._stream_sub
        try:
            answer, meta, last = api._after(self._stream_parsed, cursor)
        except BaseException:
            self.cancel()
            raise
        if isinstance(answer, Gap):
            self.cancel()
            return answer
        sub._start(answer.events)
        position = answer.events[-1].position if answer.events else self._stream_parsed.position
        epoch = meta.epoch if meta is not None else UNBORN_EPOCH
        reading = Reading(sub, events_key(sub.session_id), epoch, last, position)
        api._reader.add(reading)
        return sub

    @property
    def session_id(self) -> str:
        """The session subscribed to (the cursor's)."""
        return self._stream_parsed.session_id

    @property
    def future(self) -> GreenroomFuture[Any]:
        """Resolved once the replay was read and the subscription handed to the reader."""
        return self._stream_future

    def poll(self) -> Subscription | Gap | None:
        """The `Subscription` or `Gap` once `future` resolved, else `None`; never waits."""
        if not self._stream_future.done:
            return None
        return self._stream_future.get(timeout=0)

    def wait(self, timeout: float | None) -> Subscription | Gap:
        """The `Subscription` or `Gap`; `Timeout` (still pending) after `timeout` s."""
        return self._stream_future.get(timeout=timeout)

    def cancel(self) -> None:
        """Give it up: the subscription it would give is closed."""
        self._stream_sub.close()
        self._stream_api._detached(self._stream_sub)

    def __repr__(self) -> str:
        state = "done" if self._stream_future.done else "pending"
        return f"<PendingSubscribe on Redis {self._stream_parsed.session_id!r} {state}>"


def _answered(value: R) -> Steps[R]:
    """Steps that wait for nothing and give `value`."""
    yield from ()
    return value


def _called(call: Callable[[], R]) -> Steps[R]:
    """Steps that run `call` when first driven, on the driving thread."""
    yield from ()
    return call()


def _awaited(future: GreenroomFuture[R]) -> Steps[R]:
    """Steps that wait for `future` and give its value."""
    yield future
    return future.get(timeout=0)
