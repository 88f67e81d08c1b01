-- Move a message from the in-flight list to the delayed set (a retry with
-- backoff, or a task whose delay_ms/run_at lies ahead). Fenced like finish.
-- KEYS[1] workers, KEYS[2] inflight, KEYS[3] delayed, KEYS[4] stats,
-- KEYS[5] result key, KEYS[6] crashes, KEYS[7] order prefix ('{Q}:order:'):
-- a message holding its ordering_key keeps it (see common_order.lua)
-- ARGV[1] worker id, ARGV[2] message as popped, ARGV[3] message to store,
-- ARGV[4] due time (Unix ms), ARGV[5] stats field ('' for none),
-- ARGV[6] result record ('' for none), ARGV[7] result TTL s
-- Returns 1 when rescheduled, 0 when fenced off.
if not holds_lease(KEYS[1], ARGV[1]) then return 0 end
if redis.call('LREM', KEYS[2], 1, ARGV[2]) == 0 then return 0 end
if redis.call('HLEN', KEYS[6]) > 0 then
  redis.call('HDEL', KEYS[6], redis.sha1hex(ARGV[2]))
end
order_keep(KEYS[7], ARGV[2], ARGV[3], ARGV[5] == 'retried')
redis.call('ZADD', KEYS[3], tonumber(ARGV[4]), ARGV[3])
if ARGV[5] ~= '' then redis.call('HINCRBY', KEYS[4], ARGV[5], 1) end
if ARGV[6] ~= '' then redis.call('SET', KEYS[5], ARGV[6], 'EX', tonumber(ARGV[7])) end
return 1
