-- Acknowledge a message for good: remove it from the in-flight list, store
-- its result record, count it, and optionally dead-letter it. Fenced: does
-- nothing unless the worker holds its lease and the message is in its list.
-- KEYS[1] workers, KEYS[2] inflight, KEYS[3] result key, KEYS[4] stats,
-- KEYS[5] dead, KEYS[6] dead index, KEYS[7] crashes
-- ARGV[1] worker id, ARGV[2] message, ARGV[3] result record, ARGV[4] result TTL s,
-- ARGV[5] status field to count, ARGV[6] dead-letter id ('' for none),
-- ARGV[7] dead letter, ARGV[8] dead-letter cap
-- Returns 1 when acknowledged, 0 when fenced off.
if not holds_lease(KEYS[1], ARGV[1]) then return 0 end
if redis.call('LREM', KEYS[2], 1, ARGV[2]) == 0 then return 0 end
if redis.call('HLEN', KEYS[7]) > 0 then
  redis.call('HDEL', KEYS[7], redis.sha1hex(ARGV[2]))
end
redis.call('SET', KEYS[3], ARGV[3], 'EX', tonumber(ARGV[4]))
redis.call('HINCRBY', KEYS[4], 'processed', 1)
redis.call('HINCRBY', KEYS[4], ARGV[5], 1)
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[5], ARGV[6], ARGV[7])
  redis.call('ZADD', KEYS[6], now_ms(), ARGV[6])
  redis.call('HINCRBY', KEYS[4], 'dead', 1)
  local excess = redis.call('ZCARD', KEYS[6]) - tonumber(ARGV[8])
  if excess > 0 then
    for _, id in ipairs(redis.call('ZPOPMIN', KEYS[6], excess)) do
      redis.call('HDEL', KEYS[5], id)
    end
  end
end
return 1
