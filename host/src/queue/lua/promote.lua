-- Move due messages (score <= now) from the delayed set to the tail of the
-- pending list, at most ARGV[1] per call.
-- KEYS[1] delayed, KEYS[2] pending.
-- Returns {moved, ms until the next due message or -1 when none}.
local now = now_ms()
local due = redis.call('ZRANGE', KEYS[1], '-inf', now, 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[1]))
for _, msg in ipairs(due) do
  redis.call('ZREM', KEYS[1], msg)
  redis.call('RPUSH', KEYS[2], msg)
end
local next_due = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = -1
if #next_due == 2 then wait = math.max(0, tonumber(next_due[2]) - now) end
return {#due, wait}
