"""`StreamReader`: the thread that feeds the subscriptions of `greenroom.replay.streams`.

One per runtime, started with its first subscription. It reads every subscribed
stream with one `XREAD BLOCK`, each from the earliest entry one of its subscriptions
has not been given, plus a wake stream of its own (written by `add`, `remove` and
`stop`, so a change never waits for the block to end). Each subscription is given only
entries after its own last one, in order; a position that skips ahead means entries
were trimmed before they reached it, and the subscription lags rather than skip.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import attrs

from greenroom.clock import backoff_wait
from greenroom.ids import next_hex_id
from greenroom.metrics import Metrics
from greenroom.replay.records import ObservationEvent
from greenroom.replay.redis_scripts import KEY_PREFIX, UNBORN_EPOCH, entry_order, entry_parts
from greenroom.replay.subscription import Subscription

try:  # the `redis` extra
    import redis
    from redis.exceptions import RedisError
except ImportError:  # pragma: no cover (checked when a replay_url is configured)
    redis = None  # type: ignore[assignment]
    RedisError = OSError  # type: ignore[assignment,misc]

__all__ = ["Reading", "StreamReader"]

log = logging.getLogger("greenroom.replay")

_BLOCK_MS = 5_000  # the XREAD BLOCK; a poke of the wake stream ends it sooner
_MAX_BACKOFF_S = 5.0  # the longest wait before reading again after Redis failed

MakeEvent = Callable[[str, str, str, Any], ObservationEvent]
"""(session id, epoch, entry id, the entry's fields as Redis gave them) -> the event."""


@attrs.define(eq=False)
class Reading:
    """A subscription the reader feeds: where in its stream it is."""

    sub: Subscription
    key: str
    epoch: str
    last: tuple[int, int]
    position: int


class StreamReader:
    """The thread that reads every subscribed stream and feeds the subscriptions."""

    def __init__(
        self,
        url: str,
        client: Any,
        metrics: Metrics,
        make_event: MakeEvent,
        on_removed: Callable[[Subscription], None],
    ) -> None:
        """Read with a client of its own on `url`; poke with `client` (the runtime's)."""
        self._url = url
        self._poker = client
        self._metrics = metrics
        self._make_event = make_event
        self._on_removed = on_removed
        self._lock = threading.Lock()
        self._readings: dict[str, list[Reading]] = {}
        self._by_sub: dict[int, Reading] = {}
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._wake_key = f"{KEY_PREFIX}~wake:{next_hex_id()}"
        self._client: Any = None
        self._stop = threading.Event()  # set by `stop`: ends a backoff wait at once

    def add(self, reading: Reading) -> None:
        """Feed `reading`'s subscription from its last entry on."""
        with self._lock:
            if self._stopped:
                reading.sub._stop("the runtime closed")
                return
            if reading.sub.closed:
                return  # given up while its replay was read: nothing to feed
            self._readings.setdefault(reading.key, []).append(reading)
            self._by_sub[id(reading.sub)] = reading
            if self._thread is None:
                # No socket timeout: XREAD BLOCK waits up to _BLOCK_MS by itself.
                self._client = redis.Redis.from_url(
                    self._url, decode_responses=True, socket_timeout=None
                )
                self._thread = threading.Thread(
                    target=self._run, name="greenroom-replay-reader", daemon=True
                )
                self._thread.start()
        self._poke()

    def remove(self, sub: Subscription) -> None:
        """Stop feeding `sub` (closed, lagged or given up)."""
        with self._lock:
            reading = self._by_sub.pop(id(sub), None)
            if reading is not None:
                readings = self._readings.get(reading.key, [])
                if reading in readings:
                    readings.remove(reading)
                if not readings:
                    self._readings.pop(reading.key, None)
        self._on_removed(sub)

    def stop(self) -> None:
        """End the thread (after the subscriptions were stopped)."""
        with self._lock:
            self._stopped = True
            thread = self._thread
        self._stop.set()
        if thread is not None:
            self._poke()
            thread.join()
            self._client.close()
            try:
                self._poker.delete(self._wake_key)
            except RedisError:
                log.warning("replay: could not delete the reader's wake stream %s", self._wake_key)

    def _poke(self) -> None:
        """End the reader's current `XREAD` so that it reads the streams as they are now."""
        try:
            self._poker.xadd(self._wake_key, {"w": "1"}, maxlen=1)
        except RedisError as error:
            log.warning("replay: could not wake the reader (%s); it rereads within 5 s", error)

    def _run(self) -> None:
        wake_from = "0-0"
        failures = 0
        while True:
            with self._lock:
                if self._stopped:
                    return
                streams = {
                    key: "{}-{}".format(*min(reading.last for reading in readings))
                    for key, readings in self._readings.items()
                }
            starts = {key: entry_order(start) for key, start in streams.items()}
            streams[self._wake_key] = wake_from
            try:
                replies = self._client.xread(streams, block=_BLOCK_MS)
            except RedisError as error:
                if self._is_stopped():
                    return
                failures += 1
                wait = min(_MAX_BACKOFF_S, 0.05 * 2**failures)
                if failures == 1 or failures % 20 == 0:
                    log.error(
                        "replay: the reader's XREAD failed (%s, %d time(s) in a row); "
                        "trying again in %.1f s",
                        error,
                        failures,
                        wait,
                    )
                if backoff_wait(self._stop, wait):
                    return
                continue
            if failures:
                log.info("replay: the reader reads again after %d failure(s)", failures)
                failures = 0
            for key, entries in _by_stream(replies):
                if key == self._wake_key:
                    wake_from = entries[-1][0]
                    continue
                self._deliver(key, entries, starts.get(key))

    def _is_stopped(self) -> bool:
        with self._lock:
            return self._stopped

    def _deliver(self, key: str, entries: list[Any], read_from: tuple[int, int] | None) -> None:
        metrics = self._metrics
        with self._lock:
            # Only those the XREAD read for: one added meanwhile may be behind where it
            # started, and gets its entries from the next read, which starts at it.
            readings = [
                reading
                for reading in self._readings.get(key, ())
                if read_from is not None and reading.last >= read_from
            ]
        for reading in readings:
            given: list[ObservationEvent] = []
            hole = 0
            for entry_id, raw in entries:
                at = entry_order(entry_id)
                if at <= reading.last:
                    continue
                position = int(entry_parts(raw)[0])
                if position != reading.position + 1:
                    hole = position - reading.position - 1 if position > reading.position else 1
                    break
                if reading.epoch == UNBORN_EPOCH:
                    # Subscribed before the session had events: its stream's epoch now.
                    reading.epoch = self._epoch_of(reading.key) or UNBORN_EPOCH
                given.append(self._make_event(reading.sub.session_id, reading.epoch, entry_id, raw))
                reading.last = at
                reading.position = position
            if given and not reading.sub._offer(given):
                if reading.sub._lagged:
                    metrics.incr("replay_subscriber_lags")
                    metrics.incr("replay_events_missed", reading.sub._missed)
                self.remove(reading.sub)
                continue
            if hole:
                # Trimmed before this reader got them: the subscriber must resume (and
                # gets the `trimmed` gap), never a silent skip.
                reading.sub._fall_behind(hole)
                metrics.incr("replay_subscriber_lags")
                metrics.incr("replay_events_missed", hole)
                self.remove(reading.sub)

    def _epoch_of(self, events_key: str) -> str | None:
        """The epoch in the meta hash of the stream `events_key` (None if unreadable)."""
        try:
            epoch = self._poker.hget(events_key.removesuffix(":events") + ":meta", "epoch")
        except RedisError as error:
            log.warning("replay: could not read the epoch of %s: %s", events_key, error)
            return None
        return epoch if isinstance(epoch, str) else None


def _by_stream(replies: Any) -> list[tuple[str, list[Any]]]:
    """`XREAD`'s reply as (stream, entries) pairs (a list of pairs, or RESP3's dict)."""
    if isinstance(replies, dict):
        return [(key, _entries(value)) for key, value in replies.items()]
    return [(key, entries) for key, entries in replies or ()]


def _entries(value: Any) -> list[Any]:
    # RESP3 wraps a stream's entries in one more list.
    if len(value) == 1 and value[0] and isinstance(value[0][0], list | tuple):
        return list(value[0])
    return list(value)
