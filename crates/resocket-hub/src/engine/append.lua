-- Appends a message to a room at the next offset, once per (client, message id).
-- KEYS: 1 meta hash (epoch, last), 2 stream, 3 dedupe key (optional)
-- ARGV: 1 epoch for a new room, 2 frame prefix, 3 data, 4 max length, 5 max age (ms),
--       6 room key ttl (ms), 7 dedupe ttl (ms), 8 pub/sub channel (same hash tag as the keys),
--       9 publish command (PUBLISH, or SPUBLISH on a cluster)
-- Returns {duplicate (0/1), offset, epoch}.
local meta, stream, dkey = KEYS[1], KEYS[2], KEYS[3]
local epoch = redis.call('HGET', meta, 'epoch')
if dkey and epoch then
  local prior = redis.call('GET', dkey)
  if prior then
    return {1, tonumber(prior), epoch}
  end
end
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', meta, 'epoch', epoch, 'last', 0)
end
local offset = redis.call('HINCRBY', meta, 'last', 1)
local frame = ARGV[2] .. epoch .. ',"offset":' .. offset .. ',"data":' .. ARGV[3] .. '}'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('XADD', stream, 'MAXLEN', '~', ARGV[4], '*', 'o', offset, 'f', frame)
redis.call('XTRIM', stream, 'MINID', now - tonumber(ARGV[5]))
redis.call('PEXPIRE', meta, ARGV[6])
redis.call('PEXPIRE', stream, ARGV[6])
if dkey then
  redis.call('SET', dkey, offset, 'PX', ARGV[7])
end
redis.call(ARGV[9], ARGV[8], epoch .. ' ' .. offset .. ' ' .. frame)
return {0, offset, epoch}
