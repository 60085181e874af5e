"""The Redis side of `greenroom.replay.streams`: key names, entry ids and the Lua scripts.

Each session has two keys: `<KEY_PREFIX><session>:events`, a stream whose entries
hold `p` (the position), `r` (the revision) and `d` (the payload as JSON), and
`<KEY_PREFIX><session>:meta`, a hash: `epoch`, `pos` (the last position), `rev` (the
highest revision), `ms` (the last entry's milliseconds) and `last` (its id). Every
change is one script, so what two hosts do to one session never interleaves.
Revisions are compared as canonical decimal strings (Lua numbers are doubles, exact
only below 2**53).
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import urlsplit

__all__ = [
    "APPEND",
    "CURSOR",
    "KEY_PREFIX",
    "READ",
    "UNBORN_EPOCH",
    "entry_fields",
    "entry_order",
    "events_key",
    "meta_key",
    "shown_url",
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
# then the payloads. Returns {epoch, first position, trimmed, {ids}}.
APPEND = (
    _ABOVE
    + """
local m = redis.call('HMGET', KEYS[2], 'epoch', 'pos', 'rev', 'ms')
local epoch = m[1] or ARGV[1]
local pos = tonumber(m[2] or '0')
local rev = m[3] or '0'
local ms = tonumber(m[4] or '0')
local now = tonumber(ARGV[3])
if now < ms then now = ms end
if above(ARGV[2], rev) then rev = ARGV[2] end
local first = pos + 1
local stamp = string.format('%.0f', now) .. '-*'
local ids = {}
for i = 6, #ARGV do
  pos = pos + 1
  ids[#ids + 1] = redis.call('XADD', KEYS[1], stamp, 'p', string.format('%.0f', pos),
    'r', ARGV[2], 'd', ARGV[i])
end
local trimmed = redis.call('XTRIM', KEYS[1], 'MAXLEN', ARGV[4])
if ARGV[5] ~= '' then trimmed = trimmed + redis.call('XTRIM', KEYS[1], 'MINID', ARGV[5]) end
redis.call('HSET', KEYS[2], 'epoch', epoch, 'pos', string.format('%.0f', pos), 'rev', rev,
  'ms', string.format('%.0f', now), 'last', ids[#ids])
return {epoch, first, trimmed, ids}
"""
)

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

# KEYS: events, meta. ARGV: min id ('' none), the cursor's epoch, the id to read after.
# Returns {{epoch, tail, revision, last}, trimmed, first entry, entries after}.
READ = f"""
local trimmed = 0
if ARGV[1] ~= '' then trimmed = redis.call('XTRIM', KEYS[1], 'MINID', ARGV[1]) end
local m = redis.call('HMGET', KEYS[2], 'epoch', 'pos', 'rev', 'last')
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
local entries = {{}}
if m[1] and (m[1] == ARGV[2] or ARGV[2] == '{UNBORN_EPOCH}') then
  entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[3], '+')
end
return {{m, trimmed, first, entries}}
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


def shown_url(url: str) -> str:
    """`url` without its password, for messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "the configured URL"
    if parts.password is None:
        return url
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}:***@" if parts.username else "***@"
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"
