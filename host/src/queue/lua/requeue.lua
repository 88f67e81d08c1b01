-- Move a dead letter back to the tail of the pending list.
-- KEYS[1] dead, KEYS[2] dead index, KEYS[3] pending; ARGV[1] id, ARGV[2] message to push.
-- Returns 1 when requeued, 0 when no such dead letter.
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('RPUSH', KEYS[3], ARGV[2])
return 1
