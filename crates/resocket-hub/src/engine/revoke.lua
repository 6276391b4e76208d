-- Adds entries to the shared deny-list and tells every node, in one step.
-- KEYS: 1 the deny-list set (its name is also its channel's)
-- ARGV: 1 publish command (PUBLISH, or SPUBLISH on a cluster), 2.. the entries
redis.call('SADD', KEYS[1], unpack(ARGV, 2))
redis.call(ARGV[1], KEYS[1], table.concat(ARGV, '\n', 2))
return 0
