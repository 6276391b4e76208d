-- A room's epoch, newest offset and the history after an offset, read at one instant.
-- Offsets in the stream are consecutive up to the newest (trimming only takes the oldest), so
-- the entries after `after` are the newest `last - after` ones.
-- KEYS: 1 meta hash, 2 stream
-- ARGV: 1 epoch for a new room, 2 after (-1: no entries), 3 room key ttl (ms), 4 max age (ms)
-- Returns {epoch, last, entries newest first}.
local meta, stream = KEYS[1], KEYS[2]
local epoch = redis.call('HGET', meta, 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', meta, 'epoch', epoch, 'last', 0)
end
redis.call('PEXPIRE', meta, ARGV[3])
local last = tonumber(redis.call('HGET', meta, 'last'))
local after = tonumber(ARGV[2])
local entries = {}
if after >= 0 and after < last then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('XTRIM', stream, 'MINID', now - tonumber(ARGV[4]))
  entries = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', last - after)
end
return {epoch, last, entries}
