"""The Redis side of `greenroom.replay.streams`: key names, entry ids and the Lua scripts.

Each session has two keys: `<KEY_PREFIX><session>:events`, a stream whose entries
hold `p` (the position), `r` (the revision) and `d` (the payload as JSON), and
`<KEY_PREFIX><session>:meta`, a hash: `epoch`, `pos` (the last position), `rev` (the
highest revision), `ms` (the last entry's milliseconds), `last` (its id), `aged`
(when appends last trimmed by age) and `len` (the stream's length). Every
change is one script, so what two hosts do to one session never interleaves.
Revisions are compared as canonical decimal strings (Lua numbers are doubles, exact
only below 2**53).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

try:  # the `redis` extra
    from redis.exceptions import NoScriptError
except ImportError:  # pragma: no cover (checked when a replay_url is configured)
    NoScriptError = LookupError  # type: ignore[assignment,misc]

__all__ = [
    "APPEND",
    "CURSOR",
    "KEY_PREFIX",
    "READ",
    "UNBORN_EPOCH",
    "Scripts",
    "entry_fields",
    "entry_order",
    "entry_parts",
    "events_key",
    "meta_key",
    "resp_command",
]

KEY_PREFIX: Final = "greenroom:replay:"
"""Where the sessions' keys live: `<prefix><session>:events` and `<prefix><session>:meta`."""
UNBORN_EPOCH: Final = "0" * 16
"""The epoch of a session that has no keys yet (see the module docstring)."""

_ABOVE = """
local function above(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end
"""

# KEYS: events, meta. ARGV: new epoch, revision, now ms, max events, min id ('' none),
# then the payloads. Returns "<epoch> <first position> <trimmed> <id> <id> ..." (one
# string: the client parses one reply, not a nested array).
#
# Trimming is amortised; reads trim exactly before they answer (READ), so no read sees
# more than `max events`, nor an event too old. By count: the meta hash keeps the
# stream's length (`len`), and an append trims (`XTRIM MAXLEN`, exact) once the stream
# holds a sixteenth more than the maximum. By age (`XTRIM MINID`): when a second of the
# clock has passed since the last time (`aged`).
APPEND = """
local m = redis.call('HMGET', KEYS[2], 'epoch', 'pos', 'rev', 'ms', 'aged', 'len')
local epoch = m[1] or ARGV[1]
local pos = tonumber(m[2] or '0')
local rev = m[3] or '0'
local r = ARGV[2]
if #r > #rev or (#r == #rev and r > rev) then rev = r end
local stamp = ARGV[3]
if m[4] and tonumber(stamp) < tonumber(m[4]) then stamp = m[4] end
local aged = m[5] or '0'
local len = tonumber(m[6] or redis.call('XLEN', KEYS[1]))
local first = string.format('%.0f', pos + 1)
local ids = {}
local p = first
for i = 6, #ARGV do
  pos = pos + 1
  if i > 6 then p = string.format('%.0f', pos) end
  ids[#ids + 1] = redis.call('XADD', KEYS[1], stamp .. '-*', 'p', p, 'r', r, 'd', ARGV[i])
end
len = len + #ids
local max = tonumber(ARGV[4])
local trimmed = 0
if len > max + math.floor(max / 16) then
  trimmed = redis.call('XTRIM', KEYS[1], 'MAXLEN', max)
  if trimmed > 0 then len = max else len = redis.call('XLEN', KEYS[1]) end
end
if ARGV[5] ~= '' and tonumber(stamp) - tonumber(aged) >= 1000 then
  local old = redis.call('XTRIM', KEYS[1], 'MINID', ARGV[5])
  trimmed = trimmed + old
  len = len - old
  aged = stamp
end
redis.call('HSET', KEYS[2], 'epoch', epoch, 'pos', p, 'rev', rev, 'ms', stamp,
  'last', ids[#ids], 'aged', aged, 'len', len)
return epoch .. ' ' .. first .. ' ' .. trimmed .. ' ' .. table.concat(ids, ' ')
"""

# KEYS: meta. ARGV: new epoch, revision. Returns {epoch, tail, last id}.
CURSOR = (
    _ABOVE
    + """
local m = redis.call('HMGET', KEYS[1], 'epoch', 'pos', 'rev', 'last')
if not m[1] then
  redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'pos', '0', 'rev', ARGV[2], 'ms', '0',
    'last', '0-0')
  return {ARGV[1], '0', '0-0'}
end
if above(ARGV[2], m[3]) then redis.call('HSET', KEYS[1], 'rev', ARGV[2]) end
return {m[1], m[2], m[4]}
"""
)

