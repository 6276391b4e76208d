-- Adds entries to the shared deny-list and tells every node, in one step.
-- KEYS: 1 the deny-list set (its name is also its channel's)
-- ARGV: 1 publish command (PUBLISH, or SPUBLISH on a cluster), 2.. the entries
-- One SADD per entry: `unpack` takes only a few thousand values at once.
for i = 2, #ARGV do
  redis.call('SADD', KEYS[1], ARGV[i])
end
redis.call(ARGV[1], KEYS[1], table.concat(ARGV, '\n', 2))
return 0
