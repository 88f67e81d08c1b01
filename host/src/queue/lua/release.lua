-- Graceful shutdown: put the worker's remaining in-flight messages back at
-- the head of the pending list in their original order, and drop its lease.
-- KEYS[1] workers, KEYS[2] inflight, KEYS[3] pending; ARGV[1] worker id.
-- Returns the number of messages put back.
local n = 0
while redis.call('LMOVE', KEYS[2], KEYS[3], 'RIGHT', 'LEFT') do n = n + 1 end
redis.call('HDEL', KEYS[1], ARGV[1])
return n