# KEYS: events, meta. ARGV: min id ('' none), the cursor's epoch, the id to read after,
# max events. Trims exactly first (by age, then by count; the length kept in the meta
# hash follows).
# Returns {epoch, tail, revision, last, trimmed, oldest position, entries}: '' for what
# is missing; the entries after the id as one JSON text, [[id, position, revision,
# payload], ...], built from the fields in the order APPEND writes them (p, r, d), so
# the client decodes them in one pass.
READ = f"""
local trimmed = 0
if ARGV[1] ~= '' then trimmed = redis.call('XTRIM', KEYS[1], 'MINID', ARGV[1]) end
trimmed = trimmed + redis.call('XTRIM', KEYS[1], 'MAXLEN', ARGV[4])
local m = redis.call('HMGET', KEYS[2], 'epoch', 'pos', 'rev', 'last')
if trimmed > 0 and m[1] then redis.call('HSET', KEYS[2], 'len', redis.call('XLEN', KEYS[1])) end
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
local oldest = ''
if first[1] then oldest = first[1][2][2] end
local body = ''
if m[1] and (m[1] == ARGV[2] or ARGV[2] == '{UNBORN_EPOCH}') then
  local entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[3], '+')
  local parts = {{}}
  for i, e in ipairs(entries) do
    local f = e[2]
    parts[i] = '["' .. e[1] .. '",' .. f[2] .. ',' .. f[4] .. ',' .. f[6] .. ']'
  end
  body = '[' .. table.concat(parts, ',') .. ']'
end
return {{m[1] or '', m[2] or '', m[3] or '', m[4] or '', trimmed, oldest, body}}
"""


def events_key(session_id: str) -> str:
    return f"{KEY_PREFIX}{session_id}:events"


def meta_key(session_id: str) -> str:
    return f"{KEY_PREFIX}{session_id}:meta"


def entry_order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def entry_fields(raw: Any) -> dict[str, str]:
    """An entry's fields: a dict (redis-py's parsed reply) or a flat list (a script's)."""
    if isinstance(raw, dict):
        return raw
    return dict(zip(raw[::2], raw[1::2], strict=True))


class Scripts:
    """The scripts, loaded once into a Redis and run by their SHA (`EVALSHA`: one round
    trip, no script text sent); loaded again when Redis lost them (restarted, or
    `SCRIPT FLUSH`)."""

    def __init__(self, client: Any) -> None:
        """Load the scripts with `client` (a `redis.Redis`)."""
        self._client = client
        self._texts = {"append": APPEND, "cursor": CURSOR, "read": READ}
        self._shas: dict[str, str] = {}
        self.load()

    def load(self) -> None:
        """(Re)load every script."""
        for name, text in self._texts.items():
            self._shas[name] = self._client.script_load(text)

    def run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run script `name` now; its reply."""
        try:
            return self._client.evalsha(self._shas[name], len(keys), *keys, *args)
        except NoScriptError:
            self.load()
            return self._client.evalsha(self._shas[name], len(keys), *keys, *args)

    def run_on(self, conn: Any, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run script `name` now on `conn`, a connection of the client's pool that the
        caller holds alone; its reply.

        As `run`, without the client's work around each command (a connection taken
        from the pool and given back, the command timed for its observability hooks,
        each argument's type checked as it is packed): on the benchmark machine that
        work is about 45 us of a 170 us append. Failures to reach Redis are retried
        as the client retries them (`conn.retry`), the connection dropped before each
        new try.
        """

        def attempt() -> Any:
            command = resp_command(("EVALSHA", self._shas[name], len(keys), *keys, *args))
            # As the pool does for each command: a connection the server closed while
            # it was idle is made again before anything is sent on it.
            self._client.connection_pool.ensure_connection(conn)
            conn.send_packed_command([command])
            return conn.read_response()

        def dropped(_error: Exception) -> None:
            conn.disconnect()

        try:
            return conn.retry.call_with_retry(attempt, dropped)
        except NoScriptError:
            self.load()
            return conn.retry.call_with_retry(attempt, dropped)

    def queue(self, pipe: Any, name: str, keys: Sequence[str], args: Sequence[Any]) -> None:
        """Queue script `name` on pipeline `pipe` (`missing(reply)` tells if it must be
        sent again after `load`)."""
        pipe.evalsha(self._shas[name], len(keys), *keys, *args)

    @staticmethod
    def missing(reply: object) -> bool:
        """Whether a pipelined reply says Redis did not have the script."""
        return isinstance(reply, NoScriptError)


def resp_command(parts: Sequence[str | int]) -> bytes:
    """A command in the Redis protocol (an array of bulk strings), for `parts` that are
    text (sent as UTF-8) or integers: what redis-py's packer makes of them, without
    its checks for every other type."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part.encode() if type(part) is str else str(part).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def entry_parts(raw: Any) -> tuple[str, str, str]:
    """An entry's position, revision and payload JSON (the order the append script
    writes them in, checked; any other order through `entry_fields`)."""
    if type(raw) is list and len(raw) == 6 and raw[0] == "p" and raw[2] == "r" and raw[4] == "d":
        return raw[1], raw[3], raw[5]
    fields = entry_fields(raw)
    return fields["p"], fields["r"], fields["d"]
